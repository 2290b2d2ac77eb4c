"""Kernels of the CNN with a pooled readout (``Architecture(..., readout="pool")``, THEORY §1-§3b).

The pooled CNN's action and predictor are the FC ones on pooled kernels (THEORY §3b, §5.8):

    K_pool(x, x') = (1/n²) Σ_ij K_ij(x, x'),     μ̄(x) = (1/n) Σ_i μ_i(x),

and its NNGP kernel is K_pool/λ1 (THEORY §2). Every sum here is accumulated block by block, so
the memory needed is O(P1·P2) however many patches there are (n(n+1)/2 train blocks, n² cross
blocks); it is computed and checked against the memory budget before anything is allocated. The
weights of the train-block sum come from the generated ``kren.generated.pool`` (printed from
``derivations.pooled.pooling_program``).
"""
from __future__ import annotations

import numpy as np

from .generated import pool as _gen
from .kernels import KernelTensor, _fill_blocks, _threads, check_memory, get_memory_budget
from .linalg import triu_pairs
from .guard import guarded

__all__ = ["pooled_train_kernel", "pooled_cross_kernel", "pooled_test_diagonal",
           "pooled_unit_means", "pooled_nngp_kernel"]

#: Blocks computed per pass of the accumulation, per thread (more only costs memory).
_BLOCKS_PER_THREAD = 2


def _check_pool(arch):
    if getattr(arch, "readout", "local") != "pool":
        raise ValueError("the pooled kernels need an Architecture with readout='pool' "
                         f"(kind='cnn'), got kind={arch.kind!r}, "
                         f"readout={getattr(arch, 'readout', 'local')!r}")
    return arch


def _dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _chunk(n_blocks, block_bytes, fixed, budget, what):
    """Blocks per pass: at most _BLOCKS_PER_THREAD per thread, within the budget; raises
    MemoryBudgetError naming the size when even one block does not fit."""
    budget = get_memory_budget() if budget is None else int(budget)
    check_memory(fixed + block_bytes, what, budget)
    fit = (budget - fixed) // max(block_bytes, 1)
    return int(max(1, min(n_blocks, _BLOCKS_PER_THREAD * _threads(), fit)))


@guarded("pooled_train_kernel")
def pooled_train_kernel(arch, X, dtype=np.float64, memory_budget=None) -> KernelTensor:
    """The pooled train×train tensor (THEORY §3b) in the FC shape the generated FC functions take:
    one block K_pool = (1/n²) Σ_ij K_ij = (1/n²)[Σ_i K_ii + Σ_{i<j}(K_ij + K_ijᵀ)] (blocks
    (1, P, P), pairs [[0, 0]], n = 1), ``mu`` (1, P) the pooled unit means μ̄ = (1/n) Σ_i μ_i and
    ``var`` (1, P) the patch-averaged local variances (1/n) Σ_i C_ii(x, x) (informational).

    The n(n+1)/2 blocks K_ij, i ≤ j, are computed a few at a time (threads over blocks) and
    added into one P×P accumulator through ``kren.generated.pool.pooled_kernel_partial``: memory
    O(P²) (accumulator, the blocks of one pass and the kernel scratch) plus the patches, never
    n(n+1)/2 · P². float64 by default; ``dtype=np.float32`` computes the blocks in float32 (the
    accumulator stays float64).
    """
    arch = _check_pool(arch)
    dtype = _dtype(dtype)
    prep = arch.prepare(X)                      # validated once; patches cut after the check
    P, n, M = prep.P, arch.n, arch.M
    item = dtype.itemsize
    pairs = triu_pairs(n)
    # accumulator and its symmetrized partial sum (float64), the patches, the kernel scratch
    fixed = 3 * P * P * 8 + 2 * P * n * M * item + _threads() * P * P * item
    chunk = _chunk(len(pairs), P * P * item, fixed, memory_budget,
                   f"pooled train kernel ({P}×{P}, accumulated over {len(pairs)} blocks, {dtype})")
    Z, var = prep.patches_as(dtype), prep.var.astype(dtype, copy=False)
    scale = 1.0 / (arch.lambda0 * M)
    buf = np.empty((chunk, P, P), dtype=dtype)
    K = np.zeros((P, P))
    for s in range(0, len(pairs), chunk):
        pc = pairs[s:s + chunk]
        blk = buf[:len(pc)]
        _fill_blocks(arch.act, blk, Z, Z, var, var, pc, scale, (prep.name, prep.name))
        K += _gen.pooled_kernel_partial(blk, pc, n)
    mu = _gen.pooled_means(prep.mu)
    var_bar = prep.var.mean(axis=0, keepdims=True)
    return KernelTensor(K[None].astype(dtype, copy=False), np.zeros((1, 2), dtype=np.intp), 1,
                        mu.astype(dtype, copy=False), var_bar.astype(dtype, copy=False))


@guarded("pooled_cross_kernel")
def pooled_cross_kernel(arch, X1, X2, dtype=np.float64, memory_budget=None) -> np.ndarray:
    """K_pool(x1, x2) = (1/n²) Σ_ij K_ij(x1, x2) over all n² ordered patch pairs (K_ij(x1, x2) ≠
    K_ji(x1, x2)ᵀ for two different sets), shape (P1, P2): the test×train block of the pooled
    predictor (THEORY §3b, §4; the ``Kx`` of ``kren.generated.fc.renormalized_cross_kernel``).

    Accumulated a few blocks at a time: memory O(P1·P2), never n²·P1·P2.
    """
    arch = _check_pool(arch)
    dtype = _dtype(dtype)
    p1 = arch.prepare(X1, "X1")
    p2 = p1.arch.prepare(X2, "X2")
    P1, P2, n, M = p1.P, p2.P, arch.n, arch.M
    item = dtype.itemsize
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    pairs = np.stack([ii.ravel(), jj.ravel()], axis=1)
    fixed = P1 * P2 * 8 + (P1 + P2) * n * M * item + _threads() * P1 * P2 * item
    chunk = _chunk(len(pairs), P1 * P2 * item, fixed, memory_budget,
                   f"pooled cross kernel ({P1}×{P2}, accumulated over {len(pairs)} blocks, "
                   f"{dtype})")
    Z1, v1 = p1.patches_as(dtype), p1.var.astype(dtype, copy=False)
    Z2, v2 = p2.patches_as(dtype), p2.var.astype(dtype, copy=False)
    scale = 1.0 / (arch.lambda0 * M)
    buf = np.empty((chunk, P1, P2), dtype=dtype)
    K = np.zeros((P1, P2))
    for s in range(0, len(pairs), chunk):
        pc = pairs[s:s + chunk]
        blk = buf[:len(pc)]
        _fill_blocks(arch.act, blk, Z1, Z2, v1, v2, pc, scale, (p1.name, p2.name))
        K += blk.sum(axis=0, dtype=np.float64)
    return K / n**2


@guarded("pooled_test_diagonal")
def pooled_test_diagonal(arch, X, dtype=np.float64, memory_budget=None) -> np.ndarray:
    """K_pool(x0, x0) = (1/n²) Σ_ij K_ij(x0, x0) for every input, shape (P0,) (THEORY §3b, §4;
    the ``Kd`` of ``kren.generated.fc.renormalized_test_diagonal``). In chunks of inputs of
    :func:`kren.kernels.test_diagonal` (n² values per input), pooled by
    ``kren.generated.pool.pooled_test_diagonal``."""
    from .kernels import test_diagonal
    arch = _check_pool(arch)
    dtype = _dtype(dtype)
    prep = arch.prepare(X)
    P0, n = prep.P, arch.n
    per_input = 3 * n * n * dtype.itemsize + 2 * n * arch.M * dtype.itemsize
    budget = get_memory_budget() if memory_budget is None else int(memory_budget)
    check_memory(per_input, f"pooled test diagonal ({n}×{n} patch pairs per input)", budget)
    chunk = int(max(1, min(P0, budget // per_input)))
    out = np.empty(P0)
    for rows, part in prep.chunks(chunk):
        out[rows] = _gen.pooled_test_diagonal(test_diagonal(arch, part, dtype=dtype))
    return out


@guarded("pooled_unit_means")
def pooled_unit_means(arch, X, dtype=np.float64) -> np.ndarray:
    """μ̄(x) = (1/n) Σ_i μ_i(x), shape (1, P) (THEORY §3b; zero for erf and linear)."""
    from .kernels import unit_means
    arch = _check_pool(arch)
    return _gen.pooled_means(unit_means(arch, X, dtype=dtype))


@guarded("pooled_nngp_kernel")
def pooled_nngp_kernel(arch, X1, X2=None, dtype=np.float64, memory_budget=None) -> np.ndarray:
    """Infinite-width kernel of the pooled CNN (THEORY §2): (1/(λ1 n²)) Σ_ij K_ij(x1, x2), every
    block uniformly weighted. X2=None: the symmetric P×P kernel of X1, from the n(n+1)/2 blocks
    i ≤ j (:func:`pooled_train_kernel`); otherwise all n² ordered blocks
    (:func:`pooled_cross_kernel`). Memory O(P1·P2)."""
    if X2 is None:
        kt = pooled_train_kernel(arch, X1, dtype=dtype, memory_budget=memory_budget)
        return kt.blocks[0].astype(np.float64) / arch.lambda1
    return pooled_cross_kernel(arch, X1, X2, dtype=dtype,
                               memory_budget=memory_budget) / arch.lambda1
