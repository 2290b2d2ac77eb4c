"""The functions of ``kren/generated/multi.py`` and ``kren/generated/multi_fc.py`` (D outputs,
THEORY §3c), printed from :mod:`derivations.multi_output` by ``python -m derivations.codegen``.

* ``multi``: the D-output action of LCN, CNN and FC (n = 1) over a stored kernel tensor with
  (nD)×(nD) order parameters: K_R, action, gradients, Hessians, test×train kernels, the test
  diagonal blocks, the predictor, the fixed-point maps and Q̄ elimination. The lifted tensor
  E_de ⊗ K_ij is never formed (kren.multi_linalg).
* ``multi_fc``: FC (and pooled CNN) in the joint eigenbasis of Q and K, O(P·D²) per call.

Only :func:`functions_multi` and :func:`functions_multi_fc` are used by
:mod:`derivations.codegen` (its MODULES entries).
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity, MatrixSymbol

from . import multi_output as mo
from .action import PairContract, scale_into_weights
from .printer import ChoFactor, ChoSolve, Shifted

__all__ = ["functions_multi", "functions_multi_fc", "DOC_MULTI", "DOC_MULTI_FC",
           "IMPORTS_MULTI", "IMPORTS_MULTI_FC"]

DOC_MULTI = ("D-output effective actions (THEORY §3c): (nD)×(nD) order parameters Q, Q̄ indexed "
             "(i, d) → i·D + d,\ntargets stacked output-major (d, μ) → d·P + μ; LCN (a tensor of "
             "the blocks K_ii, block-diagonal Q), CNN,\nFC (n = 1) and pooled CNN (n = 1 on "
             "K_pool).")
DOC_MULTI_FC = ("FC with D outputs in the joint eigenbasis of Q (D×D) and K (THEORY §3c): "
                "O(P·D²) per call\nafter a D×D eigendecomposition of Q.")
IMPORTS_MULTI = ["import numpy as np", "from scipy.linalg import solve_triangular", "",
                 "from kren.linalg import cho_factor, cho_inverse, cho_logdet, cho_solve\n"
                 "from kren.multi_linalg import (lift_means, lifted_point_sandwich, "
                 "lifted_sandwich, multi_diag_combine,\n"
                 "                               multi_diag_point_blocks, multi_full_combine, "
                 "multi_pair_combine,\n"
                 "                               multi_pair_contract, multi_pair_contract_inverse, "
                 "multi_pair_hessian_terms,\n"
                 "                               multi_point_blocks, multi_tensor, output_count, "
                 "output_pairs,\n"
                 "                               point_block_gram, shifted)"]
IMPORTS_MULTI_FC = ["import numpy as np", "",
                    "from kren.linalg import cho_factor, cho_inverse, cho_logdet, cho_solve, "
                    "triu_pairs\n"
                    "from kren.multi_linalg import eigh_pd, kron_eig_hessian_terms"]

A_LABEL = "A = T*1 + K_R"


class _ContractInverse(sp.Expr):
    """G = PairContract(K', B) with B = A⁻¹ − zzᵀ, printed as
    ``multi_pair_contract_inverse(blocks, cho, z, pairs, D)`` (kren.multi_linalg: from the
    Cholesky factor of A, B never formed)."""

    is_commutative = True

    def _numpycode(self, p):
        return f"multi_pair_contract_inverse(blocks, {p._print(self.args[0])}, " \
               f"{p._print(self.args[1])}, pairs, D)"


def _fast(defs, contract: bool):
    """The printed forms of two definitions of derivations.multi_output.multi_program (their
    values unchanged): A = T𝟙 + K_R in place on the temporary K_R, and (``contract``: zero-mean
    units, where nothing else needs B) G = PairContract(K', B) from the Cholesky factor of A,
    so that B itself is no longer printed."""
    B = MatrixSymbol("B", mo.DP, mo.DP)
    K_R = MatrixSymbol("K_R", mo.DP, mo.DP)
    out = []
    for sym, e in defs:
        if str(sym) == "K_R" and contract:
            # zero-mean units: K_R = c·PairSum(Q) printed as PairSum(c·Q), the scalar on the
            # (nD)×(nD) Q instead of a (DP)×(DP) product
            e = scale_into_weights(e, MatrixSymbol("Q", mo.nD, mo.nD))
        elif str(sym) == "A":
            if e != mo.T * Identity(mo.DP) + K_R:
                raise AssertionError(f"A is not T*1 + K_R: {e}")
            e = Shifted(K_R, mo.T)
        elif str(sym) == "G" and contract:
            if e != PairContract(mo.K, B, mo.nD):
                raise AssertionError(f"G is not PairContract(K, B): {e}")
            e = _ContractInverse(sp.Symbol("cho"), MatrixSymbol("z", mo.DP, 1))
        out.append((sym, e))
    return out


def _fn(*args, **kw):
    from .codegen import Fn
    return Fn(*args, **kw)


# ----------------------------------------------------------------------------------------------
# kren/generated/multi.py
# ----------------------------------------------------------------------------------------------

PRE_Q = ["Q = square(Q, 'Q')", "D = output_count(D)",
         "if Q.shape[0] % D:",
         "    raise ValueError(f'Q must be (nD, nD) for D = {D} outputs, got shape {Q.shape}')",
         "nD = Q.shape[0]", "n = nD//D"]
PRE_QB = ["Qbar = square(Qbar, 'Qbar')",
          "if Qbar.shape != Q.shape:",
          "    raise ValueError(f'Qbar must have the shape of Q {Q.shape}, got {Qbar.shape}')"]
PRE_T = ["blocks, pairs, P = multi_tensor(blocks, pairs, n, D)", "DP = D*P"]
PRE_MU = ["mu = means(mu, n, P)", "muD = lift_means(mu, D)"]
PRE_Y = ["y = vector(y, 'y', DP)", "T = as_float(T, 'T')", "N = as_float(N, 'N')",
         "lambda1 = as_float(lambda1, 'lambda1')"]
PRE_L = ["lambda1 = as_float(lambda1, 'lambda1')"]
PRE_CHO = ["if not cho[1]:",
           "    raise ValueError('cho must be the lower Cholesky factor from "
           "kren.linalg.cho_factor')",
           "z = vector(z, 'z', DP)"]
TENSORS = {"K": ("multi", "blocks", "gpairs", "pairs", "D")}

K_DOC = ("(K_R)_de = (1/(λ1 n)) Σ_ij [Q_(i,d),(j,e) (K_ij − μ_i μ_jᵀ) + "
         "((𝟙 + Q̄)⁻¹)_(i,d),(j,e) μ_i μ_jᵀ]")
S_DOC = "S = −Tr(Q Q̄) + log det(𝟙 + Q̄) + (1/N)[log det A + yᵀA⁻¹y],  A = T𝟙_DP + K_R"
S0_DOC = ("S = Tr Q − log det Q + (1/N)[log det A + yᵀA⁻¹y],  "
          "(K_R)_de = (1/(λ1 n)) Σ_ij Q_(i,d),(j,e) K_ij")
ARGS_DOC = ("Q, Q̄ (nD, nD) symmetric, index (i, d) → i·D + d; blocks (n_pairs, P, P) and pairs\n"
            "(n_pairs, 2), i ≤ j, of a KernelTensor (LCN: the blocks K_ii, Q block-diagonal; FC and\n"
            "pooled CNN: one block, n = 1); mu (n, P) unit means; D the number of outputs; y the\n"
            "(DP,) targets stacked output-major (d, μ) → d·P + μ.")
VEC_DOC = ("Gradients are symmetric (nD, nD) matrices with dS = Tr(∇ dQ) for symmetric dQ\n"
           "(∂S/∂Q_IJ = (2 − δ_IJ) ∇_IJ); for the LCN keep their D×D diagonal blocks.")


def _with_cho(defs, zero_mean, labels):
    Q = MatrixSymbol("Q", mo.nD, mo.nD)
    Qb = MatrixSymbol("Qbar", mo.nD, mo.nD)
    A = MatrixSymbol("A", mo.DP, mo.DP)
    y = MatrixSymbol("y", mo.DP, 1)
    first_m = Q if zero_mean else Identity(mo.nD) + Qb
    first = (sp.Symbol("cho_Q" if zero_mean else "cho_R"), ChoFactor(first_m, labels[first_m]))
    out = [first]
    for s, e in defs:
        out.append((s, e))
        if str(s) == "A":
            out.append((sp.Symbol("cho"), ChoFactor(A, A_LABEL)))
            out.append((MatrixSymbol("z", mo.DP, 1), ChoSolve(sp.Symbol("cho"), y)))
    return out


def _in_place(defs) -> dict:
    """``overwrite`` for an Fn of the action: A = T𝟙 + K_R is a fresh temporary that is exactly
    symmetric (multi_pair_combine adds S_de + S_edᵀ blockwise, and T goes on the diagonal), so
    its Cholesky factor is computed in A's own memory (kren.linalg.cho_factor(overwrite=True))
    when no definition after A reads A itself (only its factor)."""
    from sympy import Determinant, Inverse
    A = MatrixSymbol("A", mo.DP, mo.DP)
    names = [str(s) for s, _ in defs]
    k = names.index("A")
    # A⁻¹ and det A are lowered onto the factor (derivations.printer.lower); anything else reads A
    via_factor = {Inverse(A): MatrixSymbol("A_inv", mo.DP, mo.DP),
                  Determinant(A): sp.Symbol("det_A")}
    read = any(e.xreplace(via_factor).has(A) for _, e in defs[k + 1:])
    return {} if read else {"overwrite": (A_LABEL,)}


def functions_multi() -> list:
    """The Fn specifications of kren/generated/multi.py."""
    gen, zm = mo.multi_program(False), mo.multi_program(True)
    gen_fast, zm_fast = _fast(gen.defs, False), _fast(zm.defs, True)
    zm_in_place = _in_place(zm_fast)
    nD, DP = mo.nD, mo.DP
    A = MatrixSymbol("A", DP, DP)
    Q = MatrixSymbol("Q", nD, nD)
    Qb = MatrixSymbol("Qbar", nD, nD)
    labels = {A: A_LABEL, Q: "Q", Identity(nD) + Qb: "1 + Qbar"}
    varnames = {"Q": "cho_Q", "1 + Qbar": "cho_R"}
    common = dict(tensors=TENSORS, labels=labels, varnames=varnames)
    fns = [
        _fn("renormalized_kernel", ["Q", "Qbar", "blocks", "pairs", "mu", "D", "lambda1"],
            f"""D-output renormalized kernel over the training set (THEORY §3c), (DP, DP):

            {K_DOC}

            {mo_doc(ARGS_DOC)}
            Qbar=None means zero-mean units (requires mu = 0). Rows and columns (d, μ).
            """,
            PRE_Q + PRE_T + PRE_L + [
                "if Qbar is None:",
                "    if mu is not None and np.any(np.asarray(mu) != 0):",
                "        raise ValueError('Qbar is required when the unit means mu are non-zero')",
                "    return _renormalized_kernel_zero_mean(Q, blocks, pairs, D, lambda1)"]
            + PRE_QB + PRE_MU, gen.defs, ["K_R"], **common),
        _fn("_renormalized_kernel_zero_mean", ["Q", "blocks", "pairs", "D", "lambda1"],
            "(K_R)_de = (1/(λ1 n)) Σ_ij Q_(i,d),(j,e) K_ij (zero-mean units).",
            ["nD = Q.shape[0]", "n = nD//D", "P = blocks.shape[1]", "DP = D*P"],
            zm.defs, ["K_R"], **common),
        _fn("action", ["Q", "Qbar", "blocks", "pairs", "mu", "D", "y", "T", "N", "lambda1"],
            f"""D-output effective action (THEORY §3c):

            {S_DOC}
            {K_DOC}
            """, PRE_Q + PRE_QB + PRE_T + PRE_MU + PRE_Y,
            _with_cho(gen_fast, False, labels), ["S"], **common),
        _fn("action_zero_mean", ["Q", "blocks", "pairs", "D", "y", "T", "N", "lambda1"],
            f"""D-output effective action, zero-mean units (THEORY §3c):

            {S0_DOC}
            """, PRE_Q + PRE_T + PRE_Y, _with_cho(zm_fast, True, labels), ["S"], **common,
            **zm_in_place),
        _fn("action_gradient", ["Q", "Qbar", "blocks", "pairs", "mu", "D", "y", "T", "N",
                                "lambda1"],
            f"""D-output action and gradient (THEORY §3c): (S, dS_dQ, dS_dQbar, cho, z).

            {S_DOC}
            With z = A⁻¹y, B = A⁻¹ − zzᵀ, G_(i,d),(j,e) = ⟨K_ij, B_de⟩ (B_de the P×P block):
            dS_dQ    = −Q̄ + (G − μᴰ B μᴰᵀ)/(N λ1 n)
            dS_dQbar = −Q + R − R μᴰ B μᴰᵀ R/(N λ1 n),  R = (𝟙 + Q̄)⁻¹
            (μᴰ the lifted means, kren.multi_linalg.lift_means; derivations.multi_output
            .multi_program). {mo_doc(VEC_DOC)}
            cho: Cholesky factor of A; z = A⁻¹y (DP,).
            """, PRE_Q + PRE_QB + PRE_T + PRE_MU + PRE_Y, _with_cho(gen_fast, False, labels),
            ["S", "dS_dQ", "dS_dQbar", "cho", "z"], **common),
        _fn("action_gradient_zero_mean", ["Q", "blocks", "pairs", "D", "y", "T", "N",
                                          "lambda1"],
            f"""D-output zero-mean action and gradient (THEORY §3c): (S, dS_dQ, cho, z).

            {S0_DOC}
            dS_dQ = 𝟙 − Q⁻¹ + G/(N λ1 n),  G_(i,d),(j,e) = ⟨K_ij, B_de⟩,  B = A⁻¹ − zzᵀ
            {mo_doc(VEC_DOC)}
            One (DP)×(DP) Cholesky and inverse, two passes over the stored blocks (one GEMM per
            output each, kren.multi_linalg).
            """, PRE_Q + PRE_T + PRE_Y, _with_cho(zm_fast, True, labels),
            ["S", "dS_dQ", "cho", "z"], **common, **zm_in_place),
    ]
    hz = mo.multi_hessian_zero_mean_program()
    fns.append(_fn(
        "hessian_zero_mean", ["Q", "blocks", "pairs", "D", "y", "T", "N", "lambda1", "cho", "z"],
        """Hessian of the zero-mean D-output action in the packed coordinates x_p = Q_IJ over
        kren.multi_linalg.output_pairs(pairs, D) (every I ≤ J for a CNN tensor, the D×D
        diagonal blocks for an LCN tensor):

        H = PackedSandwich(Q⁻¹) + (−T1 + 2 T2)/(N (λ1 n)²),
        T1[p, q] = Tr(A⁻¹ D_p A⁻¹ D_q),  T2[p, q] = zᵀ D_p A⁻¹ D_q z,  D_p = lifted E_p ⊗ K

        (derivations.multi_output.multi_hessian_zero_mean_program). cho, z from
        action_gradient_zero_mean at the same point. Memory n_pairs'·(DP)²: small problems.
        """, PRE_Q + PRE_T + PRE_Y + PRE_CHO + ["gpairs = output_pairs(pairs, D)"],
        hz.defs, ["hessian"], **common, known={ChoFactor(A, A_LABEL): sp.Symbol("cho")}))
    hg = mo.multi_hessian_program()
    fns.append(_fn(
        "hessian", ["Q", "Qbar", "blocks", "pairs", "mu", "D", "y", "T", "N", "lambda1", "cho",
                    "z"],
        """Hessian of the D-output action with unit means in the packed coordinates
        x = (Q_IJ, then Q̄_IJ, over kren.multi_linalg.output_pairs(pairs, D)):

        H = c²/N (−T1 + 2 T2) + [[0, −E], [−E, −Tr(R E_p R E_q) + (c/N) X]],  c = 1/(λ1 n),
        X[p, q] = Tr(N_B E_p R E_q) + Tr(R E_p N_B E_q),  N_B = Vᵀ(A⁻¹ − zzᵀ)V,  V = μᴰᵀR

        (derivations.multi_output.multi_hessian_program; its second differential is checked by
        check_multi_second_differential). cho, z from action_gradient at the same point.
        Returns (2 n_pairs', 2 n_pairs'); indefinite at the saddle point. Small problems.
        """, PRE_Q + PRE_QB + PRE_T + PRE_MU + PRE_Y + PRE_CHO + ["gpairs = output_pairs(pairs, D)"],
        hg.defs, ["hessian"], **common, known={ChoFactor(A, A_LABEL): sp.Symbol("cho")}))
    fns += _cross_fns()
    fns += _predictor_fns()
    fns += _saddle_fns()
    return fns


def mo_doc(text):
    """Continuation lines of a docstring template at the templates' indentation."""
    import textwrap
    return textwrap.indent(text, " " * 12).lstrip()


def _cross_fns():
    gen, zm = mo.multi_cross_program(False), mo.multi_cross_program(True)
    nD = mo.nD
    Qb = MatrixSymbol("Qbar", nD, nD)
    labels = {Identity(nD) + Qb: "1 + Qbar"}
    varnames = {"1 + Qbar": "cho_R"}
    pre_q = ["Q = square(Q, 'Q')", "D = output_count(D)",
             "if Q.shape[0] % D:",
             "    raise ValueError(f'Q must be (nD, nD) for D = {D} outputs, got shape {Q.shape}')",
             "nD = Q.shape[0]", "n = nD//D"]
    fns = []
    for kind, suffix, tname, what in (("full", "", "multi_full",
                                       "full tensor Kx (n, n, P1, P2) (FC: (1, 1, P1, P2) or (P1, "
                                       "P2); pooled CNN: the pooled (P1, P2))"),
                                      ("diag", "_diagonal", "multi_diag",
                                       "diagonal blocks Kx (n, P1, P2) (LCN)")):
        tens = {"Kx": (tname, "Kx", "D"), "Kd": (tname, "Kd", "D")}
        if kind == "full":
            pre_x = ["Kx = np.asarray(Kx)", "if Kx.ndim == 2:", "    Kx = Kx[None, None]",
                     "if Kx.ndim != 4 or Kx.shape[:2] != (n, n):",
                     "    raise ValueError(f'Kx must have shape ({n}, {n}, P1, P2), got "
                     "{Kx.shape}')", "P1, P2 = Kx.shape[2:]"]
            pre_d = ["Kd = np.asarray(Kd)", "if Kd.ndim == 1:", "    Kd = Kd[None, None]",
                     "if Kd.ndim != 3 or Kd.shape[:2] != (n, n):",
                     "    raise ValueError(f'Kd must have shape ({n}, {n}, P0), got {Kd.shape}')",
                     "P0 = Kd.shape[2]"]
        else:
            pre_x = ["Kx = np.asarray(Kx)", "if Kx.ndim != 3 or Kx.shape[0] != n:",
                     "    raise ValueError(f'Kx must hold the blocks K_ii(x1, x2), shape ({n}, "
                     "P1, P2), got {Kx.shape}')", "P1, P2 = Kx.shape[1:]"]
            pre_d = ["Kd = np.asarray(Kd)", "if Kd.ndim != 2 or Kd.shape[0] != n:",
                     "    raise ValueError(f'Kd must hold K_ii(x0, x0), shape ({n}, P0), got "
                     "{Kd.shape}')", "P0 = Kd.shape[1]"]
        pre_mx = ["mu1 = means(np.reshape(mu1, (n, -1)), n, P1, 'mu1')",
                  "mu2 = means(np.reshape(mu2, (n, -1)), n, P2, 'mu2')"]
        pre_md = ["mu0 = means(np.reshape(mu0, (n, -1)), n, P0, 'mu0')"]
        zero = lambda var, mus: [  # noqa: E731
            "if Qbar is None:",
            f"    if any(np.any(np.asarray(m) != 0) for m in ({mus})):",
            "        raise ValueError('Qbar is required when the unit means are non-zero')",
            f"    return _{var}{suffix}_zero_mean(Q, {'Kx' if var == 'cross' else 'Kd'}, D, "
            "lambda1)"]
        fns += [
            _fn(f"renormalized_cross_kernel{suffix}", ["Q", "Qbar", "Kx", "mu1", "mu2", "D",
                                                       "lambda1"],
                f"""D-output K_R between two input sets (THEORY §3c, §4), (D·P1, D·P2), rows
                (d, a), columns (e, b):

                K_R[(d, a), (e, b)] = (1/(λ1 n)) Σ_ij [Q_(i,d),(j,e) Kx_ij[a, b] +
                (R − Q)_(i,d),(j,e) μ1_i(a) μ2_j(b)],  R = (𝟙 + Q̄)⁻¹

                Kx: the {what}; mu1 (n, P1), mu2 (n, P2). Qbar=None: zero-mean units.
                """, pre_q + pre_x + PRE_L + zero("cross", "mu1, mu2") + PRE_QB + pre_mx,
                gen.defs, ["kR"], tensors=tens, labels=labels, varnames=varnames),
            _fn(f"_cross{suffix}_zero_mean", ["Q", "Kx", "D", "lambda1"],
                "K_R[(d, a), (e, b)] = (1/(λ1 n)) Σ_ij Q_(i,d),(j,e) Kx_ij[a, b] (zero mean).",
                ["nD = Q.shape[0]", "n = nD//D", "P1, P2 = Kx.shape[-2:]"], zm.defs, ["kR"],
                tensors=tens),
            _fn(f"renormalized_test_diagonal{suffix}", ["Q", "Qbar", "Kd", "mu0", "D", "lambda1"],
                f"""K_R(x0, x0) as a D×D block for every test input (THEORY §3c, §4), (P0, D, D):

                K_R(x0, x0)_de = (1/(λ1 n)) Σ_ij [Q_(i,d),(j,e) Kd_ij(x0) +
                (R − Q)_(i,d),(j,e) μ0_i μ0_j]

                Kd: {'K_ij(x0, x0), (n, n, P0) (FC: (1, 1, P0) or (P0,))' if kind == 'full'
                     else 'K_ii(x0, x0), (n, P0) (LCN)'}; mu0 (n, P0). Qbar=None: zero mean.
                """, pre_q + pre_d + PRE_L + zero("diag", "mu0,") + PRE_QB + pre_md,
                gen.defs, ["kR00"], tensors=tens, labels=labels, varnames=varnames,
                returns="kR00.reshape(P0, D, D)"),
            _fn(f"_diag{suffix}_zero_mean", ["Q", "Kd", "D", "lambda1"],
                "K_R(x0, x0)_de = (1/(λ1 n)) Σ_ij Q_(i,d),(j,e) Kd_ij(x0) (zero mean), "
                "(P0, D, D).",
                ["nD = Q.shape[0]", "n = nD//D"], zm.defs, ["kR00"], tensors=tens),
        ]
    return fns


def _predictor_fns():
    prog = mo.multi_predictor_program()
    A = MatrixSymbol("A", mo.DP, mo.DP)
    cho = sp.Symbol("cho")
    pre = ["D = output_count(D)", "kR = np.asarray(kR, dtype=float)",
           "kR00 = np.asarray(kR00, dtype=float)", "z = vector(z, 'z')",
           "P0 = kR00.shape[0]",
           "if kR00.shape != (P0, D, D) or kR.shape != (D*P0, z.shape[0]):",
           "    raise ValueError(f'kR must have shape (D*P0, DP) and kR00 (P0, D, D) for D = "
           "{D}, got {kR.shape} and {kR00.shape}')",
           "if not cho[1]:",
           "    raise ValueError('cho must be the lower Cholesky factor from "
           "kren.linalg.cho_factor')"]
    return [_fn(
        "predictor_moments", ["kR", "kR00", "cho", "z", "D"],
        """D-output predictor mean and covariance on test inputs (THEORY §4):

        mean[a, d] = (k_R z)[(d, a)],  z = A⁻¹y
        cov[a]     = K_R(x_a, x_a) − [k_R A⁻¹ k_Rᵀ]_(·,a),(·,a)   (D×D), from X = L⁻¹ k_Rᵀ

        kR (D·P0, DP) = K_R(x0, x^μ) rows (d, a); kR00 (P0, D, D); cho the Cholesky factor of
        A; z = A⁻¹y (DP,). One triangular solve. Returns (mean (P0, D), cov (P0, D, D)).
        """, pre, prog.defs, ["mean", "cov"], tensors={}, labels={A: "A"},
        known={ChoFactor(A, "A"): cho},
        returns="mean.reshape(D, P0).T, cov")]


def _saddle_fns():
    zm = mo.multi_fixed_point_program(True)
    gen = mo.multi_fixed_point_program(False)
    el = mo.multi_eliminated_Qbar_program()
    nD = mo.nD
    F = MatrixSymbol("F", nD, nD)
    labels = {MatrixSymbol("Q", nD, nD): "Q", F: "1 + G/(N*lambda1*n)",
              Identity(nD) + MatrixSymbol("Qbar_new", nD, nD): "1 + Qbar_new"}
    chk = lambda a: [f"{a} = square({a}, '{a}')",  # noqa: E731
                     f"if {a}.shape != Q.shape:",
                     f"    raise ValueError(f'{a} must have the shape of Q {{Q.shape}}, got "
                     f"{{{a}.shape}}')"]
    pre_Q = ["Q = square(Q, 'Q')", "nD = Q.shape[0]"]
    common = dict(tensors={}, labels=labels)
    return [
        _fn("fixed_point_zero_mean", ["Q", "dS_dQ"],
            """Fixed-point map of the zero-mean D-output saddle-point equation (THEORY §3c):

            Q_new = (∇_Q S + Q⁻¹)⁻¹ = (𝟙 + G/(N λ1 n))⁻¹

            from ∇S + Q⁻¹ = 𝟙 + G/(N λ1 n), checked on the D-output gradient
            (derivations.multi_output.multi_fixed_point_program): Q_new = Q exactly when the
            gradient vanishes. Arguments: (nD, nD) matrices (LCN: the block-diagonal gradient).
            Raises NotPositiveDefiniteError when 𝟙 + G/(N λ1 n) is not positive definite.
            """, pre_Q + chk("dS_dQ"), zm.defs, ["Q_new"], **common),
        _fn("fixed_point", ["Q", "Qbar", "dS_dQ", "dS_dQbar"],
            """Fixed-point map of the D-output saddle-point equations with unit means (THEORY §3c):

            Qbar_new = Q̄ + ∇_Q S,  H = X − X(Q + ∇_Q̄ S)X,  X = 𝟙 + Q̄,
            Q_new = R_new − R_new H R_new,  R_new = (𝟙 + Qbar_new)⁻¹

            with Q̄ + ∇_Q S and H = μᴰBμᴰᵀ/(N λ1 n) read off the D-output gradients
            (derivations.multi_output.multi_fixed_point_program). Arguments: (nD, nD) matrices
            (LCN: the block-diagonal parts of the gradients). Returns (Q_new, Qbar_new).
            """, pre_Q + chk("Qbar") + chk("dS_dQ") + chk("dS_dQbar"), gen.defs,
            ["Q_new", "Qbar_new"], **common),
        _fn("eliminated_Qbar", ["Q"],
            """Q̄ of zero-mean units with D outputs, Q̄ = Q⁻¹ − 𝟙 (nD × nD): the solution of
            ∂S/∂Q̄ = 0 at μ = 0 (derivations.multi_output.multi_eliminated_Qbar_program).""",
            pre_Q, el.defs, ["Qbar"], **common),
    ]


# ----------------------------------------------------------------------------------------------
# kren/generated/multi_fc.py
# ----------------------------------------------------------------------------------------------

PRE_EIG = ["Q = square(Q, 'Q')", "D = Q.shape[0]", "q, V = eigh_pd(Q, 'Q')",
           "k = vector(k, 'k')", "P = k.shape[0]",
           "Yt = np.asarray(Yt, dtype=float)",
           "if Yt.shape != (P, D):",
           "    raise ValueError(f'Yt must have shape ({P}, {D}) (UᵀY), got {Yt.shape}')",
           "T = as_float(T, 'T')", "N = as_float(N, 'N')",
           "lambda1 = as_float(lambda1, 'lambda1')",
           "kc = k[:, None]", "qr = q[None, :]", "Yt = Yt @ V"]


def functions_multi_fc() -> list:
    """The Fn specifications of kren/generated/multi_fc.py."""
    zm = mo.fc_eig_zero_mean_program()
    hz = mo.fc_eig_hessian_program()
    gen = mo.fc_eig_program()
    hdefs = [(s, e) for s, e in hz.defs]
    Qs = MatrixSymbol("Q", mo.nD, mo.nD)
    labels = {Qs: "Q"}
    f0 = _fn(
        "action_eig_zero_mean", ["Q", "k", "Yt", "T", "N", "lambda1"],
        """Zero-mean FC with D outputs in the joint eigenbasis (THEORY §3c), O(P·D²) per call.

        K = U diag(k) Uᵀ, Yt = UᵀY (P, D), Q = V diag(q) Vᵀ (eigendecomposed here),
        Ỹ = Yt V, Δ_μa = T + q_a k_μ/λ1, Z̃ = Ỹ/Δ:
        S      = Σ_a (q_a − log q_a) + (1/N) Σ_μa [log Δ_μa + Ỹ_μa²/Δ_μa]
        dS_dQ  = V [𝟙 − diag(1/q) + G̃/(N λ1)] Vᵀ,  G̃_ab = δ_ab Σ_μ k_μ/Δ_μa − Σ_μ k_μ Z̃_μa Z̃_μb
        hessian = PackedSandwich(Q⁻¹) + (−T1 + 2T2)/(N λ1²) over the packed pairs of Q
        (triu_pairs(D)), T1, T2 in the eigenbasis (kren.multi_linalg.kron_eig_hessian_terms)
        (derivations.multi_output.fc_eig_zero_mean_program, fc_eig_hessian_program).
        Returns (S, dS_dQ (D, D), hessian (D(D+1)/2, D(D+1)/2)).
        """, PRE_EIG + ["gpairs = triu_pairs(D)"], zm.defs + hdefs,
        ["S", "dS_dQ", "hessian_"], tensors={"K": ("pairs", "blocks", "gpairs")}, labels=labels,
        returns="S, dS_dQ, hessian_")
    f1 = _fn(
        "action_eig", ["Q", "Qbar", "k", "Yt", "m", "T", "N", "lambda1"],
        """FC with D outputs and unit means (relu) in the joint eigenbasis of Q and the centered
        kernel (THEORY §3c), O(P·D² + D³) per call.

        K − μμᵀ = U diag(k) Uᵀ, Yt = UᵀY (P, D), m = Uᵀμ, Q = V diag(q) Vᵀ, Ỹ = Yt V,
        Δ_μa = T + q_a k_μ/λ1, s1_a = Σ_μ m_μ²/Δ_μa, s2_a = Σ_μ m_μỸ_μa/Δ_μa,
        C = λ1 Vᵀ(𝟙 + Q̄)V + diag(s1), w = C⁻¹s2, Z̃ = (Ỹ − m wᵀ)/Δ:
        S = −Tr(QQ̄) + log det(𝟙 + Q̄) + (1/N)[Σ log Δ + log det C − D log λ1 −
        log det(𝟙 + Q̄) + Σ Ỹ²/Δ − s2ᵀw]
        dS_dQ    = −Q̄ + V G̃c Vᵀ/(N λ1),
        G̃c_ab    = δ_ab Σ_μ k_μ/Δ_μa − (C⁻¹)_ab Σ_μ k_μ m_μ²/(Δ_μa Δ_μb) − Σ_μ k_μ Z̃_μa Z̃_μb
        dS_dQbar = −Q + R − R V H̃ Vᵀ R/(N λ1),  R = (𝟙 + Q̄)⁻¹,
        H̃_ab     = δ_ab s1_a − s1_a (C⁻¹)_ab s1_b − (mᵀZ̃)_a (mᵀZ̃)_b
        (matrix determinant lemma and Woodbury for the rank-D mean term;
        derivations.multi_output.fc_eig_program). Returns (S, dS_dQ, dS_dQbar).
        """, PRE_EIG + ["Qbar = square(Qbar, 'Qbar')",
                        "if Qbar.shape != Q.shape:",
                        "    raise ValueError(f'Qbar must have the shape of Q {Q.shape}, got "
                        "{Qbar.shape}')",
                        "m = vector(m, 'm', P)", "mc = m[:, None]", "Vt = V.T"],
        gen.defs, ["S", "dS_dQ", "dS_dQbar"], tensors={})
    return [f0, f1]
