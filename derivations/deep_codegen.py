r"""The functions of ``kren/generated/deep_fc.py`` (deep FC networks, THEORY §3d), printed from the
SymPy expressions of :mod:`derivations.deep` by ``python -m derivations.codegen``.

* Product form, O(P) per evaluation in the eigenbasis of K^{(L)}: action, gradient and L×L
  Hessian from :func:`derivations.deep.product_eig_program` (chain rule through Π = Π_l Q_l,
  ``sympy.diff`` inside the mode sums).
* Nested form: the layer recursion K_R^{(l)} = (Q_l/λ_l) k(K_R^{(l−1)}) with its first and second
  derivatives in the Q_l. Per activation, k and its partial derivatives are printed from
  ``sympy.diff`` of the closed form (:func:`derivations.deep.kernel_partials`); one layer's chain
  rule (:func:`derivations.deep.layer_chain_rule`) is printed into the loop over layers, whose
  bookkeeping (lists of tangents, diagonals) is the fixed template below. The data term, its
  gradient Tr(B ∂_lK_R) and its second differential
  (:func:`derivations.deep.data_term_second_differential`) are lowered to Cholesky primitives
  like the one-hidden-layer modules.

Only :func:`functions` is used by :mod:`derivations.codegen` (its MODULES entry ``deep_fc``).
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity, MatrixSymbol

from . import action as ac
from . import deep as dp
from .printer import ChoFactor, ChoSolve, KrenPrinter

__all__ = ["functions", "DOC", "IMPORTS"]

DOC = ("Deep FC effective actions (THEORY §3d): product and nested forms of K_R, one scalar Q_l "
       "per layer;\nactions, gradients and L×L Hessians.")
IMPORTS = ["import numpy as np", "",
           "from kren.linalg import cho_factor, cho_inverse, cho_logdet, cho_solve"]

ZERO_MEAN_ACTIVATIONS = ("erf", "linear")
LABEL_A = "A = T*1 + K_R"


class Contract(sp.Expr):
    """G_l = ⟨dK_l, B⟩ = Tr(B ∂_lK_R) for a stack dK (L, P, P) (printed ``np.tensordot``)."""

    is_commutative = True

    def __new__(cls, *args):
        return super().__new__(cls, *map(sp.sympify, args))

    def _numpycode(self, printer):
        return f"np.tensordot({printer._print(self.args[0])}, {printer._print(self.args[1])}, " \
               "axes=2)"


class HessianTerms(sp.Expr):
    """(H2, T1, T2), each (L, L): H2 = ⟨B, ∂_l∂_mK_R⟩, T1 = Tr(A⁻¹∂_lK_R A⁻¹∂_mK_R),
    T2 = zᵀ∂_lK_R A⁻¹∂_mK_R z (printed as a call of the module's ``_hessian_terms``)."""

    is_commutative = True

    def __new__(cls, *args):
        return super().__new__(cls, *map(sp.sympify, args))

    def _numpycode(self, printer):
        return "_hessian_terms(" + ", ".join(printer._print(a) for a in self.args) + ")"


class Item(sp.Expr):
    """Entry ``k`` of a tuple-valued expression (printed ``x[k]``)."""

    is_commutative = True

    def __new__(cls, *args):
        return super().__new__(cls, *map(sp.sympify, args))

    def _numpycode(self, printer):
        return f"{printer._print(self.args[0])}[{printer._print(self.args[1])}]"


def _fn(*args, **kw):
    from .codegen import Fn
    return Fn(*args, **kw)


def _pr(expr) -> str:
    return KrenPrinter(tensor_args={}).doprint(expr)


# ----------------------------------------------------------------------------------------------
# Argument checks (printed once as private helpers of the module)
# ----------------------------------------------------------------------------------------------

def _check_fns():
    layers = _fn(
        "_layers", ["Q", "N"],
        """Order parameters and widths: Q (L,) positive; N one width (all layers) or the L widths
        N_1 … N_L, positive. Returns (Q, nu, N_L) with nu = N_l/N_L.""",
        ["Q = vector(Q, 'Q')",
         "L = Q.shape[0]",
         "if L < 1 or not np.all(np.isfinite(Q)) or not np.all(Q > 0):",
         "    raise ValueError(f'Q must hold L >= 1 positive order parameters, got {Q}')",
         "Ns = np.asarray(N, dtype=float).reshape(-1)",
         "if Ns.shape[0] == 1:",
         "    Ns = np.full(L, Ns[0])",
         "if Ns.shape != (L,) or not np.all(np.isfinite(Ns)) or not np.all(Ns > 0):",
         "    raise ValueError(f'N must be one positive width or {L} positive widths "
         "(N_1 … N_L), got {N}')"],
        [], [], tensors={}, returns="Q, Ns/Ns[-1], Ns[-1]")
    priors = _fn(
        "_priors", ["lambdas", "L"],
        """Priors λ_1 … λ_L (λ_L the readout's; THEORY §1): one positive number for all layers
        or L of them. Returns an (L,) array.""",
        ["lam = np.asarray(lambdas, dtype=float).reshape(-1)",
         "if lam.shape[0] == 1:",
         "    lam = np.full(L, lam[0])",
         "if lam.shape != (L,) or not np.all(np.isfinite(lam)) or not np.all(lam > 0):",
         "    raise ValueError(f'lambdas must be one positive prior or {L} positive priors "
         "(lambda_1 … lambda_L), got {lambdas}')"],
        [], [], tensors={}, returns="lam")
    activation = _fn(
        "_partials", ["activation", "order"],
        """The printed kernel of ``activation`` and its partial derivatives up to ``order``
        (0: k; 1: k, k_c, k_a, k_b; 2: also the six second derivatives).""",
        ["table = {" + ", ".join(f"'{a}': (_{a}_kernel, _{a}_partials1, _{a}_partials2)"
                                 for a in ZERO_MEAN_ACTIVATIONS) + "}",
         "if activation not in table:",
         "    raise ValueError(f'the deep FC action is derived for the zero-mean activations "
         f"{', '.join(ZERO_MEAN_ACTIVATIONS)}; got {{activation!r}}')"],
        [], [], tensors={}, returns="table[activation][order]")
    supported = _fn(
        "nested_activations", [],
        """The activations whose kernel k(c, a, b) and partial derivatives are printed here (closed
        forms, zero mean): the only ones the nested form can use (the product form needs K^{(L)} alone).""",
        [], [], [], tensors={}, returns=repr(tuple(ZERO_MEAN_ACTIVATIONS)))
    return [layers, priors, activation, supported]


# ----------------------------------------------------------------------------------------------
# Product form (eigenbasis)
# ----------------------------------------------------------------------------------------------

def _product_fns():
    prog = dp.product_eig_program()
    c1, c1e = prog["c1"]
    c2, c2e = prog["c2"]
    Sd, g, h = sp.Symbol("S"), sp.Symbol("grad"), sp.Symbol("hess")
    pre = ["Q, nu, N = _layers(Q, N)",
           "k = vector(k, 'k')", "yt = vector(yt, 'yt', k.shape[0])",
           "T = as_float(T, 'T')", "lambda_L = as_float(lambda_L, 'lambda_L')",
           "Pi = np.prod(Q)"]
    eig = _fn(
        "product_action_eig", ["Q", "k", "yt", "T", "N", "lambda_L"],
        """Product-form deep action in the eigenbasis of K^{(L)} (THEORY §3d), O(P + L²) per call.

        K^{(L)} = U diag(k) Uᵀ (the deep NNGP kernel times λ_L), yt = Uᵀy, Π = Π_l Q_l,
        D_k = T + Π k_k/λ_L, ν_l = N_l/N_L, N = N_L:
        S = Σ_l ν_l (Q_l − log Q_l) + (1/N) Σ_k [log D_k + yt_k²/D_k]
        grad_l = ν_l (1 − 1/Q_l) + c1/Q_l,
        hess_lm = δ_lm (ν_l − c1)/Q_l² + (c1 + c2)/(Q_l Q_m),
        c1 = Π G'(Π)/N, c2 = Π² G''(Π)/N, G(Π) = Σ_k [log D_k + yt_k²/D_k] (derivatives by
        SymPy's diff; derivations.deep.product_eig_program). N: one width or the L widths.
        Returns (S, grad (L,), hess (L, L)).
        """, pre, [(Sd, prog["S"]), (c1, c1e), (c2, c2e), (g, prog["grad"]), (h, prog["hess"])],
        ["S", "grad", "hess"], tensors={})
    Kr = sp.Symbol("K_R")
    kern = _fn(
        "product_renormalized_kernel", ["Q", "K", "lambda_L"],
        """Product-form renormalized kernel (THEORY §3d): K_R = (Π_l Q_l) K/λ_L.

        K: K^{(L)} = λ_L × the deep NNGP kernel, between any two input sets (train×train,
        test×train) or the test diagonal, any shape.
        """,
        ["Q = vector(Q, 'Q')",
         "if Q.shape[0] < 1 or not np.all(Q > 0):",
         "    raise ValueError(f'Q must hold L >= 1 positive order parameters, got {Q}')",
         "K = np.asarray(K, dtype=float)", "lambda_L = as_float(lambda_L, 'lambda_L')",
         "Pi = np.prod(Q)"],
        [(Kr, sp.Symbol("Pi") * sp.Symbol("K") / prog["lambda_L"])], ["K_R"], tensors={})
    return [eig, kern]


# ----------------------------------------------------------------------------------------------
# Nested form: kernels, partial derivatives, one layer's chain rule
# ----------------------------------------------------------------------------------------------

def _partial_fns(activation):
    parts = dp.kernel_partials(activation)
    c, a, b = sp.symbols("c a b", real=True)
    what = {"erf": "(2/π) arcsin(2c/√((1 + 2a)(1 + 2b)))", "linear": "c"}[activation]
    fns = []
    for name, outs, doc in (
            ("kernel", ["k"], "the kernel k(c, a, b)"),
            ("partials1", list(dp.PARTIALS[:4]), "k and its first partial derivatives"),
            ("partials2", list(dp.PARTIALS), "k and its first and second partial derivatives")):
        defs = [(sp.Symbol(o), parts[o]) for o in outs]
        fns.append(_fn(
            f"_{activation}_{name}", ["c", "a", "b"],
            f"""{activation}: {doc} (THEORY §2), elementwise (c, a, b broadcast).

            k(c, a, b) = {what}; returns {', '.join(outs)} (kca = ∂²k/∂c∂a, …),
            SymPy's diff of the closed form (derivations.deep.kernel_partials).""",
            [], defs, outs, tensors={}))
    return fns


def _chain_lines():
    """Printed right-hand sides of one layer's chain rule (derivations.deep.layer_chain_rule)."""
    ch = dp.layer_chain_rule()
    return {key: _pr(ch[key]) for key in ("F", "F_m", "F_q", "F_mn", "F_qm")}


def _forward_fns():
    ch = _chain_lines()
    body = [
        "L = Q.shape[0]",
        "M = C",
        "dM = []",
        "d2M = {}",
        "for l in range(L):",
        "    q = Q[l]",
        "    lam = lambdas[l]",
        "    diag = np.diagonal(M)",
        "    parts = partials(M, diag[:, None], diag[None, :])",
        "    if order == 0:",
        "        k = parts",
        "    else:",
        "        k, kc, ka, kb = parts[:4]",
        "        tangents = []",
        "        for m in range(l):",
        "            dm = np.diagonal(dM[m])",
        "            tangents.append((dM[m], dm[:, None], dm[None, :]))",
        "        dN = []",
        "        for cm, am, bm in tangents:",
        f"            dN.append({ch['F_m']})",
        f"        dN.append({ch['F_q']})",
        "    if order == 2:",
        "        kcc, kca, kcb, kaa, kab, kbb = parts[4:]",
        "        d2N = {}",
        "        for m in range(l):",
        "            cm, am, bm = tangents[m]",
        "            for n in range(m, l):",
        "                cn, an, bn = tangents[n]",
        "                cmn = d2M[(m, n)]",
        "                dmn = np.diagonal(cmn)",
        "                amn, bmn = dmn[:, None], dmn[None, :]",
        f"                d2N[(m, n)] = {ch['F_mn']}",
        f"            d2N[(m, l)] = {ch['F_qm']}",
        "        d2N[(l, l)] = np.zeros_like(M)",
        "        d2M = d2N",
        "    if order > 0:",
        "        dM = dN",
        f"    M = {ch['F']}",
        "dK = np.stack(dM) if order > 0 else None",
    ]
    fwd = _fn(
        "_nested_forward", ["Q", "C", "lambdas", "partials", "order"],
        """Nested recursion (THEORY §3d) K_R^{(0)} = C, K_R^{(l)} = (Q_l/λ_l) k(K_R^{(l−1)}), k applied
        with the diagonals (a = K_ii, b = K_jj), and its derivatives in Q up to ``order``.

        One layer F = (q/λ) k(c, a, b) by the chain rule of derivations.deep.layer_chain_rule:
        F_m = (q/λ)(k_c c_m + k_a a_m + k_b b_m), F_q = k/λ,
        F_mn = (q/λ)[Σ_xy k_xy x_m y_n + k_c c_mn + k_a a_mn + k_b b_mn],
        F_qm = (k_c c_m + k_a a_m + k_b b_m)/λ, F_qq = 0.
        Returns (K_R, dK, d2K): dK (L, P, P), dK[m] = ∂K_R/∂Q_m (order ≥ 1, else None);
        d2K {(m, n): ∂²K_R/∂Q_m∂Q_n, m ≤ n} (order 2, else {}).
        """, body, [], [], tensors={}, returns="M, dK, d2M")
    pair = _fn(
        "_nested_pair", ["Q", "C12", "d1", "d2", "lambdas", "kernel"],
        """The nested recursion between two input sets: C12 (P1, P2) the input covariances, d1 (P1,)
        and d2 (P2,) the variances of each set; every layer maps
        C12 → (Q_l/λ_l) k(C12, d1, d2), d1 → (Q_l/λ_l) k(d1, d1, d1), likewise d2.
        Returns (K_R(x1, x2), K_R(x1, x1), K_R(x2, x2)) (the last two as diagonals).
        """,
        ["for l in range(Q.shape[0]):",
         "    q = Q[l]",
         "    lam = lambdas[l]",
         "    k = kernel(C12, d1[:, None], d2[None, :])",
         f"    C12 = {ch['F']}",
         "    k = kernel(d1, d1, d1)",
         f"    d1 = {ch['F']}",
         "    k = kernel(d2, d2, d2)",
         f"    d2 = {ch['F']}"],
        [], [], tensors={}, returns="C12, d1, d2")
    hterms = _fn(
        "_hessian_terms", ["dK", "d2K", "cho", "z", "B"],
        """The contractions of the data term's second differential (derivations.deep.
        data_term_second_differential), each (L, L): H2 = ⟨B, ∂_l∂_mK_R⟩,
        T1 = Tr(A⁻¹∂_lK_R A⁻¹∂_mK_R), T2 = zᵀ∂_lK_R A⁻¹∂_mK_R z; A = LLᵀ from cho.""",
        ["L = dK.shape[0]",
         "X = [cho_solve(cho, d) for d in dK]",
         "w = dK @ z",
         "v = np.stack([cho_solve(cho, u) for u in w])",
         "H2 = np.empty((L, L))",
         "T1 = np.empty((L, L))",
         "for l in range(L):",
         "    for m in range(l, L):",
         "        H2[l, m] = H2[m, l] = np.vdot(B, d2K[(l, m)])",
         "        T1[l, m] = T1[m, l] = np.vdot(X[l], X[m].T)",
         "T2 = w @ v.T",
         "T2 = 0.5*(T2 + T2.T)"],
        [], [], tensors={}, returns="H2, T1, T2")
    return [fwd, pair, hterms]


def _nested_fns():
    P = ac.P
    A = MatrixSymbol("A", P, P)
    K_R = MatrixSymbol("K_R", P, P)
    y = MatrixSymbol("y", P, 1)
    z = MatrixSymbol("z", P, 1)
    cho = sp.Symbol("cho")
    F, Bexpr = ac._data_term(A, y)
    Qv, nu = sp.Symbol("Q", positive=True), sp.Symbol("nu", positive=True)
    Nn = ac.N
    ent = nu * (Qv - sp.log(Qv))                  # one layer's entropy term (D6)
    S = dp.LayerSum(ent) + F / Nn
    B = MatrixSymbol("B", P, P)
    G = sp.Symbol("G")
    grad = sp.diff(ent, Qv) + G / Nn              # ∂S/∂Q_l = ν(1 − 1/Q_l) + Tr(B ∂_lK_R)/N
    terms = sp.Symbol("terms")
    hess = dp.Diag(sp.diff(ent, Qv, 2)) + \
        (Item(terms, 0) - Item(terms, 1) + 2 * Item(terms, 2)) / Nn
    base = [(A, ac.T * Identity(P) + K_R), (cho, ChoFactor(A, LABEL_A)), (z, ChoSolve(cho, y)),
            (sp.Symbol("S"), S)]
    grad_defs = base + [(B, Bexpr), (G, Contract(sp.Symbol("dK"), B)),
                        (sp.Symbol("grad"), grad)]
    hess_defs = grad_defs + [(terms, HessianTerms(sp.Symbol("dK"), sp.Symbol("d2K"), cho, z, B)),
                             (sp.Symbol("hess"), hess)]
    pre = ["Q, nu, N = _layers(Q, N)", "lambdas = _priors(lambdas, Q.shape[0])",
           "C = square(C, 'C')", "P = C.shape[0]", "y = vector(y, 'y', P)",
           "T = as_float(T, 'T')"]

    def fwd(order):
        return [f"K_R, dK, d2K = _nested_forward(Q, C, lambdas, _partials(activation, {order}), "
                f"{order})"]
    args = ["Q", "C", "y", "T", "N", "lambdas", "activation"]
    Sdoc = ("S = Σ_l ν_l (Q_l − log Q_l) + (1/N)[log det A + yᵀA⁻¹y],  A = T𝟙 + K_R,  "
            "ν_l = N_l/N_L, N = N_L\n"
            "K_R^{(0)} = C, K_R^{(l)} = (Q_l/λ_l) k(K_R^{(l−1)}), K_R = K_R^{(L)}")
    argdoc = ("Q (L,); C = XXᵀ/(λ0 N0) (P, P); N one width or the L widths; lambdas λ_1 … λ_L\n"
              "(one number for all, or L; λ_L the readout's); activation 'erf' or 'linear'.")
    fns = [
        _fn("nested_renormalized_kernel", ["Q", "C", "lambdas", "activation"],
            f"""Nested-form renormalized kernel over the training set (THEORY §3d), (P, P):

            K_R^{{(0)}} = C, K_R^{{(l)}} = (Q_l/λ_l) k(K_R^{{(l−1)}}), K_R = K_R^{{(L)}}
            (k applied with the diagonals; at Q = 1 the deep NNGP kernel of THEORY §2).
            """,
            ["Q = vector(Q, 'Q')",
             "if Q.shape[0] < 1 or not np.all(Q > 0):",
             "    raise ValueError(f'Q must hold L >= 1 positive order parameters, got {Q}')",
             "lambdas = _priors(lambdas, Q.shape[0])", "C = square(C, 'C')",
             "K_R = _nested_forward(Q, C, lambdas, _partials(activation, 0), 0)[0]"],
            [], [], tensors={}, returns="K_R"),
        _fn("nested_cross_kernel", ["Q", "C12", "d1", "d2", "lambdas", "activation"],
            """Nested-form K_R between two input sets (THEORY §3d, §4): returns
            (K_R(x1, x2) (P1, P2), K_R(x1, x1) (P1,), K_R(x2, x2) (P2,)).

            C12 = X1 X2ᵀ/(λ0 N0); d1, d2 the variances |x|²/(λ0 N0) of each set.
            """,
            ["Q = vector(Q, 'Q')",
             "if Q.shape[0] < 1 or not np.all(Q > 0):",
             "    raise ValueError(f'Q must hold L >= 1 positive order parameters, got {Q}')",
             "lambdas = _priors(lambdas, Q.shape[0])",
             "C12 = np.asarray(C12, dtype=float)",
             "if C12.ndim != 2:",
             "    raise ValueError(f'C12 must be a (P1, P2) matrix, got shape {C12.shape}')",
             "d1 = vector(d1, 'd1', C12.shape[0])", "d2 = vector(d2, 'd2', C12.shape[1])"],
            [], [], tensors={},
            returns="_nested_pair(Q, C12, d1, d2, lambdas, _partials(activation, 0))"),
        _fn("nested_action", args,
            f"""Nested-form deep action (THEORY §3d):

            {_ind(Sdoc)}
            {_ind(argdoc)}
            """, pre + fwd(0), base, ["S"], tensors={}, labels={A: LABEL_A}),
        _fn("nested_action_gradient", args,
            f"""Nested-form deep action and gradient: returns (S, grad (L,), cho, z).

            {_ind(Sdoc)}
            grad_l = ν_l (1 − 1/Q_l) + ⟨B, ∂K_R/∂Q_l⟩/N,  B = A⁻¹ − z zᵀ,  z = A⁻¹y
            {_ind(argdoc)}
            """, pre + fwd(1), grad_defs, ["S", "grad", "cho", "z"], tensors={},
            labels={A: LABEL_A}),
        _fn("nested_action_gradient_hessian", args,
            f"""Nested-form deep action, gradient and Hessian: returns (S, grad, hess (L, L), cho, z).

            {_ind(Sdoc)}
            grad_l  = ν_l (1 − 1/Q_l) + ⟨B, ∂_lK_R⟩/N,  B = A⁻¹ − z zᵀ,  z = A⁻¹y
            hess_lm = δ_lm ν_l/Q_l² + [⟨B, ∂_l∂_mK_R⟩ − Tr(A⁻¹∂_lK_R A⁻¹∂_mK_R) + 2 zᵀ∂_lK_R A⁻¹∂_mK_R z]/N
            (the data term's second differential, derivations.deep.data_term_second_differential)
            {_ind(argdoc)}
            """, pre + fwd(2), hess_defs, ["S", "grad", "hess", "cho", "z"], tensors={},
            labels={A: LABEL_A}),
    ]
    return fns


def _fixed_point_fns():
    prog = dp.layer_fixed_point_program()
    return [_fn(
        "layer_fixed_point", ["Q", "grad", "nu"],
        """Fixed-point map of the deep saddle-point equations, either form (THEORY §3d):

        Q_new = 1/(grad/ν + 1/Q) = ν/(ν + ⟨B, ∂_lK_R⟩/N),  elementwise over the L layers,

        from grad/ν + 1/Q = 1 + ⟨B, ∂_lK_R⟩/(νN) (derivations.deep.layer_fixed_point_program), so
        Q_new = Q exactly when the gradient vanishes; L = 1, ν = 1: the FC map
        (kren.generated.fc.fixed_point_zero_mean). Q, grad (from the action functions above) and
        ν = N_l/N_L are (L,) arrays; the caller keeps the image only where every Q_new > 0 (where
        ν + ⟨B, ∂_lK_R⟩/N ≤ 0 the map has no image).
        """,
        ["Q = vector(Q, 'Q')", "grad = vector(grad, 'grad', Q.shape[0])",
         "nu = vector(nu, 'nu', Q.shape[0])"],
        [(sp.Symbol("Q_new"), prog["Q_new"])], ["Q_new"], tensors={})]


def _ind(text):
    import textwrap
    return textwrap.indent(text, " " * 12).lstrip()


def functions() -> list:
    """Every function of ``kren/generated/deep_fc.py``, in order."""
    fns = _product_fns() + _nested_fns() + _fixed_point_fns() + _forward_fns() + _check_fns()
    for act in ZERO_MEAN_ACTIVATIONS:
        fns += _partial_fns(act)
    return fns
