"""Linear-algebra primitives the generated code is printed in terms of.

Nothing here is physics: these are the operations the SymPy printer of ``derivations.printer``
maps matrix expressions onto, so that the generated action, gradient and predictor never form an
explicit inverse and never loop over samples in Python.

Kernel tensors over the training set are stored as blocks ``K[p]`` (shape (P, P)) for a list of
patch pairs ``pairs[p] = (i, j)`` with i ≤ j; the block (j, i) is K[p]ᵀ.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor as _cho_factor, cho_solve as _cho_solve
from scipy.linalg import lapack as _lapack

from .errorbase import KrenError


_CONTROLLER = None

#: Factorizations up to this size run on one BLAS thread: on two cores a threaded Cholesky of a
#: 1000×1000 matrix gains little when idle and, when another process holds a core, OpenBLAS's
#: spinning threads made it 3–25× slower (measured 13 ms single-threaded against 40–1280 ms).
SINGLE_THREAD_MAX = 4000


def single_blas_thread():
    """Context manager limiting BLAS to one thread (threadpoolctl; one shared controller)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def _lapack_context(n: int):
    import contextlib
    return single_blas_thread() if n <= SINGLE_THREAD_MAX else contextlib.nullcontext()


class NotPositiveDefiniteError(KrenError, np.linalg.LinAlgError):
    """A matrix that must be positive definite (A = T𝟙 + K_R, Q, 𝟙 + Q̄) is not."""


def cho_factor(A: np.ndarray, what: str = "matrix"):
    """Cholesky factor (c, lower) of a symmetric positive-definite matrix."""
    try:
        with _lapack_context(A.shape[0]):
            return _cho_factor(A, lower=True, check_finite=False)
    except np.linalg.LinAlgError as exc:
        raise NotPositiveDefiniteError(f"{what} is not positive definite ({exc})") from None


def cho_solve(cho, b: np.ndarray) -> np.ndarray:
    """A⁻¹ b from a Cholesky factor of A."""
    return _cho_solve(cho, b, check_finite=False)


def cho_logdet(cho) -> float:
    """log det A = 2 Σ log diag(L)."""
    return 2.0 * float(np.sum(np.log(np.diagonal(cho[0]))))


def cho_inverse(cho) -> np.ndarray:
    """A⁻¹ from a Cholesky factor of A (LAPACK potri), symmetrized."""
    c, lower = cho
    potri = _lapack.dpotri if c.dtype == np.float64 else _lapack.spotri
    with _lapack_context(c.shape[0]):
        inv, info = potri(c, lower=lower)
    if info != 0:
        raise NotPositiveDefiniteError(f"potri failed with info={info}")
    if lower:
        inv = np.tril(inv)
        inv = inv + np.tril(inv, -1).T
    else:
        inv = np.triu(inv)
        inv = inv + np.triu(inv, 1).T
    return inv


def triu_pairs(n: int) -> np.ndarray:
    """All pairs (i, j), i ≤ j, row-major: the storage order of a CNN kernel tensor."""
    i, j = np.triu_indices(n)
    return np.stack([i, j], axis=1).astype(np.intp)


def diag_pairs(n: int) -> np.ndarray:
    """Pairs (i, i): the storage order of an LCN kernel tensor."""
    i = np.arange(n)
    return np.stack([i, i], axis=1).astype(np.intp)


def _flat(blocks: np.ndarray) -> np.ndarray:
    return blocks.reshape(blocks.shape[0], -1)


def pair_combine(W: np.ndarray, blocks: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Σ_ij W_ij K_ij for a symmetric n×n W over stored blocks (i ≤ j).

    Σ_ij W_ij K_ij = S + Sᵀ with S = Σ_i (W_ii/2) K_ii + Σ_{i<j} W_ij K_ij: one pass (a GEMV)
    over the tensor.
    """
    W = np.asarray(W)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or not np.allclose(W, W.T, rtol=1e-12, atol=1e-14):
        raise ValueError(f"pair_combine needs a symmetric square W, got shape {W.shape}")
    coef = W[pairs[:, 0], pairs[:, 1]].astype(blocks.dtype, copy=True)
    coef[pairs[:, 0] == pairs[:, 1]] *= 0.5
    P1, P2 = blocks.shape[1:]
    S = (coef @ _flat(blocks)).reshape(P1, P2)
    return S + S.T


def pair_contract(blocks: np.ndarray, B: np.ndarray, pairs: np.ndarray, n: int) -> np.ndarray:
    """n×n symmetric matrix G_ij = Σ_μν K_ij[μ, ν] B[μ, ν] for a symmetric B (one pass).

    Entries for pairs not stored (off-diagonal ones of an LCN tensor) are zero.
    """
    g = _flat(blocks) @ np.ascontiguousarray(B, dtype=blocks.dtype).ravel()
    G = np.zeros((n, n), dtype=np.result_type(g, np.float64))
    G[pairs[:, 0], pairs[:, 1]] = g
    G[pairs[:, 1], pairs[:, 0]] = g
    return G


def full_combine(W: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Σ_ij W_ij K_ij over a full tensor of blocks, shape (n, n, ...) (test×train or test diagonal)."""
    n = blocks.shape[0]
    return np.tensordot(np.asarray(W, dtype=blocks.dtype).reshape(n * n),
                        blocks.reshape((n * n,) + blocks.shape[2:]), axes=1)


def diag_combine(q: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Σ_i q_i K_ii over the diagonal blocks K_ii, shape (n, ...) -> (...) (LCN test×train blocks
    of kren.kernels.cross_kernels(..., diagonal=True) or test diagonals of test_diagonal(...,
    diagonal=True)): one tensordot over the patch index."""
    blocks = np.asarray(blocks)
    q = np.asarray(q, dtype=blocks.dtype)
    if q.ndim != 1 or blocks.ndim < 1 or q.shape[0] != blocks.shape[0]:
        raise ValueError(f"diag_combine needs q of shape (n,) and blocks of shape (n, ...) with the "
                         f"same n, got q {q.shape} and blocks {blocks.shape}")
    return np.tensordot(q, blocks, axes=1)


def sym(A: np.ndarray) -> np.ndarray:
    """(A + Aᵀ)/2."""
    return 0.5 * (A + A.T)


def pair_hessian_terms(blocks: np.ndarray, pairs: np.ndarray, cho, z: np.ndarray, mu=None,
                       V=None, sign: float = 1.0):
    """The two P-contractions in the second derivative of log det A + yᵀA⁻¹y.

    Over a family of symmetric directions D_a, with A = LLᵀ (``cho``) and z = A⁻¹y,
        T1[a, b] = Tr(A⁻¹ D_a A⁻¹ D_b),   T2[a, b] = zᵀ D_a A⁻¹ D_b z.
    The family: for each pair p = (i, j) of ``pairs``, D_p = K̃_p = K_ij + K_ijᵀ (i < j) or
    K_ii, minus M_p = μ_iμ_jᵀ + μ_jμ_iᵀ (or μ_iμ_iᵀ) when ``mu`` (n, P) is given; then, when
    ``V`` (P, n) is given, D_{n_p+q} = sign · V E_q Vᵀ for the same pairs q = (k, l), E_q the
    symmetric basis matrix (e_k e_lᵀ + e_l e_kᵀ, or e_k e_kᵀ). Those low-rank directions cost
    only n×n work: with W = A⁻¹V, M = VᵀW, ζ = Vᵀz, the blocks are Tr(Wᵀ D_p W E_q),
    (Wᵀ D_p z)ᵀ E_q ζ, Tr(M E_q M E_r) and (E_q ζ)ᵀ M (E_r ζ).
    One GEMM of A⁻¹ with all D_p side by side and one Gram product, on one BLAS thread: on two
    cores, threaded products gained 1.5× when idle but were 6× slower when another process held
    a core (benchmarks/bench_solver.py).
    """
    with single_blas_thread():
        return _pair_hessian_terms(blocks, pairs, cho, z, mu, V, float(sign))


def _pair_hessian_terms(blocks, pairs, cho, z, mu=None, V=None, sign=1.0):
    Ainv = cho_inverse(cho)
    n_p, P = blocks.shape[0], blocks.shape[1]
    Kcat = np.empty((P, n_p, P))                                 # Kcat[:, p, :] = D_p
    for p in range(n_p):
        i, j = pairs[p]
        Kcat[:, p, :] = blocks[p]
        if i != j:
            Kcat[:, p, :] += blocks[p].T
        if mu is not None:
            M = np.outer(mu[i], mu[j])
            Kcat[:, p, :] -= M + M.T if i != j else M
    U = np.tensordot(z, Kcat, axes=([0], [0]))                   # (n_p, P): D_p z (D_p symmetric)
    if V is not None:
        V = np.asarray(V, dtype=np.float64)
        W = cho_solve(cho, V)                                    # A⁻¹V, (P, n)
        G = np.einsum("ak,apl->pkl", W, (Kcat.reshape(P * n_p, P) @ W).reshape(P, n_p, -1))
    F = (Ainv @ Kcat.reshape(P, n_p * P)).reshape(P, n_p, P)     # F[:, p, :] = A⁻¹D_p
    del Kcat
    Ff = np.ascontiguousarray(F.transpose(1, 0, 2)).reshape(n_p, P * P)
    Ft = np.ascontiguousarray(F.transpose(1, 2, 0)).reshape(n_p, P * P)
    del F
    T1 = Ff @ Ft.T
    T2 = U @ Ainv @ U.T
    T1, T2 = 0.5 * (T1 + T1.T), 0.5 * (T2 + T2.T)
    if V is None:
        return T1, T2
    k, l = pairs[:, 0], pairs[:, 1]
    diag = k == l
    Gs = G + G.transpose(0, 2, 1)
    X1 = Gs[:, k, l]                                             # Tr(Wᵀ D_p W E_q)
    X1[:, diag] *= 0.5
    zeta = V.T @ z
    Bz = np.zeros((n_p, V.shape[1]))                             # rows E_q ζ
    Bz[np.arange(n_p), k] += zeta[l]
    Bz[np.arange(n_p), l] += np.where(diag, 0.0, zeta[k])
    M = V.T @ W
    X2 = (U @ W) @ Bz.T                                          # (Wᵀ D_p z)ᵀ E_q ζ
    from .checks import packed_sandwich
    T1 = np.block([[T1, sign * X1], [sign * X1.T, packed_sandwich(M, pairs)]])
    T2 = np.block([[T2, sign * X2], [sign * X2.T, Bz @ M @ Bz.T]])
    return T1, T2
