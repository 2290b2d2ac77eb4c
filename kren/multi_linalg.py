"""Linear-algebra primitives of the D-output actions (THEORY §3c), printed into
``kren/generated/multi.py`` and ``multi_fc.py`` by ``python -m derivations.codegen``.

Nothing here is physics. Conventions (THEORY §1, §3c):

* order parameters are (nD)×(nD) matrices indexed by (i, d) flattened as I = i·D + d;
* training targets and the rows/columns of A = T𝟙 + K_R are stacked output-major, (d, μ)
  flattened as d·P + μ;
* a train×train kernel tensor is stored as blocks K_p = K_ij for patch pairs p = (i, j), i ≤ j
  (kren.kernels.KernelTensor); the D-output tensor is the *lifted* tensor
  K'_{IJ} = E_de ⊗ K_ij (E_de the D×D matrix unit), which is never materialized except by
  :func:`lifted_tensor` (tests, and the Hessians of small problems).

With W an (nD)×(nD) symmetric matrix and B a (DP)×(DP) symmetric matrix:

    multi_pair_combine(W)_{(d,·),(e,·)} = Σ_ij W_{(i,d),(j,e)} K_ij          (PairSum over K')
    multi_pair_contract(B)_{(i,d),(j,e)} = ⟨K_ij, B_{de}⟩                    (PairContract over K')

(B_{de} the P×P block (d, e) of B); the second is the adjoint of the first:
Tr(B · multi_pair_combine(W)) = Tr(multi_pair_contract(B) · W).
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from .linalg import NotPositiveDefiniteError, pair_hessian_terms, shifted, single_blas_thread
from .scratch import scratch

__all__ = ["multi_pair_contract_inverse", "inverse_blocks", "float32_work", "shifted", "output_pairs", "block_pairs", "multi_pair_combine", "multi_pair_contract",
           "multi_full_combine", "multi_diag_combine", "multi_point_blocks",
           "multi_diag_point_blocks", "lift_means", "lifted_sandwich", "lifted_point_sandwich",
           "lifted_tensor", "multi_pair_hessian_terms", "point_block_gram", "eigh_pd",
           "kron_eig_hessian_terms", "stack", "unstack", "multi_tensor", "output_count"]


_WORK = threading.local()
#: Rows per slab of the blockwise transposes (a 128-row slab of a P = 500 float64 block is
#: 0.5 MB: it stays in cache while its transpose is written).
_TILE = 128


@contextlib.contextmanager
def float32_work():
    """Inside this context :func:`multi_pair_combine` of float32 blocks returns float32, so that
    A = T𝟙 + K_R is factorized, inverted and contracted in float32 (the working precision of the
    float32 stage of :class:`kren.saddle.multi.MultiMatrixProblem`). Outside it the arithmetic
    is float64 whatever the blocks' storage (kren.tensors.storage)."""
    old = getattr(_WORK, "f32", False)
    _WORK.f32 = True
    try:
        yield
    finally:
        _WORK.f32 = old


def _work_dtype(storage):
    return np.float32 if storage == np.float32 and getattr(_WORK, "f32", False) else np.float64


def output_count(D) -> int:
    """D as a positive int (a ``ValueError`` naming D otherwise)."""
    if isinstance(D, (bool, np.bool_)) or not isinstance(D, (int, np.integer)) or D < 1:
        raise ValueError(f"D (number of outputs) must be a positive integer, got {D!r}")
    return int(D)


def multi_tensor(blocks, pairs, n, D):
    """Check a stored kernel tensor (blocks (n_pairs, P, P), pairs (n_pairs, 2), i ≤ j < n) for
    a D-output problem. Returns (blocks, pairs, P)."""
    from .checks import tensor
    blocks, pairs, P = tensor(blocks, pairs, n)
    if np.any(pairs[:, 0] > pairs[:, 1]):
        raise ValueError("pairs must be patch pairs (i, j) with i <= j (a stored kernel tensor)")
    return blocks, pairs, P


def stack(Y) -> np.ndarray:
    """Targets (P, D) stacked output-major into (DP,): y[d·P + μ] = Y[μ, d] (THEORY §1)."""
    Y = np.asarray(Y, dtype=float)
    return np.ascontiguousarray(Y.T).reshape(-1)


def unstack(y, D) -> np.ndarray:
    """The inverse of :func:`stack`: (DP,) → (P, D)."""
    y = np.asarray(y, dtype=float)
    return y.reshape(int(D), -1).T.copy()


def output_pairs(pairs, D) -> np.ndarray:
    """The packed coordinates of a D-output order parameter over the stored patch pairs: every
    (I, J) = (i·D + d, j·D + e) with I ≤ J, for the patch pairs (i, j) given (i ≤ j), in the
    order of the patch pairs, then d, then e. A CNN tensor (all i ≤ j) gives every I ≤ J of the
    (nD)×(nD) matrix; an LCN tensor (i = j only) its D×D diagonal blocks."""
    D = output_count(D)
    out = []
    for i, j in np.asarray(pairs).tolist():
        for d in range(D):
            for e in range(D):
                I, J = i * D + d, j * D + e
                if I <= J:
                    out.append((I, J))
    return np.asarray(out, dtype=np.intp).reshape(-1, 2)


def block_pairs(n, D) -> np.ndarray:
    """:func:`output_pairs` of the diagonal patch pairs (i, i): the D×D diagonal blocks."""
    i = np.arange(int(n))
    return output_pairs(np.stack([i, i], axis=1), D)


def _coefs(W, pairs, n, D):
    """C[p, d, e] = W[(i, d), (j, e)] for the patch pairs p = (i, j)."""
    W4 = np.asarray(W, dtype=float).reshape(n, D, n, D)
    return W4[pairs[:, 0], :, pairs[:, 1], :]                    # (n_pairs, D, D)


def _check_sym(W, name, size):
    W = np.asarray(W, dtype=float)
    if W.shape != (size, size):
        raise ValueError(f"{name} must be a ({size}, {size}) matrix, got shape {W.shape}")
    if not np.allclose(W, W.T, rtol=1e-12, atol=1e-14):
        raise ValueError(f"{name} must be symmetric")
    return W


def multi_pair_combine(W, blocks, pairs, D) -> np.ndarray:
    """(DP)×(DP) matrix with blocks (d, e) = Σ_ij W_{(i,d),(j,e)} K_ij (module docstring).

    With the stored pairs (i ≤ j) and S_{de} = Σ_p c_p[d, e] K_p, c_p[d, e] = W_{(i,d),(j,e)}
    (halved for i = j), block (d, e) of the result is S_{de} + S_{ed}ᵀ: one GEMM of the
    (D² × n_pairs) coefficients against the stored blocks (one pass over the tensor, BLAS
    threads as the caller's context sets them), then D² block additions into the (d, μ)
    stacking; no Kronecker product is formed (the S_de are a :mod:`kren.scratch` buffer).
    float64 unless :func:`float32_work` is active and
    the blocks are float32 (then float32: the working precision of a float32 solver stage).
    """
    D = output_count(D)
    blocks = np.asarray(blocks)
    n_p, P = blocks.shape[0], blocks.shape[1]
    W = np.asarray(W, dtype=float)
    n = W.shape[0] // D
    W = _check_sym(W, "W", n * D)
    C = _coefs(W, pairs, n, D).astype(blocks.dtype, copy=True)
    C[pairs[:, 0] == pairs[:, 1]] *= 0.5
    S = scratch("output_blocks", (D, D, P, P), blocks.dtype)     # kren.scratch: dies here
    np.matmul(C.reshape(n_p, D * D).T, blocks.reshape(n_p, P * P), out=S.reshape(D * D, P * P))
    out = np.empty((D, P, D, P), dtype=_work_dtype(blocks.dtype))
    R = _TILE
    for d in range(D):
        for e in range(D):
            a, b = S[d, e], S[e, d]
            for r in range(0, P, R):                 # S_de + S_edᵀ by row slabs (cache)
                np.add(a[r:r + R], b[:, r:r + R].T, out=out[d, r:r + R, e, :])
    return out.reshape(D * P, D * P)


def multi_pair_contract(blocks, B, pairs, D) -> np.ndarray:
    """(nD)×(nD) symmetric matrix G_{(i,d),(j,e)} = ⟨K_ij, B_{de}⟩ over the stored pairs, the
    adjoint of :func:`multi_pair_combine`; entries of pairs not stored (off-diagonal patch pairs
    of an LCN tensor) are zero. One GEMM per output d against the stored blocks."""
    D = output_count(D)
    blocks = np.asarray(blocks)
    n_p, P = blocks.shape[0], blocks.shape[1]
    B = np.asarray(B, dtype=float)
    if B.shape != (D * P, D * P):
        raise ValueError(f"B must have shape ({D * P}, {D * P}), got {B.shape}")
    n = int(np.max(pairs)) + 1 if n_p else 1
    flat = blocks.reshape(n_p, P * P)
    g = np.empty((n_p, D, D))
    with single_blas_thread():          # one pass over the blocks per output: memory bound
        for d in range(D):
            Bd = np.ascontiguousarray(B[d * P:(d + 1) * P].reshape(P, D, P).transpose(1, 0, 2))
            g[:, d, :] = flat @ Bd.reshape(D, P * P).T.astype(blocks.dtype, copy=False)
    G = np.zeros((n, D, n, D))
    i, j = pairs[:, 0], pairs[:, 1]
    G[i, :, j, :] = g
    G[j, :, i, :] = g.transpose(0, 2, 1)
    return G.reshape(n * D, n * D)


def multi_pair_contract_inverse(blocks, cho, z, pairs, D) -> np.ndarray:
    """:func:`multi_pair_contract` of B = A⁻¹ − zzᵀ from the Cholesky factor of A, without
    forming B: ⟨K_ij, (A⁻¹)_{de}⟩ from the lower triangle that LAPACK's potri returns (the
    blocks d > e, (A⁻¹)_{ed} = (A⁻¹)_{de}ᵀ, and the lower triangles of the diagonal blocks),
    gathered once into the (d, e, μ, ν) order (:func:`inverse_blocks`) so that one GEMM against
    the stored blocks gives every ⟨K_p, (A⁻¹)_{de}⟩; minus z_dᵀ K_ij z_e from one product of the
    blocks with the D columns of z. Equal to multi_pair_contract(blocks, A⁻¹ − zzᵀ, pairs, D)
    up to round-off. A float32 factor (a :func:`float32_work` stage) is inverted and contracted
    in float32; G is returned in float64. potri's copy of the factor and the gathered blocks
    are :mod:`kren.scratch` buffers."""
    from scipy.linalg import lapack
    D = output_count(D)
    blocks = np.asarray(blocks)
    n_p, P = blocks.shape[0], blocks.shape[1]
    c, lower = cho
    potri = lapack.dpotri if c.dtype == np.float64 else lapack.spotri
    from .linalg import _lapack_context
    work = scratch("inverse", c.shape, c.dtype, order="F")      # potri in place on a copy
    np.copyto(work, c)
    with _lapack_context(c.shape[0]):
        L, info = potri(work, lower=lower, overwrite_c=1)
    if info != 0:
        raise NotPositiveDefiniteError(f"potri failed with info={info}")
    if not lower:
        L = L.T
    n = int(np.max(pairs)) + 1 if n_p else 1
    M = inverse_blocks(L, D, out=scratch("output_blocks", (D, D, L.shape[0] // D,
                                                          L.shape[0] // D), L.dtype))
    M = M.astype(blocks.dtype, copy=False)
    del L, work
    g = (blocks.reshape(n_p, P * P) @ M.reshape(D * D, P * P).T).astype(np.float64)
    del M
    g = g.reshape(n_p, D, D)
    Z = np.asarray(z, dtype=float).reshape(D, P)                 # z_d as rows
    KZ = np.matmul(blocks, Z.T.astype(blocks.dtype, copy=False))    # (n_p, P, D): K_p z_e
    g -= np.einsum("dm,pme->pde", Z, KZ)
    G = np.zeros((n, D, n, D))
    i, j = pairs[:, 0], pairs[:, 1]
    G[i, :, j, :] = g
    G[j, :, i, :] = g.transpose(0, 2, 1)
    return G.reshape(n * D, n * D)


def inverse_blocks(L, D, out=None) -> np.ndarray:
    """The P×P blocks (d, e) of a symmetric (DP)×(DP) matrix of which only the lower triangle
    of ``L`` is valid (LAPACK's potri output), as a contiguous (D, D, P, P) array:
    out[d, e] = L_{de} for d > e, L_{ed}ᵀ for d < e, and the symmetrized lower triangle of
    L_{dd} on the diagonal. ``out``: a C-contiguous (D, D, P, P) array of L's dtype to write
    into (default: a new one)."""
    D = output_count(D)
    P = L.shape[0] // D
    if out is None:
        out = np.empty((D, D, P, P), dtype=L.dtype)
    elif out.shape != (D, D, P, P) or out.dtype != L.dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous ({D}, {D}, {P}, {P}) {L.dtype} array, "
                         f"got {out.shape} {out.dtype}")
    R = _TILE
    for d in range(D):
        rows = L[d * P:(d + 1) * P]
        for e in range(d + 1):
            blk = rows[:, e * P:(e + 1) * P]
            out[d, e] = blk
            if e < d:
                for r in range(0, P, R):             # transposed copy by row slabs (cache)
                    out[e, d][:, r:r + R] = blk[r:r + R].T
        t = out[d, d]
        for r in range(0, P, R):                     # upper triangle from the lower one
            t[r:r + R, r + R:] = t[r + R:, r:r + R].T
            c = np.tril(t[r:r + R, r:r + R])
            t[r:r + R, r:r + R] = c + np.tril(c, -1).T
    return out


def multi_full_combine(W, Kx, D) -> np.ndarray:
    """Σ_ij W_{(i,d),(j,e)} Kx_ij over a full tensor Kx (n, n, P1, P2) (test×train blocks):
    a (D·P1)×(D·P2) matrix, rows (d, a), columns (e, b). One tensordot."""
    D = output_count(D)
    Kx = np.asarray(Kx)
    n, P1, P2 = Kx.shape[0], Kx.shape[2], Kx.shape[3]
    W4 = np.asarray(W, dtype=float).reshape(n, D, n, D).transpose(1, 3, 0, 2)   # (d, e, i, j)
    out = np.tensordot(W4.reshape(D * D, n * n).astype(Kx.dtype, copy=False),
                       Kx.reshape(n * n, P1 * P2), axes=1)
    return np.asarray(out.reshape(D, D, P1, P2).transpose(0, 2, 1, 3).reshape(D * P1, D * P2),
                      dtype=np.float64)


def multi_diag_combine(W, Kx, D) -> np.ndarray:
    """Σ_i W_{(i,d),(i,e)} Kx_ii over the diagonal blocks Kx (n, P1, P2) (LCN): (D·P1)×(D·P2)."""
    D = output_count(D)
    Kx = np.asarray(Kx)
    n, P1, P2 = Kx.shape
    W4 = np.asarray(W, dtype=float).reshape(n, D, n, D)
    Wd = W4[np.arange(n), :, np.arange(n), :].transpose(1, 2, 0)                # (d, e, i)
    out = np.tensordot(Wd.reshape(D * D, n).astype(Kx.dtype, copy=False),
                       Kx.reshape(n, P1 * P2), axes=1)
    return np.asarray(out.reshape(D, D, P1, P2).transpose(0, 2, 1, 3).reshape(D * P1, D * P2),
                      dtype=np.float64)


def multi_point_blocks(W, Kd, D) -> np.ndarray:
    """Σ_ij W_{(i,d),(j,e)} Kd_ij(x0) for every test input, Kd (n, n, P0): shape (P0, D, D)."""
    D = output_count(D)
    Kd = np.asarray(Kd)
    n, P0 = Kd.shape[0], Kd.shape[2]
    W4 = np.asarray(W, dtype=float).reshape(n, D, n, D)
    return np.einsum("idje,ija->ade", W4, Kd.astype(np.float64, copy=False))


def multi_diag_point_blocks(W, Kd, D) -> np.ndarray:
    """Σ_i W_{(i,d),(i,e)} Kd_ii(x0), Kd (n, P0) (LCN test diagonal): shape (P0, D, D)."""
    D = output_count(D)
    Kd = np.asarray(Kd, dtype=np.float64)
    n = Kd.shape[0]
    W4 = np.asarray(W, dtype=float).reshape(n, D, n, D)
    Wd = W4[np.arange(n), :, np.arange(n), :]                                    # (i, d, e)
    return np.einsum("ide,ia->ade", Wd, Kd)


def lift_means(mu, D) -> np.ndarray:
    """The lifted unit means μ^D, an (nD)×(DP) matrix: μ^D_{(i,d),(e,ν)} = δ_de μ_i(x^ν), so
    that μ^Dᵀ X μ^D has blocks (d, e) = Σ_ij X_{(i,d),(j,e)} μ_i μ_jᵀ (THEORY §3c)."""
    D = output_count(D)
    mu = np.asarray(mu, dtype=float)
    n, P = mu.shape
    out = np.zeros((n, D, D, P))
    for d in range(D):
        out[:, d, d, :] = mu
    return out.reshape(n * D, D * P)


def lifted_sandwich(X, mu1, mu2, D) -> np.ndarray:
    """μ1^Dᵀ X μ2^D without forming the lifted means: blocks (d, e) = μ1ᵀ X_{·d,·e} μ2,
    X (nD)×(nD), mu1 (n, P1), mu2 (n, P2); shape (D·P1)×(D·P2)."""
    D = output_count(D)
    mu1, mu2 = np.asarray(mu1, dtype=float), np.asarray(mu2, dtype=float)
    n = mu1.shape[0]
    X4 = np.asarray(X, dtype=float).reshape(n, D, n, D)
    out = np.einsum("ia,idje,jb->daeb", mu1, X4, mu2)
    return out.reshape(D * mu1.shape[1], D * mu2.shape[1])


def lifted_point_sandwich(X, mu0, D) -> np.ndarray:
    """Per test input, the D×D blocks of μ0^Dᵀ X μ0^D at (x0, x0): out[a, d, e] =
    Σ_ij X_{(i,d),(j,e)} μ0_i(a) μ0_j(a), shape (P0, D, D)."""
    D = output_count(D)
    mu0 = np.asarray(mu0, dtype=float)
    n = mu0.shape[0]
    X4 = np.asarray(X, dtype=float).reshape(n, D, n, D)
    return np.einsum("ia,idje,ja->ade", mu0, X4, mu0)


def lifted_tensor(blocks, pairs, D):
    """The lifted tensor K'_{IJ} = E_de ⊗ K_ij for every packed pair (I, J) of
    :func:`output_pairs`: (blocks', pairs'), blocks' (n_pairs', DP, DP). The single-output
    functions of kren.generated.cnn on this tensor with λ1/D in place of λ1 are the D-output
    functions (n' = nD, 1/(λ1' n') = 1/(λ1 n)); memory n_pairs'·(DP)², for tests and small
    problems only."""
    D = output_count(D)
    blocks = np.asarray(blocks)
    n_p, P = blocks.shape[0], blocks.shape[1]
    gp = output_pairs(pairs, D)
    where = {(int(i), int(j)): p for p, (i, j) in enumerate(np.asarray(pairs).tolist())}
    out = np.zeros((len(gp), D * P, D * P), dtype=blocks.dtype)
    for q, (I, J) in enumerate(gp.tolist()):
        i, d = divmod(I, D)
        j, e = divmod(J, D)
        out[q, d * P:(d + 1) * P, e * P:(e + 1) * P] = blocks[where[(i, j)]]
    return out, gp


def multi_pair_hessian_terms(blocks, pairs, D, cho, z, mu=None, V=None, sign: float = 1.0):
    """T1, T2 of :func:`kren.linalg.pair_hessian_terms` over the directions of the D-output
    packed coordinates (:func:`output_pairs`): D_q = E_de ⊗ K_ij (+ its transpose for I < J),
    minus the lifted mean part μ^Dᵀ E_q μ^D when ``mu`` (n, P) is given, then the low-rank
    directions sign·V E_q Vᵀ for V (DP, nD). Built on the lifted tensor (:func:`lifted_tensor`),
    so it costs n_pairs'·(DP)² memory and an (DP)×(DP)×(n_pairs'·DP) product: small problems."""
    lb, gp = lifted_tensor(blocks, pairs, D)
    muD = None if mu is None else lift_means(mu, D)
    with single_blas_thread():
        return pair_hessian_terms(lb, gp, cho, np.asarray(z, dtype=float), muD, V, float(sign))


def point_block_gram(X, D) -> np.ndarray:
    """Per test input a, the D×D Gram block Σ_r X[r, (d, a)] X[r, (e, a)] of the columns
    (d, a) of X (rows r; columns stacked (d, a) = d·P0 + a): shape (P0, D, D). With
    X = L⁻¹ k_Rᵀ it is the diagonal blocks of k_R A⁻¹ k_Rᵀ (THEORY §4)."""
    D = output_count(D)
    X = np.asarray(X, dtype=float)
    X3 = X.reshape(X.shape[0], D, -1)                                            # (r, d, a)
    return np.einsum("rda,rea->ade", X3, X3)


def eigh_pd(Q, name: str = "Q"):
    """(q, V): the eigendecomposition Q = V diag(q) Vᵀ of a symmetric positive-definite matrix;
    :class:`kren.linalg.NotPositiveDefiniteError` naming ``name`` if an eigenvalue is ≤ 0."""
    Q = np.asarray(Q, dtype=float)
    if Q.ndim != 2 or Q.shape[0] != Q.shape[1]:
        raise ValueError(f"{name} must be a square (D, D) matrix, got shape {Q.shape}")
    q, V = np.linalg.eigh(0.5 * (Q + Q.T))
    if not np.all(np.isfinite(q)) or q[0] <= 0:
        raise NotPositiveDefiniteError(f"{name} is not positive definite (smallest eigenvalue "
                                       f"{q[0]:.3g})")
    return q, V


def kron_eig_hessian_terms(V, Delta, k, Zt, pairs):
    """T1[p, q] = Tr(A⁻¹ D_p A⁻¹ D_q), T2[p, q] = zᵀ D_p A⁻¹ D_q z for the directions
    D_p = E_p ⊗ K over the packed pairs p of a D×D matrix, computed in the joint eigenbasis
    A = (V ⊗ U) diag(Δ) (V ⊗ U)ᵀ, K = U diag(k) Uᵀ (Δ (P, D): Δ[μ, a]; Zt (P, D) the rotated
    z = A⁻¹y): with Ẽ_p = Vᵀ E_p V,

        T1[p, q] = Σ_ab Ẽ_p[a, b] Ẽ_q[a, b] Σ_μ k_μ²/(Δ_μa Δ_μb),
        T2[p, q] = Σ_{μ,b} (k_μ²/Δ_μb) (Ẽ_p z̃_μ)_b (Ẽ_q z̃_μ)_b.

    O(P·D·n_pairs + n_pairs²·(D² + P·D)); A is never formed."""
    V = np.asarray(V, dtype=float)
    D = V.shape[0]
    k = np.asarray(k, dtype=float).reshape(-1)
    pairs = np.asarray(pairs)
    i, j = pairs[:, 0], pairs[:, 1]
    # Ẽ_p = Vᵀ E_p V = v_i v_jᵀ + v_j v_iᵀ (once for i = j), v_i the i-th row of V
    Et = np.einsum("pa,pb->pab", V[i], V[j])
    Et = Et + Et.transpose(0, 2, 1)
    Et[i == j] *= 0.5
    W2 = (k[:, None, None] ** 2 / (Delta[:, :, None] * Delta[:, None, :])).sum(axis=0)
    Ef = Et.reshape(len(pairs), D * D)
    T1 = (Ef * W2.reshape(-1)) @ Ef.T
    Y = np.einsum("pab,mb->pma", Et, Zt)                       # (Ẽ_p z̃_μ)_a, (n_p, P, D)
    w = (k[:, None] ** 2 / Delta).reshape(-1)
    Yf = Y.reshape(len(pairs), -1)
    T2 = (Yf * w) @ Yf.T
    return 0.5 * (T1 + T1.T), 0.5 * (T2 + T2.T)
