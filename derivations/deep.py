r"""Deep fully-connected networks (THEORY §1, §2, §3d, §5.9), derived in SymPy.

An L-layer FC network (THEORY §1): h^1 = W^1x/√N0, h^{l+1} = W^{l+1}σ(h^l)/√N_l,
f = N_L^{-1/2} Σ_a v_a σ(h^L_a); W^1 ~ N(0, 1/λ0), W^{l+1} ~ N(0, 1/λ_l), v ~ N(0, 1/λ_L).
φ^l_a = σ(h^l_a) ∈ R^P is unit a of layer l on the training set, and

    K̂_l = (1/(λ_l N_l)) Σ_a φ^l_a φ^lᵀ_a   (l = 1 … L),    K̂_0 = C = XXᵀ/(λ0 N0)

its empirical kernel. k(K) is the closed-form kernel of THEORY §2 applied entrywise with the
diagonals: k(K)_μν = k(K_μν, K_μμ, K_νν). Deep NNGP recursion: C^{(1)} = C, K^{(l)} = k(C^{(l)}),
C^{(l+1)} = K^{(l)}/λ_l.

The derivation, step by step (each function below derives its step and checks it):

D1  (exact) :func:`step_d1_top_layer`. The outputs and the readout are integrated as in THEORY §3
    steps 1–3 with φ = φ^L (λ1 → λ_L, N → N_L):
    Z = E_{W^1…W^L} ∫ds̄ exp(−½ s̄ᵀ(T𝟙 + K̂_L)s̄ + i s̄ᵀy).
D2  (exact) :func:`step_d2_conditional_gaussian`. Given layer l−1, the pre-activation vectors
    h^l_a ∈ R^P of the N_l units are independent and exactly Gaussian, N(0, K̂_{l−1}).
D3  (Gaussian equivalence at the top) :func:`step_d3_top_average`. K̂_L is a sum over N_L
    independent units, so E[exp(−½ s̄ᵀK̂_Ls̄) | K̂_{L−1}] = (E exp(−q²/(2λ_LN_L)))^{N_L} with
    q = s̄·σ(h), h ~ N(0, K̂_{L−1}). Gaussian equivalence (THEORY §3 step 5) takes q ~ N(0, v),
    v = s̄ᵀk(K̂_{L−1})s̄ (odd σ: zero mean for every covariance), giving (1 + v/(λ_LN_L))^{−N_L/2}.
D4  (order parameter) :func:`step_d4_amplitude`. Q̄_L = v/(λ_LN_L) is imposed with a conjugate Q_L;
    ∂/∂Q̄_L = 0 leaves exp(−(N_L/2)(Q_L − 1 − log Q_L)) exp(−½ (Q_L/λ_L) s̄ᵀk(K̂_{L−1})s̄).
    Reading: in the quadratic form of s̄, K̂_L is replaced by Q_L·E[K̂_L | K̂_{L−1}] =
    Q_L k(K̂_{L−1})/λ_L, and (N_L/2)(Q − 1 − log Q) is the large-deviation rate of the amplitude
    ρ = s̄ᵀK̂_Ls̄ / E[s̄ᵀK̂_Ls̄ | K̂_{L−1}], a mean of N_L independent χ²₁ variables under Gaussian
    equivalence (Legendre transform of the cumulant −½ log(1 − 2θ)).
    Up to here nothing distinguishes the two forms; for L = 1 (K̂_0 = C fixed) this is the
    one-hidden-layer FC action of THEORY §3.
D5  (where the two forms part ways) :func:`step_d5_closure`. What is left to average over
    W^1 … W^{L−1} is exp(−½ (Q_L/λ_L) s̄ᵀk(K̂_{L−1})s̄): a function of K̂_{L−1} through the
    *nonlinear*, entrywise map k, whose every entry also involves the diagonal of K̂_{L−1}.
    * Linear σ: k(K̂) = K̂, and s̄ᵀK̂_{L−1}s̄ = (1/(λ_{L−1}N_{L−1})) Σ_b (s̄·φ^{L−1}_b)² is again a
      sum over units: D3–D4 repeat with s̄ → (Q_L/λ_L)^{1/2} s̄, and by induction
      K_R = Π_l (Q_l/λ_l) C. Nothing beyond the saddle point is approximated (Gaussian
      equivalence is exact for linear units).
    * Nonlinear σ: the recursion does not close, and both forms make the same *amplitude
      closure* (A): the only fluctuation of an intermediate K̂_l (l < L) that is kept is a
      uniform rescaling of its conditional mean, K̂_l → Q_l k(K̂_{l−1})/λ_l, with the rate
      (N_l/2)(Q_l − 1 − log Q_l) of D4. They then differ in how the rescaled covariance enters
      the next nonlinearity:
      (P) product form — the nonlinearity acts on the un-renormalized covariance and the
          amplitude passes through it, k(Q K) → Q k(K): every K̂_l is a scalar rescaling of its
          NNGP value, K̂_l → (Q_1⋯Q_l) C^{(l+1)}, and K_R = (Π_l Q_l) K^{(L)}/λ_L. Each layer is
          then probed through a single quadratic form, as the top layer is in D4, so (A) is
          the same approximation at every layer.
      (N) nested form — Gaussian equivalence layer by layer with the renormalized covariance
          feeding the next nonlinearity: the pre-activations of layer l+1 are Gaussian with
          covariance K_R^{(l)} = (Q_l/λ_l) k(K_R^{(l−1)}), K_R^{(0)} = C, K_R = K_R^{(L)}; i.e. the
          weights of every layer act as Gaussians of renormalized variance Q_l/λ_l (the
          effective-prior reading of THEORY §5.5 applied to each layer). This is deepbays'
          ``FC_deep``.
      The two coincide iff k(QK) = Qk(K) along the way: for L = 1 (no layer below), for
      linear σ, and, as kernel maps, for any positively 1-homogeneous k (relu — whose action
      would also need the mean terms Q̄_l, not derived here). For erf they differ already at
      first order in Q_l − 1: at L = 2, nested − product = (Q_2/λ_2)(Q_1 − 1)(ℰk − k)(C^{(2)})
      + O((Q_1 − 1)²), ℰ = c∂_c + a∂_a + b∂_b (:func:`homogeneity_defect`).
D6  (the action) :func:`step_d6_action`. Collecting the rates and the s̄ integral (THEORY §3
    step 7): −2 log Z ≍ Σ_l N_l(Q_l − log Q_l) + log det A + yᵀA⁻¹y (+ const), A = T𝟙 + K_R.
    Normalized by the readout width N = N_L:

        S(Q) = Σ_l (N_l/N_L)(Q_l − log Q_l) + (1/N_L)[log det A + yᵀA⁻¹y],

    which for equal widths is THEORY §3d: S = Σ_l (Q_l − log Q_l) + (1/N)[log det A + yᵀA⁻¹y].
    Unequal widths N_l enter only through the weights N_l/N_L of the entropy terms (both forms;
    the derivation above never used N_l = N_{l'}).

Limits (:func:`deep_L1_equals_fc`, :func:`deep_infinite_width`,
:func:`deep_linear_zero_temperature`): L = 1 is the FC action of THEORY §3 exactly; N → ∞ gives
Q_l = 1 and K_R = the deep NNGP kernel for both forms; linear σ at T → 0 with P ≤ rank: all Q_l
equal one Q with Q − (1 − α) = s/Q^L, s = yᵀ(K^{(L)}/λ_L)⁻¹y/N (THEORY §5.9; L = 1 is §5.4).

Reproducing deepbays (rpacelli/deepbays, ``deepbays/rkgp/theory_deep_FC.py``). Its ``FC_deep``
iterates rKL ← (Q_l/λ_l)·kernel(diag, rKL, diag) from C = XXᵀ/(N0 λ0) and solves ∇S = 0 for
S = Σ_l(Q_l − log Q_l) + (1/N1)(yᵀA⁻¹y + log det A), A = rKL + T𝟙: exactly the nested form with
equal widths. The conventions coincide as follows:

* C = XXᵀ/(N0·l0) is kren's input covariance with ``lambda0 = l0`` (THEORY §2);
* its per-layer priors are kren's λ_1 … λ_L, the last one the readout's: the repository version
  ``FC_deep(L, N1, T, l0, l1, act)`` uses λ_l = l1 for every layer (``lambdas = l1``); the PyPI
  release 0.1.11 ``FC_deep(L, N1, T, priors=[l0, l1, …, lL], act)`` uses λ_l = priors[l]
  (``lambdas = priors[1:]``, priors of length L + 1);
* N = N1 (one width for every layer), the labels y as given (no centering or scaling);
* ``kernel_erf(cxx, cxy, cyy)`` is THEORY §2's k(c, a, b) with a = cxx, c = cxy, b = cyy;
* its temperature enters as ``T * torch.eye(P)``, a float32 identity, so the T it uses is
  float32(T) (0.1 → 0.10000000149): pass ``T = float(numpy.float32(T))`` to reproduce its
  saddle points to round-off (otherwise they differ by ~1e-8 relative);
* its solver is scipy's ``fsolve`` on the autograd gradient from Q = 1 (PyPI) or Q = 2
  (repository), ``xtol = 1e-8``; a root of the same gradient found by any method agrees with
  its ``optQ`` to that tolerance when both converge to the same root.
The repository's ``FC_deep_vanilla`` (theory_deep_FC_vanilla.py) is the product form with
``lambdas = priors[1:]``.

Generated code (:mod:`derivations.deep_codegen` → ``kren/generated/deep_fc.py``): the product
form in the eigenbasis of K^{(L)} (:func:`product_eig_program`, O(P) per evaluation, gradient and
L×L Hessian from the chain rule through Π = Π_l Q_l, verified against ``sympy.diff`` for explicit L
by :func:`verify_product_derivatives`); the nested form through the layer recursion, with the
partial derivatives of the closed-form kernel (:func:`kernel_partials`) and the first- and
second-order chain rule of one layer (:func:`layer_chain_rule`) derived here.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp
from sympy.core.function import AppliedUndef

from .action import ModeSum
from .steps import (N, T, DerivationError, Step, _det, _generic_symmetric, _inv, _require,
                    _same_polynomial, gaussian_integrate, symbolic_equal)

__all__ = [
    "T", "N", "lam", "widths", "kernel_closed_form", "kernel_partials", "layer_chain_rule",
    "nngp_recursion", "product_K_R", "nested_K_R", "deep_action", "homogeneity_defect",
    "step_d1_top_layer", "step_d2_conditional_gaussian", "step_d3_top_average",
    "step_d4_amplitude", "step_d5_closure", "step_d6_action", "price_theorem_erf",
    "data_term_second_differential", "product_eig_program", "verify_product_derivatives",
    "layer_fixed_point_program",
    "deep_L1_equals_fc", "deep_infinite_width", "deep_linear_zero_temperature",
    "deep_linear_closed_form", "nested_explicit_action", "derive_deep", "LayerSum", "Outer",
    "Diag", "FORMS", "DerivationError",
]

FORMS = ("product", "nested")
ACTIVATIONS = ("erf", "relu", "linear")


def lam(l: int) -> sp.Symbol:
    """λ_l (λ0: first-layer prior; λ_l, l ≥ 1, the prior of the weights out of layer l; λ_L the
    readout's). ``lam(1)`` is the Symbol ``lambda1`` of :mod:`derivations.steps`."""
    return sp.Symbol(f"lambda{l}", positive=True)


def widths(L: int, equal: bool = True) -> list:
    """[N_1, …, N_L]: all the Symbol N of :mod:`derivations.steps` (equal widths) or one Symbol
    N_l per layer."""
    return [N] * L if equal else [sp.Symbol(f"N_{l}", positive=True) for l in range(1, L + 1)]


# ------------------------------------------------------------------------------------------
# Custom nodes printed by derivations.printer.KrenPrinter (their ``_numpycode`` methods)
# ------------------------------------------------------------------------------------------

class LayerSum(ModeSum):
    """Σ_l f(Q_l, ν_l): a sum over the layers; the summand's symbols stand for length-L arrays
    (printed ``np.sum(...)``, like :class:`derivations.action.ModeSum`)."""


class Outer(sp.Expr):
    """uvᵀ of two length-L arrays (printed ``np.outer``)."""

    is_commutative = True

    def __new__(cls, *args):
        return super().__new__(cls, *map(sp.sympify, args))

    def _numpycode(self, printer):
        return f"np.outer({printer._print(self.args[0])}, {printer._print(self.args[1])})"


class Diag(sp.Expr):
    """diag(u) of a length-L array (printed ``np.diag``)."""

    is_commutative = True

    def __new__(cls, *args):
        return super().__new__(cls, *map(sp.sympify, args))

    def _numpycode(self, printer):
        return f"np.diag({printer._print(self.args[0])})"


# ------------------------------------------------------------------------------------------
# Closed-form kernels and their partial derivatives
# ------------------------------------------------------------------------------------------

_c, _a, _b = sp.symbols("c a b", real=True)


def kernel_closed_form(activation: str, c=_c, a=_a, b=_b):
    """THEORY §2: k(c, a, b) = E[σ(h)σ(h')] for covariance [[a, c], [c, b]].

    erf (2/π) arcsin(2c/√((1+2a)(1+2b))); relu (√(ab − c²) + (π − arccos(c/√(ab))) c)/(2π)
    (= √(ab)/(2π)(sin θ + (π − θ) cos θ)); linear c.
    """
    if activation == "erf":
        return 2 / sp.pi * sp.asin(2 * c / sp.sqrt((1 + 2 * a) * (1 + 2 * b)))
    if activation == "relu":
        return (sp.sqrt(a * b - c**2) + (sp.pi - sp.acos(c / sp.sqrt(a * b))) * c) / (2 * sp.pi)
    if activation == "linear":
        return c
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


#: Names of the partial derivatives, in the order returned by :func:`kernel_partials`.
PARTIALS = ("k", "kc", "ka", "kb", "kcc", "kca", "kcb", "kaa", "kab", "kbb")


@lru_cache(maxsize=None)
def kernel_partials(activation: str) -> dict:
    """{name: expression in c, a, b}: k and its first and second partial derivatives
    (``sympy.diff`` of :func:`kernel_closed_form`), names as :data:`PARTIALS`
    (kca = ∂²k/∂c∂a, …), unsimplified (the printer's common-subexpression pass shares their
    pieces); the c-derivative of erf is checked against Price's theorem by
    :func:`price_theorem_erf`."""
    if activation not in ("erf", "linear"):
        raise ValueError("the nested form's derivatives are derived for the zero-mean "
                         f"activations 'erf' and 'linear', got {activation!r}")
    k = kernel_closed_form(activation)
    v = {"c": _c, "a": _a, "b": _b}
    out = {"k": k}
    for name in PARTIALS[1:]:
        out[name] = sp.diff(k, *[v[ch] for ch in name[1:]])
    return out


def price_theorem_erf() -> Step:
    r"""∂k/∂c = E[σ'(h)σ'(h')] (Price's theorem) for erf: σ' = (2/√π)e^{−h²}, so
    E[σ'σ'] = (4/π) E e^{−h²−h'²} = (4/π)/√det(𝟙 + 2Σ) = (4/π)/√((1+2a)(1+2b) − 4c²).

    The Gaussian average is done by :func:`derivations.steps.gaussian_integrate` with a
    symbolic precision matrix Λ = Σ⁻¹ and compared with ``sympy.diff`` of the closed form:
    an independent check of the kernel derivative the nested form is built on.
    """
    h1, h2 = sp.symbols("h1 h2", real=True)
    L11, L22 = sp.symbols("Lambda_00 Lambda_11", positive=True)
    L12 = sp.Symbol("Lambda_01", real=True)
    Lam = sp.Matrix([[L11, L12], [L12, L22]])
    hv = sp.Matrix([h1, h2])
    E = -(hv.T * Lam * hv)[0, 0] / 2 - h1**2 - h2**2
    gi = gaussian_integrate(E, [h1, h2], pref_sq=Lam.det() / (2 * sp.pi)**2)
    Sig = _inv(Lam)
    want_sq = 1 / (sp.eye(2) + 2 * Sig).det()
    _require(sp.cancel(gi.pref_sq - want_sq) == 0 and gi.exponent == 0, "E e^{−h²−h'²}")
    # det(𝟙 + 2Σ) = (1 + 2a)(1 + 2b) − 4c² at a = Σ_00, b = Σ_11, c = Σ_01 (rational identity)
    a_, c_, b_ = Sig[0, 0], Sig[0, 1], Sig[1, 1]
    _require(sp.cancel(sp.together((sp.eye(2) + 2 * Sig).det()
                                   - ((1 + 2 * a_) * (1 + 2 * b_) - 4 * c_**2))) == 0, "det")
    kc = kernel_partials("erf")["kc"]
    price = 4 / (sp.pi * sp.sqrt((1 + 2 * _a) * (1 + 2 * _b) - 4 * _c**2))
    # both positive: compare their squares as rational functions of c, a, b
    _require(sp.cancel(sp.together(kc**2 - price**2)) == 0, "Price")
    return Step("Price", "Kernel derivative by Price's theorem (erf)",
                r"$\partial_c k=\mathbb E[\sigma'(h)\sigma'(h')]$ computed as a Gaussian "
                r"integral equals the derivative of the closed form:",
                equations=[(sp.Symbol(r"\partial_c k_{\rm erf}"),
                            4 / (sp.pi * sp.sqrt((1 + 2 * _a) * (1 + 2 * _b) - 4 * _c**2)))],
                checked=["Gaussian integral with symbolic Σ = sympy.diff of the closed form"],
                derived=kc, expected=price)


@lru_cache(maxsize=None)
def layer_chain_rule() -> dict:
    r"""One layer of the nested recursion, F = (q/λ) k(c, a, b), differentiated by SymPy.

    c, a, b (an entry of K_R^{(l−1)} and the two diagonal entries it pairs) are undefined
    functions of two earlier order parameters θ_m, θ_n; q = Q_l is the layer's own. ``sympy.diff``
    gives, with c_m = ∂c/∂θ_m, c_mn = ∂²c/∂θ_m∂θ_n (likewise a, b) and k_c = ∂k/∂c, …:

        F_m  = (q/λ)(k_c c_m + k_a a_m + k_b b_m)
        F_q  = k/λ
        F_mn = (q/λ)[Σ_{x,y∈{c,a,b}} k_xy x_m y_n + k_c c_mn + k_a a_mn + k_b b_mn]
        F_qm = (k_c c_m + k_a a_m + k_b b_m)/λ,     F_qq = 0

    Returns {"F", "F_m", "F_q", "F_mn", "F_qm", "F_qq"} as expressions in the Symbols q, lam,
    k, kc, …, kbb (:data:`PARTIALS`) and cm, am, bm, cn, an, bn, cmn, amn, bmn.
    """
    tm, tn, q, lam_ = sp.symbols("theta_m theta_n q lam", positive=True)
    fs = {x: sp.Function(x)(tm, tn) for x in "cab"}
    kf = sp.Function("kfun")
    F = q / lam_ * kf(fs["c"], fs["a"], fs["b"])
    ks = {name: sp.Symbol(name) for name in PARTIALS}
    xs = {f"{x}{s}": sp.Symbol(f"{x}{s}") for x in "cab" for s in ("m", "n", "mn")}
    order = "cab"

    def to_symbols(e):
        # derivatives of kfun with respect to its slots c, a, b → k, kc, ka, …, kbb
        reps = {}
        for d in e.atoms(sp.Derivative):
            if d.expr.func == kf:
                slots = "".join(order[i] for i in _slot_indices(d))
                reps[d] = ks["k" + "".join(sorted(slots, key=order.index))]
        e = e.xreplace(reps)
        reps = {}
        for x in "cab":
            f = fs[x]
            reps[sp.Derivative(f, tm)] = xs[f"{x}m"]
            reps[sp.Derivative(f, tn)] = xs[f"{x}n"]
            reps[sp.Derivative(f, tm, tn)] = xs[f"{x}mn"]
        e = e.xreplace(reps)
        e = e.xreplace({kf(fs["c"], fs["a"], fs["b"]): ks["k"]})
        _require(not e.atoms(sp.Derivative) and not e.atoms(AppliedUndef),
                 f"chain rule: unresolved derivative in {e}")
        return sp.expand(e)

    Fm = to_symbols(sp.diff(F, tm))
    Fmn = to_symbols(sp.diff(F, tm, tn))
    Fq = to_symbols(sp.diff(F, q))
    Fqm = to_symbols(sp.diff(F, q, tm))
    Fqq = to_symbols(sp.diff(F, q, 2))
    # the stated forms
    k_, kc, ka, kb = ks["k"], ks["kc"], ks["ka"], ks["kb"]
    first = kc * xs["cm"] + ka * xs["am"] + kb * xs["bm"]
    second = sum(ks["k" + "".join(sorted(x + y, key=order.index))] * xs[f"{x}m"] * xs[f"{y}n"]
                 for x in "cab" for y in "cab") + \
        kc * xs["cmn"] + ka * xs["amn"] + kb * xs["bmn"]
    _require(sp.expand(Fm - q / lam_ * first) == 0, "F_m")
    _require(sp.expand(Fq - k_ / lam_) == 0, "F_q")
    _require(sp.expand(Fmn - q / lam_ * second) == 0, "F_mn")
    _require(sp.expand(Fqm - first / lam_) == 0, "F_qm")
    _require(Fqq == 0, "F_qq")
    return {"F": q * k_ / lam_, "F_m": Fm, "F_q": Fq, "F_mn": Fmn, "F_qm": Fqm, "F_qq": Fqq,
            "symbols": {"q": q, "lam": lam_, **ks, **xs}}


def _slot_indices(d: sp.Derivative):
    """Slots (argument positions) of kfun differentiated in a Derivative(kfun(...), ...)."""
    args = d.expr.args
    out = []
    for v, cnt in d.variable_count:
        out += [args.index(v)] * cnt
    return out


# ------------------------------------------------------------------------------------------
# Kernels of the two forms (explicit matrices)
# ------------------------------------------------------------------------------------------

def _apply_kernel(activation, M: sp.Matrix) -> sp.Matrix:
    """k(M)_μν = k(M_μν, M_μμ, M_νν) (THEORY §2 with the diagonals of M)."""
    P = M.shape[0]
    return sp.Matrix(P, P, lambda i, j: kernel_closed_form(activation, M[i, j], M[i, i],
                                                           M[j, j]))


def nngp_recursion(activation, C: sp.Matrix, L: int, lambdas=None) -> list:
    """THEORY §2: [K^{(1)}, …, K^{(L)}], K^{(l)} = k(C^{(l)}), C^{(1)} = C, C^{(l+1)} = K^{(l)}/λ_l."""
    lambdas = lambdas or [lam(l) for l in range(1, L + 1)]
    out, Cl = [], C
    for l in range(L):
        K = _apply_kernel(activation, Cl)
        out.append(K)
        Cl = K / lambdas[l]
    return out


def product_K_R(activation, C, Q, lambdas=None) -> sp.Matrix:
    """Product form (THEORY §3d): K_R = (Π_l Q_l) K^{(L)}/λ_L."""
    L = len(Q)
    lambdas = lambdas or [lam(l) for l in range(1, L + 1)]
    return sp.Mul(*Q) * nngp_recursion(activation, C, L, lambdas)[-1] / lambdas[-1]


def nested_K_R(activation, C, Q, lambdas=None) -> sp.Matrix:
    """Nested form (THEORY §3d): K_R^{(0)} = C, K_R^{(l)} = (Q_l/λ_l) k(K_R^{(l−1)})."""
    L = len(Q)
    lambdas = lambdas or [lam(l) for l in range(1, L + 1)]
    M = C
    for l in range(L):
        M = Q[l] / lambdas[l] * _apply_kernel(activation, M)
    return M


def deep_action(K_R: sp.Matrix, y: sp.Matrix, Q, Ns=None):
    """S = Σ_l (N_l/N_L)(Q_l − log Q_l) + (1/N_L)[log det A + yᵀA⁻¹y], A = T𝟙 + K_R (D6)."""
    L = len(Q)
    Ns = Ns or widths(L)
    P = K_R.shape[0]
    A = T * sp.eye(P) + K_R
    return (sum(Ns[l] / Ns[-1] * (Q[l] - sp.log(Q[l])) for l in range(L))
            + (sp.log(_det(A)) + (y.T * _inv(A) * y)[0, 0]) / Ns[-1])


def _sym_cov(P: int, name="C") -> sp.Matrix:
    return sp.Matrix(P, P, lambda i, j: sp.Symbol(f"{name}_{min(i, j)}{max(i, j)}",
                                                  positive=(i == j), real=True))


def _labels(P: int) -> sp.Matrix:
    return sp.Matrix(P, 1, lambda a, _: sp.Symbol(f"y_{a}", real=True))


def _Qs(L: int) -> list:
    return [sp.Symbol(f"Q_{l}", positive=True) for l in range(1, L + 1)]


# ------------------------------------------------------------------------------------------
# D1–D6
# ------------------------------------------------------------------------------------------

def step_d1_top_layer(P: int = 1, channels: int = 2) -> Step:
    r"""D1: the outputs and the readout v ~ N(0, 1/λ_L) are integrated exactly as in THEORY §3
    steps 1–3, with φ = σ(h^L): exp(−½ s̄ᵀK̂_L s̄), K̂_L = (1/(λ_L N_L)) Σ_a φ^L_a φ^Lᵀ_a.

    Runs :func:`derivations.steps.step2_readout` (n = 1, the readout prior λ1 standing for λ_L)
    and :func:`derivations.steps.step3_outputs`; nothing about the layers below enters.
    """
    from .steps import step2_readout
    s2 = step2_readout(P, 1, channels)
    # THEORY §3 step 3 (derivations.steps.step3_outputs), redone here at P = 1 without
    # simplification: ∫df e^{−(y−f)²/(2T) + i s̄ f} = √(2πT) e^{i s̄ y − T s̄²/2}
    s_, y_, f_ = sp.symbols("sbar y f", real=True)
    gi = gaussian_integrate(-(y_ - f_)**2 / (2 * T) + sp.I * s_ * f_, [f_])
    out_exp = sp.I * s_ * y_ - T * s_**2 / 2
    _require(sp.cancel(gi.pref_sq - 2 * sp.pi * T) == 0 and
             sp.expand(gi.exponent - out_exp) == 0, "output integral")
    return Step("D1", "Outputs and readout of the last layer",
                r"The readout sees only the last hidden layer: integrating $v$ and the outputs "
                r"is THEORY §3 steps 1–3 with $\varphi=\sigma(h^L)$ and prior $\lambda_L$.",
                equations=[(sp.Symbol("Z"),
                            sp.Symbol(r"\mathbb E_{W^1\dots W^L}\int d\bar s\,e^{-\frac12\bar s^"
                                      r"\top(T\mathbb 1+\hat K_L)\bar s+i\bar s^\top y}")),
                           (sp.Symbol(r"\hat K_L"),
                            sp.Symbol(r"\frac{1}{\lambda_LN_L}\sum_a\varphi^L_a\varphi^{L\top}_a"))],
                checked=s2.checked + ["output integral (P = 1, every parameter symbolic)"],
                derived=(s2.derived, gi.exponent), expected=(s2.expected, out_exp))


def step_d2_conditional_gaussian(P: int = 2, n_prev: int = 2) -> Step:
    r"""D2 (exact): given the activations φ_b (b = 1…N_{l−1}) of layer l−1, two units a, a' of
    layer l have h_a^μ = Σ_b W_ab φ_b^μ/√N_{l−1} with W ~ N(0, 1/λ_{l−1}) independent of φ, so

        E_W exp(i t_aᵀh_a + i t_a'ᵀh_a') = exp(−½ t_aᵀK̂_{l−1}t_a − ½ t_a'ᵀK̂_{l−1}t_a'),

    K̂_{l−1} = (1/(λ_{l−1}N_{l−1})) Σ_b φ_bφ_bᵀ: the units are independent and each is exactly
    N(0, K̂_{l−1}). Done by :func:`derivations.steps.gaussian_integrate` over the 2·N_{l−1}
    weights with every φ and t symbolic.
    """
    lmb = sp.Symbol("lambda_prev", positive=True)
    phi = [sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"phi_{b}^{mu}", real=True))
           for b in range(n_prev)]
    w = {(a, b): sp.Symbol(f"W_{a}{b}", real=True) for a in range(2) for b in range(n_prev)}
    t = [sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"t_{a}^{mu}", real=True)) for a in range(2)]
    h = [sum((w[(a, b)] * phi[b] for b in range(n_prev)), sp.zeros(P, 1)) / sp.sqrt(n_prev)
         for a in range(2)]
    E = -lmb * sum(x**2 for x in w.values()) / 2 + \
        sp.I * sum((t[a].T * h[a])[0, 0] for a in range(2))
    gi = gaussian_integrate(E, list(w.values()), pref_sq=(lmb / (2 * sp.pi))**(2 * n_prev))
    Khat = sum((p * p.T for p in phi), sp.zeros(P, P)) / (lmb * n_prev)
    want = -sum((t[a].T * Khat * t[a])[0, 0] for a in range(2)) / 2
    _require(sp.simplify(gi.pref_sq - 1) == 0, "normalization")
    _require(sp.expand(gi.exponent - want) == 0, "characteristic function")
    return Step("D2", "Pre-activations are conditionally Gaussian (exact)",
                r"Given layer $l-1$, every unit of layer $l$ is a linear function of its own "
                r"Gaussian weight row: the characteristic function factorizes over units and "
                r"each is Gaussian with the empirical kernel of the layer below as covariance.",
                equations=[(sp.Symbol(r"h^l_a\mid\varphi^{l-1}"),
                            sp.Symbol(r"\mathcal N(0,\hat K_{l-1})\ \text{i.i.d. over }a")),
                           (sp.Symbol(r"\hat K_{l-1}"),
                            sp.Symbol(r"\frac1{\lambda_{l-1}N_{l-1}}\sum_b\varphi_b"
                                      r"\varphi_b^\top,\quad \hat K_0=C")),
                           (sp.Symbol(r"\log\mathbb E\,e^{it_a^\top h_a+it_{a'}^\top h_{a'}}"),
                            gi.exponent)],
                checked=[f"P={P}, N_(l-1)={n_prev}, two units: exact Gaussian integral over "
                         "the weights"], derived=gi.exponent, expected=want)


def step_d3_top_average() -> Step:
    r"""D3: E[exp(−½ s̄ᵀK̂_Ls̄) | K̂_{L−1}] = (1 + v/(λ_LN_L))^{−N_L/2}, v = s̄ᵀk(K̂_{L−1})s̄.

    The exponent is −Σ_a q_a²/(2λ_LN_L), q_a = s̄·σ(h_a), a sum over units that are independent
    given K̂_{L−1} (D2), hence the N_L-th power of one unit's average. Gaussian equivalence
    (the assumption of THEORY §3 step 5, :data:`derivations.steps.GAUSSIAN_EQUIVALENCE_ASSUMPTION`)
    takes q ~ N(s̄·μ, v) with v = s̄ᵀ(k(K̂_{L−1}) − μμᵀ)s̄; for odd σ the unit mean μ vanishes for
    every covariance (checked for erf by ``sympy.integrate``). The one-unit average is then
    :func:`derivations.steps.step5_gaussian_equivalence` at n = 1, m = 0, s = λ_LN_L.
    """
    from .steps import step5_gaussian_equivalence, unit_mean_symbolic
    mu, _ = unit_mean_symbolic("erf")
    _require(mu == 0, "erf has zero mean")
    ge = step5_gaussian_equivalence(1, diagonal=True)
    s = sp.Symbol("s", positive=True)
    Lam = sp.Symbol("Lambda_00", positive=True)
    v = sp.Symbol("v", positive=True)
    pref_sq, exponent = ge.derived
    # the one-unit average at C = v (Λ = 1/v), m = 0: (1 + v/s)^{-1/2}
    one = sp.sqrt(pref_sq.xreplace({Lam: 1 / v})) * \
        sp.exp(exponent.xreplace({Lam: 1 / v, sp.Symbol("m_0", real=True): 0}))
    one = one.xreplace({s: sp.Symbol("lambda_L", positive=True) * sp.Symbol("N_L", positive=True)})
    s = sp.Symbol("lambda_L", positive=True) * sp.Symbol("N_L", positive=True)
    _require(sp.cancel(sp.together(one**2 - 1 / (1 + v / s))) == 0, "one-unit average")
    NL = sp.Symbol("N_L", positive=True)
    return Step("D3", "Gaussian equivalence at the last layer",
                r"Units of layer $L$ are independent given $\hat K_{L-1}$; under Gaussian "
                r"equivalence $q=\bar s\cdot\sigma(h)$ is Gaussian with variance "
                r"$v=\bar s^\top k(\hat K_{L-1})\bar s$ (zero mean for odd $\sigma$):",
                equations=[(sp.Symbol(r"\mathbb E\left[e^{-\frac12\bar s^\top\hat K_L\bar s}"
                                      r"\mid\hat K_{L-1}\right]"),
                            (1 + v / (sp.Symbol(r"\lambda_L") * NL))**(-NL / 2)),
                           (v, sp.Symbol(r"\bar s^\top k(\hat K_{L-1})\bar s"))],
                checked=["erf: μ = 0 (sympy.integrate)", "one-unit GE average at n = 1"],
                derived=one**2, expected=1 / (1 + v / s))


def step_d4_amplitude() -> Step:
    r"""D4: the order parameter of one layer and its large-deviation reading.

    (a) ∫dQ̄ exp((N/2)(QQ̄ − log(1+Q̄))): ∂/∂Q̄ = 0 ⇔ Q̄ = 1/Q − 1 (``sympy.solve``), value
        −(N/2)(Q − 1 − log Q).
    (b) For z ~ N(0, 1): E e^{θz²} = (1 − 2θ)^{-1/2} (Gaussian lemma), cumulant
        Λ(θ) = −½ log(1 − 2θ); its Legendre transform I(ρ) = sup_θ[θρ − Λ(θ)] is
        ½(ρ − 1 − log ρ) (``sympy.solve`` for θ*). So N·I(Q) is the exponent of (a): Q is the
        amplitude of the mean of N independent χ²₁ variables, the cost of rescaling
        s̄ᵀK̂s̄ by Q relative to its conditional mean.
    """
    Q = sp.Symbol("Q", positive=True)
    Qb = sp.Symbol("Qbar", real=True)
    Nn = sp.Symbol("N_l", positive=True)
    f = Nn / 2 * (Q * Qb - sp.log(1 + Qb))
    sol = sp.solve(sp.numer(sp.together(sp.diff(f, Qb))), Qb)
    _require(len(sol) == 1 and sp.simplify(sol[0] - (1 / Q - 1)) == 0, "Q̄* = 1/Q − 1")
    val = sp.simplify(sp.expand_log(f.xreplace({Qb: sol[0]}), force=True))
    want = -Nn / 2 * (Q - 1 - sp.log(Q))
    _require(sp.simplify(sp.expand_log(val - want, force=True)) == 0, "value at Q̄*")
    # (b) the χ² large deviation
    z = sp.Symbol("z", real=True)
    th = sp.Symbol("theta", real=True)
    gi = gaussian_integrate(-(1 - 2 * th) * z**2 / 2, [z], pref_sq=1 / (2 * sp.pi))
    _require(sp.simplify(gi.pref_sq - 1 / (1 - 2 * th)) == 0 and gi.exponent == 0, "E e^{θz²}")
    Lam_ = -sp.log(1 - 2 * th) / 2
    rho = sp.Symbol("rho", positive=True)
    ths = sp.solve(sp.diff(th * rho - Lam_, th), th)
    _require(len(ths) == 1, "θ*")
    I = sp.simplify(sp.expand_log((th * rho - Lam_).xreplace({th: ths[0]}), force=True))
    _require(sp.simplify(sp.expand_log(I - (rho - 1 - sp.log(rho)) / 2, force=True)) == 0,
             "rate function")
    return Step("D4", "Order parameter of a layer: the amplitude of its kernel",
                r"Imposing $\bar Q_L=v/(\lambda_LN_L)$ with a conjugate $Q_L$ and eliminating "
                r"$\bar Q_L$ leaves a Gaussian form in $\bar s$ with $\hat K_L\to "
                r"Q_L\,k(\hat K_{L-1})/\lambda_L$ and the cost of that rescaling, the large-"
                r"deviation rate of a mean of $N_L$ independent $\chi^2_1$ variables:",
                equations=[(sp.Symbol(r"\bar Q^*"), sol[0]),
                           (sp.Symbol(r"\tfrac{N}{2}(Q\bar Q^*-\log(1+\bar Q^*))"), want),
                           (sp.Symbol(r"I_{\chi^2}(\rho)"), (rho - 1 - sp.log(rho)) / 2)],
                checked=["Q̄* by sympy.solve, value −(N/2)(Q − 1 − log Q)",
                         "Legendre transform of −½log(1 − 2θ) = ½(ρ − 1 − log ρ)"],
                derived=val, expected=want)


def homogeneity_defect(activation: str):
    r"""ℰk − k with ℰ = c∂_c + a∂_a + b∂_b: d/dρ [k(ρc, ρa, ρb) − ρ k(c, a, b)] at ρ = 1, the
    first-order difference between feeding a rescaled covariance into k (nested) and rescaling
    k's output (product). Returns (defect, exact_homogeneous) where exact_homogeneous says
    whether k(ρ·) = ρk(·) for all ρ > 0 (checked by SymPy)."""
    rho = sp.Symbol("rho", positive=True)
    a, b = sp.symbols("a b", positive=True)
    c = _c
    k = kernel_closed_form(activation, c, a, b)
    kr = kernel_closed_form(activation, rho * c, rho * a, rho * b)
    diff = sp.simplify(sp.powsimp(sp.powdenest(kr - rho * k, force=True), force=True))
    defect = sp.simplify(c * k.diff(c) + a * k.diff(a) + b * k.diff(b) - k)
    _require(sp.simplify(sp.diff(kr - rho * k, rho).xreplace({rho: 1}) - defect) == 0,
             "Euler defect")
    return defect, diff == 0


def step_d5_closure(P: int = 2, units: int = 2) -> Step:
    r"""D5: where the two forms part ways (module docstring, D5).

    Checked: (i) for linear σ, s̄ᵀk(K̂)s̄ = (1/(λN)) Σ_b (s̄·φ_b)², a sum of squares over units,
    so the last layer's computation (D3–D4) repeats exactly; (ii) the kernels of the two forms
    coincide for linear σ at L = 2, 3 (symbolic C) and the linear and relu kernel maps are
    positively 1-homogeneous, k(ρ·) = ρk(·), while erf's is not: its Euler defect ℰk − k is
    non-zero; (iii) at L = 2 (P = 1, erf), nested − product expanded in ε = Q_1 − 1 is
    (Q_2/λ_2) ε (ℰk − k)(C^{(2)}) + O(ε²), and vanishes at Q_1 = 1.
    """
    sbar = sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"sbar_{mu}", real=True))
    phi = [sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"phi_{b}^{mu}", real=True))
           for b in range(units)]
    lmb, Nn = sp.Symbol("lambda_l", positive=True), sp.Integer(units)
    Khat = sum((p * p.T for p in phi), sp.zeros(P, P)) / (lmb * Nn)
    lin = (sbar.T * _apply_kernel("linear", Khat) * sbar)[0, 0]
    squares = sum(((sbar.T * p)[0, 0]**2 for p in phi), sp.S.Zero) / (lmb * Nn)
    _require(sp.expand(lin - squares) == 0, "linear closure")
    # (ii) the forms agree for linear σ, symbolic C
    checked = [f"linear: s̄ᵀK̂s̄ is a sum of squares over units (P={P}, {units} units)"]
    C = _sym_cov(P)
    for L in (2, 3):
        Q = _Qs(L)
        d = (nested_K_R("linear", C, Q) - product_K_R("linear", C, Q)).applyfunc(sp.cancel)
        _require(d == sp.zeros(P, P), f"linear L={L}")
    checked.append("linear σ: nested K_R = product K_R at L = 2, 3 (symbolic C)")
    defects = {}
    for act in ("linear", "relu", "erf"):
        defect, homogeneous = homogeneity_defect(act)
        defects[act] = defect
        _require(homogeneous == (act != "erf"), f"{act} homogeneity")
    _require(defects["linear"] == 0 and defects["relu"] == 0, "1-homogeneous defects")
    pt = {_c: sp.Rational(1, 3), sp.Symbol("a", positive=True): sp.Rational(1, 2),
          sp.Symbol("b", positive=True): sp.Rational(2, 3)}
    _require(abs(sp.N(defects["erf"].xreplace(pt))) > 1e-3, "erf defect vanishes")
    checked.append("k(ρ·) = ρk(·) exactly for linear and relu; erf's Euler defect ≠ 0")
    # (iii) first order in Q1 − 1 at L = 2, P = 1 (scalar covariance c = a = b)
    eps = sp.Symbol("epsilon", real=True)
    c0 = sp.Symbol("C_00", positive=True)
    Q2 = sp.Symbol("Q_2", positive=True)
    Cm = sp.Matrix([[c0]])
    nest = nested_K_R("erf", Cm, [1 + eps, Q2])[0, 0]
    prod = product_K_R("erf", Cm, [1 + eps, Q2])[0, 0]
    diff = nest - prod
    _require(sp.simplify(diff.xreplace({eps: 0})) == 0, "equal at Q1 = 1")
    first = sp.diff(diff, eps).xreplace({eps: 0})
    M = nngp_recursion("erf", Cm, 1)[0][0, 0] / lam(1)          # C^{(2)} (P = 1: c = a = b)
    aa = sp.Symbol("a", positive=True)
    bb = sp.Symbol("b", positive=True)
    want = Q2 / lam(2) * defects["erf"].xreplace({_c: M, aa: M, bb: M})
    num = {c0: sp.Rational(7, 10), lam(1): sp.Rational(3, 4), lam(2): sp.Rational(6, 5),
           Q2: sp.Rational(9, 7)}
    _require(abs(sp.N((first - want).xreplace(num), 40)) < 1e-30, "first-order difference")
    _require(abs(sp.N(first.xreplace(num))) > 1e-4, "forms coincide at first order")
    checked.append("erf, L=2: nested − product = (Q2/λ2)(Q1 − 1)(ℰk − k)(C^(2)) + O((Q1−1)²)")
    return Step("D5", "Where the product and nested forms part ways",
                r"After the last layer, $\hat K_{L-1}$ enters through the nonlinear map $k$. "
                r"For linear $\sigma$ the recursion closes exactly. Otherwise both forms keep "
                r"only a uniform rescaling $Q_l$ of each intermediate kernel; the product form "
                r"passes the rescaling through the nonlinearity ($k(QK)\to Qk(K)$, $k$ applied "
                r"to the un-renormalized covariance), the nested form feeds the renormalized "
                r"covariance into the next nonlinearity (Gaussian equivalence layer by layer).",
                equations=[(sp.Symbol(r"K_R^{\rm prod}"),
                            sp.Symbol(r"\Big(\prod_lQ_l\Big)K^{(L)}/\lambda_L")),
                           (sp.Symbol(r"K_R^{\rm nest}"),
                            sp.Symbol(r"K_R^{(L)},\ K_R^{(l)}=\frac{Q_l}{\lambda_l}"
                                      r"k\big(K_R^{(l-1)}\big),\ K_R^{(0)}=C")),
                           (sp.Symbol(r"K_R^{\rm nest}-K_R^{\rm prod}\ (L=2)"),
                            sp.Symbol(r"\frac{Q_2}{\lambda_2}(Q_1-1)\,(\mathcal Ek-k)"
                                      r"(C^{(2)})+O((Q_1-1)^2)")),
                           (sp.Symbol(r"(\mathcal Ek-k)_{\rm erf}"), defects["erf"])],
                checked=checked, derived=first, expected=want)


def step_d6_action(L: int = 2, P: int = 2, equal_widths: bool = False) -> Step:
    r"""D6: −2 log Z ≍ Σ_l N_l(Q_l − 1 − log Q_l) − 2 log ∫ds̄ e^{−½s̄ᵀAs̄ + is̄ᵀy}, so with the s̄
    integral of THEORY §3 step 7 (iterated Gaussian lemma, generic symmetric A, explicit P):

        S = Σ_l (N_l/N_L)(Q_l − log Q_l) + (1/N_L)[log det A + yᵀA⁻¹y]   (constants dropped)

    compared exactly (:func:`derivations.steps.symbolic_equal`) with :func:`deep_action`
    at a generic A, widths N_1 … N_L symbolic (or all N).
    """
    Ns = widths(L, equal_widths)
    Q = _Qs(L)
    Ag = _generic_symmetric("A", P)
    y = _labels(P)
    sbar = sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"sbar_{mu}", real=True))
    E7 = -(sbar.T * Ag * sbar)[0, 0] / 2 + sp.I * (sbar.T * y)[0, 0]
    gi = gaussian_integrate(E7, list(sbar), pref_sq=1 / (2 * sp.pi)**(2 * P))
    log_Z = (sum(-Ns[l] / 2 * (Q[l] - 1 - sp.log(Q[l])) for l in range(L))
             - sp.log(sp.Mul(*gi.pivots)) / 2 + gi.exponent)
    S = sp.expand(-2 * log_Z / Ns[-1]) + sum(Ns[l] / Ns[-1] for l in range(L))  # drop const
    want = (sum(Ns[l] / Ns[-1] * (Q[l] - sp.log(Q[l])) for l in range(L))
            + (sp.log(_det(Ag)) + (y.T * _inv(Ag) * y)[0, 0]) / Ns[-1])
    _require(symbolic_equal(S, want, gens=list(y)), "deep action")
    return Step("D6", "The deep action",
                r"Collecting the rates of every layer and the $\bar s$ integral "
                r"($A=T\mathbb 1+K_R$), normalized by the readout width $N_L$:",
                equations=[(sp.Symbol("S(Q)"),
                            sp.Symbol(r"\sum_{l=1}^L\frac{N_l}{N_L}(Q_l-\log Q_l)+\frac1{N_L}"
                                      r"\left[\log\det A+y^\top A^{-1}y\right]")),
                           (sp.Symbol(r"\text{equal widths}"),
                            sp.Symbol(r"\sum_l(Q_l-\log Q_l)+\frac1N\left[\log\det A+y^\top "
                                      r"A^{-1}y\right]"))],
                checked=[f"L={L}, P={P}, {'equal' if equal_widths else 'unequal'} widths, "
                         "generic symmetric A"], derived=S, expected=want)


@lru_cache(maxsize=None)
def data_term_second_differential(P: int = 2) -> Step:
    r"""F(A) = log det A + yᵀA⁻¹y along a two-parameter family A(θ1, θ2) (entries undefined
    functions), by ``sympy.diff``:

        ∂F/∂θ_l      = Tr(B ∂_lA),  B = A⁻¹ − zzᵀ, z = A⁻¹y
        ∂²F/∂θ_l∂θ_m = Tr(B ∂_l∂_mA) − Tr(A⁻¹∂_lA A⁻¹∂_mA) + 2 zᵀ∂_lA A⁻¹∂_mA z

    the contractions the nested form's gradient and Hessian are assembled from. Checked at
    explicit P with every derivative of A a generic symmetric matrix of Symbols.
    """
    t1, t2 = sp.symbols("theta_1 theta_2", real=True)
    A = sp.Matrix(P, P, lambda i, j: sp.Function(f"A_{min(i, j)}{max(i, j)}")(t1, t2))
    y = _labels(P)
    F = sp.log(_det(A)) + (y.T * _inv(A) * y)[0, 0]
    A0 = _generic_symmetric("a", P)
    A1, A2, A12 = (_generic_symmetric(nm, P) for nm in ("d1A", "d2A", "d12A"))
    reps = {}
    for i in range(P):
        for j in range(i, P):
            f = A[i, j]
            reps[sp.Derivative(f, t1, t2)] = A12[i, j]
            reps[sp.Derivative(f, t1)] = A1[i, j]
            reps[sp.Derivative(f, t2)] = A2[i, j]
    vals = {A[i, j]: A0[i, j] for i in range(P) for j in range(i, P)}

    def sub(e):
        return e.xreplace(reps).xreplace(vals)

    Ai = _inv(A0)
    z = Ai * y
    B = Ai - z * z.T
    g1 = sub(sp.diff(F, t1))
    _require(_same_polynomial(g1, (B * A1).trace(), list(y)), "∂F")
    h = sub(sp.diff(F, t1, t2))
    want = (B * A12).trace() - (Ai * A1 * Ai * A2).trace() + 2 * (z.T * A1 * Ai * A2 * z)[0, 0]
    _require(_same_polynomial(h, want, list(y)), "∂²F")
    return Step("D-Hess", "Second differential of the data term",
                r"For any two-parameter family $A(\theta_1,\theta_2)$:",
                equations=[(sp.Symbol(r"\partial_lF"), sp.Symbol(r"\mathrm{Tr}(B\,\partial_lA)")),
                           (sp.Symbol(r"\partial_l\partial_mF"),
                            sp.Symbol(r"\mathrm{Tr}(B\,\partial_l\partial_mA)-\mathrm{Tr}(A^{-1}"
                                      r"\partial_lA\,A^{-1}\partial_mA)+2z^\top\partial_lA\,"
                                      r"A^{-1}\partial_mA\,z"))],
                checked=[f"P={P}, A an explicit matrix of functions"], derived=h, expected=want)


# ------------------------------------------------------------------------------------------
# Product form in the eigenbasis
# ------------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def product_eig_program():
    r"""Product form in the eigenbasis K^{(L)} = U diag(k) Uᵀ, ỹ = Uᵀy (THEORY §3d):

        S = Σ_l ν_l(Q_l − log Q_l) + G(Π)/N,  Π = Π_l Q_l,  ν_l = N_l/N_L,  N = N_L,
        G(Π) = Σ_k [log D_k + ỹ_k²/D_k],  D_k = T + Π k_k/λ_L.

    Chain rule through Π (∂Π/∂Q_l = Π/Q_l, ∂²Π/∂Q_l∂Q_m = (1 − δ_lm)Π/(Q_lQ_m)), with
    c1 = Π G'(Π)/N and c2 = Π² G''(Π)/N (``sympy.diff`` inside the mode sum), u = 1/Q:

        ∂S/∂Q_l        = ν_l(1 − u_l) + c1 u_l
        ∂²S/∂Q_l∂Q_m   = δ_lm (ν_l − c1) u_l² + (c1 + c2) u_l u_m

    Returns a dict of SymPy expressions with array-valued Symbols Q, nu (length L) and the
    per-mode k, yt; verified against explicit differentiation by
    :func:`verify_product_derivatives`.
    """
    Pi = sp.Symbol("Pi", positive=True)
    k, yt = sp.symbols("k yt", real=True)
    Qv, nu = sp.Symbol("Q", positive=True), sp.Symbol("nu", positive=True)
    lamL = sp.Symbol("lambda_L", positive=True)
    D = T + Pi * k / lamL
    G = ModeSum(sp.log(D) + yt**2 / D)
    c1 = sp.Symbol("c1")
    c2 = sp.Symbol("c2")
    c1e = Pi * sp.diff(G, Pi) / N
    c2e = Pi**2 * sp.diff(G, Pi, 2) / N
    S = LayerSum(nu * (Qv - sp.log(Qv))) + G / N
    grad = nu * (1 - 1 / Qv) + c1 / Qv
    hess = Diag((nu - c1) / Qv**2) + (c1 + c2) * Outer(1 / Qv, 1 / Qv)
    return {"Pi": Pi, "k": k, "yt": yt, "Q": Qv, "nu": nu, "lambda_L": lamL, "G": G,
            "S": S, "c1": (c1, c1e), "c2": (c2, c2e), "grad": grad, "hess": hess}


def verify_product_derivatives(L: int = 3, P: int = 2, equal_widths: bool = False) -> int:
    """``sympy.diff`` of the explicit product-form action (L symbols Q_l, P modes with symbolic
    k, ỹ, widths N_l) equals the structured gradient and Hessian of
    :func:`product_eig_program` entry by entry (exact rational-function cancellation after the
    logarithms are differentiated away). Returns the number of entries compared."""
    prog = product_eig_program()
    Q = _Qs(L)
    Ns = widths(L, equal_widths)
    nu = [Ns[l] / Ns[-1] for l in range(L)]
    ks = [sp.Symbol(f"k_{a}", positive=True) for a in range(P)]
    yts = [sp.Symbol(f"yt_{a}", real=True) for a in range(P)]
    lamL = prog["lambda_L"]
    Pi = sp.Mul(*Q)
    D = [T + Pi * ks[a] / lamL for a in range(P)]
    S = sum(nu[l] * (Q[l] - sp.log(Q[l])) for l in range(L)) + \
        sum(sp.log(D[a]) + yts[a]**2 / D[a] for a in range(P)) / Ns[-1]

    def modes(e):
        return e.replace(ModeSum, lambda f: sp.Add(*[f.xreplace({prog["k"]: ks[a],
                                                                 prog["yt"]: yts[a]})
                                                     for a in range(P)]))
    c1 = modes(prog["c1"][1]).xreplace({prog["Pi"]: Pi, N: Ns[-1]})
    c2 = modes(prog["c2"][1]).xreplace({prog["Pi"]: Pi, N: Ns[-1]})
    count = 0
    for l in range(L):
        g = prog["grad"].xreplace({prog["Q"]: Q[l], prog["nu"]: nu[l],
                                   sp.Symbol("c1"): c1})
        _require(sp.cancel(sp.together(sp.diff(S, Q[l]) - g)) == 0, f"∂S/∂Q_{l + 1}")
        count += 1
        for m in range(L):
            h = ((nu[l] - c1) / Q[l]**2 if l == m else 0) + (c1 + c2) / (Q[l] * Q[m])
            _require(sp.cancel(sp.together(sp.diff(S, Q[l], Q[m]) - h)) == 0,
                     f"∂²S/∂Q_{l + 1}∂Q_{m + 1}")
            count += 1
    return count


# ------------------------------------------------------------------------------------------
# Fixed-point map (both forms)
# ------------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def layer_fixed_point_program() -> dict:
    r"""The saddle-point equations of either form as a fixed-point map, from the gradient.

    Both forms share the entropy term ν_l(Q_l − log Q_l) of D6, so ∂S/∂Q_l = ν_l(1 − 1/Q_l) +
    G_l/N with G_l = ⟨B, ∂_lK_R⟩ (product form: G_l = Π⟨B, K^{(L)}⟩/(λ_L Q_l) = N c1/Q_l).
    With g_l = ∂S/∂Q_l, F_l = g_l/ν_l + 1/Q_l is checked (``sympy.simplify``) to equal
    1 + G_l/(ν_l N), free of 1/Q_l, hence ∇S = 0 ⇔ Q_l = 1/F_l, and the map is

        Q_l ← 1/(g_l/ν_l + 1/Q_l) = ν_l/(ν_l + G_l/N),

    whose only fixed points are the roots of the gradient (checked: at G_l = −Nν_l(1 − 1/Q_l)
    the image is Q_l). For L = 1, ν = 1 it is the FC map of THEORY §3,
    Q = 1/(1 + (Tr(A⁻¹K) − zᵀKz)/(Nλ1)) (``kren.generated.fc.fixed_point_zero_mean``).
    Returns {"Q", "nu", "grad", "F", "Q_new", "G"}: SymPy expressions in the Symbols Q, nu, grad
    (standing for length-L arrays, elementwise).
    """
    Qv, nu = sp.Symbol("Q", positive=True), sp.Symbol("nu", positive=True)
    G, g = sp.Symbol("G", real=True), sp.Symbol("grad", real=True)
    grad = sp.diff(nu * (Qv - sp.log(Qv)), Qv) + G / N
    F = g / nu + 1 / Qv
    _require(sp.simplify(F.xreplace({g: grad}) - (1 + G / (nu * N))) == 0,
             "grad/ν + 1/Q = 1 + G/(νN)")
    Q_new = 1 / F
    root = sp.solve(sp.Eq(grad, 0), G)
    _require(len(root) == 1 and sp.simplify(Q_new.xreplace({g: grad}).xreplace({G: root[0]})
                                            - Qv) == 0, "fixed points = roots of ∇S")
    return {"Q": Qv, "nu": nu, "grad": g, "F": F, "Q_new": Q_new, "G": G}


# ------------------------------------------------------------------------------------------
# Limits
# ------------------------------------------------------------------------------------------

def deep_L1_equals_fc(P: int = 2, compare_action_module: bool = True) -> Step:
    r"""L = 1 (THEORY §5.9): both forms have K_R = Q_1 K/λ_1 with K = k(C) the one-hidden-layer
    kernel, and S = Q − log Q + (1/N)[log det A + yᵀA⁻¹y] is the zero-mean FC action of THEORY
    §3 — compared exactly with :func:`derivations.steps.theory_action_zero_mean` (FC, generic
    symmetric K) and, when available, with the FC program of :mod:`derivations.action`."""
    from .steps import ExplicitData, theory_action_zero_mean
    # symbols named as derivations.steps.explicit_data("fc", ...)
    Kg = sp.Matrix(P, P, lambda a, b: sp.Symbol(f"K00_{min(a, b)}{max(a, b)}", real=True))
    y = _labels(P)
    Qf = sp.Symbol("Q", real=True)
    d = ExplicitData("fc", 1, P, True, {(0, 0): Kg}, sp.zeros(1, P), y, sp.Matrix([[Qf]]),
                     sp.Matrix([[sp.Symbol("Qbar", real=True)]]))
    fc = theory_action_zero_mean(d)
    checked = []
    for form in FORMS:
        # K^{(1)} = k(C) is the FC kernel K: write the L = 1 forms with K for k(C)
        KR = Qf * Kg / lam(1)
        if form == "nested":
            # nested at L = 1: (Q_1/λ_1) k(K_R^{(0)}) = (Q_1/λ_1) k(C): the same matrix
            C = _sym_cov(P)
            n1 = nested_K_R("erf", C, [Qf])
            p1 = product_K_R("erf", C, [Qf])
            _require((n1 - p1).applyfunc(sp.simplify) == sp.zeros(P, P), "L=1 forms (erf)")
        S = deep_action(KR, y, [Qf])
        _require(symbolic_equal(S, fc, gens=list(y)), f"{form} L=1 ≠ FC")
        checked.append(f"{form}: S(L=1) = THEORY §3 FC action (P={P})")
    if compare_action_module:
        from .action import action_explicit
        S_mod, env = action_explicit("fc", 1, P, True, symbolic=True)
        KR = env["Q"] * env["K"] / lam(1)
        S = deep_action(KR, env["y"], [env["Q"]])
        _require(symbolic_equal(S, S_mod, gens=list(env["y"])), "≠ derivations.action")
        checked.append("= derivations.action FC program")
    return Step("L=1", "One hidden layer", r"At $L=1$ both forms are the FC action of THEORY §3:",
                equations=[(sp.Symbol("S_{L=1}"),
                            sp.Symbol(r"Q-\log Q+\frac1N\left[\log\det A+y^\top A^{-1}y\right],"
                                      r"\ K_R=QK/\lambda_1"))],
                checked=checked, derived=S, expected=fc)


def deep_infinite_width(L: int = 2, P: int = 2, activation: str = "erf") -> Step:
    r"""N → ∞ at fixed P: the data enter ∂S/∂Q_l = ν_l(1 − 1/Q_l) + (1/N)Tr(B ∂_lK_R) only at
    order 1/N, so at 1/N = 0 the unique positive solution is Q_l = 1 (``sympy.solve``), where
    both forms give the deep NNGP kernel K^{(L)}/λ_L of THEORY §2 (explicit symbolic C)."""
    Q = _Qs(L)
    nu = [sp.Symbol(f"nu_{l}", positive=True) for l in range(L)]
    eqs = [nu[l] * (1 - 1 / Q[l]) for l in range(L)]
    sol = sp.solve(eqs, Q, dict=True)
    _require(len(sol) == 1 and all(sol[0][q] == 1 for q in Q), f"Q_l = 1: {sol}")
    C = _sym_cov(P)
    nngp = nngp_recursion(activation, C, L)[-1] / lam(L)
    for form, f in (("product", product_K_R), ("nested", nested_K_R)):
        KR = f(activation, C, [sp.S.One] * L)
        _require((KR - nngp).applyfunc(sp.simplify) == sp.zeros(P, P), f"{form} at Q = 1")
    return Step("N→∞", "Infinite width",
                r"At $1/N=0$: $Q_l=1$ and both forms give the deep NNGP kernel:",
                equations=[(sp.Symbol(r"K_R(Q=1)"), sp.Symbol(r"K^{(L)}/\lambda_L"))],
                checked=[f"L={L}, P={P}, {activation}: unique solution Q = 1; K_R = NNGP "
                         "(both forms)"], derived=sol[0], expected={q: 1 for q in Q})


def deep_linear_zero_temperature(L: int = 2, P: int = 3) -> Step:
    r"""Linear σ (both forms: K_R = Π Q_l K/λ_L, K = K^{(L)}), invertible K, T → 0.

    Per mode (``sympy.limit``), log(T + Πk/λ) → log Π + log(k/λ), ỹ²/(T + Πk/λ) → λỹ²/(Πk), so
    S_0 = Σ_l ν_l(Q_l − log Q_l) + (1/N)[P log Π + λ r/Π], r = yᵀK⁻¹y. Then Q_l ∂S_0/∂Q_l = 0
    reads ν_l(Q_l − 1) + α − s/Π = 0 with α = P/N, s = λ r/N = yᵀ(K/λ_L)⁻¹y/N: ν_l(Q_l − 1) is
    the same for every layer, so with equal widths every Q_l equals one Q and
    Q^L (Q − (1 − α)) = s, i.e. Q − (1 − α) = s/Q^L (THEORY §5.9). Its positive root is unique
    (one sign change in the coefficients: Descartes' rule), and L = 1 is the closed form of
    THEORY §5.4 (``sympy.solve``).
    """
    Q = _Qs(L)
    nu = [sp.Symbol(f"nu_{l}", positive=True) for l in range(L)]
    ks = [sp.Symbol(f"k_{a}", positive=True) for a in range(P)]
    yt = [sp.Symbol(f"yt_{a}", real=True) for a in range(P)]
    lamL = lam(L)
    Pi = sp.Mul(*Q)
    Pis = sp.Symbol("Pi", positive=True)
    terms = []
    for a in range(P):
        L1 = sp.limit(sp.log(T + Pis * ks[a] / lamL), T, 0)
        L2 = sp.limit(yt[a]**2 / (T + Pis * ks[a] / lamL), T, 0)
        _require(sp.simplify(sp.expand_log(L1 - sp.log(Pis) - sp.log(ks[a] / lamL),
                                           force=True)) == 0, "log limit")
        _require(sp.simplify(L2 - lamL * yt[a]**2 / (Pis * ks[a])) == 0, "quadratic limit")
        terms.append((L1 + L2).xreplace({Pis: Pi}))
    S0 = sum(nu[l] * (Q[l] - sp.log(Q[l])) for l in range(L)) + sum(terms) / N
    alpha, s = sp.Symbol("alpha", positive=True), sp.Symbol("s", positive=True)
    r = sum(yt[a]**2 / ks[a] for a in range(P))
    eqs = []
    for l in range(L):
        e = sp.expand(Q[l] * sp.diff(S0, Q[l]))
        want = nu[l] * (Q[l] - 1) + sp.Integer(P) / N - lamL * r / (N * Pi)
        _require(sp.cancel(sp.together(e - want)) == 0, f"Q_{l + 1} ∂S0/∂Q_{l + 1}")
        eqs.append(nu[l] * (Q[l] - 1) + alpha - s / Pi)
    # equal widths: every pair of equations gives Q_l = Q_m
    for l in range(1, L):
        diff = (eqs[l] - eqs[0]).xreplace({nu[m]: 1 for m in range(L)})
        _require(sp.expand(diff - (Q[l] - Q[0])) == 0, "Q_l − Q_1")
    Qs = sp.Symbol("Q", positive=True)
    single = sp.expand((eqs[0].xreplace({nu[0]: 1}).xreplace({q: Qs for q in Q})) * Qs**L)
    poly = sp.Poly(single, Qs)
    want_poly = sp.Poly(Qs**(L + 1) - (1 - alpha) * Qs**L - s, Qs)
    _require(poly == want_poly, "Q^L (Q − (1 − α)) = s")
    # L = 1: the closed form of THEORY §5.4
    from .limits import linear_fc_closed_form
    Nsym = sp.Symbol("N", positive=True)
    lam1 = lam(1)
    roots = sp.solve(Qs**2 - (1 - alpha) * Qs - s, Qs)
    closed = linear_fc_closed_form(alpha, lam1, s * Nsym / lam1, Nsym)
    _require(any(sp.simplify(rt - closed) == 0 for rt in roots), "L = 1 closed form")
    return Step("deep T→0", "Deep linear network at zero temperature",
                r"With an invertible kernel, $Q_l\partial_{Q_l}S_0=\nu_l(Q_l-1)+\alpha-s/\Pi$: "
                r"all layers share $\nu_l(Q_l-1)$, so for equal widths $Q_l=Q$ with",
                equations=[(Qs - (1 - alpha), s / Qs**sp.Symbol("L")),
                           (s, sp.Symbol(r"y^\top(K^{(L)}/\lambda_L)^{-1}y/N"))],
                checked=[f"L={L}, P={P}: T→0 per mode, Q_l equal, Q^L(Q − (1 − α)) = s; "
                         "L = 1 = THEORY §5.4"], derived=poly, expected=want_poly)


def deep_linear_closed_form(alpha: float, s: float, L: int, nu=None) -> np.ndarray:
    """The T → 0 saddle point of the deep linear network (THEORY §5.9), NumPy.

    Equal widths (``nu=None``): every Q_l is the unique positive root of
    Q^L (Q − (1 − α)) = s. Widths with ratios ν_l = N_l/N_L: ν_l(Q_l − 1) = κ for every l, with κ
    the root of κ + α − s/Π_l(1 + κ/ν_l) = 0 on (−min ν, ∞) (increasing in κ). Returns (L,).
    """
    from scipy.optimize import brentq
    for v, nm in ((alpha, "alpha"), (s, "s")):
        if not np.isfinite(v) or v <= 0:
            raise ValueError(f"{nm} must be a positive number, got {v}")
    if int(L) != L or L < 1:
        raise ValueError(f"L must be a positive integer, got {L}")
    L = int(L)
    nu = np.ones(L) if nu is None else np.asarray(nu, dtype=float)
    if nu.shape != (L,) or np.any(nu <= 0):
        raise ValueError(f"nu must hold {L} positive width ratios, got {nu}")

    def f(kappa):
        return kappa + alpha - s / np.prod(1 + kappa / nu)

    lo = -nu.min() * (1 - 1e-15)
    hi = 1.0
    while f(hi) < 0:
        hi *= 2
    kappa = brentq(f, lo, hi, xtol=1e-15, rtol=1e-15, maxiter=500)
    return 1 + kappa / nu


# ------------------------------------------------------------------------------------------
# Explicit actions for tests (small P)
# ------------------------------------------------------------------------------------------

def nested_explicit_action(form: str, activation: str, C, y, T_, Ns, lambdas):
    """The action of ``form`` as an explicit SymPy expression in the Symbols Q_1 … Q_L (returned
    with them), for numeric C (P×P), y, T, widths Ns and priors λ_1 … λ_L given as exact
    rationals — for differentiating with ``sympy.diff`` in tests."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    L = len(lambdas)
    Q = _Qs(L)
    C = sp.Matrix(C)
    f = product_K_R if form == "product" else nested_K_R
    KR = f(activation, C, Q, list(lambdas))
    S = deep_action(KR, sp.Matrix(y), Q, list(Ns)).xreplace({T: T_})
    return S, Q


def derive_deep() -> list:
    """Every step D1–D6 with its checks, the kernel-derivative and data-term checks, and the
    limits, at small sizes. Returns the Step records (for a notebook)."""
    return [step_d1_top_layer(), step_d2_conditional_gaussian(), step_d3_top_average(),
            step_d4_amplitude(), step_d5_closure(), step_d6_action(), price_theorem_erf(),
            data_term_second_differential(), deep_L1_equals_fc(), deep_infinite_width(),
            deep_linear_zero_temperature()]

