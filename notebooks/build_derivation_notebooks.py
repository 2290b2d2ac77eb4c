"""Write and execute the three derivation notebooks (THEORY.md §3–6):

    notebooks/01_fc_effective_action.ipynb
    notebooks/02_cnn_local_renormalization.ipynb
    notebooks/03_lcn_and_limits.ipynb

    python notebooks/build_derivation_notebooks.py [--no-execute] [01 02 03]

Each notebook steps through the derivation with SymPy (rendered LaTeX at every step, checked by
an ``assert`` that fails if a step is wrong) and ends with a small numeric solve on the digits
data set; each runs in well under a minute on two CPU cores. The outputs are written into the
committed .ipynb files. ``build(name)`` returns the unexecuted notebook (its cell sources are
what ``tests/test_notebooks_derivation.py`` compares with the committed file), ``execute(nb)``
runs it in place with nbclient.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

COMMON_IMPORTS = r"""import time
import numpy as np
import sympy as sp
import matplotlib.pyplot as plt
from IPython.display import Math, Markdown, display

import kren
from kren.data import load_digits
from derivations import action as A

def show(lhs, expr):
    # render "lhs = expr" as LaTeX
    display(Math(lhs + " = " + sp.latex(expr)))

t_start = time.perf_counter()"""

# ----------------------------------------------------------------------------------------------
# 01 · FC effective action
# ----------------------------------------------------------------------------------------------

NB01 = [
    ("md", r"""# 01 · The fully-connected effective action, step by step

One hidden layer of $N$ units, $f(x) = N^{-1/2}\sum_a v_a\,\sigma(w_a\cdot x/\sqrt{N_0})$, priors
$w \sim \mathcal N(0, 1/\lambda_0)$, $v \sim \mathcal N(0, 1/\lambda_1)$, likelihood
$e^{-\frac{1}{2T}\sum_\mu (y^\mu - f(x^\mu))^2}$ (THEORY.md §1). We follow THEORY §3 for the FC
network ($n = 1$): integrate the readout, introduce the order parameters $Q, \bar Q$, eliminate
$\bar Q$, write the action in the kernel eigenbasis, derive the saddle-point equation, solve the
linear network at $T\to 0$ in closed form (§5.4), and finally solve the saddle point on digits.
Every symbolic step is checked with an `assert`."""),
    ("code", COMMON_IMPORTS),
    ("md", r"""## Step 1–3: integrate the readout weights and the outputs

At fixed first-layer weights the features $\phi_a^\mu = \sigma(w_a\cdot x^\mu/\sqrt{N_0})$ are
fixed, and $f = \Phi^\top v/\sqrt N$ is linear in $v$. The simplest case, one unit and one sample,
is a scalar Gaussian integral that SymPy does directly:"""),
    ("code", r"""v, phi, y0 = sp.symbols("v phi y_0", real=True)
T, N, lam1 = A.T, A.N, A.lambda1
integrand = sp.exp(-lam1 * v**2 / 2 - (y0 - phi * v)**2 / (2 * T))
Zv = sp.simplify(sp.integrate(integrand, (v, -sp.oo, sp.oo), conds="none"))
show(r"\int dv\, e^{-\lambda_1 v^2/2 - (y-\phi v)^2/2T}", Zv)
# expected: sqrt(2π/λ1) · (1 + φ²/(λ1 T))^{-1/2} exp(−y²/(2(T + φ²/λ1)))
Khat = phi**2 / lam1
expected = sp.sqrt(2 * sp.pi / lam1) * sp.sqrt(T / (T + Khat)) * sp.exp(-y0**2 / (2 * (T + Khat)))
assert sp.simplify(Zv / expected - 1) == 0
show(r"Z_v", sp.sqrt(2 * sp.pi / lam1) * sp.sqrt(T) * sp.Symbol(r"(T+\hat K)")**sp.Rational(-1, 2)
     * sp.exp(-y0**2 / (2 * sp.Symbol(r"(T+\hat K)"))))"""),
    ("md", r"""For $N$ units and $P$ samples the same integral is a multivariate Gaussian,
$\int d^N v\, e^{-\frac12 v^\top M v + b^\top v} = (2\pi)^{N/2}\det M^{-1/2} e^{\frac12 b^\top M^{-1} b}$
with $M = \lambda_1\mathbb 1 + \Phi\Phi^\top/(NT)$, $b = \Phi y/(\sqrt N T)$. Up to constants its
logarithm is $-\frac12\log\det(T\mathbb 1 + \hat K) - \frac12 y^\top (T\mathbb 1+\hat K)^{-1} y$ with the
**empirical kernel** $\hat K = \Phi^\top\Phi/(\lambda_1 N)$ (THEORY §3 steps 2–3). Check for
$N = 2$ units, $P = 2$ samples, with exact rational features and symbolic $y, T, \lambda_1$:"""),
    ("code", r"""Nu, Ps = 2, 2
Phi = sp.Matrix([[sp.Rational(3, 5), -sp.Rational(1, 2)], [sp.Rational(1, 3), sp.Rational(4, 7)]])  # (N, P)
y = sp.Matrix(sp.symbols("y_0 y_1", real=True))
M = lam1 * sp.eye(Nu) + Phi * Phi.T / (Nu * T)
b = Phi * y / (sp.sqrt(Nu) * T)
logZ_v = -sp.log(M.det()) / 2 + (b.T * M.inv() * b)[0] / 2 - (y.T * y)[0] / (2 * T)
Kh = Phi.T * Phi / (lam1 * Nu)
Amat = T * sp.eye(Ps) + Kh
logZ_K = -sp.log(Amat.det()) / 2 - (y.T * Amat.inv() * y)[0] / 2
diff = sp.simplify(sp.expand_log(logZ_v - logZ_K, force=True))
show(r"\log Z_v - \log Z_{\hat K}", diff)
assert diff.free_symbols <= {T, lam1} and not diff.has(*y)   # only a y-independent constant
show(r"\hat K", Kh)"""),
    ("md", r"""## Step 4–6: average over first-layer weights, order parameters $Q, \bar Q$

In Fourier form (conjugate $\bar s\in\mathbb R^P$) the readout integral gives
$e^{-\frac12 \bar s^\top \hat K \bar s} = \prod_a e^{-q_a^2/(2\lambda_1 N)}$, $q_a = \bar s\cdot\phi_a$:
it factorizes over units. Gaussian equivalence takes $q$ Gaussian over $w$ with variance
$\bar s^\top K \bar s$ (zero-mean activation), so each unit contributes the average below. The
quantity $\bar Q = \bar s^\top K\bar s/(\lambda_1 N)$ is pinned by a delta function with conjugate
$Q$; after that the $\bar s$ integral is Gaussian with the kernel $Q K/\lambda_1$."""),
    ("code", r"""q = sp.Symbol("q", real=True)
sig2 = sp.Symbol("sigma^2", positive=True)
avg = sp.integrate(sp.exp(-q**2 / (2 * sig2)) / sp.sqrt(2 * sp.pi * sig2) * sp.exp(-q**2 / (2 * lam1 * N)),
                   (q, -sp.oo, sp.oo), conds="none")
avg = sp.simplify(avg)
show(r"\mathbb E_w\, e^{-q^2/(2\lambda_1 N)}", avg)
Qbar_s = sp.Symbol(r"\bar Q", real=True)
assert sp.simplify(avg.subs(sig2, Qbar_s * lam1 * N) - (1 + Qbar_s)**sp.Rational(-1, 2)) == 0
display(Math(r"\Big[\mathbb E_w\,e^{-q^2/(2\lambda_1 N)}\Big]^N = e^{-\frac N2 \log(1+\bar Q)},\qquad "
             r"\bar Q = \frac{\bar s^\top K \bar s}{\lambda_1 N}"))"""),
    ("md", r"""Collecting the exponents, $Z \asymp \int dQ\,d\bar Q\, e^{-\frac N2 S(Q,\bar Q)}$ with

$$S(Q,\bar Q) = -Q\bar Q + \log(1+\bar Q) + \frac1N\Big[\log\det A + y^\top A^{-1}y\Big],
\qquad A = T\mathbb 1 + \frac{Q}{\lambda_1}K .$$

Built explicitly for $P = 2$ with a symbolic kernel:"""),
    ("code", r"""Q = sp.Symbol("Q", positive=True)
_, env = A.action_explicit("fc", 1, 2, zero_mean=True, symbolic=True)
K2, y2 = env["K"], env["y"]
A2 = T * sp.eye(2) + Q * K2 / lam1
data_term = sp.log(A2.det()) + (y2.T * A2.inv() * y2)[0]
S_QQbar = -Q * Qbar_s + sp.log(1 + Qbar_s) + data_term / N
show("K", K2)
show(r"S(Q,\bar Q)", S_QQbar)"""),
    ("md", r"""## Eliminate $\bar Q$

$S$ depends on $\bar Q$ only through $-Q\bar Q + \log(1+\bar Q)$; $\partial S/\partial\bar Q = 0$ gives
$\bar Q^* = 1/Q - 1$ and $S(Q) = Q - \log Q + \frac1N[\log\det A + y^\top A^{-1}y]$ (dropping the
constant $-1$). SymPy solves it, and we compare with `derivations.action`'s zero-mean FC action:"""),
    ("code", r"""sol = sp.solve(sp.diff(S_QQbar, Qbar_s), Qbar_s)
show(r"\bar Q^*", sol)
assert len(sol) == 1 and sp.simplify(sol[0] - (1 / Q - 1)) == 0
S_Q = S_QQbar.subs(Qbar_s, sol[0]) + 1
S_lib, env_lib = A.action_explicit("fc", 1, 2, zero_mean=True, symbolic=True)
S_lib = S_lib.subs(env_lib["Q"], Q)
assert sp.simplify(S_Q - S_lib) == 0
show("S(Q)", Q - sp.log(Q) + sp.Symbol(r"\tfrac1N\big[\log\det A + y^\top A^{-1}y\big]"))
# n × n version used by CNN/LCN (library): Q̄* = Q⁻¹ − 𝟙 for symmetric 2×2 Q
Qb2, S0_2 = A.eliminate_Qbar(2)
show(r"\bar Q^*_{2\times 2}", sp.simplify(Qb2))"""),
    ("md", r"""## Eigenbasis form

With $K = U\,\mathrm{diag}(k)\,U^\top$ and $\tilde y = U^\top y$ the determinant and quadratic form
decouple into modes:
$S(Q) = Q - \log Q + \frac1N\sum_k\big[\log(T + Qk_k/\lambda_1) + \tilde y_k^2/(T + Qk_k/\lambda_1)\big]$.
The library form (`A.fc_eigen_zero_mean`) is checked against the matrix form on a random
positive-definite $K$:"""),
    ("code", r"""S_eig, dS_eig, d2S_eig, sy = A.fc_eigen_zero_mean()
show(r"S_{\rm eig}(Q)", S_eig)
show(r"\partial_Q S_{\rm eig}", dS_eig)
rng = np.random.default_rng(0)
F = rng.standard_normal((3, 5)); Kn = F.T @ F / 3 + 0.1 * np.eye(5); yn = rng.standard_normal(5)
vals = {T: 0.3, N: 7.0, lam1: 1.3}
mode = (sy["Q"] - sp.log(sy["Q"])).subs(vals), (sp.log(T + sy["Q"] * sy["k"] / lam1)
        + sy["yt"]**2 / (T + sy["Q"] * sy["k"] / lam1)).subs(vals)
k_n, U = np.linalg.eigh(Kn); yt_n = U.T @ yn
f_mode = sp.lambdify((sy["Q"], sy["k"], sy["yt"]), mode[1], "numpy")
for Qv in (0.4, 1.0, 2.5):
    s_eig = float(mode[0].subs(sy["Q"], Qv)) + f_mode(Qv, k_n, yt_n).sum() / vals[N]
    An = vals[T] * np.eye(5) + Qv * Kn / vals[lam1]
    s_mat = Qv - np.log(Qv) + (np.linalg.slogdet(An)[1] + yn @ np.linalg.solve(An, yn)) / vals[N]
    print(f"Q = {Qv}: eigenbasis {s_eig:.12f}  matrix {s_mat:.12f}")
    assert abs(s_eig - s_mat) < 1e-10   # same number, two factorizations: round-off only"""),
    ("md", r"""## Saddle-point equation

$\partial_Q \log\det A = \mathrm{Tr}(A^{-1}K)/\lambda_1$ and
$\partial_Q\, y^\top A^{-1}y = -z^\top K z/\lambda_1$ with $z = A^{-1}y$, so $\partial_Q S = 0$ reads

$$1 - \frac1Q + \frac{G(Q)}{N\lambda_1} = 0,\quad G = \mathrm{Tr}(A^{-1}K) - z^\top K z
\quad\Longleftrightarrow\quad Q = \Big(1 + \frac{G(Q)}{N\lambda_1}\Big)^{-1}.$$

Checked against SymPy's derivative of the explicit $P = 2$ action:"""),
    ("code", r"""z = A2.inv() * y2
G = (A2.inv() * K2).trace() - (z.T * K2 * z)[0]
saddle = 1 - 1 / Q + G / (N * lam1)
rat = {s: sp.Rational(i % 7 + 2, 5) * (1 if i % 3 else -1) for i, s in enumerate(sorted(K2.free_symbols | y2.free_symbols, key=str))}
rat[sorted(K2.free_symbols, key=str)[0]] = 3   # K diagonally dominant → positive definite
rat[sorted(K2.free_symbols, key=str)[2]] = 2
assert sp.simplify((sp.diff(S_Q, Q) - saddle).subs(rat)) == 0
show(r"\partial_Q S", sp.Symbol("1") - 1 / Q + sp.Symbol("G(Q)") / (N * lam1))"""),
    ("md", r"""## Linear FC at $T \to 0$: closed form (THEORY §5.4)

For $T \to 0$ and $P \le \mathrm{rank}\,K$, $A = QK/\lambda_1$: $\log\det A = P\log Q + \text{const}$ and
$y^\top A^{-1}y = \lambda_1 r/Q$ with $r = y^\top K^{-1}y$. With $\alpha = P/N$:"""),
    ("code", r"""alpha, r = sp.symbols("alpha r", positive=True)
S_T0 = Q - sp.log(Q) + alpha * sp.log(Q) + lam1 * r / (N * Q)
show(r"S_{T\to0}(Q)", S_T0)
roots = sp.solve(sp.Eq(sp.diff(S_T0, Q), 0), Q)
show(r"Q^*", roots)
closed = ((1 - alpha) + sp.sqrt((1 - alpha)**2 + 4 * lam1 * r / N)) / 2
# two roots of Q² − (1−α)Q − λ1 r/N = 0; their product −λ1 r/N < 0, so exactly one is positive
assert len(roots) == 2 and sp.simplify(roots[0] * roots[1] + lam1 * r / N) == 0
assert any(sp.simplify(rt - closed) == 0 for rt in roots)
show(r"Q^* \;(\text{positive root})", closed)"""),
    ("md", r"""Numerically: a linear FC network (`activation="linear"`) on $P = 30$ digits (raw pixels/16,
not standardized, so that $K = XX^\top/N_0$ has full rank $P \le N_0 = 64$; $\lambda_0 = 1$),
$N = 20$ ($\alpha = 1.5$), against the closed form. At finite $T$ the solver's $Q$ differs by $O(T)$:
the gap must shrink linearly as $T$ goes $10^{-6} \to 10^{-7}$."""),
    ("code", r"""lin = load_digits(classes=(0, 1), n_train=30, n_test=10, seed=0, standardize=False)
Xl, yl = lin.X_train, lin.y_train
Kl = Xl @ Xl.T / Xl.shape[1]
print(f"rank K = {np.linalg.matrix_rank(Kl)}, smallest eigenvalue {np.linalg.eigvalsh(Kl)[0]:.2e}")
r_num = float(yl @ np.linalg.solve(Kl, yl))
Q_closed = float(closed.subs({alpha: sp.Rational(30, 20), lam1: 1, r: r_num, N: 20}))
gaps = {}
for Tv in (1e-6, 1e-7):
    m_lin = kren.FC(N=20, T=Tv, activation="linear").fit(Xl, yl)
    gaps[Tv] = abs(float(m_lin.Q_) - Q_closed)
    print(f"T = {Tv:g}: solver Q = {float(m_lin.Q_):.8f}, closed form Q = {Q_closed:.8f}, gap {gaps[Tv]:.2e}")
assert gaps[1e-7] < gaps[1e-6] / 5          # O(T): a tenfold smaller T, a ~tenfold smaller gap
assert gaps[1e-7] < 1e-4 * Q_closed"""),
    ("md", r"""## Digits: the FC saddle point across widths

Classes 0 vs 1, $P = 150$, erf activation, $T = 0.1$. $Q^*$ approaches 1 as $N\to\infty$; the
FC kernel is **only rescaled** (THEORY §5.5): the finite-$N$ predictor equals the infinite-width one
with readout prior $\lambda_1/Q^*$ (`equivalent_prior_`)."""),
    ("code", r"""d = load_digits(classes=(0, 1), n_train=150, n_test=100, seed=0)
rows = ["| N | Q* | λ1/Q* | test error | max |f − f_GP(λ1/Q*)| |", "|---|---|---|---|---|"]
for Nw in (5, 20, 100, 1000, float("inf")):
    m = kren.FC(N=Nw, T=0.1).fit(d.X_train, d.y_train)
    ref = kren.FC(N=float("inf"), T=0.1, lambda1=m.equivalent_prior_).fit(d.X_train, d.y_train)
    dev = float(np.abs(m.predict(d.X_test) - ref.predict(d.X_test)).max())
    assert dev < 1e-8            # identical linear algebra up to round-off
    rows.append(f"| {Nw:g} | {float(m.Q_):.5f} | {m.equivalent_prior_:.5f} | "
                f"{m.test_error(d.X_test, d.y_test).total:.5f} | {dev:.1e} |")
display(Markdown("\n".join(rows)))
print(f"notebook ran in {time.perf_counter() - t_start:.1f} s")"""),
]

# ----------------------------------------------------------------------------------------------
# 02 · CNN local renormalization
# ----------------------------------------------------------------------------------------------

NB02 = [
    ("md", r"""# 02 · CNN: local kernel renormalization

For a CNN, $f(x) = (Nn)^{-1/2}\sum_{a,i} v_{a,i}\,\sigma(w_a\cdot x_i/\sqrt M)$, the weight $w_a$ is
shared by the $n$ patches, so the Gaussian-equivalent variables $q_i = \bar s\cdot\phi_i$ are
correlated across patches with covariance $\bar s^\top K_{ij}\bar s$. The order parameter becomes an
$n\times n$ matrix $Q$ and (zero-mean activation, THEORY §3)

$$K_R(Q) = \frac{1}{\lambda_1 n}\sum_{ij} Q_{ij}K_{ij},\qquad
S(Q) = \mathrm{Tr}\,Q - \log\det Q + \frac1N\big[\log\det A + y^\top A^{-1}y\big],\quad A = T\mathbb 1 + K_R.$$

The NNGP kernel ($Q = \mathbb 1$) only sees the diagonal blocks $K_{ii}$; at finite $N$ the
off-diagonal $Q_{ij}$ switch on cross-patch blocks: **local renormalization**."""),
    ("code", COMMON_IMPORTS),
    ("md", r"""## $K_R(Q)$ for $n = 2$ patches

Blocks $K_{ij}$ ($P\times P$, $K_{ji} = K_{ij}^\top$) as matrix symbols:"""),
    ("code", r"""T, N, lam1 = A.T, A.N, A.lambda1
Pn = sp.Symbol("P", integer=True, positive=True)
Kb = {(i, j): sp.MatrixSymbol(f"K_{{{i}{j}}}", Pn, Pn) for i in range(2) for j in range(2)}
Qm = sp.Matrix(2, 2, lambda i, j: sp.Symbol(f"Q_{min(i, j)}{max(i, j)}", real=True))
KR = sp.MatAdd(*[Qm[i, j] * Kb[(i, j)] for i in range(2) for j in range(2)]) / (lam1 * 2)
show("Q", Qm)
show(r"K_R(Q)", KR)
KR1 = KR.subs({Qm[0, 0]: 1, Qm[1, 1]: 1, Qm[0, 1]: 0})
show(r"K_R(\mathbb 1) = K_{\rm NNGP}", KR1)"""),
    ("md", r"""## $S(Q)$ for $n = 2$, $P = 2$, fully explicit

`derivations.action.action_explicit` expands the action on explicit matrices (every kernel entry a
symbol); $\bar Q$ was eliminated by $\partial S/\partial\bar Q = 0 \Rightarrow \bar Q = Q^{-1} - \mathbb 1$,
which SymPy re-derives for $2\times 2$ here:"""),
    ("code", r"""Qb_star, S0 = A.eliminate_Qbar(2)
show(r"\bar Q^* = Q^{-1} - \mathbb 1", sp.simplify(Qb_star))
S, env = A.action_explicit("cnn", 2, 2, zero_mean=True, symbolic=True)
Q2, blocks, y2 = env["Q"], env["K"], env["y"]
KR2 = sum((Q2[i, j] * blocks[(i, j)] for i in range(2) for j in range(2)), sp.zeros(2, 2)) / (2 * lam1)
A2 = T * sp.eye(2) + KR2
S_mine = Q2.trace() - sp.log(Q2.det()) + (sp.log(A2.det()) + (y2.T * A2.inv() * y2)[0]) / N
print("number of symbols in S:", len(S.free_symbols), " operations:", sp.count_ops(S))
show(r"K_R(Q)_{00}", sp.factor(KR2[0, 0]))
show(r"K_R(Q)_{01}", sp.factor(KR2[0, 1]))
# the library action and the formula above agree (exact rational data, symbolic Q)
import random
rr = random.Random(1)
data = {s: sp.Rational(rr.randint(-9, 9), 7) for s in S.free_symbols
        if str(s).startswith(("K", "y"))}
for (i, j) in [(0, 0), (1, 1)]:
    for a in range(2):
        data[blocks[(i, j)][a, a]] = 5 + data.get(blocks[(i, j)][a, a], 0)   # positive diagonal
pt = {Q2[0, 0]: sp.Rational(6, 5), Q2[1, 1]: sp.Rational(4, 5), Q2[0, 1]: sp.Rational(1, 10),
      T: sp.Rational(1, 10), N: 7, lam1: sp.Rational(3, 2)}
assert sp.simplify((S - S_mine).subs(data).subs(pt)) == 0"""),
    ("md", r"""## Gradient = saddle-point equation

$\partial S/\partial Q = \mathbb 1 - Q^{-1} + G(Q)/(N\lambda_1 n)$ with
$G_{ij} = \mathrm{Tr}(A^{-1}K_{ij}) - z^\top K_{ij}z$, $z = A^{-1}y$. Since $Q_{01} = Q_{10}$ is one
variable, $\partial S/\partial Q_{01}$ is twice the $(0,1)$ entry. Setting it to zero:
$Q = (\mathbb 1 + G(Q)/(N\lambda_1 n))^{-1}$. Checked exactly at three rational points:"""),
    ("code", r"""def G_matrix(Amat, z):
    return sp.Matrix(2, 2, lambda i, j: (Amat.inv() * blocks[(i, j)]).trace() - (z.T * blocks[(i, j)] * z)[0])

Sd = S.subs(data)
grad_formula = sp.eye(2) - Q2.inv() + G_matrix(A2, A2.inv() * y2) / (N * lam1 * 2)
for k, (q00, q11, q01) in enumerate([(1, 1, 0), (sp.Rational(6, 5), sp.Rational(4, 5), sp.Rational(1, 10)),
                                     (sp.Rational(1, 2), 2, -sp.Rational(3, 10))]):
    p = {**pt, Q2[0, 0]: q00, Q2[1, 1]: q11, Q2[0, 1]: q01}
    gf = grad_formula.subs(data).subs(p)
    for (i, j, w) in [(0, 0, 1), (1, 1, 1), (0, 1, 2)]:
        assert sp.simplify(sp.diff(Sd, Q2[i, j]).subs(p) - w * gf[i, j]) == 0
    print(f"point {k}: ∂S/∂Q_00 = {float(gf[0, 0]):+.6f}, ∂S/∂Q_11 = {float(gf[1, 1]):+.6f}, "
          f"∂S/∂Q_01 = {float(2 * gf[0, 1]):+.6f}  (exact match)")
display(Math(r"\frac{\partial S}{\partial Q} = \mathbb 1 - Q^{-1} + \frac{G(Q)}{N\lambda_1 n} = 0"
             r"\;\Longleftrightarrow\; Q = \Big(\mathbb 1 + \frac{G(Q)}{N\lambda_1 n}\Big)^{-1}"))"""),
    ("md", r"""## Digits: even vs odd, $P = 150$, CNN with $2\times 2$ patches

$n = 16$ non-overlapping patches of $M = 4$ pixels, $N = 10$ channels, $T = 0.1$, erf."""),
    ("code", r"""d = load_digits(classes="even-odd", n_train=150, n_test=100, seed=0)
X, y, Xt, yt = d.X_train, d.y_train, d.X_test, d.y_test
m = kren.CNN(N=10, T=0.1, input_shape=(1, 8, 8), mask=2, stride=2).fit(X, y)
m_inf = kren.CNN(N=float("inf"), T=0.1, input_shape=(1, 8, 8), mask=2, stride=2).fit(X, y)
print(m.result_.converged, "n_iter", m.result_.n_iter, "grad_norm", f"{m.result_.grad_norm:.1e}")
Qn = m.Q_
# the solution satisfies the saddle equation Q = (1 + G/(Nλ1 n))^{-1}: Q is symmetric positive definite
assert np.allclose(Qn, Qn.T) and np.linalg.eigvalsh(Qn).min() > 0
off = Qn - np.diag(np.diag(Qn))
print(f"diag(Q): min {np.diag(Qn).min():.4f} max {np.diag(Qn).max():.4f};  max |Q_ij|, i≠j: {np.abs(off).max():.4f}")
fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.8), constrained_layout=True)
v = np.abs(Qn - np.eye(16)).max()
im = a1.imshow(Qn - np.eye(16), cmap="RdBu_r", vmin=-v, vmax=v); a1.set_title(r"$Q - \mathbb{1}$ (16 patches)")
fig.colorbar(im, ax=a1)
im2 = a2.imshow(m.patch_importance(), cmap="viridis"); a2.set_title(r"patch importance $\sum_j Q_{ij}$")
fig.colorbar(im2, ax=a2)
display(fig); plt.close(fig)"""),
    ("md", r"""## Renormalized kernel vs NNGP kernel, and test error

$K_R = \frac1{\lambda_1 n}\sum_{ij}Q_{ij}K_{ij}$ against $K_{\rm NNGP} = \frac1{\lambda_1 n}\sum_i K_{ii}$
on the training set (sorted by label). The difference carries the cross-patch blocks."""),
    ("code", r"""order = np.argsort(y)
KRn = m.renormalized_kernel(X)[np.ix_(order, order)]
K0 = m_inf.renormalized_kernel(X)[np.ix_(order, order)]
# independent NNGP kernel from the kernels module: N = inf must reproduce it
assert np.allclose(K0, m.arch_.nngp_kernel(X)[np.ix_(order, order)], atol=1e-10)
rel = np.linalg.norm(KRn - K0) / np.linalg.norm(K0)
print(f"‖K_R − K_NNGP‖_F / ‖K_NNGP‖_F = {rel:.4f}")
fig, axs = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
for ax, M_, t in zip(axs, (K0, KRn, KRn - K0), ("NNGP kernel", r"$K_R$ (N = 10)", r"$K_R - K_{\rm NNGP}$")):
    im = ax.imshow(M_, cmap="RdBu_r" if "-" in t else "viridis"); ax.set_title(t); fig.colorbar(im, ax=ax)
display(fig); plt.close(fig)
e10, einf = m.test_error(Xt, yt), m_inf.test_error(Xt, yt)
display(Markdown(f"| N | test error | bias² | variance |\n|---|---|---|---|\n"
                 f"| 10 | {e10.total:.4f} | {e10.bias2:.4f} | {e10.variance:.4f} |\n"
                 f"| ∞ | {einf.total:.4f} | {einf.bias2:.4f} | {einf.variance:.4f} |"))
print(f"notebook ran in {time.perf_counter() - t_start:.1f} s")"""),
]

# ----------------------------------------------------------------------------------------------
# 03 · LCN and limits
# ----------------------------------------------------------------------------------------------

NB03 = [
    ("md", r"""# 03 · LCN, and the limits that tie FC, LCN and CNN together

An LCN has one weight vector per channel **and** patch, so the Gaussian-equivalent $q_i$ are
independent across patches: $Q$ is diagonal and $K_R = \frac1{\lambda_1 n}\sum_i Q_{ii}K_{ii}$ only
reweights the diagonal blocks. Checked symbolically here (THEORY §5.1, §5.3, §5.6) and
numerically (§5.2): CNN with diagonal $Q$ = LCN, CNN with $n = 1$ = FC, the small-$\alpha$
expansion, and the $N\to\infty$ limit."""),
    ("code", COMMON_IMPORTS),
    ("md", r"""## CNN with a diagonal $Q$ is the LCN (§5.6), $n = 2$, $P = 2$"""),
    ("code", r"""T, N, lam1 = A.T, A.N, A.lambda1
S_cnn, env_c = A.action_explicit("cnn", 2, 2, zero_mean=True, symbolic=True)
S_lcn, env_l = A.action_explicit("lcn", 2, 2, zero_mean=True, symbolic=True)
Qc, ql = env_c["Q"], env_l["q"]
show(r"Q_{\rm CNN}", Qc); show(r"q_{\rm LCN}", ql)
diag_sub = {Qc[0, 1]: 0, Qc[0, 0]: ql[0], Qc[1, 1]: ql[1]}
difference = sp.simplify(S_cnn.subs(diag_sub) - S_lcn)
show(r"S_{\rm CNN}(\mathrm{diag}\,q) - S_{\rm LCN}(q)", difference)
assert difference == 0"""),
    ("md", r"""## A CNN with one patch is the FC network (§5.1)

A mask covering the whole input gives $n = 1$, $M = N_0$: the $1\times 1$ matrix $Q$ is the FC scalar."""),
    ("code", r"""S_c1, env_c1 = A.action_explicit("cnn", 1, 2, zero_mean=True, symbolic=True)
S_fc, env_fc = A.action_explicit("fc", 1, 2, zero_mean=True, symbolic=True)
difference = sp.simplify(S_c1.subs(env_c1["Q"][0, 0], env_fc["Q"]) - S_fc)
show(r"S_{\rm CNN}^{n=1} - S_{\rm FC}", difference)
assert difference == 0
show(r"S_{\rm FC}", S_fc)"""),
    ("md", r"""Numerically, on digits: CNN and LCN with an $8\times 8$ mask against FC on the same data
($\lambda_0 = 1$, so $C = x\cdot x'/N_0$ in all three) at $N = 20$:"""),
    ("code", r"""d1 = load_digits(classes=(0, 1), n_train=80, n_test=50, seed=0)
fits = {name: cls(N=20, T=0.1, **kw).fit(d1.X_train, d1.y_train) for name, cls, kw in [
    ("FC", kren.FC, {}),
    ("CNN", kren.CNN, dict(input_shape=(1, 8, 8), mask=8, stride=8)),
    ("LCN", kren.LCN, dict(input_shape=(1, 8, 8), mask=8, stride=8))]}
for name, mm in fits.items():
    print(f"{name}: Q = {np.ravel(mm.Q_)[0]:.10f}")
p_fc = fits["FC"].predict(d1.X_test)
for name in ("CNN", "LCN"):
    assert abs(np.ravel(fits[name].Q_)[0] - float(fits["FC"].Q_)) < 1e-7    # solver tolerance
    assert np.abs(fits[name].predict(d1.X_test) - p_fc).max() < 1e-6"""),
    ("md", r"""## Small-$\alpha$ expansion (§5.3)

Write the saddle equation as $F(Q,\varepsilon) = 1 - 1/Q + \varepsilon\,G(Q)/(\lambda_1 n) = 0$ with
$\varepsilon = 1/N$, and expand $Q = 1 + c_1\varepsilon + O(\varepsilon^2)$. SymPy's series (FC, $n = 1$,
$P = 2$, exact rational kernel and labels, symbolic $T$ and $\lambda_1$) gives
$c_1 = -G(1)/\lambda_1$, i.e. $Q \approx 1 - G(1)/(N\lambda_1 n)$:"""),
    ("code", r"""eps, c1, c2 = sp.symbols("varepsilon c_1 c_2")
Kf = sp.Matrix([[2, sp.Rational(1, 2)], [sp.Rational(1, 2), 1]])
yf = sp.Matrix([1, -sp.Rational(3, 2)])
Qs = sp.Symbol("Q", positive=True)
def G_of(Qv):
    Am = T * sp.eye(2) + Qv * Kf / lam1
    z = Am.inv() * yf
    return (Am.inv() * Kf).trace() - (z.T * Kf * z)[0]
F = 1 - 1 / Qs + eps * G_of(Qs) / lam1
Fexp = sp.series(F.subs(Qs, 1 + c1 * eps + c2 * eps**2), eps, 0, 3).removeO()
c1_sol = sp.solve(sp.expand(Fexp).coeff(eps, 1), c1)[0]
show("c_1", sp.simplify(c1_sol))
assert sp.simplify(c1_sol + G_of(1) / lam1) == 0
c2_sol = sp.solve(sp.expand(Fexp).coeff(eps, 2).subs(c1, c1_sol), c2)[0]
show(r"Q", 1 + sp.simplify(c1_sol) / N + sp.Symbol(r"O(N^{-2})"))
# numeric check: the exact root of F at N = 1e3 against the expansion; the residual is O(1/N²)
vals = {T: sp.Rational(1, 2), lam1: 1}
Nbig = 1000
Qroot = sp.nsolve(F.subs(vals).subs(eps, sp.Rational(1, Nbig)), Qs, 1)
first = 1 + c1_sol.subs(vals) / Nbig
second = first + c2_sol.subs(vals).subs(c1, c1_sol.subs(vals)) / Nbig**2
print(f"exact Q = {float(Qroot):.12f}; 1st order {float(first):.12f}; 2nd order {float(second):.12f}")
assert abs(Qroot - first) < 5 * abs(c2_sol.subs(vals).subs(c1, c1_sol.subs(vals))) / Nbig**2 + 1e-15
assert abs(Qroot - second) < abs(Qroot - first)"""),
    ("md", r"""## $N \to \infty$ numerically (§5.2)

At $N = 10^6$ the CNN's $Q$ is within $O(1/N)$ of $\mathbb 1$ and its predictions approach the NNGP
($N = \infty$) ones; at $N = \infty$ CNN and LCN share the averaged kernel $\frac1{\lambda_1 n}\sum_i K_{ii}$
and coincide exactly."""),
    ("code", r"""d = load_digits(classes="even-odd", n_train=150, n_test=100, seed=0)
geo = dict(input_shape=(1, 8, 8), mask=2, stride=2)
cnn_big = kren.CNN(N=1e6, T=0.1, **geo).fit(d.X_train, d.y_train)
cnn_inf = kren.CNN(N=float("inf"), T=0.1, **geo).fit(d.X_train, d.y_train)
lcn_inf = kren.LCN(N=float("inf"), T=0.1, **geo).fit(d.X_train, d.y_train)
lcn_big = kren.LCN(N=1e6, T=0.1, **geo).fit(d.X_train, d.y_train)
dQ = np.abs(cnn_big.Q_ - np.eye(16)).max()
dp = np.abs(cnn_big.predict(d.X_test) - cnn_inf.predict(d.X_test)).max()
dl = np.abs(lcn_inf.predict(d.X_test) - cnn_inf.predict(d.X_test)).max()
dlb = np.abs(lcn_big.predict(d.X_test) - cnn_big.predict(d.X_test)).max()
display(Markdown(f"| quantity | value |\n|---|---|\n"
                 f"| max abs(Q − 1), CNN N = 1e6 | {dQ:.2e} |\n"
                 f"| max abs(f_CNN(1e6) − f_CNN(∞)) | {dp:.2e} |\n"
                 f"| max abs(f_LCN(∞) − f_CNN(∞)) | {dl:.2e} |\n"
                 f"| max abs(f_LCN(1e6) − f_CNN(1e6)) | {dlb:.2e} |"))
assert dQ < 1e-3 and dp < 1e-3      # both O(α) = O(P/N) = O(1.5e-4) times O(1) kernel-dependent factors
assert dl < 1e-10                   # same kernel, same linear algebra: round-off only
print(f"notebook ran in {time.perf_counter() - t_start:.1f} s")"""),
]

NOTEBOOKS = {
    "01": ("01_fc_effective_action.ipynb", NB01),
    "02": ("02_cnn_local_renormalization.ipynb", NB02),
    "03": ("03_lcn_and_limits.ipynb", NB03),
}


def build(name: str) -> nbformat.NotebookNode:
    """The unexecuted notebook ``name`` ("01", "02" or "03")."""
    if name not in NOTEBOOKS:
        raise ValueError(f"unknown notebook {name!r}; expected one of {sorted(NOTEBOOKS)}")
    nb = new_notebook()
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src)
                for kind, src in NOTEBOOKS[name][1]]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


def path(name: str) -> Path:
    """Where notebook ``name`` is committed."""
    return HERE / NOTEBOOKS[name][0]


def execute(nb, timeout=60):
    """Run ``nb`` in place with nbclient (working directory: notebooks/); raises
    nbclient.exceptions.CellExecutionError on a failing cell."""
    from nbclient import NotebookClient
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    return nb


if __name__ == "__main__":
    names = [a for a in sys.argv[1:] if a in NOTEBOOKS] or list(NOTEBOOKS)
    for name in names:
        nb = build(name)
        if "--no-execute" not in sys.argv:
            t0 = time.perf_counter()
            execute(nb)
            print(f"executed {name} in {time.perf_counter() - t0:.1f} s")
        nbformat.write(nb, path(name))
        print("wrote", path(name))
