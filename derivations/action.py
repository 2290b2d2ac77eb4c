r"""The effective actions of THEORY §3 and the predictor of THEORY §4, in SymPy.

Matrix level (symbolic sizes n, P). The train×train local kernels form a tensor {K_ij}, i, j = 1..n,
of P×P blocks with K_ji = K_ijᵀ; μ is the n×P matrix whose row i holds the unit means μ_i(x^ν).
Two custom SymPy objects carry the tensor:

    PairSum(W, K)      = Σ_ij W_ij K_ij                 (P×P, linear in the n×n matrix W)
    PairContract(K, B) = G,   G_ij = ⟨K_ij, B⟩ = Σ_μν K_ij[μ,ν] B[μ,ν]     (n×n)

PairContract is the adjoint of PairSum: Tr(B · PairSum(W, K)) = Tr(PairContract(K, B) · W)
for every n×n W and P×P B (rule D5 below), and G is symmetric when B is.

Action (CNN: Q, Q̄ symmetric n×n; LCN: diagonal; FC: n = 1, scalars):

    R   = (𝟙 + Q̄)⁻¹
    K_R = (1/(λ1 n)) [PairSum(Q, K) − μᵀ Q μ + μᵀ R μ]
    A   = T𝟙 + K_R
    S   = −Tr(Q Q̄) + log det(𝟙 + Q̄) + (1/N) [log det A + yᵀ A⁻¹ y]

Gradients. For symmetric Q the gradient ∇_Q S is the symmetric matrix with dS = Tr(∇_Q S dQ) for
every symmetric dQ (so ∂S/∂Q_ii = (∇_Q S)_ii and, Q_ij = Q_ji being one variable,
∂S/∂Q_ij = 2 (∇_Q S)_ij for i ≠ j). They follow from the differential rules

    D1  d Tr X = Tr dX                 D2  d(XY) = dX Y + X dY
    D3  d X⁻¹ = −X⁻¹ dX X⁻¹            D4  d log det X = Tr(X⁻¹ dX)
    D5  Tr(B PairSum(dW, K)) = Tr(PairContract(K, B) dW)
    D6  Tr(XY) = Tr(YX),  Tr X = Tr Xᵀ

which :func:`differential` applies mechanically, and :func:`gradient` turns dS = Σ Tr(M_k dQ)
into ∇ = sym(Σ M_k). With F = log det A + yᵀA⁻¹y, D4 and D3 give dF = Tr(B dA),

    B = A⁻¹ − z zᵀ,  z = A⁻¹ y,

and dA = (1/(λ1 n)) [PairSum(dQ, K) − μᵀ dQ μ − μᵀ R dQ̄ R μ] with D5 then give

    ∇_Q S  = −Q̄ + (PairContract(K, B) − μ B μᵀ)/(N λ1 n)
    ∇_Q̄ S  = −Q + R − R (μ B μᵀ) R/(N λ1 n).

Zero mean (μ = 0): ∇_Q̄ S = −Q + R = 0 gives Q̄ = Q⁻¹ − 𝟙 (solved by SymPy in
:func:`eliminate_Qbar`), and up to the constant −n

    S(Q) = Tr Q − log det Q + (1/N) [log det A + yᵀ A⁻¹ y],   ∇_Q S = 𝟙 − Q⁻¹ + G/(N λ1 n),
    G = PairContract(K, B).

Fixed-point maps (:func:`fixed_point_program`). Zero mean: ∇_Q S + Q⁻¹ = 𝟙 + G/(N λ1 n) no longer
contains Q⁻¹, so ∇_Q S = 0 ⇔ Q = (∇_Q S + Q⁻¹)⁻¹, the map Q ← (𝟙 + G(Q)/(N λ1 n))⁻¹ of THEORY §3.
Non-zero mean: Q̄ + ∇_Q S = (G − μBμᵀ)/(N λ1 n) no longer contains Q̄, and with X = 𝟙 + Q̄ the
product X − X(Q + ∇_Q̄ S)X = H = μBμᵀ/(N λ1 n) reads H off the gradient, so ∇_Q̄ S = 0 ⇔
Q = R − R H R; the map is Q̄ ← Q̄ + ∇_Q S, Q ← R' − R' H R', R' = (𝟙 + Q̄')⁻¹. The elimination
Q̄ = Q⁻¹ − 𝟙 of zero-mean units is :func:`eliminated_Qbar_program`.

Every gradient is checked against SymPy's own differentiation of the explicit expression (explicit
Matrix of Symbols, n = 1, 2, 3 and P = 2, 3) by :func:`verify_gradients`.

FC eigenbasis (THEORY §3): with the (centered) kernel K − μμᵀ = U diag(k) Uᵀ, ỹ = Uᵀy, m = Uᵀμ,
D_k = T + Q k_k/λ1 and r = 1/(1 + Q̄), the matrix determinant lemma and Sherman–Morrison give
O(P) forms (:func:`fc_eigen_zero_mean`, :func:`fc_eigen_relu`).
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field

import sympy as sp
from sympy import Determinant, Identity, Inverse, MatrixSymbol, Trace, Transpose, log
from sympy.matrices.expressions import MatrixExpr
from sympy.matrices.expressions.diagonal import DiagMatrix, DiagonalOf
from sympy.matrices.expressions.matadd import MatAdd
from sympy.matrices.expressions.matmul import MatMul

__all__ = [
    "n", "P", "P0", "P1", "P2", "T", "N", "lambda1", "K", "Kx", "Kd",
    "PairSum", "FullSum", "DiagSum", "PairContract", "Inner", "ModeSum", "RowModeSum",
    "Program", "cnn_program", "lcn_program", "fc_program", "predictor_program",
    "fc_eigen_zero_mean", "fc_eigen_relu", "fc_eigen_predictor", "differential", "gradient",
    "eliminate_Qbar", "explicit", "action_explicit", "verify_gradients", "SYMMETRIC",
    "hessian_zero_mean_program", "PackedSandwich", "PairHessianTerms", "HessTerm",
    "fixed_point_program", "eliminated_Qbar_program", "hessian_program",
    "SaddleHessianTerms", "PackedSandwich2", "PackedBlocks",
]

# ----------------------------------------------------------------------------------------------
# Symbols
# ----------------------------------------------------------------------------------------------

n = sp.Symbol("n", integer=True, positive=True)            # number of patches
P = sp.Symbol("P", integer=True, positive=True)            # training set size
P0 = sp.Symbol("P0", integer=True, positive=True)          # test set size
P1 = sp.Symbol("P1", integer=True, positive=True)
P2 = sp.Symbol("P2", integer=True, positive=True)
T, N, lambda1 = sp.symbols("T N lambda1", positive=True)

K = sp.Symbol("K")      # train×train kernel tensor {K_ij}, stored pairs (i ≤ j)
Kx = sp.Symbol("Kx")    # K_ij(x1^a, x2^b): full (n, n, P1, P2), or diagonal K_ii (n, P1, P2) (LCN)
Kd = sp.Symbol("Kd")    # K_ij(x0^a, x0^a): full (n, n, P0), or diagonal K_ii (n, P0) (LCN)


# ----------------------------------------------------------------------------------------------
# Custom objects
# ----------------------------------------------------------------------------------------------

class PairSum(MatrixExpr):
    """Σ_ij W_ij K_ij over a train×train kernel tensor stored by pairs (a linear map of W)."""

    def __new__(cls, W, tensor, rows, cols):
        return super().__new__(cls, W, tensor, sp.sympify(rows), sp.sympify(cols))

    @property
    def W(self):
        return self.args[0]

    @property
    def tensor(self):
        return self.args[1]

    @property
    def shape(self):
        return (self.args[2], self.args[3])

    def _eval_transpose(self):
        # (Σ W_ij K_ij)ᵀ = Σ W_ij K_ji = Σ W_ji K_ij: symmetric W gives a symmetric sum.
        return PairSum(Transpose(self.W), self.tensor, self.args[3], self.args[2]) \
            if not is_symmetric(self.W) else self


def scale_into_weights(expr, W=None):
    """c·PairSum(W, K) rewritten as PairSum(c·W, K): the same matrix (PairSum is linear in its
    weights), with the scalar on the small n×n weights instead of a P×P product when printed.
    ``W``: the weights expected (an AssertionError names the expression otherwise)."""
    c, rest = expr.as_coeff_mmul()
    rest = rest.args[0] if len(rest.args) == 1 else rest
    if not isinstance(rest, PairSum) or (W is not None and rest.W != W):
        raise AssertionError(f"{expr} is not c*PairSum({W if W is not None else 'W'}, K)")
    return PairSum(c * rest.W, rest.tensor, *rest.shape)


class FullSum(PairSum):
    """Σ_ij W_ij K_ij over a full (n, n, ...) tensor (test×train blocks or test diagonals); not
    symmetric in general, so it is never transposed symbolically."""

    def _eval_transpose(self):
        return None


class DiagSum(FullSum):
    """Σ_i w_i K_ii over a diagonal tensor of blocks K_ii, shape (n, ...) (the LCN test×train
    blocks or test diagonals); W is the (n×1) column w of weights, not a matrix."""


class PairContract(MatrixExpr):
    """G_ij = ⟨K_ij, B⟩ = Σ_μν K_ij[μ,ν] B[μ,ν]; symmetric n×n for symmetric B."""

    def __new__(cls, tensor, B, size):
        return super().__new__(cls, tensor, B, sp.sympify(size))

    @property
    def tensor(self):
        return self.args[0]

    @property
    def B(self):
        return self.args[1]

    @property
    def shape(self):
        return (self.args[2], self.args[2])

    def _eval_transpose(self):
        return self if is_symmetric(self.B) else PairContract(self.tensor, Transpose(self.B),
                                                              self.args[2])


class Inner(sp.Expr):
    """⟨X, Y⟩ = Σ_μν X[μ,ν] Y[μ,ν] = Tr(Xᵀ Y) (the n = 1 PairContract)."""

    is_commutative = True

    def __new__(cls, X, Y):
        return super().__new__(cls, X, Y)


class ModeSum(sp.Expr):
    """Σ_k f(k_k, ỹ_k, m_k): a sum over the eigenmodes of the kernel, written with the per-mode
    symbols ``k``, ``yt``, ``m`` standing for the k-th eigenvalue and projections.

    Differentiation passes inside: d/dx Σ_k f = Σ_k ∂f/∂x.
    """

    is_commutative = True

    def __new__(cls, summand):
        return super().__new__(cls, sp.sympify(summand))

    @property
    def summand(self):
        return self.args[0]

    def _eval_derivative(self, s):
        return ModeSum(sp.diff(self.summand, s))


class RowModeSum(ModeSum):
    """Σ_k f(Ct_ak, k_k, ỹ_k, m_k) for every test input a: a sum over the eigenmodes of the
    kernel whose summand also holds the per-(test input, mode) symbol ``Ct`` (the projections
    Ct_ak = Σ_μ K(x0_a, x^μ) U_μk of the test×train kernel on the eigenvectors). A vector over
    the test inputs (printed ``np.sum(..., axis=-1)``); per-test-input factors stay outside."""


# ----------------------------------------------------------------------------------------------
# Symmetry knowledge
# ----------------------------------------------------------------------------------------------

#: Names of matrix symbols that are symmetric (Q, Q̄, A, K_R, B, R, the FC kernel K, ...).
SYMMETRIC = {"Q", "Qbar", "A", "K_R", "B", "R", "G", "K", "M", "Qd", "Qbard",
             "dS_dQ", "dS_dQbar", "F", "H", "Q_new", "Qbar_new", "R_new", "N_B"}


def is_symmetric(X) -> bool:
    """True when X is symmetric by construction (structural test, never numerical)."""
    if isinstance(X, MatrixSymbol):
        return X.name in SYMMETRIC
    if isinstance(X, (Identity, DiagMatrix)):
        return True
    if isinstance(X, Inverse):
        return is_symmetric(X.arg)
    if isinstance(X, MatAdd):
        return all(is_symmetric(a) for a in X.args)
    if isinstance(X, PairContract):
        return is_symmetric(X.B)
    if isinstance(X, PairSum) and not isinstance(X, FullSum):
        return is_symmetric(X.W)
    if isinstance(X, MatMul):
        # c·X1 X2 ... X2ᵀ X1ᵀ (a palindrome around a symmetric middle) is symmetric
        _, mats = X.as_coeff_matrices()
        k = len(mats)
        if any(mats[a] != transpose(mats[k - 1 - a]) for a in range(k // 2)):
            return False
        return True if k % 2 == 0 else is_symmetric(mats[k // 2])
    return False


def transpose(X):
    """Xᵀ using the symmetry knowledge (Sᵀ = S for symmetric S, (XY)ᵀ = YᵀXᵀ)."""
    if not isinstance(X, MatrixExpr):
        return X
    if is_symmetric(X):
        return X
    if isinstance(X, Transpose):
        return X.arg
    if isinstance(X, MatMul):
        c, mats = X.as_coeff_matrices()
        return MatMul(c, *[transpose(m) for m in reversed(mats)]).doit(deep=False)
    if isinstance(X, MatAdd):
        return MatAdd(*[transpose(a) for a in X.args]).doit(deep=False)
    return Transpose(X)


# ----------------------------------------------------------------------------------------------
# Differentials (rules D1–D6) and gradients
# ----------------------------------------------------------------------------------------------

def differential(expr, var, dvar, defs=None):
    """The differential of ``expr`` in the direction ``dvar`` of the matrix (or scalar) ``var``.

    ``defs`` maps bound symbols (e.g. A, R) to their definitions, differentiated through by the
    chain rule. Rules: D1–D4 of the module docstring, linearity, and dW ↦ PairSum(dW, K).
    """
    defs = defs or {}
    d = lambda e: differential(e, var, dvar, defs)  # noqa: E731
    if expr == var:
        return dvar
    if expr in defs:
        return d(defs[expr])
    if not expr.has(var) and not any(expr.has(s) for s in defs):
        return sp.S.Zero if not isinstance(expr, MatrixExpr) else sp.ZeroMatrix(*expr.shape)
    if isinstance(expr, (sp.Add, MatAdd)):
        parts = [d(a) for a in expr.args]
        parts = [p for p in parts if not _is_zero(p)]
        if not parts:
            return sp.ZeroMatrix(*expr.shape) if isinstance(expr, MatrixExpr) else sp.S.Zero
        return MatAdd(*parts) if isinstance(expr, MatrixExpr) else sp.Add(*parts)
    if isinstance(expr, (sp.Mul, MatMul)):                                   # D2
        args = list(expr.args)
        terms = []
        for k, a in enumerate(args):
            da = d(a)
            if _is_zero(da):
                continue
            new = args[:k] + [da] + args[k + 1:]
            terms.append(MatMul(*new) if isinstance(expr, MatrixExpr) else sp.Mul(*new))
        if not terms:
            return sp.ZeroMatrix(*expr.shape) if isinstance(expr, MatrixExpr) else sp.S.Zero
        return MatAdd(*terms) if isinstance(expr, MatrixExpr) else sp.Add(*terms)
    if isinstance(expr, Inverse):                                            # D3
        X = expr.arg
        return -MatMul(Inverse(X), d(X), Inverse(X))
    if isinstance(expr, Trace):                                              # D1
        return Trace(d(expr.arg))
    if isinstance(expr, Transpose):
        return Transpose(d(expr.arg))
    if isinstance(expr, sp.log) and isinstance(expr.args[0], Determinant):  # D4
        X = expr.args[0].arg
        return Trace(MatMul(Inverse(X), d(X)))
    if isinstance(expr, sp.log):
        u = expr.args[0]
        return d(u) / u
    if isinstance(expr, sp.Pow) and not isinstance(expr, MatrixExpr):
        b, e = expr.args
        if e.has(var):
            raise NotImplementedError(f"variable exponent in {expr}")
        return e * b ** (e - 1) * d(b)
    if isinstance(expr, PairSum):                                           # linear in W
        return type(expr)(d(expr.W), expr.tensor, *expr.shape)
    if isinstance(expr, DiagMatrix):
        return DiagMatrix(d(expr.args[0]))
    raise NotImplementedError(f"no differential rule for {type(expr).__name__}: {expr}")


def _is_zero(e) -> bool:
    return e == 0 or isinstance(e, sp.ZeroMatrix) or (
        isinstance(e, MatMul) and any(isinstance(a, sp.ZeroMatrix) for a in e.args))


def _trace_terms(lin):
    """Split a scalar linear form into [(coefficient, matrix product)] with Tr of each product."""
    lin = sp.expand(lin)
    out = []
    for term in sp.Add.make_args(lin):
        coef, rest = sp.S.One, []
        for f in sp.Mul.make_args(term):
            if isinstance(f, Trace):
                rest.append(f)
            else:
                coef *= f
        if len(rest) != 1:
            raise NotImplementedError(f"term is not c·Tr(...): {term}")
        X = rest[0].arg
        for t in MatAdd.make_args(sp.expand(X)):
            c, mats = (t.as_coeff_matrices() if isinstance(t, MatMul) else (sp.S.One, [t]))
            out.append((coef * c, list(mats)))
    return out


def gradient(lin, dvar):
    """∇ with lin = Tr(∇ dvar): D6 rotates dvar to the end of every product, D5 moves it out of
    PairSum, and the result is symmetrized (dvar symmetric) unless already symmetric.

    For a scalar dvar the result is the coefficient of dvar.
    """
    if not isinstance(dvar, MatrixExpr):
        return sp.expand(sp.diff(lin, dvar)) if lin.has(dvar) else sp.S.Zero
    total = []
    for coef, mats in _trace_terms(lin):
        # factors may be Transpose(dvar), PairSum(dvar, K) or dvar itself
        k = [i for i, m in enumerate(mats) if m.has(dvar)]
        if len(k) != 1:
            raise NotImplementedError(f"dvar must occur once per term: {mats}")
        k = k[0]
        rot = mats[k + 1:] + mats[:k]                    # Tr(X dV Y) = Tr(Y X dV)
        Mk = MatMul(*rot).doit() if rot else None
        f = mats[k]
        if isinstance(f, Transpose):                     # Tr(M dVᵀ) = Tr(Mᵀ dV)
            f, Mk = f.arg, (transpose(Mk) if Mk is not None else None)
        if isinstance(f, PairSum):                       # D5
            if f.W != dvar:
                raise NotImplementedError(f"PairSum of {f.W}")
            Mk = PairContract(f.tensor, Mk, dvar.shape[0])
        elif f != dvar:
            raise NotImplementedError(f"cannot isolate {dvar} in {f}")
        total.append(coef * (Mk if Mk is not None else Identity(dvar.shape[0])))
    if not total:
        return sp.ZeroMatrix(*dvar.shape)
    grad = MatAdd(*total).doit()
    return grad if is_symmetric(grad) else (grad + transpose(grad)) / 2


# ----------------------------------------------------------------------------------------------
# Programs: ordered definitions (what the code generator prints)
# ----------------------------------------------------------------------------------------------

@dataclass
class Program:
    """Ordered definitions ``name := expression`` (later ones may use earlier names)."""

    defs: list = field(default_factory=list)            # [(symbol, expression)]
    inputs: dict = field(default_factory=dict)          # name -> symbol
    derived: dict = field(default_factory=dict)         # name -> expression the derivation found

    def add(self, sym, expr):
        self.defs.append((sym, expr))
        return sym

    def __getitem__(self, name):
        for s, e in self.defs:
            if str(s) == name:
                return e
        raise KeyError(name)

    def symbol(self, name):
        for s, _ in self.defs:
            if str(s) == name:
                return s
        raise KeyError(name)

    def expanded(self, name):
        """The expression of ``name`` with every earlier definition substituted in."""
        e = self[name]
        for s, d in reversed(self.defs):
            if e.has(s):
                e = e.xreplace({s: d})
        for _ in range(len(self.defs)):
            hit = [(s, d) for s, d in self.defs if e.has(s)]
            if not hit:
                break
            e = e.xreplace(dict(hit))
        return e


def _core_symbols():
    Q = MatrixSymbol("Q", n, n)
    Qbar = MatrixSymbol("Qbar", n, n)
    mu = MatrixSymbol("mu", n, P)
    y = MatrixSymbol("y", P, 1)
    return Q, Qbar, mu, y


def _data_term(A, y):
    """F = log det A + yᵀ A⁻¹ y and B = ∇_A F = A⁻¹ − A⁻¹ y yᵀ A⁻¹ (rules D3, D4)."""
    F = log(Determinant(A)) + Trace(y.T * Inverse(A) * y)
    dA = MatrixSymbol("dA", *A.shape)
    Bexpr = gradient(differential(F, A, dA), dA)
    return F, Bexpr


def cnn_program(zero_mean: bool, diagonal: bool = False) -> Program:
    """The CNN action (THEORY §3) as a program: R, K_R, A, S, then B, G and the gradients.

    ``diagonal=True`` restricts Q, Q̄ to diagonal matrices diag(q), diag(q̄) (the LCN,
    THEORY §5.6); the gradients are then the diagonals of the CNN gradients (dQ = diag(dq)).
    """
    Q, Qbar, mu, y = _core_symbols()
    prog = Program()
    if diagonal:
        q, qbar = MatrixSymbol("q", n, 1), MatrixSymbol("qbar", n, 1)
        prog.inputs = {"q": q, "qbar": qbar, "mu": mu, "y": y}
    else:
        prog.inputs = {"Q": Q, "Qbar": Qbar, "mu": mu, "y": y}
    In, IP = Identity(n), Identity(P)
    A = MatrixSymbol("A", P, P)
    K_R = MatrixSymbol("K_R", P, P)
    R = MatrixSymbol("R", n, n)
    if diagonal:
        Qm, Qbm = DiagMatrix(q), DiagMatrix(qbar)
        prog.add(MatrixSymbol("Qd", n, n), Qm)
        Qm = prog.symbol("Qd")
        if not zero_mean:
            prog.add(MatrixSymbol("Qbard", n, n), Qbm)
            Qbm = prog.symbol("Qbard")
    else:
        Qm, Qbm = Q, Qbar
    if zero_mean:
        prog.add(K_R, PairSum(Qm, K, P, P) / (lambda1 * n))
    else:
        prog.add(R, Inverse(In + Qbm))
        prog.add(K_R, (PairSum(Qm, K, P, P) - mu.T * Qm * mu + mu.T * R * mu) / (lambda1 * n))
    prog.add(A, T * IP + K_R)
    F, Bexpr = _data_term(A, y)
    S = sp.Symbol("S")
    if zero_mean:
        prog.add(S, Trace(Qm) - log(Determinant(Qm)) + F / N)
    else:
        prog.add(S, -Trace(Qm * Qbm) + log(Determinant(In + Qbm)) + F / N)
    B = prog.add(MatrixSymbol("B", P, P), Bexpr)
    # Gradients by differentials through A: dS = dS0 + (1/N) Tr(B dK_R) (chain rule), with
    # K_R differentiated in Q (resp. Q̄) by rules D2, D3 and PairSum's linearity, then D5, D6.
    # LCN: differentiate with a full symmetric Q and restrict to diagonal directions at the end
    # (dQ = diag(dq) gives dS = Σ_i ∇_ii dq_i).
    Qf, Qbf = Q, Qbar                             # free symmetric variables
    to_var = {Qm: Qf, Qbm: Qbf} if diagonal and not zero_mean else ({Qm: Qf} if diagonal else {})
    back = {v: k for k, v in to_var.items()}
    KR_def = prog[str(K_R)].xreplace(to_var)
    dQ = MatrixSymbol("dQ", n, n)
    S0 = (Trace(Qf) - log(Determinant(Qf))) if zero_mean else \
        (-Trace(Qf * Qbm.xreplace(to_var)) + log(Determinant(In + Qbm.xreplace(to_var))))
    lin_Q = differential(S0, Qf, dQ) + Trace(B * differential(KR_def, Qf, dQ)) / N
    G = prog.add(MatrixSymbol("G", n, n), PairContract(K, B, n))
    gQ = gradient(lin_Q, dQ).xreplace({PairContract(K, B, n): G}).xreplace(back)
    if diagonal:
        prog.add(MatrixSymbol("dS_dq", n, 1), DiagonalOf(gQ))
    else:
        prog.add(MatrixSymbol("dS_dQ", n, n), gQ)
    if not zero_mean:
        dQb = MatrixSymbol("dQbar", n, n)
        Rdef = Inverse(In + Qbf)
        KRb = KR_def.xreplace({R: Rdef})
        lin_Qb = differential(S0, Qbf, dQb) + Trace(B * differential(KRb, Qbf, dQb)) / N
        gQb = gradient(lin_Qb, dQb).xreplace({Rdef: R}).xreplace(back)
        if diagonal:
            prog.add(MatrixSymbol("dS_dqbar", n, 1), DiagonalOf(gQb))
        else:
            prog.add(MatrixSymbol("dS_dQbar", n, n), gQb)
    return prog


class PackedSandwich(MatrixExpr):
    """H0[p, q] = ∂²/∂x_p∂x_q of −log det Q in the packed coordinates x_p = Q_ij (i ≤ j, the
    pairs order): Tr(W E_p W E_q) with W = Q⁻¹ and E_p = e_i e_jᵀ + e_j e_iᵀ (E_ii = e_i e_iᵀ),
    i.e. m_p m_q (W_ik W_jl + W_il W_jk)/2 with m_p = 2 − δ_ij, for p = (i, j), q = (k, l)."""

    def __new__(cls, W, npairs):
        return super().__new__(cls, W, sp.sympify(npairs))

    @property
    def shape(self):
        return (self.args[1], self.args[1])


class PairHessianTerms(sp.Expr):
    """(T1, T2) over the stored pairs, with K̃_p = K_ij + K_ijᵀ (i < j) or K_ii and A = LLᵀ:
    T1[p, q] = Tr(A⁻¹ K̃_p A⁻¹ K̃_q),  T2[p, q] = zᵀ K̃_p A⁻¹ K̃_q z  (kren.linalg)."""

    is_commutative = True

    def __new__(cls, tensor, A, z):
        return super().__new__(cls, tensor, A, z)


class HessTerm(MatrixExpr):
    """Entry ``k`` (0: T1, 1: T2) of a PairHessianTerms value."""

    def __new__(cls, terms, k, npairs):
        return super().__new__(cls, terms, sp.sympify(k), sp.sympify(npairs))

    @property
    def shape(self):
        return (self.args[2], self.args[2])


def hessian_zero_mean_program(diagonal: bool = False) -> Program:
    """Hessian of the zero-mean action in the packed coordinates x_p = Q_ij, i ≤ j (CNN) or
    x_i = q_i (LCN), from the second differential (rules D1–D4 applied twice):

        d²S = Tr(Q⁻¹ dQ₂ Q⁻¹ dQ₁) + (1/N)[−Tr(A⁻¹ dA₂ A⁻¹ dA₁) + 2 zᵀ dA₂ A⁻¹ dA₁ z],
        dA = PairSum(dQ, K)/(λ1 n).

    Each term is matched (D6) to one of the packed bilinear forms: PackedSandwich(Q⁻¹) for the
    first, T1 and T2 of PairHessianTerms for the others, giving
    H = PackedSandwich(Q⁻¹) + (−T1 + 2 T2)/(N (λ1 n)²).  The match is exhaustive: a term of
    another shape raises.
    """
    Q, _, _, y = _core_symbols()
    npairs = sp.Symbol("n_pairs", integer=True, positive=True)
    A = MatrixSymbol("A", P, P)
    z = MatrixSymbol("z", P, 1)
    dQ1, dQ2 = MatrixSymbol("dQ1", n, n), MatrixSymbol("dQ2", n, n)
    defs = {A: T * Identity(P) + PairSum(Q, K, P, P) / (lambda1 * n)}
    S = Trace(Q) - log(Determinant(Q)) + (log(Determinant(A)) + Trace(y.T * Inverse(A) * y)) / N
    d1 = differential(S, Q, dQ1, defs)
    d2 = differential(d1, Q, dQ2, defs)
    terms_sym = sp.Symbol("hess_terms")
    T1, T2 = HessTerm(terms_sym, 0, npairs), HessTerm(terms_sym, 1, npairs)
    Ainv, Qinv = Inverse(A), Inverse(Q)
    ps1, ps2 = PairSum(dQ1, K, P, P), PairSum(dQ2, K, P, P)

    def rotations(mats):
        return [mats[k:] + mats[:k] for k in range(len(mats))]

    H = []
    for coef, mats in _trace_terms(d2):
        if any(r == [Qinv, dQ2, Qinv, dQ1] or r == [Qinv, dQ1, Qinv, dQ2] for r in rotations(mats)):
            H.append(coef * PackedSandwich(Qinv, npairs))
        elif any(r in ([Ainv, ps2, Ainv, ps1], [Ainv, ps1, Ainv, ps2]) for r in rotations(mats)):
            H.append(coef * T1)
        elif mats in ([y.T, Ainv, ps1, Ainv, ps2, Ainv, y], [y.T, Ainv, ps2, Ainv, ps1, Ainv, y]):
            H.append(coef * T2)       # zᵀ K̃_p A⁻¹ K̃_q z, symmetric in (p, q)
        else:
            raise NotImplementedError(f"unmatched second-differential term {coef} {mats}")
    prog = Program(inputs={"Q": Q, "y": y, "z": z})
    Hexpr = MatAdd(*H).doit()
    prog.add(terms_sym, PairHessianTerms(K, A, z))
    prog.add(MatrixSymbol("hessian", npairs, npairs), Hexpr)
    return prog


class SaddleHessianTerms(sp.Expr):
    """(T1, T2) over the 2·n_pairs directions of the general action, D_p = K̂_p (centered pair
    blocks K̃_p − μᵀE_pμ, p < n_pairs) and D_{n_pairs+q} = −V E_q Vᵀ (V = μᵀR, q over the same
    pairs), with A = LLᵀ: T1[a, b] = Tr(A⁻¹ D_a A⁻¹ D_b), T2[a, b] = zᵀ D_a A⁻¹ D_b z
    (kren.linalg.pair_hessian_terms with mu and V)."""

    is_commutative = True

    def __new__(cls, tensor, mu, V, A, z):
        return super().__new__(cls, tensor, mu, V, A, z)


class PackedSandwich2(MatrixExpr):
    """Tr(X E_p Y E_q) over the packed basis E_p of the pairs (kren.checks.packed_sandwich2);
    PackedSandwich(W) is the case X = Y = W."""

    def __new__(cls, X, Y, npairs):
        return super().__new__(cls, X, Y, sp.sympify(npairs))

    @property
    def shape(self):
        return (self.args[2], self.args[2])


class PackedBlocks(MatrixExpr):
    """The symmetric block matrix [[0, B_QQ̄], [B_QQ̄ᵀ, B_Q̄Q̄]] over packed (Q, Q̄)
    (kren.checks.packed_blocks)."""

    def __new__(cls, QQb, QbQb):
        return super().__new__(cls, QQb, QbQb)

    @property
    def shape(self):
        k = self.args[0].shape[0]
        return (2 * k, 2 * k)


def _canonical_terms(expr, symmetric):
    """{canonical product: coefficient} of a sum of c·Tr(X1 ⋯ Xk) terms: a trace is invariant
    under rotation and under transposition (reversal with every factor transposed; ``symmetric``
    factors are their own transposes), so each product is keyed by the least of those forms."""
    def tr(m):
        if m in symmetric or is_symmetric(m) or (isinstance(m, PairSum) and m.W in symmetric):
            return m
        if isinstance(m, Transpose):
            return m.arg
        if isinstance(m, Inverse):
            return Inverse(tr(m.arg))
        return Transpose(m)

    out = {}
    for coef, mats in _trace_terms(expr):
        mats = list(mats)
        rev = [tr(m) for m in reversed(mats)]
        forms = [tuple(str(m) for m in f[k:] + f[:k]) for f in (mats, rev) for k in range(len(f))]
        key = min(forms)
        out[key] = sp.simplify(out.get(key, 0) + coef)
    return {k: v for k, v in out.items() if v != 0}


def hessian_program(diagonal: bool = False) -> Program:
    """Hessian of the general action S(Q, Q̄) (units with a mean) in the packed coordinates
    x = (Q_ij for the pairs, then Q̄_ij for the pairs) (LCN, ``diagonal``: (q, q̄)).

    Derivation. The differential engine gives dA and d²A from the definition of A, and d²S
    from S itself (rules D1–D4 applied twice along (dQ1, dQ̄1), (dQ2, dQ̄2)); it is checked,
    term by term after canonicalizing traces, to equal the chain-rule form
        d²S = −Tr(dQ1 dQ̄2) − Tr(dQ2 dQ̄1) − Tr(R dQ̄2 R dQ̄1)
              + (1/N)[−Tr(A⁻¹dA2 A⁻¹dA1) + 2 yᵀA⁻¹dA2 A⁻¹dA1 A⁻¹y + Tr(B d²A)],
        dA  = c[PairSum(dQ, K) − μᵀdQμ − μᵀR dQ̄ Rμ],  d²A = c V(dQ̄2 R dQ̄1 + dQ̄1 R dQ̄2)Vᵀ,
    c = 1/(λ1 n), V = μᵀR, B = A⁻¹ − zzᵀ. In the packed basis (E_p, dA_a = c D_a with the
    directions of SaddleHessianTerms) this is
        H = c²/N (−T1 + 2 T2) + [[0, −Tr(E_p E_q)], [−Tr(E_p E_q), −Tr(R E_p R E_q)
              + (c/N)(Tr(N_B E_p R E_q) + Tr(R E_p N_B E_q))]],   N_B = Vᵀ B V.
    """
    _check_general_second_differential()
    Q, Qbar, mu, y = _core_symbols()
    In = Identity(n)
    A = MatrixSymbol("A", P, P)
    z = MatrixSymbol("z", P, 1)
    c = 1 / (lambda1 * n)
    Ai = Inverse(A)
    npairs = sp.Symbol("n_pairs", integer=True, positive=True)
    prog = Program()
    if diagonal:
        q, qbar = MatrixSymbol("q", n, 1), MatrixSymbol("qbar", n, 1)
        prog.inputs = {"q": q, "qbar": qbar, "mu": mu, "y": y, "z": z}
        Qbm = prog.add(MatrixSymbol("Qbard", n, n), DiagMatrix(qbar))
    else:
        prog.inputs = {"Q": Q, "Qbar": Qbar, "mu": mu, "y": y, "z": z}
        Qbm = Qbar
    R = prog.add(MatrixSymbol("R", n, n), Inverse(In + Qbm))
    Vs = prog.add(MatrixSymbol("V", P, n), mu.T * R)
    zeta = Vs.T * z
    NB = prog.add(MatrixSymbol("N_B", n, n), Vs.T * Ai * Vs - zeta * zeta.T)
    terms = prog.add(sp.Symbol("hess_terms"), SaddleHessianTerms(K, mu, Vs, A, z))
    ndirs = sp.Symbol("n_dirs", integer=True, positive=True)        # 2 n_pairs directions
    T1, T2 = HessTerm(terms, 0, ndirs), HessTerm(terms, 1, ndirs)
    E = PackedSandwich2(In, In, npairs)
    QbQb = -PackedSandwich2(R, R, npairs) + (c / N) * (PackedSandwich2(NB, R, npairs)
                                                      + PackedSandwich2(R, NB, npairs))
    prog.add(MatrixSymbol("hessian", ndirs, ndirs),
             (c ** 2 / N) * (-T1 + 2 * T2) + PackedBlocks(-E, QbQb))
    return prog


@functools.lru_cache(maxsize=None)
def _check_general_second_differential():
    """The derivation step of :func:`hessian_program`: the engine's d²S equals its chain-rule
    form (canonical trace terms), and dA along dQ̄ is −c V dQ̄ Vᵀ."""
    Q, Qbar, mu, y = _core_symbols()
    In, IP = Identity(n), Identity(P)
    A = MatrixSymbol("A", P, P)
    c = 1 / (lambda1 * n)
    Rdef = Inverse(In + Qbar)
    Adef = T * IP + c * (PairSum(Q, K, P, P) - mu.T * Q * mu + mu.T * Rdef * mu)
    S = -Trace(Q * Qbar) + log(Determinant(In + Qbar)) \
        + (log(Determinant(A)) + Trace(y.T * Inverse(A) * y)) / N
    d1Q, d2Q, d1B, d2B = (MatrixSymbol(s, n, n) for s in ("dQ1", "dQ2", "dQb1", "dQb2"))
    defs = {A: Adef}
    d1 = differential(S, Q, d1Q, defs) + differential(S, Qbar, d1B, defs)
    d2 = differential(d1, Q, d2Q, defs) + differential(d1, Qbar, d2B, defs)
    # the chain-rule form, with dA and d²A themselves from the engine
    dA1 = differential(Adef, Q, d1Q) + differential(Adef, Qbar, d1B)
    dA2 = differential(Adef, Q, d2Q) + differential(Adef, Qbar, d2B)
    d2A = differential(dA1, Qbar, d2B)
    Ai = Inverse(A)
    claim = (-Trace(d1Q * d2B) - Trace(d2Q * d1B) - Trace(Rdef * d2B * Rdef * d1B)
             + (-Trace(Ai * dA2 * Ai * dA1) + 2 * Trace(y.T * Ai * dA2 * Ai * dA1 * Ai * y)
                + Trace(Ai * d2A) - Trace(y.T * Ai * d2A * Ai * y)) / N)
    sym = {d1Q, d2Q, d1B, d2B}
    got, want = _canonical_terms(sp.expand(d2), sym), _canonical_terms(sp.expand(claim), sym)
    _require(got.keys() == want.keys() and all(sp.simplify(got[k] - want[k]) == 0 for k in got),
             "second differential of S differs from its chain-rule form")
    # dA along each kind of direction, as used by SaddleHessianTerms
    V = mu.T * Rdef
    _require((differential(Adef, Qbar, d1B) + c * V * d1B * transpose(V)).expand().doit()
             == sp.ZeroMatrix(P, P), "dA along dQ̄ is −c V dQ̄ Vᵀ")
    return True


def lcn_program(zero_mean: bool) -> Program:
    """The LCN action: the CNN action restricted to diagonal Q = diag(q), Q̄ = diag(q̄)."""
    return cnn_program(zero_mean, diagonal=True)


def fc_program(zero_mean: bool) -> Program:
    """The FC action (n = 1): scalar Q, Q̄; K the P×P kernel, m0 the P-vector of unit means.

    K_R = (Q (K − m0 m0ᵀ) + r m0 m0ᵀ)/λ1, r = 1/(1 + Q̄);
    S = −Q Q̄ + log(1 + Q̄) + (1/N)[log det A + yᵀA⁻¹y]   (zero mean: Q − log Q + ...).
    """
    Qs, Qbs = sp.symbols("Q Qbar", real=True)
    Kf = MatrixSymbol("K", P, P)
    m0 = MatrixSymbol("m0", P, 1)
    y = MatrixSymbol("y", P, 1)
    prog = Program(inputs={"Q": Qs, "Qbar": Qbs, "K": Kf, "m0": m0, "y": y})
    A = MatrixSymbol("A", P, P)
    K_R = MatrixSymbol("K_R", P, P)
    r = sp.Symbol("r", positive=True)
    if zero_mean:
        prog.add(K_R, Qs * Kf / lambda1)
    else:
        prog.add(r, 1 / (1 + Qbs))
        prog.add(K_R, (Qs * (Kf - m0 * m0.T) + r * m0 * m0.T) / lambda1)
    prog.add(A, T * Identity(P) + K_R)
    F, Bexpr = _data_term(A, y)
    S = sp.Symbol("S")
    S0 = (Qs - log(Qs)) if zero_mean else (-Qs * Qbs + log(1 + Qbs))
    prog.add(S, S0 + F / N)
    B = prog.add(MatrixSymbol("B", P, P), Bexpr)
    dQ = sp.Symbol("dQ")
    KR_def = prog[str(K_R)]
    defs = {} if zero_mean else {r: 1 / (1 + Qbs)}
    back = {1 + Qbs: 1 / r}                      # write (1 + Q̄)^k as r^(-k)
    # dS = dS0 + (1/N) Tr(B dK_R); for the scalar Q, Tr(B K) = ⟨K, B⟩ (B symmetric).
    lin = sp.diff(S0, Qs) * dQ + Trace(B * differential(KR_def, Qs, dQ, defs)) / N
    prog.add(sp.Symbol("dS_dQ"), _scalar_grad(lin.xreplace(back), dQ, Kf, B))
    if not zero_mean:
        dQb = sp.Symbol("dQbar")
        lin = sp.diff(S0, Qbs) * dQb + Trace(B * differential(KR_def, Qbs, dQb, defs)) / N
        prog.add(sp.Symbol("dS_dQbar"), _scalar_grad(lin.xreplace(back), dQb, Kf, B))
    return prog


def _scalar_grad(lin, dv, Kf, B):
    """Coefficient of the scalar dv in a linear form c·dv·Tr(X): Tr(B K) is written ⟨K, B⟩
    (B symmetric) and every other product is rotated (D6) into a 1×1 form such as m0ᵀ B m0."""
    out = sp.S.Zero
    for term in sp.Add.make_args(sp.expand(lin)):
        coef, tr = sp.S.One, None
        for f in sp.Mul.make_args(term):
            if isinstance(f, Trace):
                tr = f
            else:
                coef *= f
        if tr is None:
            out += sp.diff(coef, dv)
            continue
        for t in MatAdd.make_args(sp.expand(tr.arg)):
            c, mats = (t.as_coeff_matrices() if isinstance(t, MatMul) else (sp.S.One, [t]))
            mats = list(mats)
            if sorted(mats, key=str) == sorted([B, Kf], key=str):
                val = Inner(Kf, B)
            else:
                rows = [i for i, m in enumerate(mats) if m.shape[0] == 1]
                k = rows[0] if rows else 0
                val = Trace(MatMul(*(mats[k:] + mats[:k])))
            out += sp.diff(coef * c, dv) * val
    return out


def predictor_program() -> Program:
    """THEORY §4: mean = k_R A⁻¹ y = k_R z, var = K_R(x0, x0) − diag(k_R A⁻¹ k_Rᵀ),
    train error (1/P)[T² yᵀA⁻²y + T Tr(K_R A⁻¹)]."""
    kR = MatrixSymbol("kR", P0, P)
    kR00 = MatrixSymbol("kR00", P0, 1)
    A = MatrixSymbol("A", P, P)
    z = MatrixSymbol("z", P, 1)
    y = MatrixSymbol("y", P, 1)
    K_R = MatrixSymbol("K_R", P, P)
    prog = Program(inputs={"kR": kR, "kR00": kR00, "A": A, "z": z, "y": y, "K_R": K_R})
    prog.add(MatrixSymbol("mean", P0, 1), kR * z)
    prog.add(MatrixSymbol("var", P0, 1), kR00 - DiagonalOf(kR * Inverse(A) * kR.T))
    prog.add(sp.Symbol("train_error"),
             (T**2 * Trace(y.T * Inverse(A) * Inverse(A) * y) + T * Trace(K_R * Inverse(A))) / P)
    return prog


def cross_program(diagonal: bool, zero_mean: bool, scalar: bool = False) -> Program:
    """K_R between two sets (THEORY §4): (1/(λ1 n))[Σ_ij Q_ij Kx_ij − μ1ᵀ Q μ2 + μ1ᵀ R μ2], and
    the test diagonal K_R(x0, x0) = (1/(λ1 n))[Σ_ij Q_ij Kd_ij − diag(μ0ᵀQμ0) + diag(μ0ᵀRμ0)].

    ``diagonal`` (LCN, Q = diag(q)): only the blocks K_ii enter, Σ_ij Q_ij Kx_ij = Σ_i q_i Kx_i
    (DiagSum over the diagonal tensors of shape (n, P1, P2) and (n, P0))."""
    prog = Program()
    if scalar:
        Qm, Qbm = sp.symbols("Q Qbar", real=True)
        size = sp.S.One
    elif diagonal:
        q, qbar = MatrixSymbol("q", n, 1), MatrixSymbol("qbar", n, 1)
        Qm = prog.add(MatrixSymbol("Qd", n, n), DiagMatrix(q))
        Qbm = prog.add(MatrixSymbol("Qbard", n, n), DiagMatrix(qbar)) if not zero_mean else None
        size = n
    else:
        Qm, Qbm = MatrixSymbol("Q", n, n), MatrixSymbol("Qbar", n, n)
        size = n
    mu1, mu2, mu0 = (MatrixSymbol("mu1", size, P1), MatrixSymbol("mu2", size, P2),
                     MatrixSymbol("mu0", size, P0))
    if diagonal:
        sum_x, sum_d = DiagSum(q, Kx, P1, P2), DiagSum(q, Kd, P0, 1)
    else:
        sum_x, sum_d = FullSum(Qm, Kx, P1, P2), FullSum(Qm, Kd, P0, 1)
    if zero_mean:
        prog.add(MatrixSymbol("kR", P1, P2), sum_x / (lambda1 * size))
        prog.add(MatrixSymbol("kR00", P0, 1), sum_d / (lambda1 * size))
        return prog
    R = MatrixSymbol("R", size, size) if not scalar else sp.Symbol("r", positive=True)
    prog.add(R, Inverse(Identity(size) + Qbm) if not scalar else 1 / (1 + Qbm))
    prog.add(MatrixSymbol("kR", P1, P2),
             (sum_x + mu1.T * (R - Qm) * mu2) / (lambda1 * size)
             if not scalar else (FullSum(Qm, Kx, P1, P2) + (R - Qm) * mu1.T * mu2) / lambda1)
    prog.add(MatrixSymbol("kR00", P0, 1),
             (sum_d + DiagonalOf(mu0.T * (R - Qm) * mu0)) / (lambda1 * size)
             if not scalar else (FullSum(Qm, Kd, P0, 1) + (R - Qm) * DiagonalOf(mu0.T * mu0))
             / lambda1)
    return prog


# ----------------------------------------------------------------------------------------------
# FC eigenbasis forms
# ----------------------------------------------------------------------------------------------

def fc_eigen_zero_mean():
    """S(Q) = Q − log Q + (1/N) Σ_k [log D_k + ỹ_k²/D_k],  D_k = T + Q k_k/λ1.

    Returns (S, dS/dQ, d²S/dQ²) with Q, and the per-mode symbols k, yt, by SymPy's diff.
    """
    Qs = sp.Symbol("Q", positive=True)
    k, yt = sp.symbols("k yt", real=True)
    D = T + Qs * k / lambda1
    S = Qs - log(Qs) + ModeSum(log(D) + yt**2 / D) / N
    return S, sp.diff(S, Qs), sp.diff(S, Qs, 2), {"Q": Qs, "k": k, "yt": yt}


def fc_eigen_relu():
    """Relu FC in the eigenbasis of the centered kernel K − μμᵀ = U diag(k) Uᵀ (m = Uᵀμ,
    ỹ = Uᵀy, r = 1/(1+Q̄), D_k = T + Q k_k/λ1, s0 = Σ ỹ²/D, s1 = Σ m²/D, s2 = Σ ỹ m/D):

        S = −Q Q̄ + log(1+Q̄) + (1/N)[Σ log D + log(1 + r s1/λ1) + s0 − (r/λ1) s2²/(1 + r s1/λ1)]

    (matrix determinant lemma and Sherman–Morrison for A = U[diag(D) + (r/λ1) m mᵀ]Uᵀ).
    Returns (S, gradient (2,), Hessian (2×2)) in (Q, Q̄), by SymPy's diff, and the symbols.
    """
    Qs, Qbs = sp.symbols("Q Qbar", real=True)
    k, yt, m = sp.symbols("k yt m", real=True)
    D = T + Qs * k / lambda1
    r = 1 / (1 + Qbs)
    s0, s1, s2 = ModeSum(yt**2 / D), ModeSum(m**2 / D), ModeSum(yt * m / D)
    den = 1 + r * s1 / lambda1
    S = -Qs * Qbs + log(1 + Qbs) + (ModeSum(log(D)) + log(den) + s0
                                    - (r / lambda1) * s2**2 / den) / N
    v = (Qs, Qbs)
    grad = [sp.diff(S, a) for a in v]
    hess = [[sp.diff(S, a, b) for b in v] for a in v]
    return S, grad, hess, {"Q": Qs, "Qbar": Qbs, "k": k, "yt": yt, "m": m}


def fc_eigen_predictor(zero_mean: bool):
    """The FC predictor (THEORY §4) in the eigenbasis of the (centered) training kernel, O(P)
    per test input once the projections Ct = K(x0, X) U are known (U from the fit's solve).

    With K − μμᵀ = U diag(k) Uᵀ (zero mean: K = U diag(k) Uᵀ, μ = 0), ỹ = Uᵀy, m = Uᵀμ,
    a = Q/λ1, β = r/λ1, r = 1/(1 + Q̄), D_k = T + a k_k, the training matrix is
    A = T𝟙 + K_R = U [diag(D) + β m mᵀ] Uᵀ, so (Sherman–Morrison, s1 = Σ m²/D, s2 = Σ m ỹ/D,
    γ = β/(1 + β s1)) A⁻¹ = U [D⁻¹ − γ D⁻¹ m mᵀ D⁻¹] Uᵀ and z̃ = Uᵀ A⁻¹ y = ỹ/D − γ s2 m/D.
    A test input x0 has Uᵀ k_R(x0) = g with g_k = a (Ct_k − μ0 m_k) + β μ0 m_k (THEORY §4:
    k_R = (Q (K − μ0 μᵀ) + r μ0 μᵀ)/λ1) and K_R(x0, x0) = a (Kd − μ0²) + β μ0², so

        mean = Σ_k g_k z̃_k,   var = K_R(x0, x0) − [Σ_k g_k²/D_k − γ (Σ_k g_k m_k/D_k)²],
        train error = (1/P)[T² Σ_k z̃_k² + T Tr(K_R A⁻¹)],
        Tr(K_R A⁻¹) = Σ a k/D − γ Σ a k m²/D² + γ s1.

    Zero mean: μ = m = μ0 = 0 (γ drops out). Returns (mean, var, train_error, symbols); the
    per-test-input symbols are Kd (= K(x0, x0)) and mu0, the per-(input, mode) symbol Ct. The
    sums with Ct are :class:`RowModeSum` (expanded so that per-input factors stand outside).
    """
    Qs, Qbs = sp.symbols("Q Qbar", real=True)
    k, yt, m, Ct = sp.symbols("k yt m Ct", real=True)
    Kd, mu0 = sp.symbols("Kd mu0", real=True)
    a = Qs / lambda1
    D = T + a * k
    syms = {"Q": Qs, "k": k, "yt": yt, "Ct": Ct, "Kd": Kd}
    if zero_mean:
        mean = a * RowModeSum(Ct * yt / D)
        var = a * Kd - a**2 * RowModeSum(Ct**2 / D)
        train = (T**2 * ModeSum(yt**2 / D**2) + T * ModeSum(a * k / D)) / P
        return mean, var, train, syms
    syms.update(Qbar=Qbs, m=m, mu0=mu0)
    beta = 1 / (lambda1 * (1 + Qbs))
    s1, s2 = ModeSum(m**2 / D), ModeSum(m * yt / D)
    gamma = beta / (1 + beta * s1)
    # g_k = a Ct_k + c μ0 m_k with c = β − a; z̃_k = ỹ_k/D_k − γ s2 m_k/D_k
    c = beta - a
    mean = (a * (RowModeSum(Ct * yt / D) - gamma * s2 * RowModeSum(Ct * m / D))
            + c * mu0 * (s2 - gamma * s2 * s1))
    gDg = a**2 * RowModeSum(Ct**2 / D) + 2 * a * c * mu0 * RowModeSum(Ct * m / D) \
        + c**2 * mu0**2 * s1
    gDm = a * RowModeSum(Ct * m / D) + c * mu0 * s1
    var = a * (Kd - mu0**2) + beta * mu0**2 - (gDg - gamma * gDm**2)
    zz = ModeSum(yt**2 / D**2) - 2 * gamma * s2 * ModeSum(m * yt / D**2) \
        + gamma**2 * s2**2 * ModeSum(m**2 / D**2)
    trace = ModeSum(a * k / D) - gamma * ModeSum(a * k * m**2 / D**2) + gamma * s1
    train = (T**2 * zz + T * trace) / P
    return mean, var, train, syms


# ----------------------------------------------------------------------------------------------
# Zero-mean elimination of Q̄
# ----------------------------------------------------------------------------------------------

def eliminate_Qbar(size: int = 2):
    """Solve ∂S/∂Q̄ = 0 at μ = 0 with SymPy on explicit symmetric size×size matrices.

    At μ = 0, S depends on Q̄ only through S0 = −Tr(QQ̄) + log det(𝟙+Q̄); its stationarity
    −Q + (𝟙+Q̄)⁻¹ = 0 is multiplied by (𝟙+Q̄) into the linear system Q(𝟙+Q̄) = 𝟙, which SymPy
    solves for the entries of Q̄. Returns (Q̄*, S0(Q, Q̄*)) and asserts Q̄* = Q⁻¹ − 𝟙 and
    S0 = Tr Q − log det Q − size (the constant −size is dropped in the action).
    """
    Qm = _sym_matrix("Q", size)
    Qbm = _sym_matrix("Qbar", size)
    unknowns = sorted(Qbm.free_symbols, key=str)
    eqs = list(Qm * (sp.eye(size) + Qbm) - sp.eye(size))
    sol = sp.solve(eqs, unknowns, dict=True)
    if len(sol) != 1:
        raise AssertionError(f"expected one solution, got {sol}")
    Qb_star = Qbm.xreplace(sol[0])
    assert sp.simplify(Qb_star - (Qm.inv() - sp.eye(size))) == sp.zeros(size, size)
    S0 = -(Qm * Qb_star).trace() + log((sp.eye(size) + Qb_star).det())
    # log det(𝟙 + Q̄*) = −log det Q  ⇔  det(𝟙 + Q̄*) det Q = 1
    assert sp.simplify((sp.eye(size) + Qb_star).det() * Qm.det() - 1) == 0
    assert sp.simplify(-(Qm * Qb_star).trace() - (Qm.trace() - size)) == 0
    return Qb_star, S0


# ----------------------------------------------------------------------------------------------
# Fixed-point maps of the saddle-point equations, and the zero-mean elimination of Q̄
# ----------------------------------------------------------------------------------------------

def _require(ok: bool, what: str):
    if not ok:
        raise AssertionError(f"derivation step failed: {what}")


def _zero_mean_identity(grad, Qinv):
    """F = ∇S + Q⁻¹ simplified; asserts that F no longer contains Q⁻¹ (it depends on Q only
    through A, i.e. through G or ⟨K, B⟩), which makes ∇S = 0 ⇔ Q = F⁻¹."""
    F = (grad + Qinv).doit() if isinstance(grad, MatrixExpr) else sp.expand(grad + Qinv)
    _require(not F.has(Qinv), f"∇S + Q⁻¹ = {F} still contains Q⁻¹")
    return F


def _mean_identities(gQ, gQb, Q, Qbar, R):
    """For the general action: Q̄ + ∇_Q S free of Q̄; with X standing for 𝟙 + Q̄ (R = X⁻¹),
    H = X − X(Q + ∇_Q̄ S)X free of Q and X; and Q + ∇_Q̄ S = R − R H R. Returns (Q̄*, H)."""
    Qb_star = (Qbar + gQ).doit()
    _require(not Qb_star.has(Qbar), f"Q̄ + ∇_Q S = {Qb_star} still contains Q̄")
    X = MatrixSymbol("Xbar", *Q.shape)
    gb = gQb.xreplace({R: Inverse(X)})
    H = (X - X * (Q + gb) * X).expand().doit()
    _require(not H.has(Q) and not H.has(X), f"H = X − X(Q + ∇_Q̄ S)X = {H} is not Q̄, Q free")
    rest = ((gb + Q) - (Inverse(X) - Inverse(X) * H * Inverse(X))).expand().doit()
    _require(rest == sp.ZeroMatrix(*Q.shape) or rest == 0, f"Q + ∇_Q̄ S − (R − RHR) = {rest}")
    return Qb_star, H


def fixed_point_program(zero_mean: bool, diagonal: bool = False, scalar: bool = False) -> Program:
    """The saddle-point equations of THEORY §3 as a fixed-point map, from the gradients of
    :func:`cnn_program` (``diagonal``: :func:`lcn_program`; ``scalar``: :func:`fc_program`).

    Inputs are the order parameters and the gradient at them (from action_gradient*), so the map
    costs no pass over the kernels.

    Zero mean: F = ∇_Q S + Q⁻¹ is checked to equal 𝟙 + G/(N λ1 n) (no Q⁻¹ left), hence
    ∇_Q S = 0 ⇔ Q = F⁻¹, and the map is Q_new = (∇_Q S + Q⁻¹)⁻¹ (LCN: q_new = 1/(∂S/∂q + 1/q);
    FC: Q_new = 1/(dS/dQ + 1/Q)).

    Non-zero mean: Q̄ + ∇_Q S = (G − μBμᵀ)/(N λ1 n) (checked free of Q̄) and, with X = 𝟙 + Q̄,
    H = X − X(Q + ∇_Q̄ S)X = μBμᵀ/(N λ1 n) (checked free of Q, Q̄) with Q + ∇_Q̄ S = R − RHR
    (checked), so ∇S = 0 ⇔ (Q̄ = Q̄ + ∇_Q S and Q = R − RHR). The map:
    Qbar_new = Q̄ + ∇_Q S,  H = X − X(Q + ∇_Q̄ S)X,  R_new = (𝟙 + Qbar_new)⁻¹,
    Q_new = R_new − R_new H R_new.
    ``derived`` holds F (zero mean) or Qbar_star and H, as found from the gradients.
    """
    if scalar:
        return _fixed_point_scalar(zero_mean)
    Q, Qbar, _, _ = _core_symbols()
    R = MatrixSymbol("R", n, n)
    prog = Program()
    In = Identity(n)
    src = cnn_program(zero_mean, diagonal=diagonal)
    if diagonal:
        q, qbar = MatrixSymbol("q", n, 1), MatrixSymbol("qbar", n, 1)
        gq, gqb = MatrixSymbol("dS_dq", n, 1), MatrixSymbol("dS_dqbar", n, 1)
        Qd = MatrixSymbol("Qd", n, n)
        Qbd = MatrixSymbol("Qbard", n, n)
        inner = lambda name: src[name].arg  # noqa: E731  (the gradients are DiagonalOf(...))
        prog.add(Qd, DiagMatrix(q))
        if zero_mean:
            prog.inputs = {"q": q, "dS_dq": gq}
            prog.derived["F"] = _zero_mean_identity(inner("dS_dq"), Inverse(Qd))
            F = prog.add(MatrixSymbol("F", n, n), DiagMatrix(gq) + Inverse(Qd))
            prog.add(MatrixSymbol("q_new", n, 1), DiagonalOf(Inverse(F)))
            return prog
        prog.inputs = {"q": q, "qbar": qbar, "dS_dq": gq, "dS_dqbar": gqb}
        Qb_star, H = _mean_identities(inner("dS_dq"), inner("dS_dqbar"), Qd, Qbd, R)
        prog.derived.update(Qbar_star=Qb_star, H=H)
        prog.add(Qbd, DiagMatrix(qbar))
        X = In + Qbd
        Hs = prog.add(MatrixSymbol("H", n, n), X - X * (Qd + DiagMatrix(gqb)) * X)
        qbn = prog.add(MatrixSymbol("qbar_new", n, 1), qbar + gq)
        Rn = prog.add(MatrixSymbol("R_new", n, n), Inverse(In + DiagMatrix(qbn)))
        prog.add(MatrixSymbol("q_new", n, 1), DiagonalOf(Rn - Rn * Hs * Rn))
        return prog
    gQ, gQb = MatrixSymbol("dS_dQ", n, n), MatrixSymbol("dS_dQbar", n, n)
    if zero_mean:
        prog.inputs = {"Q": Q, "dS_dQ": gQ}
        prog.derived["F"] = _zero_mean_identity(src["dS_dQ"], Inverse(Q))
        F = prog.add(MatrixSymbol("F", n, n), gQ + Inverse(Q))
        prog.add(MatrixSymbol("Q_new", n, n), Inverse(F))
        return prog
    prog.inputs = {"Q": Q, "Qbar": Qbar, "dS_dQ": gQ, "dS_dQbar": gQb}
    Qb_star, H = _mean_identities(src["dS_dQ"], src["dS_dQbar"], Q, Qbar, R)
    prog.derived.update(Qbar_star=Qb_star, H=H)
    X = In + Qbar
    Hs = prog.add(MatrixSymbol("H", n, n), X - X * (Q + gQb) * X)
    Qbn = prog.add(MatrixSymbol("Qbar_new", n, n), Qbar + gQ)
    Rn = prog.add(MatrixSymbol("R_new", n, n), Inverse(In + Qbn))
    prog.add(MatrixSymbol("Q_new", n, n), Rn - Rn * Hs * Rn)
    return prog


def _fixed_point_scalar(zero_mean: bool) -> Program:
    """FC (n = 1) fixed-point maps from :func:`fc_program`'s scalar gradients."""
    src = fc_program(zero_mean)
    Qs, Qbs = src.inputs["Q"], src.inputs["Qbar"]
    g, gb = sp.Symbol("dS_dQ", real=True), sp.Symbol("dS_dQbar", real=True)
    prog = Program()
    if zero_mean:
        prog.inputs = {"Q": Qs, "dS_dQ": g}
        prog.derived["F"] = _zero_mean_identity(src["dS_dQ"], 1 / Qs)
        F = prog.add(sp.Symbol("F"), g + 1 / Qs)
        prog.add(sp.Symbol("Q_new"), 1 / F)
        return prog
    prog.inputs = {"Q": Qs, "Qbar": Qbs, "dS_dQ": g, "dS_dQbar": gb}
    r = sp.Symbol("r", positive=True)
    Qb_star = sp.expand(Qbs + src["dS_dQ"])
    _require(not Qb_star.has(Qbs), f"Q̄ + dS/dQ = {Qb_star} still contains Q̄")
    gbe = src["dS_dQbar"].xreplace({r: 1 / (1 + Qbs)})
    H = sp.simplify((1 + Qbs) - (1 + Qbs) ** 2 * (Qs + gbe))
    _require(not H.has(Qs) and not H.has(Qbs), f"H = {H} is not Q, Q̄ free")
    _require(sp.simplify(gbe + Qs - (1 / (1 + Qbs) - H / (1 + Qbs) ** 2)) == 0,
             "Q + dS/dQ̄ = r − r² H")
    prog.derived.update(Qbar_star=Qb_star, H=H)
    Hs = prog.add(sp.Symbol("H"), (1 + Qbs) - (1 + Qbs) ** 2 * (Qs + gb))
    Qbn = prog.add(sp.Symbol("Qbar_new"), Qbs + g)
    rn = prog.add(sp.Symbol("r_new"), 1 / (1 + Qbn))
    prog.add(sp.Symbol("Q_new"), rn - rn ** 2 * Hs)
    return prog


def eliminated_Qbar_program(diagonal: bool = False, scalar: bool = False) -> Program:
    """Q̄ of zero-mean units (THEORY §3): ∇_Q̄ S of :func:`cnn_program` at μ = 0 is checked to be
    −Q + (𝟙 + Q̄)⁻¹; :func:`eliminate_Qbar` solves ∇_Q̄ S = 0 with SymPy for the entries of
    explicit 1×1 and 2×2 matrices and finds Q̄* = Q⁻¹ − 𝟙, the definition printed here
    (LCN: q̄ = 1/q − 1 elementwise; FC: Q̄ = 1/Q − 1).
    """
    Q, Qbar, mu, _ = _core_symbols()
    gb = cnn_program(False)["dS_dQbar"].xreplace({mu: sp.ZeroMatrix(n, P)}).doit()
    R = MatrixSymbol("R", n, n)
    _require(gb == (-Q + R).doit(), f"∇_Q̄ S at μ = 0 is {gb}, not −Q + (𝟙 + Q̄)⁻¹")
    for size in (1, 2):
        _eliminate_Qbar_cached(size)          # raises unless SymPy's solution is Q⁻¹ − 𝟙
    prog = Program()
    if scalar:
        Qs = sp.Symbol("Q", real=True)
        prog.inputs = {"Q": Qs}
        prog.add(sp.Symbol("Qbar"), 1 / Qs - 1)
    elif diagonal:
        q = MatrixSymbol("q", n, 1)
        prog.inputs = {"q": q}
        Qd = prog.add(MatrixSymbol("Qd", n, n), DiagMatrix(q))
        prog.add(MatrixSymbol("qbar", n, 1), DiagonalOf(Inverse(Qd) - Identity(n)))
    else:
        prog.inputs = {"Q": Q}
        prog.add(Qbar, Inverse(Q) - Identity(n))
    return prog


@functools.lru_cache(maxsize=None)
def _eliminate_Qbar_cached(size):
    return eliminate_Qbar(size)


def _sym_matrix(name, size):
    return sp.Matrix(size, size, lambda i, j: sp.Symbol(f"{name}_{min(i, j)}{max(i, j)}",
                                                        real=True))


# ----------------------------------------------------------------------------------------------
# Explicit evaluation (small sizes) and verification
# ----------------------------------------------------------------------------------------------

def explicit(expr, env):
    """Evaluate a matrix-level expression on explicit SymPy matrices.

    ``env`` maps symbol names to sympy Matrices (or scalars), and the tensor names ``K``/``Kx``/
    ``Kd`` to dicts {(i, j): block} holding every block K_ij (both orders).
    """
    ev = lambda e: explicit(e, env)  # noqa: E731
    if isinstance(expr, (MatrixSymbol, sp.Symbol)) and str(expr) in env:
        return env[str(expr)]
    if isinstance(expr, sp.Symbol) or expr.is_Number:
        return expr
    size = lambda d: int(sp.sympify(d).xreplace({s: env[str(s)]  # noqa: E731
                                                   for s in sp.sympify(d).free_symbols
                                                   if str(s) in env}))
    if isinstance(expr, Identity):
        return sp.eye(size(expr.shape[0]))
    if isinstance(expr, sp.ZeroMatrix):
        return sp.zeros(size(expr.shape[0]), size(expr.shape[1]))
    if isinstance(expr, MatAdd):
        out = ev(expr.args[0])
        for a in expr.args[1:]:
            out = out + ev(a)
        return out
    if isinstance(expr, MatMul):
        out = sp.S.One
        for a in expr.args:
            v = ev(a)
            out = out * v
        return out
    if isinstance(expr, Transpose):
        return ev(expr.arg).T
    if isinstance(expr, Inverse):
        X = ev(expr.arg)
        return X.adjugate() / X.det()
    if isinstance(expr, Determinant):
        return ev(expr.arg).det()
    if isinstance(expr, Trace):
        v = ev(expr.arg)
        return v.trace() if isinstance(v, sp.MatrixBase) else v
    if isinstance(expr, DiagMatrix):
        v = ev(expr.args[0])
        return sp.diag(*list(v))
    if isinstance(expr, DiagonalOf):
        v = ev(expr.args[0])
        return sp.Matrix([v[i, i] for i in range(min(v.shape))])
    if isinstance(expr, DiagSum):
        w = ev(expr.W)
        blocks = env[str(expr.tensor)]
        return sum((w[i] * blocks[(i, i)] for i in range(1, w.shape[0])), w[0] * blocks[(0, 0)])
    if isinstance(expr, PairSum):
        W = ev(expr.W)
        blocks = env[str(expr.tensor)]
        W = W if isinstance(W, sp.MatrixBase) else sp.Matrix([[W]])
        out = None
        for (i, j), Kij in blocks.items():
            t = W[i, j] * Kij
            out = t if out is None else out + t
        return out
    if isinstance(expr, PairContract):
        B = ev(expr.B)
        blocks = env[str(expr.tensor)]
        k = size(expr.shape[0])
        return sp.Matrix(k, k, lambda i, j: sum(
            (blocks[(i, j)][a, b] * B[a, b] for a in range(B.shape[0]) for b in range(B.shape[1])),
            sp.S.Zero) if (i, j) in blocks else sp.S.Zero)
    if isinstance(expr, Inner):
        X, Y = ev(expr.args[0]), ev(expr.args[1])
        return sum((X[a, b] * Y[a, b] for a in range(X.shape[0]) for b in range(X.shape[1])),
                   sp.S.Zero)
    if isinstance(expr, (sp.Add, sp.Mul, sp.Pow, sp.log)):
        args = [ev(a) for a in expr.args]
        if isinstance(expr, sp.Mul):
            out = sp.S.One
            for a in args:
                out = out * a
            return out
        if isinstance(expr, sp.Add):
            out = sp.S.Zero
            for a in args:
                out = out + a
            return out
        return expr.func(*args)
    raise NotImplementedError(f"explicit: {type(expr).__name__}")


def _random_data(arch, size, Psz, zero_mean, rng, symbolic):
    """Explicit data: K_ij = Φ_iᵀ Φ_j / d from random rational features (a valid kernel), μ, y."""
    d = Psz + 1
    Phi = [sp.Matrix(d, Psz, lambda a, b: sp.Rational(rng.randint(-9, 9), 7)) for _ in range(size)]
    blocks = {}
    for i in range(size):
        for j in range(size):
            if arch == "lcn" and i != j:
                continue
            blocks[(i, j)] = (Phi[i].T * Phi[j]) / d
    if symbolic:
        blocks = {}
        for i in range(size):
            for j in range(i, size):
                if arch == "lcn" and i != j:
                    continue
                Kij = sp.Matrix(Psz, Psz, lambda a, b: sp.Symbol(
                    f"K{i}{j}_{min(a, b)}{max(a, b)}" if i == j else f"K{i}{j}_{a}{b}", real=True))
                blocks[(i, j)] = Kij
                blocks[(j, i)] = Kij.T
    if zero_mean:
        mu = sp.zeros(size, Psz)
    elif symbolic:
        mu = sp.Matrix(size, Psz, lambda i, a: sp.Symbol(f"mu_{i}{a}", real=True))
    else:
        mu = sp.Matrix(size, Psz, lambda i, a: sp.Rational(rng.randint(1, 9), 10))
    y = (sp.Matrix(Psz, 1, lambda a, _: sp.Symbol(f"y_{a}", real=True)) if symbolic else
         sp.Matrix(Psz, 1, lambda a, _: sp.Rational(rng.randint(-9, 9), 5)))
    return blocks, mu, y


def action_explicit(arch: str, size: int, Psz: int, zero_mean: bool, symbolic: bool = True,
                    seed: int = 0, build: bool = True):
    """(S, symbols) with explicit matrices: the action of THEORY §3 for n = ``size`` patches and
    P = ``Psz`` samples, every entry a Symbol (``symbolic=True``) or, for the data, a random
    rational (seeded; K built from random features, so it is a valid kernel).

    CNN: Q, Q̄ symmetric matrices of symbols Q_ij (i ≤ j); LCN: diagonal; FC: size must be 1 and
    Q, Q̄ are scalars. The dict holds Q, Qbar (absent when zero_mean), K (blocks {(i,j): Matrix}),
    mu, y, T, N, lambda1 (and n, P). ``build=False`` skips building S (returns None for it).
    """
    if arch not in ("cnn", "lcn", "fc"):
        raise ValueError(f"arch must be 'cnn', 'lcn' or 'fc', got {arch!r}")
    if arch == "fc" and size != 1:
        raise ValueError("FC has n = 1")
    rng = random.Random(seed)
    blocks, mu, y = _random_data(arch, size, Psz, zero_mean, rng, symbolic)
    env = {"K": blocks, "mu": mu, "y": y, "T": T, "N": N, "lambda1": lambda1}
    if arch == "fc":
        prog = fc_program(zero_mean)
        Qs, Qbs = prog.inputs["Q"], prog.inputs["Qbar"]
        env.update({"K": blocks[(0, 0)], "m0": mu.T, "Q": Qs, "Qbar": Qbs})
    elif arch == "lcn":
        prog = lcn_program(zero_mean)
        env.update({"q": sp.Matrix(size, 1, lambda i, _: sp.Symbol(f"q_{i}", positive=True)),
                    "qbar": sp.Matrix(size, 1, lambda i, _: sp.Symbol(f"qbar_{i}", real=True))})
    else:
        prog = cnn_program(zero_mean)
        env.update({"Q": _sym_matrix("Q", size), "Qbar": _sym_matrix("Qbar", size)})
    env["n"] = sp.Integer(size)
    env["P"] = sp.Integer(Psz)
    S = explicit(prog.expanded("S"), env) if build else None
    if zero_mean:
        env.pop("Qbar", None)
        env.pop("qbar", None)
    return S, env


def _order_parameters(arch, size, zero_mean):
    """[(name in env, gradient name, entries)] with entries [(i, j, weight)]: the derivative with
    respect to the single variable Q_ij = Q_ji is weight·∇_ij (weight 2 off the diagonal)."""
    if arch == "fc":
        names = [("Q", "dS_dQ")] + ([] if zero_mean else [("Qbar", "dS_dQbar")])
        return [(a, g, [(0, 0, 1)]) for a, g in names]
    if arch == "lcn":
        names = [("q", "dS_dq")] + ([] if zero_mean else [("qbar", "dS_dqbar")])
        return [(a, g, [(i, 0, 1) for i in range(size)]) for a, g in names]
    names = [("Q", "dS_dQ")] + ([] if zero_mean else [("Qbar", "dS_dQbar")])
    return [(a, g, [(i, j, 1 if i == j else 2) for i in range(size) for j in range(i, size)])
            for a, g in names]


def _random_point(arch, size, zero_mean, rng):
    """Exact rational order parameters: Q positive definite (diagonally dominant), 𝟙 + Q̄ too."""
    def matrix(diag_lo, diag_hi, off):
        M = sp.zeros(size, size)
        for i in range(size):
            M[i, i] = sp.Rational(rng.randint(diag_lo, diag_hi), 10)
            for j in range(i + 1, size):
                M[i, j] = M[j, i] = sp.Rational(rng.randint(-off, off), 10 * size)
        return M
    Q, Qbar = matrix(8, 14, 2), matrix(-3, 5, 1)
    if arch == "fc":
        return {"Q": Q[0, 0], "Qbar": Qbar[0, 0]}
    if arch == "lcn":
        return {"q": Q.diagonal().T, "qbar": Qbar.diagonal().T}
    return {"Q": Q, "Qbar": Qbar}


def verify_gradients(arch: str, size: int, Psz: int, zero_mean: bool, seed: int = 0) -> int:
    """Check the derived gradients against SymPy's own differentiation of the explicit action.

    Data (K from random rational features, μ, y, T, N, λ1) and the evaluation point are exact
    rationals. For every independent entry of the order parameters, that entry is replaced by a
    Symbol s in the explicit Matrix, SymPy builds the explicit action S(s) (determinants and
    adjugates of explicit matrices) and differentiates it; at s = the point's value the result
    must EQUAL, in exact rational arithmetic, the derived gradient evaluated there:
    ∂S/∂Q_ij = (2 − δ_ij)(∇_Q S)_ij (Q symmetric), ∂S/∂q_i = (∇_q S)_i (LCN), dS/dQ (FC).
    Returns the number of entries compared; raises AssertionError on any mismatch.
    """
    rng = random.Random(seed + 1)
    _, env = action_explicit(arch, size, Psz, zero_mean, symbolic=False, seed=seed,
                             build=False)
    num = {"T": sp.Rational(rng.randint(2, 9), 10), "N": sp.Integer(rng.randint(2, 9)),
           "lambda1": sp.Rational(rng.randint(5, 15), 10)}
    env.update(num)
    prog = {"fc": fc_program, "lcn": lcn_program, "cnn": cnn_program}[arch](zero_mean)
    S_expr = prog.expanded("S")
    point = _random_point(arch, size, zero_mean, rng)
    env.update({k: v for k, v in point.items() if k in env})
    count = 0
    for var, gname, entries in _order_parameters(arch, size, zero_mean):
        derived = explicit(prog.expanded(gname), env)
        for i, j, weight in entries:
            s = sp.Symbol("s")
            value = env[var]
            if isinstance(value, sp.MatrixBase):
                V = value.copy()
                V[i, j] = s
                if arch == "cnn":
                    V[j, i] = s
                at = value[i, j]
            else:
                V, at = s, value
            S = explicit(S_expr, {**env, var: V})
            got = sp.diff(S, s).subs(s, at)
            want = weight * (derived[i, j] if isinstance(derived, sp.MatrixBase) else derived)
            if sp.nsimplify(sp.simplify(got - want)) != 0:
                raise AssertionError(f"{arch} n={size} P={Psz} {gname}[{i},{j}]: SymPy {got} "
                                     f"!= derived {want}")
            count += 1
    return count


def all_programs():
    """Every program the code generator prints, keyed by (module, variant)."""
    return {
        ("cnn", "general"): cnn_program(False), ("cnn", "zero_mean"): cnn_program(True),
        ("lcn", "general"): lcn_program(False), ("lcn", "zero_mean"): lcn_program(True),
        ("fc", "general"): fc_program(False), ("fc", "zero_mean"): fc_program(True),
        ("predictor", ""): predictor_program(),
    }

