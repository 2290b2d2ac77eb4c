r"""Results derived from the effective action (THEORY §3, §5), in SymPy.

* :func:`fc_eigenbasis` — the FC action in the eigenbasis of its kernel (THEORY §3);
* :func:`fc_rescaling` — an FC network only rescales its kernel (THEORY §5.5);
* :func:`small_alpha_expansion` — Q = 𝟙 − G(𝟙)/(N λ1 n) + O(α²) (THEORY §5.3);
* :func:`infinite_width_limit` — N → ∞: Q → 𝟙, Q̄ → 0, K_R → the NNGP kernel, CNN = LCN (§5.2);
* :func:`linear_fc_zero_temperature` — Q = [(1 − α) + √((1 − α)² + 4λ1 yᵀK⁻¹y/N)]/2 (§5.4);
* :func:`cnn_n1_equals_fc` — a mask covering the input: CNN = LCN = FC (§5.1);
* :func:`cnn_diagonal_equals_lcn` — CNN with diagonal Q, Q̄ is the LCN (§5.6).

Each function derives its result on explicit small sizes with every entry a Symbol (as in
:mod:`derivations.steps`), checks it exactly and returns a :class:`derivations.steps.Step`.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from .steps import (N, T, DerivationError, ExplicitData, Step, _det, _generic_symmetric, _inv,
                    _independent, _require, _same_polynomial, explicit_data, lambda1, symbolic_equal,
                    theory_action, theory_action_zero_mean, theory_gradients, theory_K_R)

# (N/T/λ1 are the Symbols shared with derivations.steps and derivations.action)

__all__ = [
    "cayley_orthogonal", "fc_eigenbasis", "fc_rescaling", "small_alpha_expansion",
    "infinite_width_limit", "linear_fc_zero_temperature", "linear_fc_closed_form",
    "linear_fc_saddle_numeric", "cnn_n1_equals_fc", "cnn_diagonal_equals_lcn",
]


# ------------------------------------------------------------------------------------------
# FC eigenbasis
# ------------------------------------------------------------------------------------------

def cayley_orthogonal(P: int, name: str = "t") -> tuple[sp.Matrix, list]:
    r"""A symbolic P×P orthogonal matrix U = (𝟙 − X)(𝟙 + X)⁻¹ with X skew-symmetric
    (Cayley transform; P(P−1)/2 free parameters). Every rotation without eigenvalue −1 is of
    this form, so an identity that holds for this rational U holds for every orthogonal U by
    continuity. Returns (U, parameters); UᵀU = 𝟙 is checked."""
    params, X = [], sp.zeros(P, P)
    for i in range(P):
        for j in range(i + 1, P):
            t = sp.Symbol(f"{name}_{i}{j}", real=True)
            params.append(t)
            X[i, j], X[j, i] = t, -t
    In = sp.eye(P)
    U = ((In - X) * _inv(In + X)).applyfunc(lambda e: sp.cancel(sp.together(e)))
    _require((U.T * U).applyfunc(lambda e: sp.cancel(sp.together(e))) == In, "UᵀU = 𝟙")
    return U, params


def fc_eigenbasis(P: int = 2, compare_action_module: bool = True) -> Step:
    r"""Zero-mean FC, K = U diag(k) Uᵀ, ỹ = Uᵀy, D_k = T + Q k_k/λ1 (THEORY §3):

        S(Q) = Q − log Q + (1/N) Σ_k [log D_k + ỹ_k²/D_k],
        dS/dQ = 1 − 1/Q + (1/(N λ1)) Σ_k [k_k/D_k − k_k ỹ_k²/D_k²]
              = 1 − 1/Q + (Tr(A⁻¹K) − zᵀKz)/(N λ1)   (the FC saddle-point equation).

    Explicit P with a symbolic Cayley rotation U, eigenvalues k and labels, exact rational
    identities: A = T𝟙 + QK/λ1 = U diag(D) Uᵀ, (det U)² = 1 (so det A = Π_k D_k) and
    A · U diag(1/D) Uᵀ = 𝟙 (so yᵀA⁻¹y = Σ_k ỹ_k²/D_k).
    ``compare_action_module``: the ModeSum form of :func:`derivations.action.fc_eigen_zero_mean`
    written out over the P modes must equal it.
    """
    U, params = cayley_orthogonal(P)
    k = [sp.Symbol(f"k_{a}", positive=True) for a in range(P)]
    y = sp.Matrix(P, 1, lambda a, _: sp.Symbol(f"y_{a}", real=True))
    Q = sp.Symbol("Q", positive=True)
    c = lambda e: sp.cancel(sp.together(e))  # noqa: E731
    K = (U * sp.diag(*k) * U.T).applyfunc(c)
    A = T * sp.eye(P) + Q * K / lambda1
    yt = U.T * y
    D = [T + Q * kk / lambda1 for kk in k]
    # A = U diag(D) Uᵀ (UUᵀ = 𝟙), det U² = 1 ⇒ det A = Π D_k; A·U diag(1/D) Uᵀ = 𝟙 ⇒
    # yᵀA⁻¹y = Σ ỹ_k²/D_k
    _require((A - U * sp.diag(*D) * U.T).applyfunc(c) == sp.zeros(P, P), "A = U diag(D) Uᵀ")
    _require(c(_det(U)**2) == 1, "det U² = 1")
    _require((A * U * sp.diag(*[1 / x for x in D]) * U.T).applyfunc(c) == sp.eye(P),
             "A⁻¹ = U diag(1/D) Uᵀ")
    S_eig = Q - sp.log(Q) + sum(sp.log(D[a]) + yt[a]**2 / D[a] for a in range(P)) / N
    dS = sp.diff(S_eig, Q)
    want_dS = 1 - 1 / Q + sum(k[a] / D[a] - k[a] * yt[a]**2 / D[a]**2
                              for a in range(P)) / (N * lambda1)
    _require(sp.cancel(sp.together(dS - want_dS)) == 0, "eigenbasis derivative")
    # the same as the matrix form of the FC saddle-point equation, for a generic symmetric K
    Kg = _generic_symmetric("K", P)
    d = ExplicitData("fc", 1, P, True, {(0, 0): Kg}, sp.zeros(1, P), y,
                     sp.Matrix([[Q]]), sp.Matrix([[sp.Symbol("Qbar", real=True)]]))
    g = theory_gradients(d)["dS_dQ"][0, 0]
    Sg = theory_action_zero_mean(d)
    _require(_same_polynomial(sp.diff(Sg, Q), g, list(y)), "FC matrix equation")
    checked = [f"P={P}: det A = Π D_k, yᵀA⁻¹y = Σ ỹ²/D_k (U symbolic rotation)",
               "dS/dQ in the eigenbasis; matrix form = THEORY FC equation"]
    if compare_action_module:
        try:
            from derivations.action import fc_eigen_zero_mean
        except ImportError:     # pragma: no cover - written concurrently
            fc_eigen_zero_mean = None
        if fc_eigen_zero_mean is not None:
            S_mod, _, _, syms = fc_eigen_zero_mean()
            yt_syms = [sp.Symbol(f"yt_{a}", real=True) for a in range(P)]
            written = _write_modes(S_mod, syms, k, yt_syms).xreplace({syms["Q"]: Q})
            mine = Q - sp.log(Q) + sum(sp.log(D[a]) + yt_syms[a]**2 / D[a]
                                       for a in range(P)) / N
            _require(symbolic_equal(written, mine), "≠ derivations.action.fc_eigen_zero_mean")
            checked.append("= derivations.action.fc_eigen_zero_mean")
    kk, ytk, Dk = sp.Symbol("k_k"), sp.Symbol(r"\tilde y_k"), sp.Symbol("D_k")
    return Step(
        "FC-eig", "FC action in the eigenbasis of K",
        r"For FC ($n=1$) and zero mean, $A=T\mathbb 1+QK/\lambda_1$ is diagonal in the "
        r"eigenbasis of $K$, so the determinant and the quadratic form are sums over modes:",
        equations=[(sp.Symbol("S(Q)"), Q - sp.log(Q) + sp.Sum(sp.log(Dk) + ytk**2 / Dk,
                                                                (sp.Symbol("k"), 1, sp.Symbol("P"))) / N),
                   (Dk, T + Q * kk / lambda1),
                   (sp.Symbol(r"\partial_Q S"),
                    1 - 1 / Q + sp.Sum(kk / Dk - kk * ytk**2 / Dk**2,
                                       (sp.Symbol("k"), 1, sp.Symbol("P"))) / (N * lambda1))],
        checked=checked, derived=S_eig)


def _write_modes(expr, syms, k, yt):
    """Replace every ModeSum(f(k, ỹ)) of derivations.action by Σ_a f(k_a, ỹ_a)."""
    from derivations.action import ModeSum
    reps = {}
    for ms in expr.atoms(ModeSum):
        reps[ms] = sp.Add(*[ms.summand.xreplace({syms["k"]: k[a], syms["yt"]: yt[a]})
                            for a in range(len(k))])
    return expr.xreplace(reps)


def fc_rescaling(P: int = 2) -> Step:
    r"""Zero-mean FC (THEORY §5.5): K_R(Q) = Q K/λ1 is the NNGP kernel of an infinite-width FC
    network with readout prior λ1' = λ1/Q, so the mean predictor k_Rᵀ(T𝟙 + K_R)⁻¹y and the
    variance are those of that network: the kernel is only rescaled. Checked for explicit P with
    symbolic train and test kernels. For relu (μ ≠ 0) K_R = [Q(K − μμᵀ) + μμᵀ/(1+Q̄)]/λ1:
    two scalars, the centered part and the mean part rescaled separately."""
    Kg = _generic_symmetric("K", P)
    k0 = sp.Matrix(P, 1, lambda a, _: sp.Symbol(f"k0_{a}", real=True))
    k00 = sp.Symbol("k00", positive=True)
    y = sp.Matrix(P, 1, lambda a, _: sp.Symbol(f"y_{a}", real=True))
    Q, lam_p = sp.Symbol("Q", positive=True), sp.Symbol("lambda1'", positive=True)

    def gp(lam, scale):
        A = T * sp.eye(P) + scale * Kg / lam
        Ai = _inv(A)
        kr = scale * k0 / lam
        return (kr.T * Ai * y)[0, 0], scale * k00 / lam - (kr.T * Ai * kr)[0, 0]

    mean_R, var_R = gp(lambda1, Q)            # finite-N theory, K_R = Q K/λ1
    mean_G, var_G = gp(lam_p, 1)              # infinite width, readout prior λ1'
    sub = {lam_p: lambda1 / Q}
    _require(sp.cancel(sp.together(mean_R - mean_G.xreplace(sub))) == 0, "mean")
    _require(sp.cancel(sp.together(var_R - var_G.xreplace(sub))) == 0, "variance")
    return Step("FC-resc", "FC only rescales the kernel",
                r"$K_R=QK/\lambda_1$: the finite-width FC predictor is the infinite-width one "
                r"with readout prior $\lambda_1'=\lambda_1/Q^*$.",
                equations=[(sp.Symbol(r"\langle f_0\rangle_{N}(\lambda_1)"),
                            sp.Symbol(r"\langle f_0\rangle_{\infty}(\lambda_1/Q^*)")),
                           (sp.Symbol(r"\sigma_0^2{}_{N}(\lambda_1)"),
                            sp.Symbol(r"\sigma_0^2{}_{\infty}(\lambda_1/Q^*)"))],
                checked=[f"P={P}: predictor mean and variance, symbolic kernels"],
                derived=mean_R, expected=mean_G.xreplace(sub))


# ------------------------------------------------------------------------------------------
# Small α and N → ∞
# ------------------------------------------------------------------------------------------

def _at(d: ExplicitData, Q, Qbar) -> ExplicitData:
    return ExplicitData(d.kind, d.n, d.P, d.zero_mean, d.K, d.mu, d.y, Q, Qbar)


def _opaque_B(P: int, eps):
    """B = A⁻¹ − zzᵀ as a symmetric matrix of undefined functions b_ab(ε): only its value at
    ε = 0 can survive in the equations below, whatever its ε-dependence."""
    return sp.Matrix(P, P, lambda a, b: sp.Function(f"b_{min(a, b)}{max(a, b)}")(eps))


def small_alpha_expansion(kind: str = "cnn", n: int = 2, P: int = 2,
                          zero_mean: bool = True) -> Step:
    r"""Q = 𝟙 − G(𝟙)/(N λ1 n) + O(1/N²) at fixed P, i.e. + O(α²) (THEORY §5.3).

    With ε = 1/N (= α/P) the saddle-point equations F(Q, Q̄, ε) = 0 are those of
    :func:`derivations.steps.theory_gradients`; the data enter only through ε·G(B), ε·G̃(B),
    ε·H(B) with B = A⁻¹ − zzᵀ. Q = 𝟙 + εQ1, Q̄ = εQ̄1 (Q1, Q̄1 symbolic); B is kept as a matrix of
    *undefined functions* b_ab(ε) so that SymPy's product rule shows that only B0 = B(ε = 0) =
    A(𝟙)⁻¹ − zzᵀ enters at first order. ∂F/∂ε at ε = 0 gives linear equations, solved by SymPy:
    Q1 = −G(𝟙)/(λ1 n), G_ij(𝟙) = Tr(B0 K_ij) = Tr(A⁻¹K_ij) − zᵀK_ij z at A = T𝟙 + K_R(𝟙, 0),
    as an identity in a generic B0. For μ ≠ 0 the equations are −Q̄1 + G̃/(λ1n) = 0 and
    −Q1 − Q̄1 − H/(λ1n) = 0, and G̃ + H = G: the same formula with the full kernels K_ij.
    """
    eps = sp.Symbol("epsilon", positive=True)
    d = explicit_data(kind, n, P, zero_mean)
    n = d.n
    up = lambda M: M.applyfunc(lambda e: e.xreplace(  # noqa: E731
        {s: sp.Symbol(f"{s.name}^(1)", real=True) for s in e.free_symbols}))
    Q1, Qb1 = up(d.Q), up(d.Qbar)
    de = _at(d, sp.eye(n) + eps * Q1, eps * Qb1)
    grads = theory_gradients(de, B=_opaque_B(P, eps))
    names = ["dS_dQ"] + ([] if zero_mean else ["dS_dQbar"])
    B0 = _generic_symmetric("B0", P)
    to_B0 = {sp.Function(f"b_{a}{b}")(0): B0[a, b] for a in range(P) for b in range(a, P)}
    eqs = []
    for nm in names:
        M = grads[nm].xreplace({N: 1 / eps})
        M0 = M.xreplace({eps: 0}).applyfunc(lambda e: sp.cancel(sp.together(e)))
        _require(M0 == sp.zeros(n, n), "Q = 𝟙, Q̄ = 0 does not solve the ε = 0 equations")
        M1 = M.diff(eps).subs(eps, 0).xreplace(to_B0)
        for i, j, _s, _w in _independent(d, d.Q):
            eqs.append(sp.cancel(sp.together(M1[i, j])))
    _require(not any(e.atoms(sp.Derivative) for e in eqs), "B'(0) survived at first order")
    unknowns = sorted(set().union(*[e.free_symbols for e in list(Q1) + list(Qb1)]), key=str)
    sol = sp.solve(eqs, unknowns, dict=True)
    _require(len(sol) == 1, f"first-order equations: {sol}")
    Q1_sol = Q1.xreplace(sol[0])
    G0 = theory_gradients(d, B=B0)["G"]
    want = -G0 / (lambda1 * n)
    _require((Q1_sol - want).applyfunc(lambda e: sp.cancel(sp.together(e))) == sp.zeros(n, n),
             "Q1 ≠ −G(𝟙)/(λ1 n)")
    return Step("small-α", "Small α: first order in 1/N",
                r"Expanding the saddle-point equations around the infinite-width solution "
                r"($\varepsilon=1/N=\alpha/P$); only $B_0=A(\mathbb 1)^{-1}-zz^\top$ enters:",
                equations=[(sp.Symbol("Q"), sp.Symbol(r"\mathbb 1-\frac{G(\mathbb 1)}{N\lambda_1 n}"
                                                      r"+O(\alpha^2),\quad G_{ij}(\mathbb 1)="
                                                      r"\mathrm{Tr}(B_0K_{ij})")),
                           (sp.Symbol(r"Q^{(1)}\ (n=%d,\ P=%d)" % (n, P)), Q1_sol)],
                checked=[f"{kind} n={n} P={P} zero_mean={zero_mean}: Q1 = −G(𝟙)/(λ1 n), "
                         "generic B0"],
                derived=Q1_sol, expected=want)


def infinite_width_limit(kind: str = "cnn", n: int = 2, P: int = 2,
                         zero_mean: bool = True) -> Step:
    r"""N → ∞ at fixed P (THEORY §5.2). The data enter the saddle-point equations only as
    (1/N)·G(B), so at 1/N = 0 they are 𝟙 − Q⁻¹ = 0 (zero mean) or −Q̄ = 0, −Q + (𝟙+Q̄)⁻¹ = 0
    (B generic): unique solution Q = 𝟙, Q̄ = 0 (solved by SymPy). There K_R = (1/(λ1 n)) Σ_i K_ii,
    the NNGP kernel of THEORY §2, with no cross-patch block and no mean term; the CNN and the
    LCN give the same K_R."""
    eps = sp.Symbol("epsilon", positive=True)
    d = explicit_data(kind, n, P, zero_mean)
    n = d.n
    grads = theory_gradients(d, B=_generic_symmetric("B", P))
    eqs = []
    names = ["dS_dQ"] + ([] if zero_mean else ["dS_dQbar"])
    for nm in names:
        M = grads[nm].xreplace({N: 1 / eps}).xreplace({eps: 0})
        eqs += [sp.numer(sp.together(M[i, j])) for i, j, _s, _w in _independent(d, d.Q)]
    unknowns = sorted((d.Q.free_symbols | (set() if zero_mean else d.Qbar.free_symbols)), key=str)
    sol = sp.solve([e for e in eqs if e != 0], unknowns, dict=True)
    sol = [s for s in sol if sp.simplify(_det(d.Q.xreplace(s))) != 0 and
           sp.simplify(_det(sp.eye(n) + d.Qbar.xreplace(s))) != 0]
    _require(len(sol) == 1, f"N → ∞ solutions: {sol}")
    _require(d.Q.xreplace(sol[0]) == sp.eye(n), "Q → 𝟙")
    if not zero_mean:
        _require(d.Qbar.xreplace(sol[0]) == sp.zeros(n, n), "Q̄ → 0")
    K_R = theory_K_R(d).xreplace(sol[0]).applyfunc(lambda e: sp.cancel(sp.together(e)))
    nngp = sum((d.K[(i, i)] for i in range(n)), sp.zeros(P, P)) / (lambda1 * n)
    _require((K_R - nngp).applyfunc(sp.expand) == sp.zeros(P, P), "K_R(𝟙) ≠ NNGP")
    return Step("N→∞", "Infinite width",
                r"At $1/N=0$ the saddle point is $Q=\mathbb 1,\ \bar Q=0$ and the renormalized "
                r"kernel is the averaged NNGP kernel, for the CNN and the LCN alike:",
                equations=[(sp.Symbol(r"K_R(\mathbb 1, 0)"),
                            sp.Symbol(r"\frac{1}{\lambda_1 n}\sum_i K_{ii}")),
                           (sp.Symbol(r"K_R\ (n=%d, P=%d)" % (n, P)), K_R)],
                checked=[f"{kind} n={n} P={P} zero_mean={zero_mean}: unique solution, "
                         "K_R = NNGP"],
                derived=K_R, expected=nngp)


# ------------------------------------------------------------------------------------------
# Linear FC at T → 0
# ------------------------------------------------------------------------------------------

def linear_fc_closed_form(alpha, lambda1_, r, N_):
    """Q* = [(1 − α) + √((1 − α)² + 4 λ1 r/N)]/2, r = yᵀK⁻¹y (THEORY §5.4), NumPy/SymPy."""
    if isinstance(alpha, sp.Basic) or isinstance(r, sp.Basic):
        return ((1 - alpha) + sp.sqrt((1 - alpha)**2 + 4 * lambda1_ * r / N_)) / 2
    for value, name in ((alpha, "alpha"), (lambda1_, "lambda1"), (N_, "N")):
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number, got {value}")
    if not np.isfinite(r) or r < 0:
        raise ValueError(f"r = yᵀK⁻¹y must be >= 0 (K positive definite), got {r}; "
                         "is K singular (P > rank K)?")
    return ((1 - alpha) + np.sqrt((1 - alpha)**2 + 4 * lambda1_ * r / N_)) / 2


def linear_fc_zero_temperature(P: int = 3) -> Step:
    r"""Zero-mean FC with an invertible kernel (P ≤ rank K), T → 0 (THEORY §5.4).

    Per mode, lim_{T→0} log(T + Qk/λ1) = log Q + log(k/λ1) and ỹ²/(T + Qk/λ1) → λ1ỹ²/(Qk)
    (``sympy.limit``), so S_0(Q) = Q − log Q + (1/N)[P log Q + λ1 r/Q] + const,
    r = Σ ỹ_k²/k_k = yᵀK⁻¹y. dS_0/dQ = 0 ⇔ Q² − (1 − α)Q − λ1 r/N = 0 (α = P/N), solved by
    SymPy; the product of the roots is −λ1 r/N < 0, so exactly one is positive:
    Q* = [(1 − α) + √((1 − α)² + 4 λ1 r/N)]/2 (the one-hidden-layer back-propagating kernel
    renormalization of Li & Sompolinsky). Holds for any activation with an invertible kernel;
    for the linear activation K = C.
    """
    Q = sp.Symbol("Q", positive=True)
    k = [sp.Symbol(f"k_{a}", positive=True) for a in range(P)]
    yt = [sp.Symbol(f"yt_{a}", real=True) for a in range(P)]
    alpha, r = sp.Symbol("alpha", positive=True), sp.Symbol("r", positive=True)
    limits = []
    for a in range(P):
        L1 = sp.limit(sp.log(T + Q * k[a] / lambda1), T, 0)
        L2 = sp.limit(yt[a]**2 / (T + Q * k[a] / lambda1), T, 0)
        _require(sp.simplify(sp.expand_log(L1 - sp.log(Q) - sp.log(k[a] / lambda1),
                                           force=True)) == 0, "log limit")
        _require(sp.simplify(L2 - lambda1 * yt[a]**2 / (Q * k[a])) == 0, "quadratic limit")
        limits.append(L1 + L2)
    S0 = Q - sp.log(Q) + sum(limits) / N
    dS0 = sp.diff(S0, Q)
    r_val = sum(yt[a]**2 / k[a] for a in range(P))
    want = 1 - 1 / Q + (P / Q - lambda1 * r_val / Q**2) / N
    _require(sp.cancel(sp.together(dS0 - want)) == 0, "dS0/dQ")
    # Q² dS0/dQ with N = P/α and r = Σ ỹ²/k is the quadratic Q² − (1 − α)Q − λ1 r α/P
    quad = sp.expand((want * Q**2).xreplace({N: P / alpha}))
    quad_r = Q**2 - (1 - alpha) * Q - lambda1 * r_val * alpha / P
    _require(sp.cancel(sp.together(quad - quad_r)) == 0, "quadratic")
    Nsym = sp.Symbol("N", positive=True)
    Qs = sp.Symbol("Q", real=True)
    roots = sp.solve(sp.Eq(Qs**2 - (1 - alpha) * Qs - lambda1 * r / Nsym, 0), Qs)
    _require(len(roots) == 2, "two roots")
    # product of the roots −λ1 r/N < 0: one negative, one positive root
    _require(sp.simplify(roots[0] * roots[1] + lambda1 * r / Nsym) == 0, "product of roots")
    closed = linear_fc_closed_form(alpha, lambda1, r, Nsym)
    hit = [q for q in roots if sp.simplify(q - closed) == 0]
    _require(len(hit) == 1, f"roots {roots}: none equals the closed form")
    _require(closed.is_positive is not False, "closed form not positive")
    # the closed form is positive: √((1 − α)² + 4λ1r/N) > |1 − α|
    return Step("T→0", "Linear FC at zero temperature",
                r"At $T\to0$ with an invertible kernel every mode contributes "
                r"$\log Q+\lambda_1\tilde y_k^2/(Qk_k)$; the saddle point solves a quadratic "
                r"equation with exactly one positive root:",
                equations=[(sp.Symbol("S_0(Q)"),
                            Q - sp.log(Q) + (sp.Symbol("P") * sp.log(Q) + lambda1 * r / Q) / Nsym),
                           (sp.Symbol("Q^*"), closed),
                           (r, sp.Symbol(r"y^\top K^{-1}y"))],
                checked=[f"P={P}: T→0 limits per mode, quadratic, unique positive root"],
                derived=hit[0], expected=closed)


def linear_fc_saddle_numeric(K: np.ndarray, y: np.ndarray, N_: float, T_: float,
                             lambda1_: float = 1.0) -> float:
    """The FC saddle point Q* at temperature T (zero mean), solved independently of kren:
    dS/dQ = 1 − 1/Q + Σ_k [k_k/D_k − k_k ỹ_k²/D_k²]/(N λ1) = 0 in the eigenbasis (bisection
    in log Q; dS/dQ < 0 as Q → 0 and > 0 as Q → ∞, and Q S'(Q) is increasing)."""
    from scipy.optimize import brentq
    kvals, U = np.linalg.eigh(np.asarray(K, dtype=float))
    yt2 = (U.T @ np.asarray(y, dtype=float))**2

    def g(logq):
        q = np.exp(logq)
        D = T_ + q * kvals / lambda1_
        return q * (1 - 1 / q + np.sum(kvals / D - kvals * yt2 / D**2) / (N_ * lambda1_))

    return float(np.exp(brentq(g, -40.0, 40.0, xtol=1e-14, rtol=1e-14, maxiter=500)))


# ------------------------------------------------------------------------------------------
# Equivalences between architectures
# ------------------------------------------------------------------------------------------

def cnn_n1_equals_fc(P: int = 2, zero_mean: bool = True, action_module: str = "symbolic") -> Step:
    r"""n = 1 (a mask covering the whole input, M = N0; THEORY §5.1): the CNN and LCN actions
    are the FC action with K = K_11, μ = μ_1. Checked symbolically (a) on the THEORY formulas —
    with n = 1 the n×n order parameters are 1×1 and K_R = [Q(K − μμᵀ) + μμᵀ/(1+Q̄)]/λ1 — and
    (b) when available, between the independent CNN, LCN and FC programs of
    :mod:`derivations.action`, evaluated on the same symbols (``action_module``: "symbolic"
    data, the seeded "rational" data of ``action_explicit``, or "none"). (That K_11 equals the FC kernel
    when the patch is the whole input, C_11 = x·x'/(λ0 N0), is a property of the geometry and is
    checked numerically in ``tests/test_symbolic_limits.py``.)"""
    dc = explicit_data("cnn", 1, P, zero_mean)
    df = explicit_data("fc", 1, P, zero_mean)
    sub = {dc.Q[0, 0]: df.Q[0, 0], dc.Qbar[0, 0]: df.Qbar[0, 0]}
    f = theory_action_zero_mean if zero_mean else theory_action
    Sc = f(dc).xreplace(sub)
    Sf = f(df)
    _require(symbolic_equal(Sc, Sf, gens=list(df.y)), "CNN(n=1) ≠ FC")
    KRf = theory_K_R(df)
    Kf = df.K[(0, 0)]
    mu = df.mu_vec(0)
    want = Kf * df.Q[0, 0] / lambda1 if zero_mean else \
        (df.Q[0, 0] * (Kf - mu * mu.T) + mu * mu.T / (1 + df.Qbar[0, 0])) / lambda1
    _require((KRf - want).applyfunc(lambda e: sp.cancel(sp.together(e))) == sp.zeros(P, P),
             "FC K_R")
    checked = [f"P={P} zero_mean={zero_mean}: THEORY CNN(n=1) = FC"]
    try:
        from derivations.action import action_explicit
    except ImportError:     # pragma: no cover - written concurrently
        action_explicit = None
    if action_explicit is not None and action_module != "none":
        sym = _action_module_mode(action_module)
        S_fc, env_f = action_explicit("fc", 1, P, zero_mean, symbolic=sym)
        for arch in ("cnn", "lcn"):
            S_a, env_a = action_explicit(arch, 1, P, zero_mean, symbolic=sym)
            rep = {}
            if arch == "cnn":
                rep[env_a["Q"][0, 0]] = env_f["Q"]
                if not zero_mean:
                    rep[env_a["Qbar"][0, 0]] = env_f["Qbar"]
            else:
                rep[env_a["q"][0, 0]] = env_f["Q"]
                if not zero_mean:
                    rep[env_a["qbar"][0, 0]] = env_f["Qbar"]
            _require(symbolic_equal(S_a.xreplace(rep), S_fc, gens=list(df.y) if sym else ()),
                     f"derivations.action {arch}(n=1) ≠ fc")
        checked.append(f"derivations.action ({action_module} data): cnn(n=1) = lcn(n=1) = fc")
    return Step("n=1", "A mask covering the input: CNN = LCN = FC",
                r"With one patch the order parameters are scalars and "
                r"$K_R=[Q(K-\mu\mu^\top)+\mu\mu^\top/(1+\bar Q)]/\lambda_1$, the FC kernel:",
                equations=[(sp.Symbol(r"S_{\rm CNN}^{(n=1)}"), sp.Symbol(r"S_{\rm FC}")),
                           (sp.Symbol(r"K_R\ (n=1)"), want)],
                checked=checked, derived=Sc, expected=Sf)


def _action_module_mode(mode: str) -> bool:
    if mode not in ("symbolic", "rational"):
        raise ValueError(f"action_module must be 'symbolic', 'rational' or 'none', got {mode!r}")
    return mode == "symbolic"


def cnn_diagonal_equals_lcn(n: int = 2, P: int = 2, zero_mean: bool = True,
                            action_module: str = "symbolic") -> Step:
    r"""CNN action with Q, Q̄ restricted to diagonal matrices = LCN action (THEORY §5.6).

    Setting Q_ij = Q̄_ij = 0 for i ≠ j in the CNN action (which holds every block K_ij) removes
    every cross-patch block K_ij, i ≠ j (checked on the free symbols) and every cross mean term
    μ_iμ_jᵀ ((𝟙+Q̄)⁻¹ is then diagonal), leaving exactly the LCN action. Checked on the THEORY
    formulas and, when available, between the CNN and LCN programs of :mod:`derivations.action`
    (``action_module``: "symbolic" data, the seeded "rational" data of ``action_explicit`` —
    the same K_ii, μ, y for both, drawn from one seed — or "none").
    """
    dc = explicit_data("cnn", n, P, zero_mean)
    dl = explicit_data("lcn", n, P, zero_mean)
    sub = {}
    for i in range(n):
        for j in range(i, n):
            sub[dc.Q[i, j]] = dl.Q[i, j]
            sub[dc.Qbar[i, j]] = dl.Qbar[i, j]
    f = theory_action_zero_mean if zero_mean else theory_action
    Sc = f(dc).xreplace(sub)
    cross = set().union(*[dc.K[(i, j)].free_symbols for i in range(n) for j in range(n)
                          if i != j]) if n > 1 else set()
    _require(not (sp.sympify(Sc).free_symbols & cross), "cross blocks survive")
    Sl = f(dl)
    _require(symbolic_equal(Sc, Sl, gens=list(dl.y)), "CNN(diagonal) ≠ LCN")
    checked = [f"n={n} P={P} zero_mean={zero_mean}: THEORY CNN(diag) = LCN, no K_ij (i≠j)"]
    try:
        from derivations.action import action_explicit
    except ImportError:     # pragma: no cover - written concurrently
        action_explicit = None
    if action_explicit is not None and action_module != "none":
        sym = _action_module_mode(action_module)
        S_c, env_c = action_explicit("cnn", n, P, zero_mean, symbolic=sym)
        S_l, env_l = action_explicit("lcn", n, P, zero_mean, symbolic=sym)
        _require(all(env_c["K"][(i, i)] == env_l["K"][(i, i)] for i in range(n)) and
                 env_c["mu"] == env_l["mu"] and env_c["y"] == env_l["y"], "different data")
        rep = {}
        for i in range(n):
            for j in range(i, n):
                rep[env_c["Q"][i, j]] = env_l["q"][i, 0] if i == j else 0
                if not zero_mean:
                    rep[env_c["Qbar"][i, j]] = env_l["qbar"][i, 0] if i == j else 0
        _require(symbolic_equal(S_c.xreplace(rep), S_l, gens=list(dl.y) if sym else ()),
                 "derivations.action cnn(diag) ≠ lcn")
        checked.append(f"derivations.action ({action_module} data): cnn program at diagonal "
                       "Q = lcn program")
    return Step("diag", "CNN with diagonal Q is the LCN",
                r"Restricting $Q,\bar Q$ to diagonal matrices switches off every cross-patch "
                r"block $K_{ij}$, $i\neq j$: what remains is the LCN action, which only "
                r"reweights the diagonal blocks $K_{ii}$.",
                equations=[(sp.Symbol(r"S_{\rm CNN}(\mathrm{diag}\,q,\mathrm{diag}\,\bar q)"),
                            sp.Symbol(r"S_{\rm LCN}(q,\bar q)"))],
                checked=checked, derived=Sc, expected=Sl)


__all__ += ["DerivationError"]


# ------------------------------------------------------------------------------------------
# Pooled readout (THEORY §3b, §5.8)
# ------------------------------------------------------------------------------------------

def _pooled_sub(pdat, fc):
    """Substitution from the generic FC symbols of ``fc`` (K00_ab, mu_0a, Q, Qbar) to the pooled
    kernel K_pool, the pooled means μ̄ and the pooled order parameters."""
    sub = {fc.Q[0, 0]: pdat.fc.Q[0, 0], fc.Qbar[0, 0]: pdat.fc.Qbar[0, 0]}
    for a in range(fc.P):
        for b in range(fc.P):
            sub[fc.K[(0, 0)][a, b]] = pdat.K_pool[a, b]
        if not fc.zero_mean:
            sub[fc.mu[0, a]] = pdat.mu_bar[0, a]
    return sub


def _cancel_zero(M) -> bool:
    return M.applyfunc(lambda e: sp.cancel(sp.together(e))) == sp.zeros(*M.shape)


def pooled_equals_fc(n: int = 2, P: int = 2, zero_mean: bool = True,
                     action_module: bool = True) -> Step:
    r"""THEORY §5.8: the pooled-readout CNN action equals the FC action on K_pool = (1/n²) Σ_ij K_ij
    and μ̄ = (1/n) Σ_i μ_i.

    (a) the pooled action derived step by step (:mod:`derivations.pooled`, step 8p) equals the
    THEORY §3 FC formula with K → K_pool, μ → μ̄ (K_R entry by entry; S0 and F(A) identical);
    (b) ``action_module``: the FC program of :mod:`derivations.action` (what the generated
    ``kren.generated.fc`` is printed from) evaluated on K = K_pool, m0 = μ̄ gives the same K_R, and
    its gradient programs equal the saddle-point equations derived for the pooled action
    (:func:`derivations.steps.saddle_point_equations` on the pooled data, generic B). So the
    solver may run the generated FC functions on the pooled block.
    """
    from . import pooled as pl
    step = pl.step8_pooled_action(n, P, zero_mean)
    checked = list(step.checked)
    if action_module:
        from derivations import action as am
        pdat = pl.pooled_data(n, P, zero_mean)
        prog = am.fc_program(zero_mean)
        env = {"K": pdat.K_pool, "m0": pdat.mu_bar.T, "y": pdat.fc.y, "T": T, "N": N,
               "lambda1": lambda1, "Q": prog.inputs["Q"], "Qbar": prog.inputs["Qbar"],
               "P": sp.Integer(P), "n": sp.Integer(1)}
        KR = am.explicit(prog.expanded("K_R"), env)
        KR = KR.xreplace({prog.inputs["Q"]: pdat.fc.Q[0, 0],
                          prog.inputs["Qbar"]: pdat.fc.Qbar[0, 0]})
        _require(_cancel_zero(KR - pl.pooled_K_R_blocks(pdat)), "derivations.action FC K_R on "
                 "K_pool ≠ pooled K_R")
        sp_step = saddle_point_equations_pooled(pdat)
        checked += ["derivations.action FC program on K_pool: same K_R"] + sp_step.checked
    return Step("pool=FC", "Pooled readout: the FC action on the pooled kernel",
                r"One readout weight per channel makes every order parameter a scalar; the "
                r"pooled CNN is an FC network whose kernel is the uniform average of all local "
                r"blocks, $K_{\rm pool}=\frac1{n^2}\sum_{ij}K_{ij}$.",
                equations=step.equations, checked=checked, derived=step.derived,
                expected=step.expected)


def saddle_point_equations_pooled(pdat) -> Step:
    """:func:`derivations.steps.saddle_point_equations` on the pooled data (n = 1 scalars Q, Q̄,
    K = K_pool, μ = μ̄), compared with the FC gradient programs of :mod:`derivations.action`."""
    from .steps import saddle_point_equations
    return saddle_point_equations(pdat.fc, compare_action_module=True)


def pooled_n1_equals_fc(P: int = 2, zero_mean: bool = True) -> Step:
    r"""n = 1 (THEORY §5.8, a mask covering the input): K_pool = K_11 and μ̄ = μ_1 are the FC
    kernel and means *symbol for symbol*, so every pooled step acts on the FC data and the pooled
    action is the FC action (the derived expressions are identical); the local-readout CNN at
    n = 1 has the same K_R (with one patch the pooled and local readouts are the same network,
    f = N^{-1/2} Σ_a v_a σ(w_a·x/√M)), hence the same action (:func:`cnn_n1_equals_fc`)."""
    from . import pooled as pl
    from .steps import eliminate_Qbar, step8_action
    pdat = pl.pooled_data(1, P, zero_mean)
    fc = explicit_data("fc", 1, P, zero_mean)
    _require(pdat.K_pool == fc.K[(0, 0)] and pdat.mu_bar == fc.mu and pdat.fc.y == fc.y and
             pdat.fc.Q == fc.Q and pdat.fc.Qbar == fc.Qbar, "n = 1: pooled data ≠ FC data")
    S_pool = pl.step8_pooled_action(1, P, zero_mean).derived
    S_fc = (eliminate_Qbar(fc) if zero_mean else step8_action(fc)).derived
    _require(sp.expand(S_pool - S_fc) == 0, "pooled(n=1) ≠ FC")
    dc = explicit_data("cnn", 1, P, zero_mean)
    KR_cnn = theory_K_R(dc).xreplace({dc.Q[0, 0]: fc.Q[0, 0], dc.Qbar[0, 0]: fc.Qbar[0, 0]})
    _require(_cancel_zero(KR_cnn - theory_K_R(fc)), "CNN(n=1) K_R ≠ FC K_R")
    return Step("pool n=1", "Pooled readout with one patch is the FC",
                r"With $n=1$, $K_{\rm pool}=K_{11}$ and $\bar\mu=\mu_1$: "
                r"pooled CNN = local CNN = FC.",
                equations=[(sp.Symbol(r"S_{\rm pool}^{(n=1)}"), sp.Symbol(r"S_{\rm FC}"))],
                checked=[f"P={P} zero_mean={zero_mean}: pooled data = FC data, S_pool(n=1) = "
                         "S_FC (same derivation), K_R^CNN(n=1) = K_R^FC"],
                derived=S_pool, expected=S_fc)


def pooled_infinite_width(n: int = 2, P: int = 2, zero_mean: bool = True) -> Step:
    r"""N → ∞ for the pooled readout (THEORY §5.2 with §3b): the saddle point is Q = 1, Q̄ = 0 and
    K_R = K_pool/λ1 = (1/(λ1 n²)) Σ_ij K_ij, the pooled NNGP kernel of THEORY §2. Unlike the local
    readout's (1/(λ1 n)) Σ_i K_ii (checked for n ≥ 2), it holds every cross-patch block."""
    from . import pooled as pl
    pdat = pl.pooled_data(n, P, zero_mean)
    d = pdat.fc
    eps = sp.Symbol("epsilon", positive=True)
    grads = theory_gradients(d, B=_generic_symmetric("B", P))
    eqs = []
    for nm in ["dS_dQ"] + ([] if zero_mean else ["dS_dQbar"]):
        eqs.append(sp.numer(sp.together(grads[nm].xreplace({N: 1 / eps}).xreplace({eps: 0})[0, 0])))
    unknowns = [d.Q[0, 0]] + ([] if zero_mean else [d.Qbar[0, 0]])
    sol = sp.solve([e for e in eqs if e != 0], unknowns, dict=True)
    sol = [s for s in sol if s.get(d.Q[0, 0], 1) != 0 and s.get(d.Qbar[0, 0], 0) != -1]
    _require(len(sol) == 1 and sol[0][d.Q[0, 0]] == 1 and
             (zero_mean or sol[0][d.Qbar[0, 0]] == 0), f"N → ∞ solutions: {sol}")
    K_R = theory_K_R(d).xreplace(sol[0])
    nngp = sum((pdat.cnn.K[(i, j)] for i in range(n) for j in range(n)),
               sp.zeros(P, P)) / (lambda1 * n**2)
    _require(_cancel_zero(K_R - nngp), "K_R(1, 0) ≠ pooled NNGP")
    checked = [f"n={n} P={P} zero_mean={zero_mean}: Q = 1, Q̄ = 0, K_R = (1/(λ1 n²)) Σ_ij K_ij"]
    if n >= 2:
        local = sum((pdat.cnn.K[(i, i)] for i in range(n)), sp.zeros(P, P)) / (lambda1 * n)
        cross = pdat.cnn.K[(0, 1)][0, 1]
        _require(K_R[0, 1].has(cross) and not local[0, 1].has(cross), "cross blocks")
        checked.append("holds the cross-patch blocks K_ij, i ≠ j (the local NNGP does not)")
    return Step("pool N→∞", "Pooled readout at infinite width",
                r"At $1/N=0$: $Q=1$, $\bar Q=0$ and $K_R=K_{\rm pool}/\lambda_1$, the pooled NNGP "
                r"kernel, which weights every pair of patches uniformly.",
                equations=[(sp.Symbol(r"K_R(1,0)"),
                            sp.Symbol(r"\frac{1}{\lambda_1n^2}\sum_{ij}K_{ij}"))],
                checked=checked, derived=K_R, expected=nngp)


def pooled_rank_one_cnn(n: int = 2, P: int = 2, zero_mean: bool = False) -> Step:
    r"""The pooled K_R is the local CNN's K_R (THEORY §3) on a rank-one direction:

        K_R^pool(Q, Q̄) = (1/(λ1 n)) Σ_ij [Q^c_ij (K_ij − μ_iμ_jᵀ) + R^c_ij μ_iμ_jᵀ],
        Q^c = (Q/n) 𝟙𝟙ᵀ,   R^c = (𝟙 + Q̄^c)⁻¹ → (1/(n(1 + Q̄))) 𝟙𝟙ᵀ.

    So the data term of the pooled readout is that of the CNN restricted to order parameters
    proportional to 𝟙𝟙ᵀ (every pair of patches switched on equally); the entropic term differs
    (scalar Q − log Q instead of Tr Q − log det Q, which diverges on the rank-one matrix)."""
    from . import pooled as pl
    pdat = pl.pooled_data(n, P, zero_mean)
    d = pdat.cnn
    Q, Qbar = pdat.fc.Q[0, 0], pdat.fc.Qbar[0, 0]
    J = sp.ones(n, n) / n
    Qc, Rc = Q * J, J / (1 + Qbar)
    cnn_KR = sp.zeros(P, P)
    for i in range(n):
        for j in range(n):
            mm = d.mu_vec(i) * d.mu_vec(j).T
            cnn_KR += Qc[i, j] * (d.K[(i, j)] - mm) + Rc[i, j] * mm
    cnn_KR /= lambda1 * n
    pool_KR = theory_K_R(pdat.fc)
    _require(_cancel_zero(cnn_KR - pool_KR), "pooled K_R ≠ CNN K_R at Q ∝ 𝟙𝟙ᵀ")
    return Step("pool=rank1", "Pooled readout: the CNN data term on Q ∝ 𝟙𝟙ᵀ",
                r"The pooled renormalized kernel is the CNN's at "
                r"$Q^c=(Q/n)\mathbb 1\mathbb 1^\top$, "
                r"$(\mathbb 1+\bar Q^c)^{-1}\to\mathbb 1\mathbb 1^\top/(n(1+\bar Q))$: one global "
                r"scale instead of a patch-by-patch reweighting.",
                equations=[(sp.Symbol(r"K_R^{\rm pool}(Q,\bar Q)"),
                            sp.Symbol(r"K_R^{\rm CNN}\big(\tfrac Qn\mathbb 1\mathbb 1^\top,"
                                      r"\ \tfrac{\mathbb 1\mathbb 1^\top}{n(1+\bar Q)}\big)"))],
                checked=[f"n={n} P={P} zero_mean={zero_mean}: entrywise"],
                derived=pool_KR, expected=cnn_KR)


def pooled_predictor(n: int = 2, P0: int = 2, P: int = 2, zero_mean: bool = False) -> Step:
    r"""THEORY §4 for the pooled readout: the renormalized kernel between two input sets is the
    §3b combination applied to the kernels between them,

        K_R(x, x') = (1/λ1)[Q (Kx_pool − μ̄(x)μ̄(x')ᵀ) + μ̄(x)μ̄(x')ᵀ/(1 + Q̄)],
        Kx_pool(x, x') = (1/n²) Σ_ij K_ij(x, x'),

    written in the (ordered, non-symmetric) cross blocks K_ij(x0, x) and checked equal to the
    scalar (FC) cross program of :mod:`derivations.action` — printed as
    ``kren.generated.fc.renormalized_cross_kernel`` — evaluated on Kx = Kx_pool, mu1 = μ̄(x0),
    mu2 = μ̄(x). So the predictor is the FC cross functions on the pooled cross blocks."""
    from derivations import action as am
    Q, Qbar = sp.Symbol("Q", real=True), sp.Symbol("Qbar", real=True)
    Kx = {(i, j): sp.Matrix(P0, P, lambda a, b: sp.Symbol(f"Kx{i}{j}_{a}{b}", real=True))
          for i in range(n) for j in range(n)}
    mu0 = sp.zeros(n, P0) if zero_mean else \
        sp.Matrix(n, P0, lambda i, a: sp.Symbol(f"mu0_{i}{a}", real=True))
    mu = sp.zeros(n, P) if zero_mean else \
        sp.Matrix(n, P, lambda i, a: sp.Symbol(f"mu_{i}{a}", real=True))
    want = sp.zeros(P0, P)
    for i in range(n):
        for j in range(n):
            mm = mu0[i, :].T * mu[j, :]
            want += Q * (Kx[(i, j)] - mm)
            if not zero_mean:
                want += mm / (1 + Qbar)
    want /= lambda1 * n**2
    prog = am.cross_program(False, zero_mean, scalar=True)
    Kx_pool = sum((Kx[k] for k in Kx), sp.zeros(P0, P)) / n**2
    env = {"Kx": {(0, 0): Kx_pool}, "mu1": sum((mu0[i, :] for i in range(n)), sp.zeros(1, P0)) / n,
           "mu2": sum((mu[i, :] for i in range(n)), sp.zeros(1, P)) / n, "Q": Q, "Qbar": Qbar,
           "lambda1": lambda1, "P1": sp.Integer(P0), "P2": sp.Integer(P), "n": sp.Integer(1)}
    got = am.explicit(prog.expanded("kR"), env)
    _require(_cancel_zero(got - want), "FC cross program on pooled blocks ≠ pooled K_R(x0, x)")
    return Step("pool pred", "Pooled readout: the predictor",
                r"The test×train renormalized kernel is the FC one on the pooled cross blocks "
                r"$\frac1{n^2}\sum_{ij}K_{ij}(x_0,x)$ (all $n^2$ ordered blocks).",
                equations=[(sp.Symbol(r"K_R(x_0,x)"),
                            sp.Symbol(r"\frac1{\lambda_1}\Big[Q\big(K_{\rm pool}(x_0,x)-\bar\mu_0"
                                      r"\bar\mu^\top\big)+\frac{\bar\mu_0\bar\mu^\top}{1+\bar Q}"
                                      r"\Big]"))],
                checked=[f"n={n} P0={P0} P={P} zero_mean={zero_mean}: = derivations.action "
                         "scalar cross program on Kx_pool"],
                derived=got, expected=want)


__all__ += ["pooled_equals_fc", "saddle_point_equations_pooled", "pooled_n1_equals_fc",
            "pooled_infinite_width", "pooled_rank_one_cnn", "pooled_predictor"]
