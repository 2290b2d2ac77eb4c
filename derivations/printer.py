r"""Print the matrix expressions of :mod:`derivations.action` as NumPy source.

Two stages.

1. :func:`lower` rewrites a matrix expression into the primitives of :mod:`kren.linalg`, so that
   no inverse is ever formed explicitly except through a Cholesky factor:

   - log det X                 -> ChoLogdet(ChoFactor(X))                  (cho_logdet)
   - X⁻¹ V (V the factors right of X⁻¹)  -> ChoSolve(ChoFactor(X), V)       (cho_solve)
   - Vᵀ X⁻¹ X⁻¹ V, X⁻¹ V Vᵀ X⁻¹ (palindromes) -> (X⁻¹V)ᵀ(X⁻¹V), (X⁻¹V)(X⁻¹V)ᵀ: one solve
   - Tr(M X⁻¹)                 -> Tr(X⁻¹ M) -> Tr(ChoSolve(ChoFactor(X), M))
   - diag(V X⁻¹ Vᵀ)            -> column sums of (L⁻¹Vᵀ)², X = LLᵀ            (one triangular solve)
   - diag(Uᵀ M V) (no inverse)  -> column sums of U ∘ (M V): the P0×P0 product is never formed
   - a lone X⁻¹                -> ChoInverse(ChoFactor(X))                  (cho_inverse)

2. :class:`KrenPrinter` (a :class:`sympy.printing.numpy.NumPyPrinter`) prints the lowered
   expressions: PairSum -> pair_combine, PairContract -> pair_contract, FullSum -> full_combine,
   DiagSum -> diag_combine,
   Inner -> np.vdot, ModeSum -> np.sum, RowModeSum -> np.sum(..., axis=-1). Arrays whose symbolic shape has a 1 (y, z, mean, ...) are
   1-D NumPy arrays at run time: a column times a row prints as np.outer, everything else as @.
"""
from __future__ import annotations

import re

import sympy as sp
from sympy import Determinant, Identity, Inverse, MatrixSymbol, Trace, Transpose
from sympy.core.symbol import Str
from sympy.matrices.expressions import MatrixExpr
from sympy.matrices.expressions.diagonal import DiagonalOf
from sympy.matrices.expressions.matadd import MatAdd
from sympy.matrices.expressions.matmul import MatMul
from sympy.matrices.expressions.matpow import MatPow
from sympy.printing.numpy import NumPyPrinter

from .action import (HessTerm, Inner, ModeSum, PackedBlocks, PackedSandwich, PackedSandwich2,
                     PairContract, PairHessianTerms, PairSum, SaddleHessianTerms, transpose)

__all__ = ["ChoFactor", "Shifted", "InverseMinusOuter", "ChoSolve", "ChoInverse", "ChoLogdet",
           "TriSolve", "ColumnSquareSum",
           "ColumnDot", "lower", "KrenPrinter"]


# ----------------------------------------------------------------------------------------------
# Lowered primitives
# ----------------------------------------------------------------------------------------------

class ChoFactor(sp.Expr):
    """Cholesky factor of the symmetric positive-definite X; ``label`` names X in errors."""

    is_commutative = True

    def __new__(cls, X, label):
        return super().__new__(cls, X, label if isinstance(label, Str) else Str(label))

    @property
    def matrix(self):
        return self.args[0]

    @property
    def label(self):
        return self.args[1].name


class Shifted(sp.Expr):
    """A = T𝟙 + K printed as ``shifted(K, T)`` (kren.linalg.shifted: T added to the diagonal of
    the temporary K in place; no identity, no second matrix). K must be a temporary that no
    later definition reads (the callers check)."""

    is_commutative = True

    def _numpycode(self, p):
        return f"shifted({p._print(self.args[0])}, {p._print(self.args[1])})"


class InverseMinusOuter(sp.Expr):
    """B = A⁻¹ − z zᵀ from the factor ``cho`` of A and z = A⁻¹y, printed as
    ``inverse_minus_outer(cho, z)`` (kren.linalg: potri's copy becomes B, no other P×P
    temporary; the same numbers as −np.outer(z, z) + cho_inverse(cho))."""

    is_commutative = True

    def _numpycode(self, p):
        return f"inverse_minus_outer({p._print(self.args[0])}, {p._print(self.args[1])})"


class ChoSolve(MatrixExpr):
    """X⁻¹ V from a Cholesky factor F of X."""

    def __new__(cls, F, V):
        return super().__new__(cls, F, V)

    @property
    def shape(self):
        return self.args[1].shape


class ChoInverse(MatrixExpr):
    """X⁻¹ from a Cholesky factor of X (shape given explicitly)."""

    def __new__(cls, F, rows):
        return super().__new__(cls, F, sp.sympify(rows))

    @property
    def shape(self):
        return (self.args[1], self.args[1])


class ChoLogdet(sp.Expr):
    """log det X from a Cholesky factor of X."""

    is_commutative = True

    def __new__(cls, F):
        return super().__new__(cls, F)


class TriSolve(MatrixExpr):
    """L⁻¹ V for the lower Cholesky factor L of X (X = L Lᵀ)."""

    def __new__(cls, F, V):
        return super().__new__(cls, F, V)

    @property
    def shape(self):
        return self.args[1].shape


class ColumnSquareSum(MatrixExpr):
    """(Σ_a V[a, b]²)_b as a column: diag(Vᵀ V)."""

    def __new__(cls, V):
        return super().__new__(cls, V)

    @property
    def shape(self):
        return (self.args[0].shape[1], sp.S.One)


class ColumnDot(MatrixExpr):
    """(Σ_a U[a, b] V[a, b])_b as a column: diag(Uᵀ V) without forming Uᵀ V."""

    def __new__(cls, U, V):
        return super().__new__(cls, U, V)

    @property
    def shape(self):
        return (self.args[0].shape[1], sp.S.One)


# ----------------------------------------------------------------------------------------------
# Lowering
# ----------------------------------------------------------------------------------------------

def lower(expr, labels=None):
    """Rewrite inverses and log-determinants into Cholesky primitives (rules in module doc).

    ``labels`` maps a matrix X to the text naming it in a not-positive-definite error.
    """
    labels = labels or {}
    fac = lambda X: ChoFactor(X, labels.get(X, str(X)))  # noqa: E731
    lw = lambda e: lower(e, labels)  # noqa: E731

    if not isinstance(expr, sp.Basic) or expr.is_Atom or isinstance(expr, (MatrixSymbol, Str)):
        return expr
    if isinstance(expr, sp.log) and isinstance(expr.args[0], Determinant):
        X = lw(expr.args[0].arg)
        return ChoLogdet(fac(X))
    if isinstance(expr, Trace):
        X = expr.arg
        if isinstance(X, MatMul):
            c, mats = X.as_coeff_matrices()
            mats = list(mats)
            k = [i for i, m in enumerate(mats) if isinstance(m, Inverse)]
            if len(k) == 1 and X.shape[0] != 1 and k[0] != 0:     # Tr(M X⁻¹ N) = Tr(X⁻¹ N M)
                i = k[0]
                X = MatMul(c, *(mats[i:] + mats[:i]))
        return Trace(lw(X))
    if isinstance(expr, DiagonalOf) and isinstance(expr.arg, MatMul):
        c, mats = expr.arg.as_coeff_matrices()
        if len(mats) == 3 and isinstance(mats[1], Inverse) and mats[2] == transpose(mats[0]):
            V = lw(mats[2])
            return c * ColumnSquareSum(TriSolve(fac(lw(mats[1].arg)), V))
        if len(mats) >= 2 and isinstance(mats[0], Transpose) and _kind(mats[0]) == "mat" and \
                not any(isinstance(m, (Inverse, MatPow)) for m in mats):
            rest = MatMul(*mats[1:]).doit(deep=False) if len(mats) > 2 else mats[1]
            return c * ColumnDot(lw(mats[0].arg), lw(rest))
    if isinstance(expr, MatMul):
        return _lower_matmul(expr, labels)
    if isinstance(expr, Inverse):
        X = lw(expr.arg)
        return ChoInverse(fac(X), X.shape[0])
    if isinstance(expr, MatPow):
        base, e = expr.args
        if e.is_Integer and e < 0:
            inv = Inverse(base)
            return _lower_matmul(MatMul(*([inv] * int(-e)), evaluate=False), labels)
        return MatPow(lw(base), e)
    if isinstance(expr, ModeSum):
        return type(expr)(lw(expr.summand))
    if isinstance(expr, PairHessianTerms):
        tensor, A, z = expr.args
        return PairHessianTerms(tensor, fac(lw(A)), lw(z))
    if isinstance(expr, SaddleHessianTerms):
        tensor, mu, V, A, z = expr.args
        return SaddleHessianTerms(tensor, lw(mu), lw(V), fac(lw(A)), lw(z))
    args = [lw(a) for a in expr.args]
    if isinstance(expr, (PairSum, PairContract)):
        return type(expr)(*args)
    if isinstance(expr, (MatAdd, MatMul)):
        return type(expr)(*args).doit(deep=False)
    return expr.func(*args)


def _expand_pows(mats):
    out = []
    for m in mats:
        if isinstance(m, MatPow) and m.args[1].is_Integer and m.args[1] < 0:
            out += [Inverse(m.args[0])] * int(-m.args[1])
        else:
            out.append(m)
    return out


def _lower_matmul(expr, labels):
    lw = lambda e: lower(e, labels)  # noqa: E731
    c, mats = expr.as_coeff_matrices()
    mats = _expand_pows(list(mats))
    scale = (lambda out: c * out) if c != 1 else (lambda out: out)  # noqa: E731
    if not any(isinstance(m, Inverse) for m in mats):
        low = [lw(m) for m in mats]
        return scale(MatMul(*low).doit(deep=False) if len(low) > 1 else low[0])
    k = len(mats)
    half = k // 2
    # Palindromes Vᵀ M V with the inverses in M: lower the right half W once, print Wᵀ (mid) W.
    if k >= 2 and all(mats[a] == transpose(mats[k - 1 - a]) for a in range(half)):
        if k % 2 == 0:
            right = _lower_chain(mats[half:], labels)
            return scale(MatMul(transpose(right), right))
        mid = mats[half]
        if not isinstance(mid, Inverse) and any(isinstance(m, Inverse) for m in mats[half + 1:]):
            right = _lower_chain(mats[half + 1:], labels)
            return scale(MatMul(transpose(right), lw(mid), right))
    return scale(_lower_chain(mats, labels))


def _lower_chain(mats, labels):
    """Lower a product right to left: every X⁻¹ absorbs the product to its right as a solve
    X⁻¹(...) ; a trailing X⁻¹ (nothing to its right) absorbs the product L to its left as
    (X⁻¹ Lᵀ)ᵀ; a lone X⁻¹ becomes the Cholesky inverse."""
    lw = lambda e: lower(e, labels)  # noqa: E731
    fac = lambda X: ChoFactor(X, labels.get(X, str(X)))  # noqa: E731
    acc = None              # lowered product of the factors right of the current one
    trailing = None         # X of a trailing inverse still waiting for its left factors
    left = []               # factors collected left of a trailing inverse
    for m in reversed(mats):
        if isinstance(m, Inverse):
            X = lw(m.arg)
            if acc is None and trailing is None:
                trailing = X
                continue
            if trailing is not None:            # X⁻¹ (L) Y⁻¹ with nothing right of Y⁻¹
                acc = _close_trailing(trailing, left, fac)
                trailing, left = None, []
            acc = ChoSolve(fac(X), acc)
        elif trailing is not None:
            left.insert(0, lw(m))
        else:
            lm = lw(m)
            acc = lm if acc is None else MatMul(lm, acc).doit(deep=False)
    if trailing is not None:
        return _close_trailing(trailing, left, fac)
    return acc


def _close_trailing(X, left, fac):
    if not left:
        return ChoInverse(fac(X), X.shape[0])
    L = MatMul(*left).doit(deep=False) if len(left) > 1 else left[0]
    return transpose(ChoSolve(fac(X), transpose(L)))


# ----------------------------------------------------------------------------------------------
# Printer
# ----------------------------------------------------------------------------------------------

def _kind(e):
    """Run-time kind of a matrix expression: 'scalar' (1×1), 'vec' (a 1 in the shape: 1-D
    array), or 'mat'."""
    if not isinstance(e, MatrixExpr):
        return "scalar"
    r, c = e.shape
    if r == 1 and c == 1:
        return "scalar"
    if r == 1 or c == 1:
        return "vec"
    return "mat"


class KrenPrinter(NumPyPrinter):
    """NumPy printer for lowered expressions; names arrays through ``kren.linalg`` primitives.

    ``tensor_args`` maps a tensor symbol name (K, Kx, Kd) to how it is passed:
    ("pairs", blocks, pairs) for a stored-pair tensor, ("full", name) for a full tensor,
    ("multi", blocks, packed pairs, pairs, D) for the lifted D-output tensor E_de ⊗ K_ij over
    stored pairs, ("multi_full", name, D) / ("multi_diag", name, D) for its test×train blocks
    (kren.multi_linalg; THEORY §3c),
    ("diag", name) for the diagonal blocks K_ii only (LCN, shape (n, ...)),
    ("matrix", name) for the FC kernel (a single P×P matrix).
    ``overwrite``: labels of matrices that are temporaries, exactly symmetric and read only
    through their factor; their ChoFactor prints ``overwrite=True`` (factorized in place,
    kren.linalg.cho_factor).
    """

    printmethod = "_krenprint"

    def __init__(self, tensor_args=None, settings=None, overwrite=()):
        super().__init__(settings or {"fully_qualified_modules": True})
        self.tensor_args = tensor_args or {"K": ("pairs", "blocks", "pairs")}
        self.overwrite = frozenset(overwrite)

    def _module_format(self, fqn, register=True):
        if fqn.startswith("numpy."):
            fqn = "np." + fqn[len("numpy."):]
        return fqn

    # scalars ----------------------------------------------------------------------------
    def _print_Pow(self, expr, rational=False):
        b, e = expr.args
        if e == -1:
            return f"1/{self.parenthesize(b, 0)}"
        return self._hprint_Pow(expr, rational=True, sqrt="np.sqrt")

    def _print_Symbol(self, expr):
        return expr.name

    # matrices ---------------------------------------------------------------------------
    def _print_MatrixSymbol(self, expr):
        return expr.name

    def _print_Identity(self, expr):
        return f"np.eye({self._print(expr.shape[0])})"

    def _print_ZeroMatrix(self, expr):
        return f"np.zeros(({self._print(expr.shape[0])}, {self._print(expr.shape[1])}))"

    def _print_Transpose(self, expr):
        if _kind(expr) != "mat":
            return self._print(expr.arg)
        return f"{self.parenthesize(expr.arg, 1000)}.T"

    def parenthesize(self, item, level, strict=False):
        if isinstance(item, Transpose) and _kind(item) != "mat":
            return self.parenthesize(item.arg, level, strict)
        s = self._print(item)
        if re.fullmatch(r"[A-Za-z_][A-Za-z_0-9.]*", s):
            return s
        if isinstance(item, (MatrixSymbol, sp.Symbol, ChoSolve, ChoInverse, PairSum,
                             PairContract, Identity, sp.Number, TriSolve)) and \
                not (isinstance(item, sp.Number) and (item < 0 or "/" in s)):
            return s        # a negative number or a fraction (p/q) keeps its parentheses
        if isinstance(item, sp.Function) or isinstance(item, (ChoLogdet, Inner, ModeSum, Trace,
                                                               HessTerm, PackedSandwich,
                                                               PackedSandwich2, PackedBlocks)):
            return s
        return f"({s})"

    def _print_MatAdd(self, expr):
        terms = list(expr.args)
        out = []
        for i, t in enumerate(terms):
            neg = False
            if isinstance(t, MatMul):
                c, mats = t.as_coeff_matrices()
                if c.could_extract_minus_sign():
                    neg, t = True, (MatMul(-c, *mats).doit(deep=False) if -c != 1
                                    else (MatMul(*mats) if len(mats) > 1 else mats[0]))
            s = self._print(t)
            if i == 0:
                out.append(("-" if neg else "") + s)
            else:
                out.append((" - " if neg else " + ") + s)
        return "".join(out)

    def _print_MatMul(self, expr):
        c, mats = expr.as_coeff_matrices()
        mats = list(mats)
        s = None
        prev = None
        for m in mats:
            ps = self.parenthesize(m, 0)
            if s is None:
                s, prev = ps, m
                continue
            if prev.shape[1] == 1 and prev.shape[0] != 1 and m.shape[0] == 1 and m.shape[1] != 1:
                s = f"np.outer({s}, {self._print(m)})"
            elif prev.shape == (1, 1) or m.shape == (1, 1):
                s = f"{s}*{ps}"
            else:
                s = f"{s} @ {ps}"
            prev = MatrixSymbol("_", prev.shape[0], m.shape[1])
        if c == 1:
            return s
        if c == -1:
            return f"-({s})" if " @ " in s else f"-{s}"
        cs = self._print(c)
        if not (c.is_Atom or isinstance(c, sp.Pow)) or c.could_extract_minus_sign():
            cs = f"({cs})"
        if len(mats) > 1 and " @ " in s:
            s = f"({s})"
        return f"{cs}*{s}"

    def _print_MatPow(self, expr):
        base, e = expr.args
        if e.is_Integer and e > 1:
            b = self.parenthesize(base, 0)
            return " @ ".join([b] * int(e))
        raise ValueError(f"cannot print matrix power {expr}")

    def _print_Inverse(self, expr):
        raise ValueError(f"inverse {expr} reached the printer: lower() it into a Cholesky solve")

    def _print_Determinant(self, expr):
        raise ValueError(f"determinant {expr} reached the printer: lower() it")

    def _print_Trace(self, expr):
        if expr.arg.shape == (1, 1):
            return f"({self._print(expr.arg)})"
        return f"np.trace({self._print(expr.arg)})"

    def _print_DiagMatrix(self, expr):
        return f"np.diag({self._print(expr.args[0])})"

    def _print_DiagonalOf(self, expr):
        return f"np.diagonal({self._print(expr.arg)}).copy()"

    # kren.linalg primitives ----------------------------------------------------------------
    def _print_ChoFactor(self, expr):
        if expr.label in self.overwrite:
            return f"cho_factor({self._print(expr.matrix)}, {expr.label!r}, overwrite=True)"
        return f"cho_factor({self._print(expr.matrix)}, {expr.label!r})"

    def _print_ChoSolve(self, expr):
        return f"cho_solve({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_ChoInverse(self, expr):
        return f"cho_inverse({self._print(expr.args[0])})"

    def _print_ChoLogdet(self, expr):
        return f"cho_logdet({self._print(expr.args[0])})"

    def _print_TriSolve(self, expr):
        F = self._print(expr.args[0])
        return (f"solve_triangular({F}[0], {self._print(expr.args[1])}, lower=True, "
                f"check_finite=False)")

    def _print_ColumnSquareSum(self, expr):
        return f"np.sum({self.parenthesize(expr.args[0], 0)}**2, axis=0)"

    def _print_ColumnDot(self, expr):
        return (f"np.sum({self.parenthesize(expr.args[0], 0)}*"
                f"{self.parenthesize(expr.args[1], 0)}, axis=0)")

    def _tensor(self, sym):
        spec = self.tensor_args.get(str(sym))
        if spec is None:
            raise ValueError(f"no argument given for the kernel tensor {sym}")
        return spec

    def _print_PairSum(self, expr):
        spec = self._tensor(expr.tensor)
        W = self._print(expr.W)
        if spec[0] == "multi":          # D outputs: ("multi", blocks, packed pairs, pairs, D)
            return f"multi_pair_combine({W}, {spec[1]}, {spec[3]}, {spec[4]})"
        if spec[0] == "multi_full":     # ("multi_full", Kx, D) and ("multi_diag", Kx, D)
            return f"multi_full_combine({W}, {spec[1]}, {spec[2]})"
        if spec[0] == "multi_diag":
            return f"multi_diag_combine({W}, {spec[1]}, {spec[2]})"
        if spec[0] == "pairs":
            return f"pair_combine({W}, {spec[1]}, {spec[2]})"
        if spec[0] == "full":
            return f"full_combine({W}, {spec[1]})"
        return f"{self.parenthesize(expr.W, 0)}*{spec[1]}"

    _print_FullSum = _print_PairSum

    def _print_DiagSum(self, expr):
        spec = self._tensor(expr.tensor)
        if spec[0] != "diag":
            raise ValueError(f"DiagSum needs a diagonal tensor argument, got {spec!r} for "
                             f"{expr.tensor}")
        return f"diag_combine({self._print(expr.W)}, {spec[1]})"

    def _print_PairContract(self, expr):
        spec = self._tensor(expr.tensor)
        if spec[0] == "multi":
            return f"multi_pair_contract({spec[1]}, {self._print(expr.B)}, {spec[3]}, {spec[4]})"
        if spec[0] != "pairs":
            raise ValueError("PairContract needs a stored-pair tensor")
        return f"pair_contract({spec[1]}, {self._print(expr.B)}, {spec[2]}, " \
               f"{self._print(expr.shape[0])})"

    def _print_PairHessianTerms(self, expr):
        spec = self._tensor(expr.args[0])
        if spec[0] == "multi":
            return (f"multi_pair_hessian_terms({spec[1]}, {spec[3]}, {spec[4]}, "
                    f"{self._print(expr.args[1])}, {self._print(expr.args[2])})")
        return (f"pair_hessian_terms({spec[1]}, {spec[2]}, {self._print(expr.args[1])}, "
                f"{self._print(expr.args[2])})")

    def _print_SaddleHessianTerms(self, expr):
        spec = self._tensor(expr.args[0])
        _, mu, V, F, z = expr.args
        if spec[0] == "multi":
            return (f"multi_pair_hessian_terms({spec[1]}, {spec[3]}, {spec[4]}, {self._print(F)}, "
                    f"{self._print(z)}, mu={self._print(mu)}, V={self._print(V)}, sign=-1.0)")
        return (f"pair_hessian_terms({spec[1]}, {spec[2]}, {self._print(F)}, {self._print(z)}, "
                f"mu={self._print(mu)}, V={self._print(V)}, sign=-1.0)")

    def _print_PackedSandwich2(self, expr):
        spec = self._tensor(sp.Symbol("K"))
        return (f"packed_sandwich2({self._print(expr.args[0])}, {self._print(expr.args[1])}, "
                f"{spec[2]})")

    def _print_PackedBlocks(self, expr):
        return f"packed_blocks({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_HessTerm(self, expr):
        return f"{self._print(expr.args[0])}[{self._print(expr.args[1])}]"

    def _print_PackedSandwich(self, expr):
        spec = self._tensor(sp.Symbol("K"))
        return f"packed_sandwich({self._print(expr.args[0])}, {spec[2]})"

    def _print_Inner(self, expr):
        return f"np.vdot({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_ModeSum(self, expr):
        return f"np.sum({self._print(expr.summand)})"

    def _print_RowModeSum(self, expr):
        return f"np.sum({self._print(expr.summand)}, axis=-1)"

    def _print_log(self, expr):
        return f"np.log({self._print(expr.args[0])})"
