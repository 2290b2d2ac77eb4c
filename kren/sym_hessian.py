"""The P-contractions of the exact Hessian in the symmetric form, on every core.

For symmetric directions D_a (a = 1 … n_p) and A = LLᵀ, z = A⁻¹y (:func:`kren.linalg.pair_hessian_terms`):

    T1[a, b] = Tr(A⁻¹D_aA⁻¹D_b) = ⟨S_a, S_b⟩,   S_a = L⁻¹D_aL⁻ᵀ  (symmetric),
    T2[a, b] = zᵀD_aA⁻¹D_b z    = (L⁻¹u_a)·(L⁻¹u_b),  u_a = D_a z.

S_a comes from one LAPACK ``sygst`` per direction (L⁻¹ D L⁻ᵀ on the lower triangle, P³ flops,
half those of two triangular products); ⟨S_a, S_b⟩ is the Gram matrix of the packed lower
triangles (off-diagonal entries weighted √2), one SYRK. The directions are spread over the
cores (unless other processes hold them), one BLAS thread each, the LAPACK/BLAS calls made without the GIL
(:mod:`kren.nogil_lapack`), and so is the Gram product (a SYRK per slice of the packed columns,
summed).

The symmetrized kernel blocks K̃_p that the directions are made of are unpacked from a
:class:`kren.tensors.BlockSource` once and kept (:func:`cached_stack`, at most
STACK_CACHE_BYTES, one source at a time) instead of once per Hessian.
"""
from __future__ import annotations

import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import nogil_lapack

__all__ = ["sym_hessian_terms", "cached_stack", "keep_stack", "clear_stack_cache",
           "STACK_CACHE_BYTES"]

#: Column slices of the Gram product (fixed, so that its round-off does not depend on the
#: number of threads that compute them).
GRAM_SLICES = 2
#: Largest stack of symmetrized blocks (n_p · P² float64 values) kept between Hessians.
STACK_CACHE_BYTES = 512 * 2**20

_CACHE: dict = {"owner": None, "stack": None}
_LOCK = threading.Lock()


def clear_stack_cache() -> None:
    """Drop the kept stack of symmetrized blocks (:func:`cached_stack`)."""
    with _LOCK:
        _CACHE["owner"], _CACHE["stack"] = None, None


def cached_stack(owner, n_p: int, P: int):
    """(stack, filled) for the symmetrized blocks of ``owner`` (a block source whose data do
    not change): the kept (n_p, P, P) float64 stack and True when ``owner`` was the last one
    asked for and its stack is kept; a new empty stack and False on the second Hessian of
    ``owner`` (the caller fills it and hands it to :func:`keep_stack`); (None, False) on the
    first one (a fit with a single Hessian does not pay for the copy) or when the stack would
    exceed STACK_CACHE_BYTES."""
    if owner is None or n_p * P * P * 8 > STACK_CACHE_BYTES:
        return None, False
    with _LOCK:
        ref = _CACHE["owner"]
        if ref is None or ref() is not owner:
            _CACHE["owner"], _CACHE["stack"] = weakref.ref(owner), None  # seen once
            return None, False
        if _CACHE["stack"] is not None and _CACHE["stack"].shape == (n_p, P, P):
            return _CACHE["stack"], True
    return np.empty((n_p, P, P)), False


def keep_stack(owner, stack: np.ndarray) -> None:
    """Keep the filled ``stack`` of ``owner`` (read-only) for the next :func:`cached_stack`."""
    stack.flags.writeable = False
    with _LOCK:
        _CACHE["owner"], _CACHE["stack"] = weakref.ref(owner), stack


def _upper_index(P: int):
    """Flat indices of the upper triangle of a C-ordered P×P array (= the lower triangle of its
    Fortran-ordered transpose, where sygst leaves S) and the weights (1 on the diagonal, √2 off
    it) with ⟨packed(X), packed(Y)⟩ = Tr(XY) for symmetric X, Y."""
    i, j = np.triu_indices(P)
    return i * P + j, np.where(i == j, 1.0, np.sqrt(2.0))


def _threads(n_p: int, P: int) -> int:
    """Worker threads: every core, unless P < 64 (too little work) or other processes hold
    part of the cores (kren.linalg.machine_busy, the BLAS policy's test: a static split of
    the directions then waits for its slowest thread, measured 1.2× slower than one thread at
    load 3.6 on two cores)."""
    from .kernels import _threads as t
    from .linalg import machine_busy
    if P < 64 or machine_busy():
        return 1
    return max(1, min(t(), n_p))


def sym_hessian_terms(get, pairs, cho, z, mu=None, V=None, sign=1.0, owner=None,
                      dtype=np.float64):
    """T1, T2 (and the low-rank blocks of ``V``) of :func:`kren.linalg.pair_hessian_terms`.

    ``get(p)`` returns K̃_p (P×P float64); with ``owner`` (the block source they come from,
    whose data do not change) they are kept between Hessians (:func:`cached_stack`). The
    directions are D_p = K̃_p − M_p with M_p = μ_iμ_jᵀ + μ_jμ_iᵀ (μ_iμ_iᵀ) when ``mu`` is given.
    ``dtype`` is the precision of the P³ products (sygst): float64, or float32 for a Hessian
    that only chooses directions (:class:`kren.linalg.hessian_precision`; the Gram product of
    the float32 S_a is then float32 as well); u_a = D_a z, the V-blocks and T2 are float64
    either way.
    """
    from .linalg import (NotPositiveDefiniteError, assemble_hessian_terms, blas_context,
                         cho_solve, single_blas_thread)
    from scipy.linalg.blas import dtrsm
    dt = np.dtype(dtype)
    if not cho[1]:
        raise ValueError("sym_hessian_terms needs the lower Cholesky factor (cho_factor)")
    L = np.asfortranarray(cho[0], dtype=np.float64)
    if np.any(np.diagonal(L) <= 0):
        raise NotPositiveDefiniteError("the Cholesky factor of A has a non-positive diagonal")
    Lw = L if dt == np.float64 else np.asfortranarray(L, dtype=dt)
    pairs = np.asarray(pairs)
    n_p, P = len(pairs), L.shape[0]
    z = np.asarray(z, dtype=np.float64)
    idx, w = _upper_index(P)
    F = np.empty((n_p, idx.size), dtype=dt)          # float32 Hessians: a float32 Gram too
    w = w.astype(dt)
    U = np.empty((n_p, P))
    Gv = W = None
    if V is not None:
        V = np.asarray(V, dtype=np.float64)
        W = cho_solve(cho, V)                                    # A⁻¹V, (P, n)
        Gv = np.empty((n_p, V.shape[1], V.shape[1]))

    stack, filled = cached_stack(owner, n_p, P)

    def work(ps):
        a = np.empty((P, P), dtype=dt)                           # C-ordered; a.T is Fortran
        D = np.empty((P, P)) if mu is not None or stack is None else None
        for p in ps:
            if stack is not None and not filled:
                stack[p] = get(p)
            if stack is not None and mu is None:
                Dp = stack[p]
            else:
                D[...] = stack[p] if stack is not None else get(p)
                if mu is not None:
                    i, j = pairs[p]
                    M = np.outer(mu[i], mu[j])
                    D -= M + M.T if i != j else M
                Dp = D
            np.matmul(Dp, z, out=U[p])
            if V is not None:
                Gv[p] = W.T @ (Dp @ W)
            np.copyto(a, Dp, casting="same_kind" if dt == np.float64 else "unsafe")
            nogil_lapack.sygst(a.T, Lw)                          # S = L⁻¹DL⁻ᵀ (D symmetric)
            np.multiply(a.reshape(-1)[idx], w, out=F[p])

    def gram(cols):
        return nogil_lapack.syrk(F[:, cols[0]:cols[1]]).astype(np.float64)

    threads = _threads(n_p, P)
    chunks = [list(range(t, n_p, threads)) for t in range(threads)]
    # the Gram product by GRAM_SLICES column slices summed in order, whatever the number of
    # threads: the same round-off on a busy machine and a quiet one
    m = idx.size
    cuts = np.linspace(0, m, GRAM_SLICES + 1).astype(int)
    slices = list(zip(cuts[:-1], cuts[1:]))
    with single_blas_thread():
        if threads == 1:
            work(chunks[0])
            parts = [gram(c) for c in slices]
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, chunks))
                parts = list(pool.map(gram, slices))
    T1 = parts[0]
    for part in parts[1:]:
        T1 = T1 + part
    if stack is not None and not filled:
        keep_stack(owner, stack)
    with blas_context(P):
        Y = dtrsm(1.0, L, np.asfortranarray(U.T), lower=1)       # L⁻¹Uᵀ
        T2 = Y.T @ Y
    return assemble_hessian_terms(T1, T2, U, Gv, pairs, z, V, W, sign)
