r"""D outputs (THEORY §1, §3c, §4, §5.7): the effective action with (nD)×(nD) order parameters,
in SymPy, as programs for the code generator (:mod:`derivations.codegen_multi`).

Network: f_d(x) = (N n)^{-1/2} Σ_{a,i} v_{a,i,d} φ_{a,i}(x), d = 1..D (FC: n = 1; pooled CNN: the
FC with K → K_pool). Conventions (THEORY §1, §3c): order parameters are indexed by (i, d),
flattened as I = i·D + d; targets and the rows of A are stacked output-major, (d, μ) flattened
as d·P + μ. The lifted kernel tensor K'_{IJ} = E_de ⊗ K_ij (E_de the D×D matrix unit) and the
lifted means μ^D_{(i,d),(e,ν)} = δ_de μ_i(x^ν) make the D-output action read exactly like the
one-output action of :mod:`derivations.action` (THEORY §3c):

    R   = (𝟙 + Q̄)⁻¹                                     ((nD)×(nD))
    K_R = (1/(λ1 n)) [PairSum(Q, K') − μ^Dᵀ Q μ^D + μ^Dᵀ R μ^D]        ((DP)×(DP))
    A   = T𝟙_{DP} + K_R
    S   = −Tr(Q Q̄) + log det(𝟙 + Q̄) + (1/N) [log det A + yᵀ A⁻¹ y]

so that (K_R)_{de} = (1/(λ1 n)) Σ_ij [Q_{(i,d),(j,e)} (K_ij − μ_iμ_jᵀ) + R_{(i,d),(j,e)} μ_iμ_jᵀ]
and PairContract(K', B)_{(i,d),(j,e)} = ⟨K_ij, B_{de}⟩. Note the normalization 1/(λ1 n), not
1/(λ1 nD): the D-output action is the one-output CNN action on the lifted tensor with λ1/D in
place of λ1 (tested). The symbols of the sizes are ``nD`` (order parameters) and ``DP``
(stacked targets); ``n`` (patches) enters only the prefactor.

Every gradient, fixed-point map, Q̄ elimination and Hessian below is derived by the differential
engine of :mod:`derivations.action` (rules D1–D6) exactly as for one output; the identities the
fixed-point maps rest on are re-checked on the D-output gradients. Exact checks on explicit
matrices (:func:`verify_multi_gradients`) and the derivation steps 1–8 for D outputs
(:mod:`derivations.multi_steps`) are run by the tests.

FC (n = 1) in the joint eigenbasis of Q and K (THEORY §3c): with K = U diag(k) Uᵀ,
Q = V diag(q) Vᵀ, A = (V ⊗ U) diag(Δ) (V ⊗ U)ᵀ, Δ_{μa} = T + q_a k_μ/λ1, so log det A and yᵀA⁻¹y
are sums over the P×D grid of modes (:func:`fc_eig_zero_mean_program`,
:func:`fc_eig_program` with the rank-D mean term by the matrix determinant lemma and Woodbury).
"""
from __future__ import annotations

import functools

import sympy as sp
from sympy import Determinant, Identity, Inverse, MatrixSymbol, Trace, log
from sympy.core.symbol import Str
from sympy.matrices.expressions import MatrixExpr
from sympy.matrices.expressions.matadd import MatAdd

from . import action as ac
from .action import (HessTerm, K, PackedBlocks, PackedSandwich, PackedSandwich2, PairContract,
                     PairHessianTerms, PairSum, Program, SaddleHessianTerms, FullSum, N, P, P0,
                     P1, P2, T, differential, gradient, lambda1, n)

__all__ = [
    "D", "nD", "DP", "DP0", "DP1", "DP2", "multi_program", "multi_fixed_point_program",
    "multi_eliminated_Qbar_program", "multi_hessian_zero_mean_program", "multi_hessian_program",
    "multi_cross_program", "multi_predictor_program", "PointBlocks", "PointSandwich",
    "PointGram", "check_multi_second_differential", "verify_multi_gradients",
    "lifted_explicit_data", "ColSum", "Diag", "KGram", "Sandwich", "Eye", "Logdet", "Solve",
    "Inv", "Outer", "EigHessianTerms", "fc_eig_zero_mean_program", "fc_eig_program",
    "fc_eig_hessian_program", "evaluate_eig", "all_programs",
]

D = sp.Symbol("D", integer=True, positive=True)             # outputs
nD = sp.Symbol("nD", integer=True, positive=True)           # order parameters: n·D
DP = sp.Symbol("DP", integer=True, positive=True)           # stacked training targets: D·P
DP0 = sp.Symbol("DP0", integer=True, positive=True)         # stacked test points: D·P0
DP1 = sp.Symbol("DP1", integer=True, positive=True)
DP2 = sp.Symbol("DP2", integer=True, positive=True)

C_READOUT = 1 / (lambda1 * n)                               # the prefactor of K_R


def _symbols():
    Q = MatrixSymbol("Q", nD, nD)
    Qbar = MatrixSymbol("Qbar", nD, nD)
    muD = MatrixSymbol("muD", nD, DP)
    y = MatrixSymbol("y", DP, 1)
    return Q, Qbar, muD, y


# ----------------------------------------------------------------------------------------------
# The action and its gradients
# ----------------------------------------------------------------------------------------------

def multi_program(zero_mean: bool) -> Program:
    """The D-output action (THEORY §3c) as a program: R, K_R, A, S, then B, G and the gradients.

    Gradients by the engine of :mod:`derivations.action`: dS = dS0 + (1/N) Tr(B dK_R) with
    B = A⁻¹ − zzᵀ, dK_R = (1/(λ1 n)) [PairSum(dQ, K') − μ^Dᵀ dQ μ^D] (and −μ^Dᵀ R dQ̄ R μ^D),
    and D5 (PairContract, the adjoint of PairSum) moves dQ out:

        ∇_Q S = −Q̄ + (G − μ^D B μ^Dᵀ)/(N λ1 n),   G_{(i,d),(j,e)} = ⟨K_ij, B_{de}⟩
        ∇_Q̄ S = −Q + R − R μ^D B μ^Dᵀ R/(N λ1 n)
        zero mean: ∇_Q S = 𝟙 − Q⁻¹ + G/(N λ1 n).

    The LCN is the same program on a tensor holding only the blocks K_ii: then G vanishes off
    the D×D diagonal blocks, and the LCN's gradient (Q, Q̄ block-diagonal) is the block-diagonal
    part of these (THEORY §3c; tested).
    """
    Q, Qbar, muD, y = _symbols()
    prog = Program(inputs={"Q": Q, "Qbar": Qbar, "muD": muD, "y": y})
    In, IP = Identity(nD), Identity(DP)
    A = MatrixSymbol("A", DP, DP)
    K_R = MatrixSymbol("K_R", DP, DP)
    R = MatrixSymbol("R", nD, nD)
    c = C_READOUT
    if zero_mean:
        prog.add(K_R, c * PairSum(Q, K, DP, DP))
    else:
        prog.add(R, Inverse(In + Qbar))
        prog.add(K_R, c * (PairSum(Q, K, DP, DP) - muD.T * Q * muD + muD.T * R * muD))
    prog.add(A, T * IP + K_R)
    F, Bexpr = ac._data_term(A, y)
    S = sp.Symbol("S")
    S0 = (Trace(Q) - log(Determinant(Q))) if zero_mean else \
        (-Trace(Q * Qbar) + log(Determinant(In + Qbar)))
    prog.add(S, S0 + F / N)
    B = prog.add(MatrixSymbol("B", DP, DP), Bexpr)
    KR_def = prog[str(K_R)]
    dQ = MatrixSymbol("dQ", nD, nD)
    lin_Q = differential(S0, Q, dQ) + Trace(B * differential(KR_def, Q, dQ)) / N
    G = prog.add(MatrixSymbol("G", nD, nD), PairContract(K, B, nD))
    prog.add(MatrixSymbol("dS_dQ", nD, nD),
             gradient(lin_Q, dQ).xreplace({PairContract(K, B, nD): G}))
    if not zero_mean:
        dQb = MatrixSymbol("dQbar", nD, nD)
        Rdef = Inverse(In + Qbar)
        KRb = KR_def.xreplace({R: Rdef})
        lin_Qb = differential(S0, Qbar, dQb) + Trace(B * differential(KRb, Qbar, dQb)) / N
        prog.add(MatrixSymbol("dS_dQbar", nD, nD), gradient(lin_Qb, dQb).xreplace({Rdef: R}))
    return prog


def multi_fixed_point_program(zero_mean: bool) -> Program:
    """The D-output saddle-point equations as a fixed-point map (THEORY §3, §3c), from the
    gradients of :func:`multi_program` (inputs: the order parameters and the gradient there).

    Zero mean: F = ∇_Q S + Q⁻¹ is checked to be free of Q⁻¹ (it is 𝟙 + G/(N λ1 n)), so
    ∇_Q S = 0 ⇔ Q = F⁻¹. With means: Q̄ + ∇_Q S is checked free of Q̄ and, with X = 𝟙 + Q̄,
    H = X − X(Q + ∇_Q̄ S)X free of Q and X with Q + ∇_Q̄ S = R − RHR; the map is
    Q̄' = Q̄ + ∇_Q S, Q' = R' − R' H R', R' = (𝟙 + Q̄')⁻¹ (as for one output).
    """
    Q, Qbar, _, _ = _symbols()
    R = MatrixSymbol("R", nD, nD)
    In = Identity(nD)
    src = multi_program(zero_mean)
    prog = Program()
    gQ, gQb = MatrixSymbol("dS_dQ", nD, nD), MatrixSymbol("dS_dQbar", nD, nD)
    if zero_mean:
        prog.inputs = {"Q": Q, "dS_dQ": gQ}
        prog.derived["F"] = ac._zero_mean_identity(src["dS_dQ"], Inverse(Q))
        F = prog.add(MatrixSymbol("F", nD, nD), gQ + Inverse(Q))
        prog.add(MatrixSymbol("Q_new", nD, nD), Inverse(F))
        return prog
    prog.inputs = {"Q": Q, "Qbar": Qbar, "dS_dQ": gQ, "dS_dQbar": gQb}
    Qb_star, H = ac._mean_identities(src["dS_dQ"], src["dS_dQbar"], Q, Qbar, R)
    prog.derived.update(Qbar_star=Qb_star, H=H)
    X = In + Qbar
    Hs = prog.add(MatrixSymbol("H", nD, nD), X - X * (Q + gQb) * X)
    Qbn = prog.add(MatrixSymbol("Qbar_new", nD, nD), Qbar + gQ)
    Rn = prog.add(MatrixSymbol("R_new", nD, nD), Inverse(In + Qbn))
    prog.add(MatrixSymbol("Q_new", nD, nD), Rn - Rn * Hs * Rn)
    return prog


def multi_eliminated_Qbar_program() -> Program:
    """Q̄ of zero-mean units with D outputs: ∇_Q̄ S of :func:`multi_program` at μ^D = 0 is checked
    to be −Q + (𝟙 + Q̄)⁻¹, whose solution Q̄* = Q⁻¹ − 𝟙 SymPy finds for explicit symmetric
    1×1 and 2×2 matrices (:func:`derivations.action.eliminate_Qbar`; the (nD)×(nD) matrix is a
    symmetric matrix like any other)."""
    Q, Qbar, muD, _ = _symbols()
    gb = multi_program(False)["dS_dQbar"].xreplace({muD: sp.ZeroMatrix(nD, DP)}).doit()
    R = MatrixSymbol("R", nD, nD)
    ac._require(gb == (-Q + R).doit(), f"∇_Q̄ S at μ = 0 is {gb}, not −Q + (𝟙 + Q̄)⁻¹")
    for size in (1, 2):
        ac._eliminate_Qbar_cached(size)
    prog = Program(inputs={"Q": Q})
    prog.add(Qbar, Inverse(Q) - Identity(nD))
    return prog


# ----------------------------------------------------------------------------------------------
# Hessians (packed coordinates over the pairs I ≤ J of the (nD)×(nD) order parameter)
# ----------------------------------------------------------------------------------------------

def multi_hessian_zero_mean_program() -> Program:
    """Hessian of the zero-mean D-output action in the packed coordinates x_p = Q_IJ, I ≤ J
    (kren.multi_linalg.output_pairs), from the engine's second differential

        d²S = Tr(Q⁻¹ dQ₂ Q⁻¹ dQ₁) + (1/N)[−Tr(A⁻¹ dA₂ A⁻¹ dA₁) + 2 zᵀ dA₂ A⁻¹ dA₁ z],
        dA = PairSum(dQ, K')/(λ1 n),

    matched term by term (exhaustively) to PackedSandwich(Q⁻¹) and T1, T2 of PairHessianTerms
    over the lifted directions: H = PackedSandwich(Q⁻¹) + (−T1 + 2 T2)/(N (λ1 n)²).
    """
    Q, _, _, y = _symbols()
    npairs = sp.Symbol("n_pairs", integer=True, positive=True)
    A = MatrixSymbol("A", DP, DP)
    z = MatrixSymbol("z", DP, 1)
    dQ1, dQ2 = MatrixSymbol("dQ1", nD, nD), MatrixSymbol("dQ2", nD, nD)
    defs = {A: T * Identity(DP) + C_READOUT * PairSum(Q, K, DP, DP)}
    S = Trace(Q) - log(Determinant(Q)) + (log(Determinant(A)) + Trace(y.T * Inverse(A) * y)) / N
    d2 = differential(differential(S, Q, dQ1, defs), Q, dQ2, defs)
    terms_sym = sp.Symbol("hess_terms")
    T1, T2 = HessTerm(terms_sym, 0, npairs), HessTerm(terms_sym, 1, npairs)
    Ainv, Qinv = Inverse(A), Inverse(Q)
    ps1, ps2 = PairSum(dQ1, K, DP, DP), PairSum(dQ2, K, DP, DP)

    def rotations(mats):
        return [mats[k:] + mats[:k] for k in range(len(mats))]

    H = []
    for coef, mats in ac._trace_terms(d2):
        if any(r in ([Qinv, dQ2, Qinv, dQ1], [Qinv, dQ1, Qinv, dQ2]) for r in rotations(mats)):
            H.append(coef * PackedSandwich(Qinv, npairs))
        elif any(r in ([Ainv, ps2, Ainv, ps1], [Ainv, ps1, Ainv, ps2]) for r in rotations(mats)):
            H.append(coef * T1)
        elif mats in ([y.T, Ainv, ps1, Ainv, ps2, Ainv, y], [y.T, Ainv, ps2, Ainv, ps1, Ainv, y]):
            H.append(coef * T2)
        else:
            raise NotImplementedError(f"unmatched second-differential term {coef} {mats}")
    prog = Program(inputs={"Q": Q, "y": y, "z": z})
    prog.add(terms_sym, PairHessianTerms(K, A, z))
    prog.add(MatrixSymbol("hessian", npairs, npairs), MatAdd(*H).doit())
    return prog


@functools.lru_cache(maxsize=None)
def check_multi_second_differential() -> bool:
    """The derivation step of :func:`multi_hessian_program`: for the D-output action the
    engine's d²S equals its chain-rule form (canonical trace terms, as
    derivations.action._check_general_second_differential does for one output), and dA along
    dQ̄ is −c V dQ̄ Vᵀ with V = μ^Dᵀ R. Slow (SymPy simplification, ~10 s): run by the tests."""
    Q, Qbar, muD, y = _symbols()
    In, IP = Identity(nD), Identity(DP)
    A = MatrixSymbol("A", DP, DP)
    c = C_READOUT
    Rdef = Inverse(In + Qbar)
    Adef = T * IP + c * (PairSum(Q, K, DP, DP) - muD.T * Q * muD + muD.T * Rdef * muD)
    S = -Trace(Q * Qbar) + log(Determinant(In + Qbar)) \
        + (log(Determinant(A)) + Trace(y.T * Inverse(A) * y)) / N
    d1Q, d2Q, d1B, d2B = (MatrixSymbol(s, nD, nD) for s in ("dQ1", "dQ2", "dQb1", "dQb2"))
    defs = {A: Adef}
    d1 = differential(S, Q, d1Q, defs) + differential(S, Qbar, d1B, defs)
    d2 = differential(d1, Q, d2Q, defs) + differential(d1, Qbar, d2B, defs)
    dA1 = differential(Adef, Q, d1Q) + differential(Adef, Qbar, d1B)
    dA2 = differential(Adef, Q, d2Q) + differential(Adef, Qbar, d2B)
    d2A = differential(dA1, Qbar, d2B)
    Ai = Inverse(A)
    claim = (-Trace(d1Q * d2B) - Trace(d2Q * d1B) - Trace(Rdef * d2B * Rdef * d1B)
             + (-Trace(Ai * dA2 * Ai * dA1) + 2 * Trace(y.T * Ai * dA2 * Ai * dA1 * Ai * y)
                + Trace(Ai * d2A) - Trace(y.T * Ai * d2A * Ai * y)) / N)
    sym = {d1Q, d2Q, d1B, d2B}
    got = ac._canonical_terms(sp.expand(d2), sym)
    want = ac._canonical_terms(sp.expand(claim), sym)
    ac._require(got.keys() == want.keys() and all(sp.simplify(got[k] - want[k]) == 0 for k in got),
                "D outputs: second differential of S differs from its chain-rule form")
    V = muD.T * Rdef
    ac._require((differential(Adef, Qbar, d1B) + c * V * d1B * ac.transpose(V)).expand().doit()
                == sp.ZeroMatrix(DP, DP), "dA along dQ̄ is −c V dQ̄ Vᵀ")
    return True


def multi_hessian_program() -> Program:
    """Hessian of the general D-output action S(Q, Q̄) in the packed coordinates
    x = (Q_IJ for the packed pairs, then Q̄_IJ likewise); the chain-rule form of
    :func:`check_multi_second_differential` in the lifted packed basis, as
    :func:`derivations.action.hessian_program` for one output:

        H = c²/N (−T1 + 2 T2) + [[0, −E], [−E, −Tr(R E_p R E_q) + (c/N) X]],  c = 1/(λ1 n),
        X = Tr(N_B E_p R E_q) + Tr(R E_p N_B E_q),  N_B = Vᵀ B V,  V = μ^Dᵀ R.
    """
    Q, Qbar, muD, y = _symbols()
    In = Identity(nD)
    A = MatrixSymbol("A", DP, DP)
    z = MatrixSymbol("z", DP, 1)
    c = C_READOUT
    Ai = Inverse(A)
    npairs = sp.Symbol("n_pairs", integer=True, positive=True)
    prog = Program(inputs={"Q": Q, "Qbar": Qbar, "muD": muD, "y": y, "z": z})
    R = prog.add(MatrixSymbol("R", nD, nD), Inverse(In + Qbar))
    Vs = prog.add(MatrixSymbol("V", DP, nD), muD.T * R)
    zeta = Vs.T * z
    NB = prog.add(MatrixSymbol("N_B", nD, nD), Vs.T * Ai * Vs - zeta * zeta.T)
    # the printed call takes the unlifted means mu (n, P) and lifts them itself
    mu = MatrixSymbol("mu", n, P)
    terms = prog.add(sp.Symbol("hess_terms"), SaddleHessianTerms(K, mu, Vs, A, z))
    ndirs = sp.Symbol("n_dirs", integer=True, positive=True)
    T1, T2 = HessTerm(terms, 0, ndirs), HessTerm(terms, 1, ndirs)
    E = PackedSandwich2(In, In, npairs)
    QbQb = -PackedSandwich2(R, R, npairs) + (c / N) * (PackedSandwich2(NB, R, npairs)
                                                      + PackedSandwich2(R, NB, npairs))
    prog.add(MatrixSymbol("hessian", ndirs, ndirs),
             (c ** 2 / N) * (-T1 + 2 * T2) + PackedBlocks(-E, QbQb))
    return prog


# ----------------------------------------------------------------------------------------------
# Predictor (THEORY §4 with D outputs)
# ----------------------------------------------------------------------------------------------

class PointBlocks(MatrixExpr):
    """Per test input x0, the D×D block Σ_ij W_{(i,d),(j,e)} Kd_ij(x0, x0) (shape (P0, D, D) at
    run time; kren.multi_linalg.multi_point_blocks or, for a diagonal tensor,
    multi_diag_point_blocks)."""

    def __new__(cls, W, tensor):
        return super().__new__(cls, W, tensor)

    @property
    def shape(self):
        return (P0, D * D)

    def _krenprint(self, printer):
        return self._numpycode(printer)

    def _numpycode(self, printer):
        spec = printer._tensor(self.args[1])
        fn = "multi_diag_point_blocks" if spec[0] == "multi_diag" else "multi_point_blocks"
        return f"{fn}({printer._print(self.args[0])}, {spec[1]}, {spec[2]})"


class PointSandwich(MatrixExpr):
    """Per test input x0, the D×D block of μ0^Dᵀ X μ0^D at (x0, x0)
    (kren.multi_linalg.lifted_point_sandwich)."""

    def __new__(cls, X, mu0):
        return super().__new__(cls, X, mu0)

    @property
    def shape(self):
        return (P0, D * D)

    def _krenprint(self, printer):
        return self._numpycode(printer)

    def _numpycode(self, printer):
        return (f"lifted_point_sandwich({printer._print(self.args[0])}, "
                f"{printer._print(self.args[1])}, D)")


class LiftedSandwich(MatrixExpr):
    """μ1^Dᵀ X μ2^D between two input sets (kren.multi_linalg.lifted_sandwich)."""

    def __new__(cls, X, mu1, mu2, rows, cols):
        return super().__new__(cls, X, mu1, mu2, sp.sympify(rows), sp.sympify(cols))

    @property
    def shape(self):
        return (self.args[3], self.args[4])

    def _krenprint(self, printer):
        return self._numpycode(printer)

    def _numpycode(self, printer):
        X, m1, m2 = (printer._print(a) for a in self.args[:3])
        return f"lifted_sandwich({X}, {m1}, {m2}, D)"


class PointGram(MatrixExpr):
    """Per test input a, Σ_r X[r, (d, a)] X[r, (e, a)] (kren.multi_linalg.point_block_gram):
    with X = L⁻¹ k_Rᵀ, the diagonal blocks of k_R A⁻¹ k_Rᵀ."""

    def __new__(cls, X):
        return super().__new__(cls, X)

    @property
    def shape(self):
        return (P0, D * D)

    def _krenprint(self, printer):
        return self._numpycode(printer)

    def _numpycode(self, printer):
        return f"point_block_gram({printer._print(self.args[0])}, D)"


def multi_cross_program(zero_mean: bool) -> Program:
    """K_R between two input sets with D outputs (THEORY §3c, §4): the (D·P1)×(D·P2) matrix
    with blocks (d, e) = (1/(λ1 n)) Σ_ij [Q_{(i,d),(j,e)} Kx_ij + ((R − Q)_{(i,d),(j,e)}) μ1_i μ2_jᵀ],
    and for every test input the D×D block K_R(x0, x0)_{de}, including the cross-patch blocks
    Kd_ij (i ≠ j) Q switches on."""
    prog = Program()
    Q, Qbar = MatrixSymbol("Q", nD, nD), MatrixSymbol("Qbar", nD, nD)
    mu1, mu2, mu0 = MatrixSymbol("mu1", n, P1), MatrixSymbol("mu2", n, P2), \
        MatrixSymbol("mu0", n, P0)
    Kx, Kd = sp.Symbol("Kx"), sp.Symbol("Kd")
    c = C_READOUT
    if zero_mean:
        prog.add(MatrixSymbol("kR", DP1, DP2), c * FullSum(Q, Kx, DP1, DP2))
        prog.add(MatrixSymbol("kR00", P0, D * D), c * PointBlocks(Q, Kd))
        return prog
    R = prog.add(MatrixSymbol("R", nD, nD), Inverse(Identity(nD) + Qbar))
    prog.add(MatrixSymbol("kR", DP1, DP2),
             c * (FullSum(Q, Kx, DP1, DP2) + LiftedSandwich(R - Q, mu1, mu2, DP1, DP2)))
    prog.add(MatrixSymbol("kR00", P0, D * D), c * (PointBlocks(Q, Kd) + PointSandwich(R - Q, mu0)))
    return prog


def multi_predictor_program() -> Program:
    """THEORY §4 with D outputs: mean (stacked (d, a)) = k_R z, z = A⁻¹y; the D×D predictive
    covariance of every test input K_R(x0, x0) − [k_R A⁻¹ k_Rᵀ]_{(·,a),(·,a)}, its second term
    from one triangular solve X = L⁻¹ k_Rᵀ (A = LLᵀ) as the per-point Gram blocks of X."""
    from .printer import ChoFactor, TriSolve
    kR = MatrixSymbol("kR", DP0, DP)
    kR00 = MatrixSymbol("kR00", P0, D * D)
    A = MatrixSymbol("A", DP, DP)
    z = MatrixSymbol("z", DP, 1)
    prog = Program(inputs={"kR": kR, "kR00": kR00, "A": A, "z": z})
    prog.add(MatrixSymbol("mean", DP0, 1), kR * z)
    prog.add(MatrixSymbol("cov", P0, D * D), kR00 - PointGram(TriSolve(ChoFactor(A, "A"), kR.T)))
    return prog


# ----------------------------------------------------------------------------------------------
# Explicit evaluation of the D-output programs (small sizes; exact arithmetic)
# ----------------------------------------------------------------------------------------------

def lifted_explicit_data(blocks: dict, mu: sp.Matrix, Dsz: int):
    """The lifted tensor and means of explicit data: {(I, J): E_de ⊗ K_ij} for every ordered
    pair whose patch block is given, and μ^D ((nD)×(DP)), with I = i·D + d and the (d, μ)
    stacking (THEORY §3c)."""
    nsz, Psz = mu.shape
    out = {}
    for (i, j), Kij in blocks.items():
        for d in range(Dsz):
            for e in range(Dsz):
                M = sp.zeros(Dsz * Psz, Dsz * Psz)
                M[d * Psz:(d + 1) * Psz, e * Psz:(e + 1) * Psz] = Kij
                out[(i * Dsz + d, j * Dsz + e)] = M
    muD = sp.zeros(nsz * Dsz, Dsz * Psz)
    for i in range(nsz):
        for d in range(Dsz):
            for a in range(Psz):
                muD[i * Dsz + d, d * Psz + a] = mu[i, a]
    return out, muD


def _entries(kind: str, nsz: int, Dsz: int):
    """Independent entries (I, J), I ≤ J, of the D-output order parameter: every entry (CNN,
    FC) or the D×D diagonal blocks (LCN)."""
    out = []
    for I in range(nsz * Dsz):
        for J in range(I, nsz * Dsz):
            if kind == "lcn" and I // Dsz != J // Dsz:
                continue
            out.append((I, J))
    return out


def verify_multi_gradients(kind: str, nsz: int, Dsz: int, Psz: int, zero_mean: bool,
                           seed: int = 0) -> int:
    """Check the D-output gradients of :func:`multi_program` against SymPy's own
    differentiation of the explicit action, in exact rational arithmetic (as
    :func:`derivations.action.verify_gradients` for one output).

    Data: K_ij = Φ_iᵀΦ_j/d from random rational features (LCN: only K_ii; FC: n = 1), μ, Y,
    T, N, λ1 rational; a rational point Q (positive definite, block-diagonal for the LCN) and
    Q̄. For every independent entry x = Q_IJ (and Q̄_IJ) the explicit action S(x) is built with
    x a Symbol and differentiated; at the point, ∂S/∂x must EQUAL (2 − δ_IJ)·(∇S)_IJ.
    Returns the number of entries compared.
    """
    import random
    if kind == "fc" and nsz != 1:
        raise ValueError("FC has n = 1")
    rng = random.Random(seed + 7)
    _, env1 = ac.action_explicit("cnn" if kind == "fc" else kind, nsz, Psz, zero_mean,
                                 symbolic=False, seed=seed, build=False)
    blocks, mu = env1["K"], env1["mu"]
    lifted, muD = lifted_explicit_data(blocks, mu, Dsz)
    y = sp.Matrix(Dsz * Psz, 1, lambda a, _: sp.Rational(rng.randint(-9, 9), 5))
    m = nsz * Dsz
    Qm, Qbm = sp.zeros(m, m), sp.zeros(m, m)
    for I in range(m):
        Qm[I, I] = sp.Rational(rng.randint(8, 14), 10)
        Qbm[I, I] = sp.Rational(rng.randint(-3, 5), 10)
    for I, J in _entries(kind, nsz, Dsz):
        if I != J:
            Qm[I, J] = Qm[J, I] = sp.Rational(rng.randint(-2, 2), 10 * m)
            Qbm[I, J] = Qbm[J, I] = sp.Rational(rng.randint(-1, 1), 10 * m)
    env = {"K": lifted, "muD": muD if not zero_mean else sp.zeros(m, Dsz * Psz), "y": y,
           "T": sp.Rational(rng.randint(2, 9), 10), "N": sp.Integer(rng.randint(2, 9)),
           "lambda1": sp.Rational(rng.randint(5, 15), 10), "n": sp.Integer(nsz),
           "nD": sp.Integer(m), "DP": sp.Integer(Dsz * Psz), "Q": Qm, "Qbar": Qbm}
    prog = multi_program(zero_mean)
    S_expr = prog.expanded("S")
    count = 0
    names = [("Q", "dS_dQ")] + ([] if zero_mean else [("Qbar", "dS_dQbar")])
    for var, gname in names:
        derived = ac.explicit(prog.expanded(gname), env)
        for I, J in _entries(kind, nsz, Dsz):
            s = sp.Symbol("s")
            V = env[var].copy()
            V[I, J] = V[J, I] = s
            S = ac.explicit(S_expr, {**env, var: V})
            got = sp.diff(S, s).subs(s, env[var][I, J])
            want = (1 if I == J else 2) * derived[I, J]
            if sp.nsimplify(sp.simplify(got - want)) != 0:
                raise AssertionError(f"{kind} n={nsz} D={Dsz} P={Psz} {gname}[{I},{J}]: "
                                     f"SymPy {got} != derived {want}")
            count += 1
    return count


# ----------------------------------------------------------------------------------------------
# FC (n = 1) in the joint eigenbasis of Q and K
# ----------------------------------------------------------------------------------------------
#
# Grid expressions: the Symbols kc (k as a (P, 1) column), qr (q as a (1, D) row), Yt (the
# rotated targets UᵀYV, (P, D)), m (Uᵀμ as a (P, 1) column) broadcast to the P×D grid of modes
# (μ, a), so a SymPy expression in them is an elementwise NumPy expression on the grid. The
# nodes below are the reductions and D×D matrix operations; each prints as NumPy
# (``_numpycode``) and evaluates on explicit matrices (:func:`evaluate_eig`).

kc, qr, Yt, mc = sp.symbols("kc qr Yt mc", real=True)
C_LABEL = "C = lambda1*Vt(1 + Qbar)V + diag(s1)"


class _Node(sp.Expr):
    is_commutative = True

    def __new__(cls, *args):
        return super().__new__(cls, *map(sp.sympify, args))

    def _krenprint(self, printer):
        return self._numpycode(printer)


class ColSum(_Node):
    """Σ_μ of a grid expression: a (D,) vector (printed ``np.sum(e, axis=0)``)."""

    def _numpycode(self, p):
        return f"np.sum({p._print(self.args[0])}, axis=0)"


class Diag(_Node):
    """diag(v) of a (D,) vector (printed ``np.diag``)."""

    def _numpycode(self, p):
        return f"np.diag({p._print(self.args[0])})"


class KGram(_Node):
    """Σ_μ w_μ X_μa Y_μb for grid arrays X, Y and a weight column w: a D×D matrix
    (printed ``(X*w).T @ Y``)."""

    def _numpycode(self, p):
        X, Y, w = (p._print(a) for a in self.args)
        return f"((({X})*{w}).T @ ({Y}))"


class Sandwich(_Node):
    """V M Vᵀ (printed ``V @ (M) @ V.T``)."""

    def _numpycode(self, p):
        V, M = (p._print(a) for a in self.args)
        return f"({V} @ ({M}) @ {V}.T)"


class Eye(_Node):
    """The D×D identity (printed ``np.eye(D)``)."""

    def _numpycode(self, p):
        return "np.eye(D)"


class Logdet(_Node):
    """log det of a D×D symmetric positive-definite matrix (Cholesky; the label names it in a
    not-positive-definite error)."""

    def _numpycode(self, p):
        return f"cho_logdet(cho_factor({p._print(self.args[0])}, {self.args[1].name!r}))"


class Solve(_Node):
    """M⁻¹ v for a D×D symmetric positive-definite M (Cholesky)."""

    def _numpycode(self, p):
        return (f"cho_solve(cho_factor({p._print(self.args[0])}, {self.args[2].name!r}), "
                f"{p._print(self.args[1])})")


class Inv(_Node):
    """M⁻¹ for a D×D symmetric positive-definite M (Cholesky)."""

    def _numpycode(self, p):
        return f"cho_inverse(cho_factor({p._print(self.args[0])}, {self.args[1].name!r}))"


class Outer(_Node):
    """u vᵀ of two (D,) vectors."""

    def _numpycode(self, p):
        return f"np.outer({p._print(self.args[0])}, {p._print(self.args[1])})"


class TrProd(_Node):
    """Tr(X Y) of two D×D matrices (printed ``np.sum(X*Y.T)``)."""

    def _numpycode(self, p):
        return f"np.sum(({p._print(self.args[0])})*({p._print(self.args[1])}).T)"


class MatVec(_Node):
    """M v for a D×D matrix and a (D,) vector (printed ``M @ v``)."""

    def _numpycode(self, p):
        return f"({p._print(self.args[0])}) @ ({p._print(self.args[1])})"


class RowDot(_Node):
    """(Σ_b X_μb v_b)_μ as a (P, 1) column for a grid array X and a (D,) vector v."""

    def _numpycode(self, p):
        return f"(({p._print(self.args[0])}) @ ({p._print(self.args[1])}))[:, None]"


class Row(_Node):
    """A (D,) vector as a (1, D) row of the grid."""

    def _numpycode(self, p):
        return f"({p._print(self.args[0])})[None, :]"


class EigHessianTerms(_Node):
    """(T1, T2) of the FC D-output Hessian in the joint eigenbasis
    (kren.multi_linalg.kron_eig_hessian_terms)."""

    def _numpycode(self, p):
        return "kron_eig_hessian_terms(" + ", ".join(p._print(a) for a in self.args) + ")"


def fc_eig_zero_mean_program() -> Program:
    """Zero-mean FC with D outputs in the joint eigenbasis (THEORY §3c), O(P·D²) per call.

    K = U diag(k) Uᵀ, Q = V diag(q) Vᵀ, Ỹ = UᵀYV (Y the P×D targets), Δ_μa = T + q_a k_μ/λ1:

        S      = Σ_a (q_a − log q_a) + (1/N) Σ_{μ,a} [log Δ_μa + Ỹ_μa²/Δ_μa],
        ∇_Q S  = V [𝟙 − diag(1/q) + G̃/(N λ1)] Vᵀ,
        G̃_ab   = δ_ab Σ_μ k_μ/Δ_μa − Σ_μ k_μ Z̃_μa Z̃_μb,   Z̃ = Ỹ/Δ   (the rotated z = A⁻¹y).

    Derivation: A = T𝟙 + (Q ⊗ K)/λ1 = (V ⊗ U) diag(Δ) (V ⊗ U)ᵀ (output-major stacking:
    y = vec(Y)), so det A = Π Δ and yᵀA⁻¹y = Σ Ỹ²/Δ; the gradient is the n = 1 case of
    :func:`multi_program`, G_de = ⟨K, B_de⟩ = V G̃ Vᵀ with B = A⁻¹ − zzᵀ written in the same
    basis. Checked exactly on explicit rotations by :func:`verify_fc_eigenbasis`.
    """
    q = sp.Symbol("q", positive=True)
    V = sp.Symbol("V")
    prog = Program(inputs={"q": q, "V": V, "kc": kc, "qr": qr, "Yt": Yt})
    Delta = prog.add(sp.Symbol("Delta", positive=True), T + qr * kc / lambda1)
    prog.add(sp.Symbol("S"), ac.ModeSum(q - log(q)) + ac.ModeSum(log(Delta) + Yt ** 2 / Delta) / N)
    Zt = prog.add(sp.Symbol("Zt"), Yt / Delta)
    Gt = prog.add(sp.Symbol("Gt"), Diag(ColSum(kc / Delta)) - KGram(Zt, Zt, kc))
    prog.add(sp.Symbol("dS_dQ"), Sandwich(V, Eye() - Diag(1 / q) + Gt / (N * lambda1)))
    return prog


def fc_eig_hessian_program() -> Program:
    """The zero-mean FC D-output Hessian in packed coordinates of the D×D Q: the n = 1 case of
    :func:`multi_hessian_zero_mean_program` (PackedSandwich(Q⁻¹) + (−T1 + 2T2)/(N λ1²)) with
    T1, T2 evaluated in the joint eigenbasis (kren.multi_linalg.kron_eig_hessian_terms)."""
    src = multi_hessian_zero_mean_program()
    H = src["hessian"].xreplace({n: sp.Integer(1)})
    terms = sp.Symbol("hess_terms")
    prog = Program()
    prog.add(terms, EigHessianTerms(sp.Symbol("V"), sp.Symbol("Delta"), sp.Symbol("k"),
                                    sp.Symbol("Zt"), sp.Symbol("gpairs")))
    prog.add(sp.Symbol("hessian_"), H)
    return prog


def fc_eig_program() -> Program:
    """FC with D outputs and unit means (relu) in the joint eigenbasis of Q and the centered
    kernel K − μμᵀ = U diag(k) Uᵀ (THEORY §3c), O(P·D² + D³) per call.

    In that basis A = diag(Δ) + W R̃ Wᵀ/λ1 with R̃ = Vᵀ(𝟙 + Q̄)⁻¹V, W_{(a,μ),b} = δ_ab m_μ,
    m = Uᵀμ: a rank-D update. With s1_a = Σ_μ m_μ²/Δ_μa, s2_a = Σ_μ m_μ Ỹ_μa/Δ_μa and
    C = λ1 Vᵀ(𝟙 + Q̄)V + diag(s1) (= λ1 R̃⁻¹ + WᵀΔ⁻¹W), the determinant lemma and Woodbury give

        log det A = Σ log Δ + log det C − D log λ1 − log det(𝟙 + Q̄),
        yᵀA⁻¹y   = Σ Ỹ²/Δ − s2ᵀ C⁻¹ s2,
        Z̃_μa     = Ỹ_μa/Δ_μa − m_μ (C⁻¹s2)_a/Δ_μa      (z = A⁻¹y),

    and with B = A⁻¹ − zzᵀ the contractions of :func:`multi_program` (n = 1)

        G̃c_ab = ⟨K − μμᵀ, B_ab⟩ = δ_ab Σ_μ k_μ/Δ_μa − (C⁻¹)_ab Σ_μ k_μ m_μ²/(Δ_μa Δ_μb)
                − Σ_μ k_μ Z̃_μa Z̃_μb,
        H̃_ab  = μᵀ B_ab μ = δ_ab s1_a − s1_a (C⁻¹)_ab s1_b − (Σ_μ m_μ Z̃_μa)(Σ_μ m_μ Z̃_μb),
        ∇_Q S = −Q̄ + V G̃c Vᵀ/(N λ1),   ∇_Q̄ S = −Q + R − R (V H̃ Vᵀ) R/(N λ1).

    Checked exactly on explicit rotations by :func:`verify_fc_eigenbasis`.
    """
    q = sp.Symbol("q", positive=True)
    V, Qb, Q, Rm = sp.Symbol("V"), sp.Symbol("Qbar"), sp.Symbol("Q"), sp.Symbol("R")
    prog = Program(inputs={"q": q, "V": V, "Q": Q, "Qbar": Qb, "kc": kc, "qr": qr, "Yt": Yt,
                           "mc": mc})
    Delta = prog.add(sp.Symbol("Delta", positive=True), T + qr * kc / lambda1)
    s1 = prog.add(sp.Symbol("s1"), ColSum(mc ** 2 / Delta))
    s2 = prog.add(sp.Symbol("s2"), ColSum(mc * Yt / Delta))
    Vt = sp.Symbol("Vt")                  # Vᵀ
    Cm = prog.add(sp.Symbol("C"), lambda1 * Sandwich(Vt, Eye() + Qb) + Diag(s1))
    w = prog.add(sp.Symbol("w"), Solve(Cm, s2, Str(C_LABEL)))
    Ci = prog.add(sp.Symbol("Ci"), Inv(Cm, Str(C_LABEL)))
    Xb = Eye() + Qb
    prog.add(sp.Symbol("S"),
             -TrProd(Q, Qb) + Logdet(Xb, Str("1 + Qbar"))
             + (ac.ModeSum(log(Delta)) + Logdet(Cm, Str(C_LABEL))
                - D * log(lambda1) - Logdet(Xb, Str("1 + Qbar"))
                + ac.ModeSum(Yt ** 2 / Delta) - ac.ModeSum(s2 * w)) / N)
    Zt = prog.add(sp.Symbol("Zt"), Yt / Delta - mc * Row(w) / Delta)
    km = KGram(mc / Delta, mc / Delta, kc)
    Gc = prog.add(sp.Symbol("Gc"), Diag(ColSum(kc / Delta)) - Ci * km - KGram(Zt, Zt, kc))
    # Ci * km is the elementwise (Hadamard) product of the two D×D matrices
    mz = prog.add(sp.Symbol("mz"), ColSum(mc * Zt))
    Ht = prog.add(sp.Symbol("Ht"), Diag(s1) - Outer(s1, s1) * Ci - Outer(mz, mz))
    R = prog.add(Rm, Inv(Xb, Str("1 + Qbar")))
    prog.add(sp.Symbol("dS_dQ"), -Qb + Sandwich(V, Gc) / (N * lambda1))
    prog.add(sp.Symbol("dS_dQbar"),
             -Q + R - Sandwich(R, Sandwich(V, Ht)) / (N * lambda1))
    return prog


def evaluate_eig(prog: Program, env: dict) -> dict:
    """Evaluate an eigenbasis program on explicit SymPy matrices (exact arithmetic).

    ``env``: q, k (lists), V, Q, Qbar (D×D Matrices), Yt (P×D Matrix, = UᵀYV), m (list), T, N,
    lambda1, D. Grid symbols become P×D Matrices; the nodes act as documented. Returns the
    value of every definition."""
    Dn = int(env["D"])
    Pn = len(env["k"])
    grid = {kc: sp.Matrix(Pn, Dn, lambda a, b: env["k"][a]),
            qr: sp.Matrix(Pn, Dn, lambda a, b: env["q"][b]),
            Yt: env["Yt"],
            mc: sp.Matrix(Pn, Dn, lambda a, b: env.get("m", [0] * Pn)[a])}
    scal = {T: env["T"], N: env["N"], lambda1: env["lambda1"], D: sp.Integer(Dn)}
    vals = {"q": sp.Matrix(env["q"]), "V": env["V"], "Vt": env["V"].T,
            "Q": env.get("Q"), "Qbar": env.get("Qbar")}

    def ev(e):
        if isinstance(e, sp.Symbol):
            if e in grid:
                return grid[e]
            if e.name in vals:
                return vals[e.name]
            if e in scal:
                return scal[e]
            return vals[e.name]
        if e.is_Number:
            return e
        if isinstance(e, ColSum):
            g = ev(e.args[0])
            return sp.Matrix([sum(g[a, b] for a in range(Pn)) for b in range(Dn)])
        if isinstance(e, Diag):
            return sp.diag(*list(ev(e.args[0])))
        if isinstance(e, KGram):
            X, Y, w = (ev(a) for a in e.args)
            return sp.Matrix(Dn, Dn, lambda a, b: sum(w[m_, 0] * X[m_, a] * Y[m_, b]
                                                      for m_ in range(Pn)))
        if isinstance(e, Sandwich):
            Vv, M = ev(e.args[0]), ev(e.args[1])
            return Vv * M * Vv.T
        if isinstance(e, Eye):
            return sp.eye(Dn)
        if isinstance(e, Logdet):
            return sp.log(ev(e.args[0]).det())
        if isinstance(e, Solve):
            return ev(e.args[0]).inv() * ev(e.args[1])
        if isinstance(e, Inv):
            return ev(e.args[0]).inv()
        if isinstance(e, Outer):
            return ev(e.args[0]) * ev(e.args[1]).T
        if isinstance(e, TrProd):
            return (ev(e.args[0]) * ev(e.args[1])).trace()
        if isinstance(e, Row):
            v = ev(e.args[0])
            return sp.Matrix(Pn, Dn, lambda a, b: v[b])
        if isinstance(e, ac.ModeSum):
            g = ev(e.args[0])
            return sum(g) if isinstance(g, sp.MatrixBase) else g
        if isinstance(e, (sp.Add, sp.Mul, sp.Pow, sp.log)):
            args = [ev(a) for a in e.args]
            mats = [a for a in args if isinstance(a, sp.MatrixBase)]
            if not mats:
                return e.func(*args)
            shape = mats[0].shape
            if isinstance(e, sp.Add):
                out = sp.zeros(*shape)
                for a in args:
                    out += a if isinstance(a, sp.MatrixBase) else a * sp.ones(*shape)
                return out
            # elementwise (Hadamard) products, powers and logs
            def at(a, i, j):
                return a[i, j] if isinstance(a, sp.MatrixBase) else a
            return sp.Matrix(*shape, lambda i, j: e.func(*[at(a, i, j) for a in args]))
        raise NotImplementedError(f"evaluate_eig: {type(e).__name__}")

    out = {}
    for sym, expr in prog.defs:
        val = ev(expr)
        vals[str(sym)] = val
        out[str(sym)] = val
    return out


def all_programs():
    """Every D-output program the code generator prints, keyed by name."""
    return {"general": multi_program(False), "zero_mean": multi_program(True),
            "fixed_point": multi_fixed_point_program(False),
            "fixed_point_zero_mean": multi_fixed_point_program(True),
            "eliminated_Qbar": multi_eliminated_Qbar_program(),
            "hessian_zero_mean": multi_hessian_zero_mean_program(),
            "hessian": multi_hessian_program(),
            "cross": multi_cross_program(False), "cross_zero_mean": multi_cross_program(True),
            "predictor": multi_predictor_program(),
            "fc_eig_zero_mean": fc_eig_zero_mean_program(), "fc_eig": fc_eig_program(),
            "fc_eig_hessian": fc_eig_hessian_program()}
