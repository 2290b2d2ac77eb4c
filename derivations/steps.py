r"""THEORY §3, steps 1–8, carried out in SymPy: from the partition function to S(Q, Q̄).

Every step is a function that *derives* its result (Gaussian integrals done by SymPy, order
parameters introduced, Q̄ eliminated by ``sympy.solve``, gradients by ``sympy.diff``) and checks
it against the formula THEORY §3 states, raising :class:`DerivationError` on a mismatch. Each
returns a :class:`Step` record (title, explanation, displayed equations) that the notebooks
render, plus the derived and expected expressions so that tests can compare them independently.

Sizes. SymPy has no integral over a matrix of symbolic size, so each step is done in one of two
ways, always stated in its docstring:

* *symbolic in every parameter* — a one-dimensional Gaussian integral with symbolic coefficients
  done by ``sympy.integrate`` (:func:`gaussian_lemma`); the integrals of steps 2 and 3 factorize
  into such one-dimensional integrals, so their result holds for every size;
* *explicit small sizes* (P, n ∈ {1, 2, 3}, every matrix entry a Symbol) — a multivariate
  Gaussian integral with a correlated quadratic form, done by iterated application of the lemma
  (Fubini: integrate one variable at a time, completing the square; :func:`gaussian_integrate`),
  and compared with the general matrix formula written for that size.

Conventions (THEORY §1, §3): a network with N channels, n patches and readout prior N(0, 1/λ1);
the readout scale s = λ1 N n; φ_{a,i}^μ the activation of channel a at patch i on input μ;
K_ij = E_w[φ_i φ_jᵀ] the local kernels (P×P blocks, K_ji = K_ijᵀ), μ_i = E_w[φ_i] the unit
means. Symbol names match :mod:`derivations.action` (``K{i}{j}_{a}{b}``, ``mu_{i}{a}``, ``y_{a}``,
``Q_{ij}``, ``Qbar_{ij}``, indices from 0), so the two modules' explicit expressions can be
compared symbol for symbol.

Sizes verified (tests/test_derivation_steps.py unless noted; seconds on the shared 2-core box):
steps 2–3 for any size (lemma) and explicitly for P ≤ 3, N·n ≤ 4; step 5 for n = 1, 2 with a
full symbolic covariance and n ≤ 3 diagonal (n = 3 full also passes, ≈10 s, not in the suite);
steps 6 and 8 for FC, LCN and CNN at n = 2, P = 2 (CNN n = 3 passes in ≈5 s); step 7 for
P = 1, 2, 3; Q̄ elimination for n = 1, 2, 3; saddle-point equations for zero mean up to n = 3
(P ≤ 3), non-zero mean up to n = 2 (n = 3 takes minutes of rational cancellation).

The Gaussian-equivalence step (5) is an *assumption*, not a theorem; see
:func:`step5_gaussian_equivalence` and :mod:`derivations.gaussian_equivalence` for what is and is
not exact about it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import sympy as sp

__all__ = [
    "T", "N", "lambda1", "lambda0", "DerivationError", "Step", "tex", "ExplicitData",
    "GAUSSIAN_EQUIVALENCE_ASSUMPTION", "symbolic_equal", "compare_with_action_module",
    "gaussian_lemma", "gaussian_integrate", "gaussian_average_formula", "unit_mean_symbolic",
    "explicit_data", "theory_K_R", "theory_action", "theory_action_zero_mean",
    "theory_gradients", "step1_fourier_delta", "step2_readout", "step3_outputs",
    "step4_channel_factorization", "step5_moments", "step5_gaussian_equivalence",
    "step6_order_parameters", "step7_sbar_integral", "step8_action", "eliminate_Qbar",
    "data_term_gradient", "saddle_point_equations", "saddle_point_bruteforce", "derive",
]

# The same Symbols as derivations.action (same names and assumptions ⇒ equal in SymPy).
T, N, lambda1, lambda0 = sp.symbols("T N lambda1 lambda0", positive=True)

KINDS = ("fc", "lcn", "cnn")

GAUSSIAN_EQUIVALENCE_ASSUMPTION = r"""
**Assumption (Gaussian equivalence).** For a fixed conjugate vector $\bar s\in\mathbb R^P$, the
$n$ projections $q_i = \bar s\cdot\varphi_i(w)$, $i=1\dots n$, of one channel's activations are
treated as *jointly Gaussian* random variables over the prior of the first-layer weights $w$,
with the exact first two moments
$$\mathbb E_w\,q_i = \bar s\cdot\mu_i,\qquad
\mathrm{Cov}_w(q_i,q_j) = \bar s^\top\!\left(K_{ij}-\mu_i\mu_j^\top\right)\bar s$$
(CNN: one $w$ shared by all patches; LCN: independent $w$ per patch, so the covariance is
$\delta_{ij}\,\bar s^\top(K_{ii}-\mu_i\mu_i^\top)\bar s$). It is exact for linear activations
(then $q$ is linear in the Gaussian $w$) and otherwise is motivated by a central-limit argument:
$q_i=\sum_\mu \bar s_\mu\varphi_i^\mu$ is a sum of $P\to\infty$ weakly dependent terms. Everything
after this step is exact algebra and Gaussian integration.
""".strip()


class DerivationError(AssertionError):
    """A derived expression does not equal the formula it is supposed to reproduce."""


@dataclass
class Step:
    """One step of the derivation: what was done, the equations shown, what was checked."""

    number: str
    title: str
    text: str
    equations: list = field(default_factory=list)      # list of (lhs, rhs) SymPy pairs
    checked: list = field(default_factory=list)        # human-readable statements verified
    derived: object = None
    expected: object = None

    def latex(self) -> str:
        """The step's equations as one LaTeX ``aligned`` block."""
        rows = [f"{tex(l)} &= {tex(r)}" for l, r in self.equations]
        return r"\begin{aligned}" + r"\\ ".join(rows) + r"\end{aligned}"

    def markdown(self) -> str:
        """Title, explanation, the equations (display math) and what was verified."""
        checks = "\n".join(f"- verified: {c}" for c in self.checked)
        return (f"**Step {self.number}: {self.title}.** {self.text}\n\n"
                f"$$\n{self.latex()}\n$$\n\n{checks}")

    def _repr_markdown_(self):
        return self.markdown()


def tex(x) -> str:
    """LaTeX of a SymPy object; Symbols whose names are already LaTeX (they contain a
    backslash, a brace, a space or a parenthesis) are printed verbatim."""
    if isinstance(x, str):
        return x
    x = sp.sympify(x)
    raw = {s: s.name for s in x.free_symbols
           if isinstance(s, sp.Symbol) and any(c in s.name for c in "\\{ (")}
    return sp.latex(x, symbol_names=raw)


# ------------------------------------------------------------------------------------------
# Exact comparison of expressions that may contain logarithms
# ------------------------------------------------------------------------------------------

def _log_symbols(expr, table: dict):
    """Replace every log(u) in ``expr`` by Σ_k e_k L_k + log c, where u = c Π_k f_k^{e_k} is
    the factorization of the rational function u into irreducible polynomials and L_k is a
    Symbol standing for log f_k (shared through ``table`` between expressions)."""
    repl = {}
    for L in expr.atoms(sp.log):
        u = sp.cancel(sp.together(L.args[0]))
        num, den = sp.fraction(u)
        total = sp.S.Zero
        for part, sign in ((num, 1), (den, -1)):
            if part.is_number:
                total += sign * sp.log(part)
                continue
            c, facs = sp.factor_list(part)
            total += sign * sp.log(c) if c != 1 else 0
            for f, e in facs:
                key = sp.srepr(sp.expand(f))
                if key not in table:
                    table[key] = sp.Dummy(f"L{len(table)}")
                total += sign * e * table[key]
        repl[L] = total
    return expr.xreplace(repl)


def symbolic_equal(a, b, gens=()) -> bool:
    """True iff the scalar expressions ``a`` and ``b`` (rational functions and logarithms of
    rational functions) are identical.

    Exact method: every log(u) is rewritten through the factorization of u into irreducible
    polynomials (:func:`_log_symbols`), the same factor on both sides becoming the same symbol;
    what is left is compared as a polynomial in those log symbols and in ``gens`` (e.g. the
    labels y, in which the data term is quadratic) whose coefficients must cancel to 0 as
    rational functions. Matrices are compared entry by entry.
    """
    if isinstance(a, sp.MatrixBase) or isinstance(b, sp.MatrixBase):
        a, b = sp.Matrix(a), sp.Matrix(b)
        return a.shape == b.shape and all(symbolic_equal(x, y, gens) for x, y in zip(a, b))
    table = {}
    d = _log_symbols(sp.sympify(a), table) - _log_symbols(sp.sympify(b), table)
    if d == 0:
        return True
    g = list(table.values()) + [x for x in gens if d.has(x)]
    if not g:
        return sp.cancel(sp.together(d)) == 0
    return _same_polynomial(d, 0, g)


def _same_polynomial(a, b, gens, degree: int = 2) -> bool:
    """a = b, where both are polynomials of degree ≤ ``degree`` in ``gens`` (the labels y: every
    expression compared this way has the form c0 + yᵀMy, or is free of y, with c0 and M free of
    y by construction) whose coefficients are rational functions of the other symbols.

    The coefficients are the Taylor coefficients at gens = 0 (SymPy derivatives, no expansion of
    the rational functions) and each pair must cancel exactly.
    """
    from itertools import combinations_with_replacement
    gens = [g for g in gens if (sp.sympify(a).has(g) or sp.sympify(b).has(g))]
    d = sp.sympify(a) - sp.sympify(b)
    zero = {g: 0 for g in gens}
    for k in range(degree + 1):
        for combo in combinations_with_replacement(gens, k):
            c = d.diff(*combo) if combo else d
            c = c.xreplace(zero)
            if sp.cancel(sp.together(c)) != 0:
                return False
    return True


def _require(ok: bool, what: str):
    if not ok:
        raise DerivationError(what)


# ------------------------------------------------------------------------------------------
# The Gaussian lemma and the iterated Gaussian integral
# ------------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def gaussian_lemma():
    r"""∫ dx exp(−a x²/2 + b x) = √(2π/a) exp(b²/(2a)),  a > 0,  b = β + iγ complex.

    Done by ``sympy.integrate`` with symbolic a > 0 and real β, γ (a complex linear coefficient,
    as the Fourier variables of steps 1, 3 and 7 produce). Returns (Integral, result, expected)
    after checking result = expected.
    """
    x = sp.Symbol("x", real=True)
    a = sp.Symbol("a", positive=True)
    beta, gamma = sp.symbols("beta gamma", real=True)
    b = beta + sp.I * gamma
    integrand = sp.exp(-a * x**2 / 2 + b * x)
    result = sp.integrate(integrand, (x, -sp.oo, sp.oo), conds="none")
    expected = sp.sqrt(2 * sp.pi / a) * sp.exp(b**2 / (2 * a))
    _require(sp.simplify(result - expected) == 0,
             f"Gaussian lemma: sympy.integrate gave {result}, expected {expected}")
    return sp.Integral(integrand, (x, -sp.oo, sp.oo)), result, expected


@dataclass
class GaussianIntegral:
    """Result of :func:`gaussian_integrate`: ∫ Π dx pref·exp(E) = √(pref_sq)·exp(exponent).

    ``pivots`` are the successive coefficients a_k (the pivots of the quadratic form, whose
    product is its determinant); the integral converges iff every pivot is positive.
    """

    pref_sq: sp.Expr
    exponent: sp.Expr
    pivots: list

    @property
    def value(self):
        return sp.sqrt(self.pref_sq) * sp.exp(self.exponent)


def gaussian_integrate(exponent, variables, pref_sq=sp.S.One) -> GaussianIntegral:
    r"""∫ Π_k dx_k exp(exponent) for an exponent of degree ≤ 2 in the variables.

    Fubini: the variables are integrated one at a time; for each, exponent = −a x²/2 + b x + c
    and :func:`gaussian_lemma` gives √(2π/a) exp(c + b²/(2a)). The square of the prefactor is
    accumulated as a rational function (``pref_sq`` multiplies it). Raises ``ValueError`` when the
    exponent is not quadratic in a variable or a pivot a vanishes.
    """
    gaussian_lemma()          # the one-dimensional rule everything below rests on
    E = sp.expand(exponent)
    pivots = []
    for x in variables:
        try:
            poly = sp.Poly(E, x)
        except sp.PolynomialError:
            raise ValueError(f"exponent is not polynomial in {x}: {exponent}") from None
        if poly.degree() > 2:
            raise ValueError(f"exponent has degree {poly.degree()} in {x}; a Gaussian "
                             "integral needs degree 2")
        a = sp.cancel(-2 * poly.coeff_monomial(x**2))
        if a == 0:
            raise ValueError(f"no quadratic term in {x}: the integral over {x} diverges")
        b = poly.coeff_monomial(x)
        c = poly.coeff_monomial(1)
        pivots.append(a)
        pref_sq = pref_sq * 2 * sp.pi / a
        E = sp.expand(c + sp.cancel(b**2 / (2 * a)))
    return GaussianIntegral(sp.cancel(pref_sq), E, pivots)


def unit_mean_symbolic(activation):
    r"""μ = E[σ(h)], h ~ N(0, a), by ``sympy.integrate`` on the activation's SymPy form (THEORY §2).

    The density is even, so only the even part of σ contributes:
    μ = ∫_0^∞ [σ(h) + σ(−h)] φ_a(h) dh. For an odd σ (erf, tanh, linear) the bracket vanishes
    identically and μ = 0 by symmetry; relu gives ∫_0^∞ h φ_a(h) dh = √(a/(2π)).
    Checks the result against the activation: its closed form (``mean_sympy``) where it has one,
    its ``zero_mean`` flag (μ ≡ 0 exactly when it is set), and its numerical ``mean`` at a = 0.7.
    ``activation``: a name or a :class:`kren.activations.Activation`. Returns (result, expected),
    ``expected`` the closed form (0 for a zero-mean σ; None when the activation has none).
    """
    from kren.activations import get
    act = get(activation)
    h = sp.Symbol("h", positive=True)
    a = sp.Symbol("a", positive=True)
    density = sp.exp(-h**2 / (2 * a)) / sp.sqrt(2 * sp.pi * a)
    even = sp.simplify(act.sympy(h) + act.sympy(-h))
    res = sp.simplify(sp.integrate(even * density, (h, 0, sp.oo)))
    expected = act.mean_sympy(a)
    if expected is None and act.zero_mean:
        expected = sp.S.Zero
    if expected is not None:
        _require(sp.simplify(res - expected) == 0,
                 f"unit mean of {act.name}: {res} != {expected}")
    _require((res == 0) == bool(act.zero_mean),
             f"unit mean of {act.name} is {res}, but its zero_mean flag is {act.zero_mean}")
    num = float(act.mean(0.7))
    _require(abs(float(res.subs(a, sp.Rational(7, 10))) - num) <= 1e-12 * max(1.0, abs(num)),
             f"unit mean of {act.name} at a = 0.7: symbolic {res} vs numerical {num}")
    return res, expected


# ------------------------------------------------------------------------------------------
# Explicit data (small sizes) and the THEORY §3 formulas written for them
# ------------------------------------------------------------------------------------------

@dataclass
class ExplicitData:
    """Explicit small-size objects: kernel blocks K[(i, j)] (every ordered pair the
    architecture uses, K[(j, i)] = K[(i, j)]ᵀ), unit means ``mu`` (n×P, row i = μ_iᵀ), labels
    ``y`` (P×1), order parameters ``Q``/``Qbar`` (n×n; LCN diagonal; FC 1×1)."""

    kind: str
    n: int
    P: int
    zero_mean: bool
    K: dict
    mu: sp.Matrix
    y: sp.Matrix
    Q: sp.Matrix
    Qbar: sp.Matrix

    def pairs(self):
        return sorted(self.K)

    def mu_vec(self, i):
        return self.mu[i, :].T


def explicit_data(kind: str, n: int, P: int, zero_mean: bool) -> ExplicitData:
    """Every entry a real Symbol, named as in :func:`derivations.action.action_explicit`.

    CNN: all blocks K_ij (K_ii symmetric, K_ij for i < j general, K_ji = K_ijᵀ), Q and Q̄
    symmetric. LCN: only K_ii, Q = diag(q_i), Q̄ = diag(q̄_i). FC: n = 1, scalar Q, Q̄.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "fc" and n != 1:
        raise ValueError(f"FC has n = 1, got n = {n}")
    if n < 1 or P < 1:
        raise ValueError(f"sizes must be >= 1, got n = {n}, P = {P}")
    K = {}
    for i in range(n):
        for j in range(i, n):
            if kind != "cnn" and i != j:
                continue
            blk = sp.Matrix(P, P, lambda a, b: sp.Symbol(
                f"K{i}{j}_{min(a, b)}{max(a, b)}" if i == j else f"K{i}{j}_{a}{b}", real=True))
            K[(i, j)] = blk
            K[(j, i)] = blk.T
    mu = sp.zeros(n, P) if zero_mean else \
        sp.Matrix(n, P, lambda i, a: sp.Symbol(f"mu_{i}{a}", real=True))
    y = sp.Matrix(P, 1, lambda a, _: sp.Symbol(f"y_{a}", real=True))
    if kind == "fc":
        Q = sp.Matrix([[sp.Symbol("Q", real=True)]])
        Qbar = sp.Matrix([[sp.Symbol("Qbar", real=True)]])
    elif kind == "lcn":
        Q = sp.diag(*[sp.Symbol(f"q_{i}", positive=True) for i in range(n)])
        Qbar = sp.diag(*[sp.Symbol(f"qbar_{i}", real=True) for i in range(n)])
    else:
        Q = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"Q_{min(i, j)}{max(i, j)}", real=True))
        Qbar = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"Qbar_{min(i, j)}{max(i, j)}", real=True))
    return ExplicitData(kind, n, P, zero_mean, K, mu, y, Q, Qbar)


def _det(M: sp.Matrix):
    """Determinant by Laplace expansion along the first row, with no simplification at all
    (SymPy's own methods cancel at every step, which is slow on rational entries)."""
    k = M.shape[0]
    if k == 1:
        return M[0, 0]
    if k == 2:
        return M[0, 0] * M[1, 1] - M[0, 1] * M[1, 0]
    return sp.Add(*[(-1)**j * M[0, j] * _det(M.minor_submatrix(0, j)) for j in range(k)])


def _inv(M: sp.Matrix) -> sp.Matrix:
    """M⁻¹ = adj(M)/det M from cofactors, unsimplified."""
    k = M.shape[0]
    if k == 1:
        return sp.Matrix([[1 / M[0, 0]]])
    adj = sp.Matrix(k, k, lambda i, j: (-1)**(i + j) * _det(M.minor_submatrix(j, i)))
    return adj / _det(M)


def theory_K_R(d: ExplicitData, Q=None, Qbar=None) -> sp.Matrix:
    """THEORY §3: K_R = (1/(λ1 n)) Σ_ij [Q_ij (K_ij − μ_i μ_jᵀ) + ((𝟙+Q̄)⁻¹)_ij μ_i μ_jᵀ]
    (zero mean: (1/(λ1 n)) Σ_ij Q_ij K_ij)."""
    Q = d.Q if Q is None else Q
    Qbar = d.Qbar if Qbar is None else Qbar
    out = sp.zeros(d.P, d.P)
    if d.zero_mean:
        for (i, j), Kij in d.K.items():
            out += Q[i, j] * Kij
        return out / (lambda1 * d.n)
    R = _inv(sp.eye(d.n) + Qbar)
    for (i, j), Kij in d.K.items():
        out += Q[i, j] * (Kij - d.mu_vec(i) * d.mu_vec(j).T)
    for i in range(d.n):
        for j in range(d.n):
            out += R[i, j] * d.mu_vec(i) * d.mu_vec(j).T
    return out / (lambda1 * d.n)


def _data_term(d: ExplicitData, K_R: sp.Matrix):
    A = T * sp.eye(d.P) + K_R
    return sp.log(_det(A)) + (d.y.T * _inv(A) * d.y)[0, 0]


def theory_action(d: ExplicitData):
    """THEORY §3: S(Q, Q̄) = −Tr(QQ̄) + log det(𝟙+Q̄) + (1/N)[log det A + yᵀA⁻¹y],
    A = T𝟙 + K_R(Q, Q̄)."""
    In = sp.eye(d.n)
    dd = ExplicitData(d.kind, d.n, d.P, False, d.K, d.mu, d.y, d.Q, d.Qbar)
    return (-(d.Q * d.Qbar).trace() + sp.log(_det(In + d.Qbar))
            + _data_term(d, theory_K_R(dd)) / N)


def theory_action_zero_mean(d: ExplicitData):
    """THEORY §3 (μ = 0): S(Q) = Tr Q − log det Q + (1/N)[log det A + yᵀA⁻¹y],
    K_R = (1/(λ1 n)) Σ_ij Q_ij K_ij."""
    dz = ExplicitData(d.kind, d.n, d.P, True, d.K, sp.zeros(d.n, d.P), d.y, d.Q, d.Qbar)
    return d.Q.trace() - sp.log(_det(d.Q)) + _data_term(dz, theory_K_R(dz)) / N


def theory_gradients(d: ExplicitData, B: sp.Matrix | None = None):
    r"""Matrix gradients (dS = Tr(∇_Q S dQ) + Tr(∇_Q̄ S dQ̄)), z = A⁻¹y, B = A⁻¹ − zzᵀ:

    zero mean (THEORY §3): ∇_Q S = 𝟙 − Q⁻¹ + G/(N λ1 n),  G_ij = Tr(A⁻¹K_ij) − zᵀK_ij z = Tr(B K_ij);
    general: ∇_Q S = −Q̄ + G̃/(N λ1 n),  G̃_ij = Tr(B (K_ij − μ_iμ_jᵀ)),
             ∇_Q̄ S = −Q + R − R H R/(N λ1 n),  R = (𝟙+Q̄)⁻¹,  H_ij = μ_jᵀ B μ_i.
    ``B`` given (e.g. a generic symmetric matrix of Symbols) replaces A⁻¹ − zzᵀ.
    Returns dict with 'dS_dQ' (and 'dS_dQbar'), 'G', 'B'.
    """
    if B is None:
        A = T * sp.eye(d.P) + theory_K_R(d)
        Ainv = _inv(A)
        z = Ainv * d.y
        B = Ainv - z * z.T
    n = d.n
    G = sp.zeros(n, n)
    for (i, j), Kij in d.K.items():
        G[i, j] = (B * Kij).trace()
    out = {"G": G, "B": B}
    if d.zero_mean:
        out["dS_dQ"] = sp.eye(n) - _inv(d.Q) + G / (N * lambda1 * n)
        return out
    Gt = sp.zeros(n, n)
    for (i, j), Kij in d.K.items():
        Gt[i, j] = (B * (Kij - d.mu_vec(i) * d.mu_vec(j).T)).trace()
    H = sp.Matrix(n, n, lambda i, j: (d.mu_vec(j).T * B * d.mu_vec(i))[0, 0])
    R = _inv(sp.eye(n) + d.Qbar)
    out.update({"Gt": Gt, "H": H, "R": R,
                "dS_dQ": -d.Qbar + Gt / (N * lambda1 * n),
                "dS_dQbar": -d.Q + R - R * H * R / (N * lambda1 * n)})
    return out


# ------------------------------------------------------------------------------------------
# Step 1: outputs pinned by delta functions in Fourier form
# ------------------------------------------------------------------------------------------

def step1_fourier_delta() -> Step:
    r"""δ(u) = ∫ ds̄/(2π) e^{i s̄ u}, checked as the ε → 0 limit of its Gaussian regularization.

    δ_ε(u) = ∫ ds̄/(2π) e^{i s̄ u − ε s̄²/2} = e^{−u²/(2ε)}/√(2πε) (Gaussian lemma), and for the
    test function g(u) = e^{−(u−c)²/2}: ∫ du δ_ε(u) g(u) = e^{−c²/(2(1+ε))}/√(1+ε) → g(0).
    So Z = ∫dθ prior·e^{−Σ(y−f_θ)²/2T} = ∫dθ df ds̄/(2π)^P prior·e^{−|y−f|²/2T + i s̄ᵀ(f − f_θ)}.
    """
    s, u, c = sp.symbols("sbar u c", real=True)
    eps = sp.Symbol("epsilon", positive=True)
    gi = gaussian_integrate(sp.I * s * u - eps * s**2 / 2, [s])
    delta_eps = sp.sqrt(gi.pref_sq) * sp.exp(gi.exponent) / (2 * sp.pi)
    expected = sp.exp(-u**2 / (2 * eps)) / sp.sqrt(2 * sp.pi * eps)
    _require(sp.simplify(delta_eps - expected) == 0, "regularized delta")
    g = sp.exp(-(u - c)**2 / 2)
    smear = gaussian_integrate(-u**2 / (2 * eps) - (u - c)**2 / 2, [u],
                               pref_sq=1 / (2 * sp.pi * eps))
    smeared = sp.simplify(sp.sqrt(smear.pref_sq) * sp.exp(smear.exponent))
    want = sp.exp(-c**2 / (2 * (1 + eps))) / sp.sqrt(1 + eps)
    _require(sp.simplify(smeared - want) == 0, "smeared test function")
    lim = sp.limit(smeared, eps, 0)
    _require(sp.simplify(lim - g.subs(u, 0)) == 0, "delta limit")
    return Step(
        "1", "Outputs pinned by delta functions (Fourier form)",
        r"Insert $1=\int df^\mu\,\delta(f^\mu-f_\theta(x^\mu))$ for every training input and "
        r"write each delta as a Fourier integral over a conjugate variable $\bar s_\mu$. The "
        r"Gaussian regularization $\delta_\varepsilon$ tends to $\delta$: smearing the test "
        r"function $g(u)=e^{-(u-c)^2/2}$ gives $g(0)$ as $\varepsilon\to0$.",
        equations=[(sp.Function(r"\delta_\varepsilon")(u),
                    sp.Integral(sp.exp(sp.I * s * u - eps * s**2 / 2) / (2 * sp.pi),
                                (s, -sp.oo, sp.oo))),
                   (sp.Function(r"\delta_\varepsilon")(u), expected),
                   (sp.Integral(sp.Function(r"\delta_\varepsilon")(u) * g, (u, -sp.oo, sp.oo)),
                    want),
                   (sp.Limit(want, eps, 0), lim)],
        checked=["δ_ε by the Gaussian lemma", "∫δ_ε g → g(0)"],
        derived=lim, expected=g.subs(u, 0))


# ------------------------------------------------------------------------------------------
# Step 2: the readout integral
# ------------------------------------------------------------------------------------------

def _phi_symbols(P, n, channels):
    return {(a, i): sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"phi_{a}{i}^{mu}", real=True))
            for a in range(channels) for i in range(n)}


def step2_readout(P: int = 2, n: int = 2, channels: int = 2) -> Step:
    r"""∫ Π dv_{a,i} N(v; 0, 1/λ1) exp(−i s̄ᵀ f_θ) = exp(−½ s̄ᵀ K̂ s̄),
    f_θ^μ = (N n)^{-1/2} Σ_{a,i} v_{a,i} φ_{a,i}^μ,  K̂ = (1/(λ1 N n)) Σ_{a,i} φ_{a,i} φ_{a,i}ᵀ.

    Symbolic in every parameter: the integrand factorizes into one Gaussian per readout weight,
    ∫ dv √(λ1/2π) e^{−λ1v²/2 − i v c} = e^{−c²/(2λ1)} (:func:`gaussian_lemma`), whence the result
    for any size. Explicit: the multiple integral over all N·n readout weights for the given
    sizes (φ symbolic, N = ``channels``), compared with −½ s̄ᵀK̂s̄. FC is n = 1.
    """
    v = sp.Symbol("v", real=True)
    c = sp.Symbol("c", real=True)
    one = gaussian_integrate(-lambda1 * v**2 / 2 - sp.I * v * c, [v], pref_sq=lambda1 / (2 * sp.pi))
    _require(sp.simplify(one.pref_sq - 1) == 0 and sp.simplify(one.exponent + c**2 /
                                                               (2 * lambda1)) == 0,
             "one readout weight")
    sbar = sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"sbar_{mu}", real=True))
    phi = _phi_symbols(P, n, channels)
    Nn = channels * n
    vs = {k: sp.Symbol(f"v_{k[0]}{k[1]}", real=True) for k in phi}
    f_theta = sum((vs[k] * phi[k] for k in phi), sp.zeros(P, 1)) / sp.sqrt(Nn)
    E = -lambda1 * sum(x**2 for x in vs.values()) / 2 - sp.I * (sbar.T * f_theta)[0, 0]
    gi = gaussian_integrate(E, list(vs.values()), pref_sq=(lambda1 / (2 * sp.pi))**Nn)
    K_hat = sum((phi[k] * phi[k].T for k in phi), sp.zeros(P, P)) / (lambda1 * Nn)
    expected = -(sbar.T * K_hat * sbar)[0, 0] / 2
    _require(sp.simplify(gi.pref_sq - 1) == 0, "readout prefactor")
    _require(sp.expand(gi.exponent - expected) == 0, "readout exponent")
    return Step(
        "2", "Integrate the readout weights",
        r"Each readout weight $v_{a,i}\sim\mathcal N(0,1/\lambda_1)$ enters linearly through "
        r"$-i\bar s^\top f_\theta$; its Gaussian integral leaves a quadratic form in $\bar s$ "
        r"with the *empirical kernel* $\hat K$ of the hidden layer.",
        equations=[(sp.Integral(sp.sqrt(lambda1 / (2 * sp.pi)) *
                                sp.exp(-lambda1 * v**2 / 2 - sp.I * v * c), (v, -sp.oo, sp.oo)),
                    sp.exp(one.exponent)),
                   (sp.Symbol(r"\log\mathbb E_v e^{-i\bar s^\top f_\theta}"),
                    sp.Symbol(r"-\tfrac12\bar s^\top\hat K\bar s")),
                   (sp.Symbol(r"\hat K"),
                    sp.Symbol(r"\frac{1}{\lambda_1 N n}\sum_{a,i}\varphi_{a,i}\varphi_{a,i}^\top"))],
        checked=["one weight, symbolic (lemma)",
                 f"all {Nn} weights at P={P}, n={n}, N={channels}, φ symbolic"],
        derived=gi.exponent, expected=expected)


# ------------------------------------------------------------------------------------------
# Step 3: the output integral
# ------------------------------------------------------------------------------------------

def step3_outputs(P: int = 2) -> Step:
    r"""∫ Π df^μ exp(−|y − f|²/(2T) + i s̄ᵀf) = (2πT)^{P/2} exp(i s̄ᵀy − (T/2) s̄ᵀs̄).

    Symbolic in every parameter (one output: the lemma with a = 1/T, b = y/T + i s̄) and
    explicit for P outputs. The constant (2πT)^{P/2} does not depend on Q, Q̄ and is dropped.
    """
    sbar = sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"sbar_{mu}", real=True))
    y = sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"y_{mu}", real=True))
    f = sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"f_{mu}", real=True))
    E = -((y - f).T * (y - f))[0, 0] / (2 * T) + sp.I * (sbar.T * f)[0, 0]
    gi = gaussian_integrate(E, list(f))
    expected = sp.I * (sbar.T * y)[0, 0] - T * (sbar.T * sbar)[0, 0] / 2
    _require(sp.simplify(gi.pref_sq - (2 * sp.pi * T)**P) == 0, "output prefactor")
    _require(sp.expand(gi.exponent - expected) == 0, "output exponent")
    return Step(
        "3", "Integrate the outputs",
        r"The likelihood is Gaussian in the pinned outputs $f^\mu$; integrating them shifts the "
        r"labels into the Fourier exponent and adds the temperature as a ridge $T\bar s^\top\bar s$.",
        equations=[(sp.Integral(sp.exp(E), *[(x, -sp.oo, sp.oo) for x in f]),
                    sp.sqrt(gi.pref_sq) * sp.exp(sp.expand(expected)))],
        checked=[f"P={P} outputs, every parameter symbolic"],
        derived=gi.exponent, expected=expected)


# ------------------------------------------------------------------------------------------
# Step 4: the average over first-layer weights factorizes over channels
# ------------------------------------------------------------------------------------------

def step4_channel_factorization(kind: str = "cnn", P: int = 2, n: int = 2, channels: int = 2,
                                M: int = 2) -> Step:
    r"""−½ s̄ᵀK̂s̄ = Σ_a [−|q_a|²/(2 λ1 N n)],  q_{a,i} = s̄·φ_{a,i},  and term a depends on the
    weights of channel a only, so E_W Π_a e^{t_a} = Π_a E e^{t_a} = (E_w e^{−|q|²/(2λ1Nn)})^N.

    Explicit: φ_{a,i}^μ = σ(w·x_i^μ/√M) with an undefined function σ, symbolic weights and inputs
    (CNN: w_a shared by all patches; LCN: w_{a,i}; FC: n = 1). The identity is checked by
    expansion and the dependence by the free symbols of each term. For the LCN each channel term
    further splits into n terms with disjoint weights.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "fc":
        n = 1
    sigma = sp.Function("sigma")
    x = {(i, mu): sp.Matrix(M, 1, lambda k, _: sp.Symbol(f"x_{i}{mu}{k}", real=True))
         for i in range(n) for mu in range(P)}
    if kind == "lcn":
        w = {(a, i): sp.Matrix(M, 1, lambda k, _: sp.Symbol(f"w_{a}{i}{k}", real=True))
             for a in range(channels) for i in range(n)}
    else:
        w = {(a, i): sp.Matrix(M, 1, lambda k, _: sp.Symbol(f"w_{a}{k}", real=True))
             for a in range(channels) for i in range(n)}
    sbar = sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"sbar_{mu}", real=True))
    phi = {(a, i): sp.Matrix(P, 1, lambda mu, _: sigma((w[(a, i)].T * x[(i, mu)])[0, 0]
                                                       / sp.sqrt(M)))
           for a in range(channels) for i in range(n)}
    s = lambda1 * channels * n
    K_hat = sum((phi[k] * phi[k].T for k in phi), sp.zeros(P, P)) / s
    total = -(sbar.T * K_hat * sbar)[0, 0] / 2
    terms = [-sum(((sbar.T * phi[(a, i)])[0, 0]**2 for i in range(n)), sp.S.Zero) / (2 * s)
             for a in range(channels)]
    _require(sp.expand(total - sum(terms)) == 0, "sum over channels")
    wsyms = {a: set().union(*[w[(a, i)].free_symbols for i in range(n)]) for a in range(channels)}
    allw = set().union(*wsyms.values())
    for a, t in enumerate(terms):
        _require((t.free_symbols & allw) == wsyms[a], f"channel {a} term depends on other weights")
    if kind == "lcn":
        for a in range(channels):
            for i in range(n):
                ti = (sbar.T * phi[(a, i)])[0, 0]**2
                _require((ti.free_symbols & allw) == w[(a, i)].free_symbols,
                         "LCN patch term depends on other patches")
    return Step(
        "4", "Average over first-layer weights: factorization over channels",
        r"The exponent is a sum over channels $a$ of terms that involve only that channel's "
        r"weights (CNN: one $w_a$ for all patches; LCN: one $w_{a,i}$ per patch). The prior "
        r"is a product over channels, so the average of the product is the $N$-th power of a "
        r"single-channel average.",
        equations=[(sp.Symbol(r"-\tfrac12\bar s^\top\hat K\bar s"),
                    sp.Symbol(r"-\sum_{a=1}^N\frac{|q_a|^2}{2\lambda_1Nn},\quad "
                              r"q_{a,i}=\bar s\cdot\varphi_{a,i}")),
                   (sp.Symbol(r"\mathbb E_W e^{-\frac12\bar s^\top\hat K\bar s}"),
                    sp.Pow(sp.Symbol(r"\mathbb E_w\,e^{-|q|^2/(2\lambda_1Nn)}"), N))],
        checked=[f"{kind}: exponent = Σ_a channel terms (P={P}, n={n}, N={channels}, M={M})",
                 "each channel term depends only on its own weights"],
        derived=total, expected=sum(terms))


# ------------------------------------------------------------------------------------------
# Step 5: Gaussian equivalence and its consequence
# ------------------------------------------------------------------------------------------

def step5_moments(P: int = 2, n: int = 2) -> Step:
    r"""Moments of q_i = s̄·φ_i from the definitions K_ij = E[φ_iφ_jᵀ], μ_i = E[φ_i]:
    E q_i = s̄ᵀμ_i, E q_i q_j = s̄ᵀK_ij s̄, Cov(q_i, q_j) = s̄ᵀ(K_ij − μ_iμ_jᵀ)s̄.

    Explicit: q_i q_j is expanded into Σ_μν s̄_μ s̄_ν φ_i^μ φ_j^ν and E is applied term by term
    (linearity; E[φ_i^μ φ_j^ν] = K_ij^{μν} is the definition of the local kernel).
    """
    sbar = sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"sbar_{mu}", real=True))
    d = explicit_data("cnn", n, P, zero_mean=False)
    phi = {i: sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"phi_{i}^{mu}", real=True))
           for i in range(n)}
    for i in range(n):
        for j in range(n):
            prod = sp.expand((sbar.T * phi[i])[0, 0] * (sbar.T * phi[j])[0, 0])
            # E acting on monomials s̄_μ s̄_ν φ_i^μ φ_j^ν (i, j may coincide)
            rule = {phi[i][a] * phi[j][b]: d.K[(i, j)][a, b] for a in range(P) for b in range(P)}
            if i == j:
                rule = {phi[i][a] * phi[i][b]: d.K[(i, i)][a, b]
                        for a in range(P) for b in range(P)}
            Eqq = sp.S.Zero
            for term in sp.Add.make_args(prod):
                coeff, rest = term.as_independent(*phi[i], *phi[j])
                Eqq += coeff * rule[rest]
            _require(sp.expand(Eqq - (sbar.T * d.K[(i, j)] * sbar)[0, 0]) == 0, "E q_i q_j")
            cov = Eqq - (sbar.T * d.mu_vec(i))[0, 0] * (sbar.T * d.mu_vec(j))[0, 0]
            want = (sbar.T * (d.K[(i, j)] - d.mu_vec(i) * d.mu_vec(j).T) * sbar)[0, 0]
            _require(sp.expand(cov - want) == 0, "Cov q_i q_j")
    return Step(
        "5a", "Moments of the projections q",
        r"$q_i=\bar s\cdot\varphi_i$ is linear in the activations, so its first two moments are "
        r"fixed exactly by the unit means and the local kernels.",
        equations=[(sp.Symbol(r"\mathbb E\,q_i"), sp.Symbol(r"\bar s^\top\mu_i")),
                   (sp.Symbol(r"\mathrm{Cov}(q_i,q_j)"),
                    sp.Symbol(r"\bar s^\top(K_{ij}-\mu_i\mu_j^\top)\bar s"))],
        checked=[f"all i, j at P={P}, n={n}"])


def gaussian_average_formula(m: sp.Matrix, C: sp.Matrix, s):
    """det(𝟙 + C/s)^{-1/2} exp(−½ mᵀ(s𝟙 + C)⁻¹ m) (THEORY §3 step 5)."""
    k = C.shape[0]
    return (sp.eye(k) + C / s).det()**sp.Rational(-1, 2) * \
        sp.exp(-(m.T * _inv(s * sp.eye(k) + C) * m)[0, 0] / 2)


def step5_gaussian_equivalence(n: int = 2, diagonal: bool = False) -> Step:
    r"""Under the Gaussian-equivalence assumption (:data:`GAUSSIAN_EQUIVALENCE_ASSUMPTION`),
    for q ~ N(m, C) in R^n and s = λ1 N n:

        E exp(−|q|²/(2s)) = det(𝟙 + C/s)^{-1/2} exp(−½ mᵀ(s𝟙 + C)⁻¹ m).

    Derived for explicit n with every entry symbolic: the Gaussian density is written with a
    symbolic precision matrix Λ = C⁻¹ (symmetric; diagonal for ``diagonal=True``, the LCN),
    the n-fold integral is done by :func:`gaussian_integrate` and compared with the formula at
    C = Λ⁻¹. For the diagonal case the result is also checked to be the product over patches
    of the n = 1 formula (the LCN average factorizes over patches, step 4).
    """
    s = sp.Symbol("s", positive=True)
    q = sp.Matrix(n, 1, lambda i, _: sp.Symbol(f"q_{i}", real=True))
    m = sp.Matrix(n, 1, lambda i, _: sp.Symbol(f"m_{i}", real=True))
    if diagonal:
        Lam = sp.diag(*[sp.Symbol(f"Lambda_{i}{i}", positive=True) for i in range(n)])
    else:
        Lam = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"Lambda_{min(i, j)}{max(i, j)}", real=True))
    detL = Lam.det()
    r = q - m
    E = -(r.T * Lam * r)[0, 0] / 2 - (q.T * q)[0, 0] / (2 * s)
    gi = gaussian_integrate(E, list(q), pref_sq=detL / (2 * sp.pi)**n)
    C = _inv(Lam)
    In = sp.eye(n)
    # C Λ = 𝟙, hence (s𝟙 + C)Λ = sΛ + 𝟙 and Λ(𝟙 + C/s) = Λ + 𝟙/s (checked entrywise):
    _require((C * Lam).applyfunc(sp.cancel) == In, "C = Λ⁻¹")
    _require(((s * In + C) * Lam - (s * Lam + In)).applyfunc(sp.cancel) == sp.zeros(n, n) and
             (Lam * (In + C / s) - (Lam + In / s)).applyfunc(sp.cancel) == sp.zeros(n, n),
             "Λ identities")
    # prefactor²: det Λ/Π pivots, and Π pivots = det(Λ + 𝟙/s) = det Λ · det(𝟙 + C/s)
    _require(sp.cancel(sp.Mul(*gi.pivots) - (Lam + In / s).det()) == 0, "GE pivots")
    want_sq = detL / (Lam + In / s).det()            # = det(𝟙 + C/s)⁻¹ (multiplicativity)
    _require(sp.cancel(gi.pref_sq - want_sq) == 0, "GE determinant")
    # exponent: −½ mᵀ(s𝟙 + C)⁻¹m with (s𝟙 + C)⁻¹ = Λ(sΛ + 𝟙)⁻¹, compared monomial by monomial
    want_E = -(m.T * Lam * _inv(s * Lam + In) * m)[0, 0] / 2
    _require(_same_polynomial(gi.exponent, want_E, list(m)), "GE exponent")
    if n <= 2:       # small enough to compare with the formula written in C directly
        _require(sp.cancel(gi.pref_sq * (In + C / s).det() - 1) == 0, "GE det(𝟙 + C/s)")
        _require(_same_polynomial(gi.exponent, -(m.T * _inv(s * In + C) * m)[0, 0] / 2,
                                  list(m)), "GE exponent in C")
    checked = [f"n={n} {'diagonal' if diagonal else 'full'} covariance, all entries symbolic"]
    if diagonal:
        prod_sq = sp.Mul(*[1 / (1 + C[i, i] / s) for i in range(n)])
        prod_E = sum(-m[i]**2 / (2 * (s + C[i, i])) for i in range(n))
        _require(sp.cancel(prod_sq - want_sq) == 0 and _same_polynomial(prod_E, want_E, list(m)),
                 "LCN product over patches")
        checked.append("equals the product of n one-patch averages")
    return Step(
        "5", "Gaussian equivalence" + (" (LCN: diagonal covariance)" if diagonal else ""),
        GAUSSIAN_EQUIVALENCE_ASSUMPTION +
        r" Under it the single-channel average is a Gaussian integral, done by completing the "
        r"square ($s=\lambda_1Nn$):",
        equations=[(sp.Symbol(r"\mathbb E_{q\sim\mathcal N(m,C)}\,e^{-|q|^2/(2s)}"),
                    sp.Symbol(r"\det\!\left(\mathbb 1+C/s\right)^{-1/2}"
                              r"\exp\!\left(-\tfrac12 m^\top(s\mathbb 1+C)^{-1}m\right)")),
                   (sp.Symbol(r"\text{explicit } n=%d:\ \text{prefactor}^2" % n),
                    sp.factor(gi.pref_sq))],
        checked=checked, derived=(gi.pref_sq, gi.exponent), expected=(want_sq, want_E))


# ------------------------------------------------------------------------------------------
# Step 6: order parameters
# ------------------------------------------------------------------------------------------

def _weights(n, kind):
    """Multiplicity of Q_ij in Σ_{ij} Q_ij X_ij for symmetric Q: one Lagrange multiplier per
    independent entry (i ≤ j) carries the weight 2 − δ_ij."""
    return {(i, j): (1 if i == j else 2) for i in range(n) for j in range(i, n)
            if kind == "cnn" or i == j}


def step6_order_parameters(d: ExplicitData) -> Step:
    r"""Order parameters Q̄_ij = s̄ᵀ(K_ij − μ_iμ_jᵀ)s̄/(λ1 N n) (i.e. C = s Q̄), imposed by
    deltas whose Fourier conjugates (rotated to the real axis) are Q_ij.

    Checked identities (explicit, every entry symbolic):
    (a) N × [−½ mᵀ(s𝟙 + sQ̄)⁻¹m] = −½ s̄ᵀ K_mean s̄,  K_mean = (1/(λ1 n)) Σ_ij R_ij μ_iμ_jᵀ,
        R = (𝟙+Q̄)⁻¹, m_i = s̄ᵀμ_i, s = λ1 N n;  and N × [−½ log det(𝟙 + C/s)] = −(N/2) log det(𝟙+Q̄);
    (b) the delta exponents Σ_{i≤j} (2 − δ_ij) Q_ij (N/2)(Q̄_ij − s̄ᵀK̃_ij s̄/(λ1 N n))
        = (N/2) Tr(QQ̄) − ½ s̄ᵀ K_cov s̄,  K_cov = (1/(λ1 n)) Σ_ij Q_ij K̃_ij,  K̃_ij = K_ij − μ_iμ_jᵀ;
    (c) K_cov + K_mean = K_R of THEORY §3 (the s̄-quadratic form is now T𝟙 + K_R = A).
    """
    n, P = d.n, d.P
    sbar = sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"sbar_{mu}", real=True))
    Nn = sp.Symbol("N", positive=True)
    s = lambda1 * Nn * n
    R = _inv(sp.eye(n) + d.Qbar)
    m = sp.Matrix(n, 1, lambda i, _: (sbar.T * d.mu_vec(i))[0, 0])
    mean_term = Nn * (-(m.T * _inv(s * sp.eye(n) + s * d.Qbar) * m)[0, 0] / 2)
    K_mean = sp.zeros(P, P)
    for i in range(n):
        for j in range(n):
            K_mean += R[i, j] * d.mu_vec(i) * d.mu_vec(j).T
    K_mean /= lambda1 * n
    if d.kind != "cnn":   # LCN/FC: covariance diagonal ⇒ Q̄ diagonal ⇒ R diagonal
        _require(all(R[i, j] == 0 for i in range(n) for j in range(n) if i != j), "diag R")
    _require(sp.cancel(sp.together(mean_term + (sbar.T * K_mean * sbar)[0, 0] / 2)) == 0,
             "mean term")
    Ct = {k: Kij - d.mu_vec(k[0]) * d.mu_vec(k[1]).T for k, Kij in d.K.items()}
    lhs = sum((wgt * d.Q[i, j] * Nn / 2 *
               (d.Qbar[i, j] - (sbar.T * Ct[(i, j)] * sbar)[0, 0] / (lambda1 * Nn * n))
               for (i, j), wgt in _weights(n, d.kind).items()), sp.S.Zero)
    K_cov = sum((d.Q[i, j] * Ct[(i, j)] for (i, j) in d.K), sp.zeros(P, P)) / (lambda1 * n)
    rhs = Nn / 2 * (d.Q * d.Qbar).trace() - (sbar.T * K_cov * sbar)[0, 0] / 2
    _require(sp.expand(lhs - rhs) == 0, "delta exponent")
    dnz = ExplicitData(d.kind, n, P, False, d.K, d.mu, d.y, d.Q, d.Qbar)
    _require(sp.cancel(sp.together(K_cov + K_mean - theory_K_R(dnz))) == sp.zeros(P, P),
             "K_R assembly")
    return Step(
        "6", "Order parameters",
        r"The single-channel average depends on $\bar s$ only through the $n\times n$ matrix "
        r"$C_{ij}=\bar s^\top(K_{ij}-\mu_i\mu_j^\top)\bar s$. Define $\bar Q=C/(\lambda_1Nn)$ and "
        r"impose it with delta functions whose conjugates (rotated to the real axis) are $Q$. "
        r"Then the $N$-th power of the average and the deltas give",
        equations=[(sp.Symbol(r"N\log\mathbb E_w e^{-|q|^2/(2s)}"),
                    sp.Symbol(r"-\tfrac N2\log\det(\mathbb 1+\bar Q)-\tfrac12\bar s^\top "
                              r"\Big[\tfrac{1}{\lambda_1 n}\sum_{ij}\big((\mathbb 1+\bar Q)^{-1}"
                              r"\big)_{ij}\mu_i\mu_j^\top\Big]\bar s")),
                   (sp.Symbol(r"\text{deltas}"),
                    sp.Symbol(r"\tfrac N2\mathrm{Tr}(Q\bar Q)-\tfrac12\bar s^\top\Big["
                              r"\tfrac1{\lambda_1n}\sum_{ij}Q_{ij}(K_{ij}-\mu_i\mu_j^\top)"
                              r"\Big]\bar s")),
                   (sp.Symbol("K_R"), sp.Symbol(r"K_{\rm cov}(Q)+K_{\rm mean}(\bar Q)"))],
        checked=[f"{d.kind} n={n} P={P}: mean term, delta exponent, K_R = THEORY §3"],
        derived=K_cov + K_mean, expected=theory_K_R(dnz))


# ------------------------------------------------------------------------------------------
# Step 7: the s̄ integral
# ------------------------------------------------------------------------------------------

def step7_sbar_integral(P: int = 2) -> Step:
    r"""∫ ds̄/(2π)^P exp(−½ s̄ᵀAs̄ + i s̄ᵀy) = (2π)^{-P/2} det(A)^{-1/2} exp(−½ yᵀA⁻¹y).

    Explicit P with every entry of the symmetric A symbolic (iterated Gaussian lemma; the
    product of the pivots is det A, the exponent equals −½ yᵀA⁻¹y as rational functions).
    """
    A = sp.Matrix(P, P, lambda i, j: sp.Symbol(f"A_{min(i, j)}{max(i, j)}", real=True))
    sbar = sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"sbar_{mu}", real=True))
    y = sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"y_{mu}", real=True))
    E = -(sbar.T * A * sbar)[0, 0] / 2 + sp.I * (sbar.T * y)[0, 0]
    gi = gaussian_integrate(E, list(sbar), pref_sq=1 / (2 * sp.pi)**(2 * P))
    detA = A.det()
    _require(sp.cancel(sp.Mul(*gi.pivots) - detA) == 0, "product of pivots = det A")
    _require(sp.cancel(gi.pref_sq - 1 / ((2 * sp.pi)**P * detA)) == 0, "s̄ prefactor")
    want = -(y.T * _inv(A) * y)[0, 0] / 2
    _require(_same_polynomial(gi.exponent, want, list(y)), "s̄ exponent")
    As = sp.MatrixSymbol("A", P, P)
    return Step(
        "7", "Integrate the conjugate variables s̄",
        r"At fixed $(Q,\bar Q)$ the exponent is quadratic in $\bar s$ with matrix "
        r"$A=T\mathbb 1+K_R$; the Gaussian integral gives the determinant and the quadratic "
        r"form of the labels.",
        equations=[(sp.Integral(sp.exp(-sp.Symbol(r"\tfrac12\bar s^\top A\bar s")
                                       + sp.I * sp.Symbol(r"\bar s^\top y")),
                                sp.Symbol(r"\bar s")) / (2 * sp.pi)**sp.Symbol("P"),
                    (2 * sp.pi)**(-sp.Symbol("P") / 2) * sp.Determinant(As)**sp.Rational(-1, 2)
                    * sp.exp(-sp.Symbol(r"\tfrac12 y^\top A^{-1}y"))),
                   (sp.Symbol(r"\text{explicit }P=%d:\ \prod_k a_k" % P), sp.factor(detA))],
        checked=[f"P={P}, A symbolic: Π pivots = det A, exponent = −½yᵀA⁻¹y"],
        derived=gi.exponent, expected=want)


# ------------------------------------------------------------------------------------------
# Step 8: the action
# ------------------------------------------------------------------------------------------

def _generic_symmetric(name, P):
    return sp.Matrix(P, P, lambda i, j: sp.Symbol(f"{name}_{min(i, j)}{max(i, j)}", real=True))


def step8_action(d: ExplicitData) -> Step:
    r"""Collect the exponents of steps 5–7 at fixed (Q, Q̄):

        (N/2)Tr(QQ̄) − (N/2) log det(𝟙+Q̄) − ½ log det A − ½ yᵀA⁻¹y  ≡  −(N/2) S(Q, Q̄),

    so S = −Tr(QQ̄) + log det(𝟙+Q̄) + (1/N)[log det A + yᵀA⁻¹y] (constants dropped), with
    A = T𝟙 + K_R and K_R the matrix derived in step 6. With N, P → ∞ at fixed α = P/N both parts
    are O(1) and ∫dQ dQ̄ e^{−(N/2)S} is dominated by the saddle point of S.

    Done with a generic symmetric A (every entry a Symbol): the s̄ integral of step 7 gives
    log(Π pivots) and the exponent, assembled into S and compared with the THEORY formula; then
    A = T𝟙 + K_R(Q, Q̄) is substituted (``derived``: the explicit S(Q, Q̄)).
    """
    st6 = step6_order_parameters(d)
    Ag = _generic_symmetric("A", d.P)
    sbar = sp.Matrix(d.P, 1, lambda mu, _: sp.Symbol(f"sbar_{mu}", real=True))
    E7 = -(sbar.T * Ag * sbar)[0, 0] / 2 + sp.I * (sbar.T * d.y)[0, 0]
    gi = gaussian_integrate(E7, list(sbar), pref_sq=1 / (2 * sp.pi)**(2 * d.P))
    # log of the s̄ integral, constants ((2π)^{-P/2}) dropped: −½ log Π pivots + exponent
    total = (N / 2 * (d.Q * d.Qbar).trace() - N / 2 * sp.log(_det(sp.eye(d.n) + d.Qbar))
             - sp.log(sp.Mul(*gi.pivots)) / 2 + gi.exponent)
    S_gen = sp.expand(-2 * total / N)
    expected_gen = (-(d.Q * d.Qbar).trace() + sp.log(_det(sp.eye(d.n) + d.Qbar))
                    + (sp.log(_det(Ag)) + (d.y.T * _inv(Ag) * d.y)[0, 0]) / N)
    _require(symbolic_equal(S_gen, expected_gen, gens=list(d.y)), "S(A) ≠ THEORY §3")
    K_R = st6.derived
    A = T * sp.eye(d.P) + K_R
    S = expected_gen.xreplace({Ag[i, j]: A[i, j] for i in range(d.P) for j in range(d.P)})
    return Step(
        "8", "The effective action",
        r"Everything left is $e^{-\frac N2 S(Q,\bar Q)}$ integrated over $Q,\bar Q$. With "
        r"$N,P\to\infty$ at fixed $\alpha=P/N$ the $1/N$ term is $O(\alpha)$, both parts are "
        r"of order one and the integral is dominated by the saddle point of $S$.",
        equations=[(sp.Symbol("S(Q,\\bar Q)"),
                    sp.Symbol(r"-\mathrm{Tr}(Q\bar Q)+\log\det(\mathbb 1+\bar Q)+\frac1N\left["
                              r"\log\det A+y^\top A^{-1}y\right]")),
                   (sp.Symbol("A"), sp.Symbol(r"T\mathbb 1+K_R(Q,\bar Q)"))],
        checked=[f"{d.kind} n={d.n} P={d.P}: S from steps 5–7 = THEORY §3 (generic A), "
                 "A = T𝟙 + K_R of step 6"],
        derived=S, expected=theory_action(d))


def compare_with_action_module(kind: str, n: int, P: int, zero_mean: bool,
                               symbolic: bool = True, seed: int = 0) -> bool:
    """The S derived here equals :func:`derivations.action.action_explicit` on the same data.

    ``symbolic=True``: every entry of K, μ, y is a Symbol (the two modules name them alike);
    ``symbolic=False``: K and μ are the seeded random rationals of ``action_explicit`` (a valid
    kernel) and Q, Q̄, y, T, N, λ1 stay symbolic. Zero mean compares S(Q) after the Q̄ elimination (both drop
    the constant −n). Raises ImportError when the module is missing, DerivationError on a mismatch.
    """
    from derivations import action as am
    other, env = am.action_explicit(kind, n, P, zero_mean, symbolic=symbolic, seed=seed)
    d = explicit_data(kind, n, P, zero_mean)
    if not symbolic:
        # keep the labels symbolic (the data term is then compared coefficient by coefficient
        # in y, which keeps every cancellation small): re-evaluate the same program of
        # derivations.action on the same rational K, μ with y symbolic
        env = dict(env, y=d.y)
        prog = {"fc": am.fc_program, "lcn": am.lcn_program, "cnn": am.cnn_program}[kind](
            zero_mean)
        other = am.explicit(prog.expanded("S"), env)
    K = env["K"] if kind != "fc" else {(0, 0): env["K"]}
    mu = env["mu"] if kind != "fc" else env["m0"].T
    d = ExplicitData(kind, n, P, zero_mean, K, mu, env["y"], d.Q, d.Qbar)
    if zero_mean:
        mine = eliminate_Qbar(d).derived
    else:
        mine = step8_action(d).derived
    _require(symbolic_equal(mine, other, gens=list(d.y)),
             f"{kind} n={n} P={P} zero_mean={zero_mean}: S ≠ derivations.action")
    return True


# ------------------------------------------------------------------------------------------
# Zero mean: eliminate Q̄;  saddle-point equations
# ------------------------------------------------------------------------------------------

def eliminate_Qbar(d: ExplicitData) -> Step:
    r"""μ = 0 ⇒ K_R does not depend on Q̄; ∂S/∂Q̄ = 0 solved by ``sympy.solve``.

    At μ = 0 the data term (1/N)[log det A + yᵀA⁻¹y] has no Q̄ in it (checked on the free
    symbols of K_R), so S depends on Q̄ only through S0 = −Tr(QQ̄) + log det(𝟙+Q̄). The
    equations ∂S0/∂Q̄_ij = 0 (one per independent entry) are rational; SymPy solves their
    numerators and exactly one solution keeps 𝟙 + Q̄ invertible: Q̄* = Q⁻¹ − 𝟙. Substituted,
    S0(Q, Q̄*) = Tr Q − log det Q − n, so S(Q) = Tr Q − log det Q + (1/N)[log det A + yᵀA⁻¹y]
    up to the constant −n (``derived``: this explicit S(Q), without the −n).
    """
    n = d.n
    dz = ExplicitData(d.kind, n, d.P, True, d.K, sp.zeros(n, d.P), d.y, d.Q, d.Qbar)
    K_R = theory_K_R(dz)
    _require(not (K_R.free_symbols & d.Qbar.free_symbols), "K_R depends on Q̄ at μ = 0")
    In = sp.eye(n)
    S0 = -(d.Q * d.Qbar).trace() + sp.log(_det(In + d.Qbar))
    unknowns = sorted(d.Qbar.free_symbols, key=str)
    # (i) SymPy's derivatives are the entries of the matrix condition E = −Q + (𝟙+Q̄)⁻¹
    E = -d.Q + _inv(In + d.Qbar)
    for i, j, sym, wgt in _independent(d, d.Qbar):
        _require(sp.cancel(sp.together(sp.diff(S0, sym) - wgt * E[i, j])) == 0, "∂S0/∂Q̄")
    # (ii) 𝟙+Q̄ invertible: E = 0 ⇔ E(𝟙+Q̄) = 𝟙 − Q(𝟙+Q̄) = 0, linear in Q̄; solved by SymPy
    lin = (E * (In + d.Qbar)).applyfunc(lambda e: sp.cancel(sp.together(e)))
    _require(lin == (In - d.Q * (In + d.Qbar)).applyfunc(sp.expand), "E(𝟙+Q̄)")
    sol = sp.solve(list(lin), unknowns, dict=True)
    if n <= 2:     # small enough to solve the rational equations themselves, too
        direct = sp.solve([sp.numer(sp.together(sp.diff(S0, u))) for u in unknowns], unknowns,
                          dict=True)
        direct = [s_ for s_ in direct if sp.simplify(_det(In + d.Qbar.xreplace(s_))) != 0]
        _require(len(direct) == 1 and all(sp.simplify(direct[0][u] - sol[0][u]) == 0
                                          for u in unknowns), "direct solve")
    Qb_star = d.Qbar.xreplace(sol[0])
    _require((Qb_star - (_inv(d.Q) - In)).applyfunc(lambda e: sp.cancel(sp.together(e)))
             == sp.zeros(n, n), "Q̄* = Q⁻¹ − 𝟙")
    S0_star = S0.xreplace(sol[0])
    _require(symbolic_equal(S0_star, d.Q.trace() - sp.log(_det(d.Q)) - n), "S0(Q, Q̄*)")
    S_Q = d.Q.trace() - sp.log(_det(d.Q)) + _data_term(dz, K_R) / N
    return Step(
        "8a", "Zero-mean activations: eliminate Q̄",
        r"For erf and linear $\mu_i=0$, so $K_R$ does not depend on $\bar Q$ and "
        r"$\partial S/\partial\bar Q=0$ is solved exactly (SymPy, explicit $n$):",
        equations=[(sp.Symbol(r"\partial S/\partial\bar Q"),
                    sp.Symbol(r"-Q+(\mathbb 1+\bar Q)^{-1}=0\ \Rightarrow\ "
                              r"\bar Q=Q^{-1}-\mathbb 1")),
                   (sp.Symbol(r"\bar Q^*\ (n=%d)" % n), Qb_star.applyfunc(sp.factor)),
                   (sp.Symbol(r"-\mathrm{Tr}(Q\bar Q^*)+\log\det(\mathbb 1+\bar Q^*)"),
                    sp.simplify(S0_star)),
                   (sp.Symbol("S(Q)"),
                    sp.Symbol(r"\mathrm{Tr}\,Q-\log\det Q+\frac1N\left[\log\det A+y^\top "
                              r"A^{-1}y\right],\quad K_R=\frac1{\lambda_1n}\sum_{ij}Q_{ij}K_{ij}"))],
        checked=[f"{d.kind} n={n}: sympy.solve gives Q̄ = Q⁻¹ − 𝟙 (unique), "
                 "S0(Q, Q̄*) = Tr Q − log det Q − n"],
        derived=S_Q, expected=theory_action_zero_mean(dz))


def _independent(d: ExplicitData, M: sp.Matrix):
    """The independent entries of an order parameter and their weights 2 − δ_ij."""
    out = []
    for i in range(d.n):
        for j in range(i, d.n):
            if d.kind != "cnn" and i != j:
                continue
            out.append((i, j, M[i, j], 1 if i == j else 2))
    return out


@lru_cache(maxsize=None)
def data_term_gradient(P: int = 2) -> Step:
    r"""F(A) = log det A + yᵀA⁻¹y:  ∂F/∂A_ab = (2 − δ_ab) B_ab,  B = A⁻¹ − zzᵀ,  z = A⁻¹y,
    by ``sympy.diff`` on a generic symmetric P×P matrix A (A_ab = A_ba one Symbol).

    So for any symmetric dA, dF = Tr(B dA) — the only place the data enter the gradients.
    """
    A = _generic_symmetric("A", P)
    y = sp.Matrix(P, 1, lambda a, _: sp.Symbol(f"y_{a}", real=True))
    Ainv = _inv(A)
    z = Ainv * y
    B = Ainv - z * z.T
    F = sp.log(_det(A)) + (y.T * Ainv * y)[0, 0]
    for a in range(P):
        for b in range(a, P):
            got = sp.diff(F, A[a, b])
            _require(_same_polynomial(got, (1 if a == b else 2) * B[a, b], list(y)),
                     f"∂F/∂A[{a},{b}]")
    return Step("8b", "Gradient of the data term",
                r"For a symmetric $A$ (an off-diagonal $A_{ab}=A_{ba}$ is one variable):",
                equations=[(sp.Symbol(r"\partial F/\partial A_{ab}"),
                            sp.Symbol(r"(2-\delta_{ab})\,\big(A^{-1}-zz^\top\big)_{ab},\quad "
                                      r"z=A^{-1}y"))],
                checked=[f"P={P}, A generic symmetric"], derived=F, expected=B)


def saddle_point_equations(d: ExplicitData, compare_action_module: bool = True) -> Step:
    r"""∂S/∂x for every independent entry x of Q (and Q̄), by ``sympy.diff``, shown equal to
    (2 − δ_ij) × the matrix gradient of :func:`theory_gradients` (THEORY §3 for μ = 0:
    𝟙 − Q⁻¹ + G(Q)/(N λ1 n) = 0; LCN: the diagonal of it; FC: the scalar equation).

    S = S0(Q, Q̄) + F(A)/N with A = T𝟙 + K_R(Q, Q̄). SymPy differentiates S0 and K_R; the data
    term enters through the chain rule ∂F/∂x = Σ_{a≤b} ∂F/∂A_ab ∂A_ab/∂x with ∂F/∂A_ab =
    (2 − δ_ab)B_ab (:func:`data_term_gradient`), and the identity is verified with B a
    *generic* symmetric matrix of Symbols — stronger than at B = A⁻¹ − zzᵀ and exact rational
    arithmetic throughout. :func:`saddle_point_bruteforce` differentiates the fully explicit
    action instead (small sizes). ``compare_action_module``: the gradient programs of
    :mod:`derivations.action` (evaluated at generic B) must agree too.
    """
    data_term_gradient(d.P)
    n, P = d.n, d.P
    Bg = _generic_symmetric("B", P)
    K_R = theory_K_R(d)
    if d.zero_mean:
        S0 = d.Q.trace() - sp.log(_det(d.Q))
    else:
        S0 = -(d.Q * d.Qbar).trace() + sp.log(_det(sp.eye(n) + d.Qbar))
    grads = theory_gradients(d, B=Bg)
    targets = [("Q", d.Q, grads["dS_dQ"])]
    if not d.zero_mean:
        targets.append(("Qbar", d.Qbar, grads["dS_dQbar"]))
    derived, expected = {}, {}
    for name, M, G in targets:
        for i, j, sym, wgt in _independent(d, M):
            dK = K_R.diff(sym)
            chain = sp.Add(*[(1 if a == b else 2) * Bg[a, b] * dK[a, b]
                             for a in range(P) for b in range(a, P)])
            got = sp.diff(S0, sym) + chain / N
            want = wgt * G[i, j]
            _require(sp.cancel(sp.together(got - want)) == 0,
                     f"{d.kind} ∂S/∂{name}[{i},{j}] ≠ (2−δ)·∇S")
            derived[(name, i, j)] = got
            expected[(name, i, j)] = want
    checked = [f"{d.kind} n={n} P={P} zero_mean={d.zero_mean}: every ∂S = THEORY (generic B)"]
    if compare_action_module:
        try:
            other = _action_module_gradients(d, Bg)
        except ImportError:     # pragma: no cover - written concurrently
            other = None
        if other is not None:
            for (name, i, j), want in expected.items():
                wgt = 1 if i == j else 2
                _require(sp.cancel(sp.together(want / wgt - other[name][i, j])) == 0,
                         f"gradient {name}[{i},{j}] ≠ derivations.action")
            checked.append("= derivations.action gradient programs")
    eqs = [(sp.Symbol(r"\nabla_Q S"),
            sp.Symbol(r"\mathbb 1-Q^{-1}+\frac{G(Q)}{N\lambda_1n}" if d.zero_mean else
                      r"-\bar Q+\frac{\tilde G}{N\lambda_1 n},\ \tilde G_{ij}="
                      r"\mathrm{Tr}[(A^{-1}-zz^\top)(K_{ij}-\mu_i\mu_j^\top)]")),
           (sp.Symbol("G_{ij}"), sp.Symbol(r"\mathrm{Tr}(A^{-1}K_{ij})-z^\top K_{ij}z,\ "
                                           r"z=A^{-1}y"))]
    if not d.zero_mean:
        eqs.append((sp.Symbol(r"\nabla_{\bar Q}S"),
                    sp.Symbol(r"-Q+R-\frac{RHR}{N\lambda_1n},\ R=(\mathbb 1+\bar Q)^{-1},\ "
                              r"H_{ij}=\mu_j^\top(A^{-1}-zz^\top)\mu_i")))
    return Step("8c", "Saddle-point equations",
                r"Differentiating the action entry by entry (an off-diagonal "
                r"$Q_{ij}=Q_{ji}$ is one variable, hence the factor $2-\delta_{ij}$) reproduces "
                r"the matrix equations:",
                equations=eqs, checked=checked, derived=derived, expected=expected)


def saddle_point_bruteforce(d: ExplicitData) -> int:
    """``sympy.diff`` of the fully explicit S (every entry of A expanded) against (2 − δ_ij) ×
    :func:`theory_gradients` at B = A⁻¹ − zzᵀ; exact, but only cheap for small sizes or
    rational data. Returns the number of entries compared."""
    S = theory_action_zero_mean(d) if d.zero_mean else theory_action(d)
    grads = theory_gradients(d)
    gens = [x for x in d.y if isinstance(x, sp.Symbol)]
    count = 0
    for name, M, G in [("Q", d.Q, grads["dS_dQ"])] + \
            ([] if d.zero_mean else [("Qbar", d.Qbar, grads["dS_dQbar"])]):
        for i, j, sym, wgt in _independent(d, M):
            _require(_same_polynomial(sp.diff(S, sym), wgt * G[i, j], gens),
                     f"brute force ∂S/∂{name}[{i},{j}]")
            count += 1
    return count


def _expand_except(prog, name, keep: str):
    """A program definition with every earlier definition substituted except ``keep``."""
    defs = [(sym, e) for sym, e in prog.defs if str(sym) != keep]
    e = prog[name]
    for _ in range(len(prog.defs) + 1):
        hit = {sym: ex for sym, ex in defs if e.has(sym)}
        if not hit:
            break
        e = e.xreplace(hit)
    return e


def _action_module_gradients(d: ExplicitData, B: sp.Matrix):
    """The gradient programs of :mod:`derivations.action` evaluated on the same symbols, with
    their B (= A⁻¹ − zzᵀ) replaced by the given matrix."""
    from derivations import action as am
    env = {"K": d.K, "mu": d.mu, "y": d.y, "T": T, "N": N, "lambda1": lambda1,
           "n": sp.Integer(d.n), "P": sp.Integer(d.P), "B": B}
    out = {}
    if d.kind == "fc":
        prog = am.fc_program(d.zero_mean)
        env.update({"K": d.K[(0, 0)], "m0": d.mu.T, "Q": d.Q[0, 0], "Qbar": d.Qbar[0, 0]})
        names = [("Q", "dS_dQ")] + ([] if d.zero_mean else [("Qbar", "dS_dQbar")])
        for key, nm in names:
            out[key] = sp.Matrix([[_scalar(am.explicit(_expand_except(prog, nm, "B"), env))]])
    elif d.kind == "lcn":
        prog = am.lcn_program(d.zero_mean)
        env.update({"q": sp.Matrix([d.Q[i, i] for i in range(d.n)]),
                    "qbar": sp.Matrix([d.Qbar[i, i] for i in range(d.n)])})
        out["Q"] = sp.diag(*am.explicit(_expand_except(prog, "dS_dq", "B"), env))
        if not d.zero_mean:
            out["Qbar"] = sp.diag(*am.explicit(_expand_except(prog, "dS_dqbar", "B"), env))
    else:
        prog = am.cnn_program(d.zero_mean)
        env.update({"Q": d.Q, "Qbar": d.Qbar})
        out["Q"] = am.explicit(_expand_except(prog, "dS_dQ", "B"), env)
        if not d.zero_mean:
            out["Qbar"] = am.explicit(_expand_except(prog, "dS_dQbar", "B"), env)
    return out


def _scalar(x):
    return x[0, 0] if isinstance(x, sp.MatrixBase) else x


# ------------------------------------------------------------------------------------------
# Everything in order
# ------------------------------------------------------------------------------------------

def derive(kind: str = "cnn", activation: str = "erf", n: int = 2, P: int = 2) -> list[Step]:
    """Run steps 1–8 (and Q̄ elimination for zero-mean activations) for one architecture and
    activation at explicit sizes; every step verifies itself. Returns the Step records."""
    from kren.activations import get
    act = get(activation)
    if kind == "fc":
        n = 1
    zero_mean = act.zero_mean
    d = explicit_data(kind, n, P, zero_mean=False)     # Q̄ kept, μ symbolic
    steps = [step1_fourier_delta(), step2_readout(P, n, 2), step3_outputs(P),
             step4_channel_factorization(kind, P, n, 2), step5_moments(P, n),
             step5_gaussian_equivalence(n, diagonal=(kind != "cnn")),
             step6_order_parameters(d), step7_sbar_integral(P), step8_action(d)]
    dm = explicit_data(kind, n, P, zero_mean=zero_mean)
    if zero_mean:
        steps.append(eliminate_Qbar(dm))
    steps.append(saddle_point_equations(dm))
    return steps
