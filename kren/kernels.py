"""Local covariances and local kernel tensors over a data set (THEORY §2).

    C_ij(x, x') = x_i · x'_j / (λ0 M)          (FC: n = 1, M = N0)
    K_ij(x, x') = E[σ(h) σ(h')],  (h, h') ~ N(0, [[C_ii(x,x), C_ij(x,x')], [C_ij(x,x'), C_jj(x',x')]])
    μ_i(x)      = E[σ(h)],  h ~ N(0, C_ii(x,x))

Over the training set K_ij is a P×P block and K_ji = K_ijᵀ, so a train×train tensor stores only
the blocks of its ``pairs`` (i ≤ j; the diagonal only for LCN and FC). Every block is built by one
matrix product over all samples followed by the elementwise closed form of
:mod:`kren.activations`, blocks in parallel threads. The memory a request needs is computed
before anything is allocated and checked against a budget (default: half the available memory).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import activations
from .errorbase import KrenError
from .linalg import full_combine, pair_combine, pair_contract, single_blas_thread
from .validation import InvalidDataError, InvalidParameterError
from .guard import guarded

_BUDGET: int | None = None


class MemoryBudgetError(KrenError, MemoryError):
    """A kernel request would need more memory than the budget allows."""


def available_memory() -> int:
    """Bytes of memory currently available (Linux MemAvailable; physical pages elsewhere)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def set_memory_budget(nbytes: int | None) -> None:
    """Set the default memory budget for kernel requests (None: half the available memory)."""
    global _BUDGET
    if nbytes is not None and (not np.isfinite(nbytes) or nbytes <= 0):
        raise InvalidParameterError(f"memory budget must be a positive number of bytes, got {nbytes!r}")
    _BUDGET = None if nbytes is None else int(nbytes)


def get_memory_budget() -> int:
    """The budget in force: the value set by :func:`set_memory_budget` or half the available memory."""
    return _BUDGET if _BUDGET is not None else available_memory() // 2


def _fmt(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    raise AssertionError


def check_memory(nbytes: int, what: str, budget: int | None = None,
                 advice: str = "float32 (dtype=np.float32)") -> None:
    """Raise :class:`MemoryBudgetError` naming the size when ``nbytes`` exceeds the budget
    (``advice``: the cheaper option suited to the caller, named in the message)."""
    budget = get_memory_budget() if budget is None else int(budget)
    if nbytes > budget:
        raise MemoryBudgetError(
            f"{what} needs {_fmt(nbytes)} ({nbytes} bytes), over the memory budget of "
            f"{_fmt(budget)}; use fewer samples, a larger stride, {advice}, or raise the "
            f"budget with kren.kernels.set_memory_budget")


def _threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


@dataclass
class KernelTensor:
    """Train×train local kernels: ``blocks[p]`` = K_ij for ``pairs[p]`` = (i, j), i ≤ j.

    ``mu`` (n, P) are the unit means μ_i(x^μ) (zero for erf and linear), ``var`` (n, P) the
    local variances C_ii(x^μ, x^μ).
    """

    blocks: np.ndarray
    pairs: np.ndarray
    n: int
    mu: np.ndarray
    var: np.ndarray

    @property
    def P(self) -> int:
        return self.blocks.shape[1]

    @property
    def nbytes(self) -> int:
        return int(self.blocks.nbytes)

    def block(self, i: int, j: int) -> np.ndarray:
        """K_ij (P×P); K_ji = K_ijᵀ."""
        hit = np.flatnonzero((self.pairs[:, 0] == min(i, j)) & (self.pairs[:, 1] == max(i, j)))
        if hit.size == 0:
            raise KeyError(f"block ({i}, {j}) is not stored (pairs held: {len(self.pairs)})")
        K = self.blocks[hit[0]]
        return K if i <= j else K.T

    def combine(self, W) -> np.ndarray:
        """Σ_ij W_ij K_ij for symmetric W (n×n)."""
        return pair_combine(W, self.blocks, self.pairs)

    def contract(self, B) -> np.ndarray:
        """G_ij = ⟨K_ij, B⟩ for symmetric B (P×P)."""
        return pair_contract(self.blocks, B, self.pairs, self.n)


#: Local variances below this never overflow a kernel (the closed forms reach float32's
#: largest number at about 1e19, float64's at about 1e153): no probe is needed.
SAFE_VARIANCE = 1e15


def check_kernel_scale(act, var1, var2, dtype=np.float64, names=("X", "X")) -> None:
    """Raise :class:`kren.validation.InvalidDataError` when the kernel overflows ``dtype`` at the
    largest local variances of the two input sets (module docstring of :mod:`kren.guard`).

    The closed forms overflow first where the variances are largest: K(c, a, b) with
    |c| ≤ √(ab) only forms products bounded by (1 + 2a)(1 + 2b), so evaluating K at
    c = √(a_max b_max), a_max, b_max in ``dtype`` decides for every pair (one scalar
    evaluation, made only above :data:`SAFE_VARIANCE`).
    """
    dtype = np.dtype(dtype)
    a = float(np.max(var1, initial=0.0))
    b = float(np.max(var2, initial=0.0))
    if max(a, b) <= SAFE_VARIANCE:
        return
    act = activations.get(act)
    with np.errstate(all="ignore"):
        va, vb = np.array([a], dtype=dtype), np.array([b], dtype=dtype)
        block = (np.sqrt(va) * np.sqrt(vb)).reshape(1, 1)        # c = √(a b), in dtype
        ok = bool(np.all(np.isfinite(block)))
        if ok:                                   # the code path of the kernel blocks
            act.kernel_inplace(block, va, vb)
            ok = bool(np.all(np.isfinite(block)))
    if not ok:
        name = names[0] if a >= b else names[1]
        raise InvalidDataError(
            f"{name}: the inputs are too large for the {act.name} kernel in {dtype.name}: local "
            f"variances |x_i|²/(λ0 M) up to {max(a, b):.1e} overflow it. To fix: standardize "
            "the inputs (e.g. sklearn.preprocessing.StandardScaler) or rescale them to order 1"
            + (", or use dtype='float64'" if dtype != np.float64 else ""))


def _fill_blocks(act, out, Z1, Z2, var1, var2, pairs, scale, names=("X", "X")):
    """out[p] = K(Z1[i] Z2[j]ᵀ·scale, var1[i], var2[j]) for pairs[p] = (i, j), threaded.

    The scale of the inputs is checked first (:func:`check_kernel_scale`), so an overflowing
    kernel is a named error before any block is computed."""
    check_kernel_scale(act, var1, var2, out.dtype, names)
    # per-patch precomputation of the activation (quadrature coefficients; identity for closed
    # forms), done once for all the blocks a patch appears in
    top = max(float(np.max(var1, initial=0.0)), float(np.max(var2, initial=0.0)))
    rows, cols = np.unique(pairs[:, 0]), np.unique(pairs[:, 1])
    if var2 is var1:
        tab1 = tab2 = {i: act.tabulate(var1[i], top) for i in np.union1d(rows, cols)}
    else:
        tab1 = {i: act.tabulate(var1[i], top) for i in rows}
        tab2 = {j: act.tabulate(var2[j], top) for j in cols}

    def work(p):
        i, j = pairs[p]
        blk = out[p]
        np.matmul(Z1[i], Z2[j].T, out=blk)
        blk *= scale
        act.kernel_inplace(blk, tab1[i], tab2[j])
    n_threads = min(_threads(), len(pairs))
    if n_threads == 1:
        for p in range(len(pairs)):
            work(p)
    else:
        # The blocks are already spread over the cores: a multi-threaded BLAS inside each worker
        # would oversubscribe them (measured 2-2.5x slower on two cores), so BLAS runs on one thread.
        with single_blas_thread(), ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(work, range(len(pairs))))
    return out


def _check_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise InvalidParameterError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _scale(arch) -> float:
    return 1.0 / (arch.lambda0 * arch.M)


@guarded("train_kernels")
def train_kernels(arch, X, dtype=np.float64, memory_budget=None, pairs=None,
                  covariance: bool = False) -> KernelTensor:
    """Train×train tensor K_ij(x^μ, x^ν) for the architecture's pairs (or ``pairs`` given).

    X: raw inputs or a :class:`kren.prepared.Prepared` (``arch.prepare(X)``; raw inputs are
    prepared here, once). ``covariance=True`` returns the local covariances C_ij instead (the
    linear kernel). float64 by default; ``dtype=np.float32`` halves the memory.
    """
    dtype = _check_dtype(dtype)
    prep = arch.prepare(X)
    arch = prep.arch
    pairs = arch.pairs if pairs is None else np.asarray(pairs, dtype=np.intp)
    P, n = prep.P, arch.n
    if pairs.ndim != 2 or pairs.shape[1] != 2 or np.any(pairs < 0) or np.any(pairs >= n) \
            or np.any(pairs[:, 0] > pairs[:, 1]):
        raise InvalidParameterError(
            f"pairs must be an (n_pairs, 2) array of patch pairs (i, j) with "
            f"0 <= i <= j < n = {n}")
    need = len(pairs) * P * P * dtype.itemsize + 2 * P * n * arch.M * dtype.itemsize \
        + 2 * _threads() * P * P * dtype.itemsize
    check_memory(need, f"train×train kernel tensor ({len(pairs)} blocks of {P}×{P}, {dtype})",
                 memory_budget)
    Z = prep.patches_as(dtype)
    var = prep.var.astype(dtype, copy=False)
    act = activations.LINEAR if covariance else arch.act
    out = np.empty((len(pairs), P, P), dtype=dtype)
    _fill_blocks(act, out, Z, Z, var, var, pairs, _scale(arch), (prep.name, prep.name))
    mu = (np.zeros_like(var) if covariance else prep.mu).astype(dtype, copy=True)
    return KernelTensor(out, pairs, n, mu, var.copy())


@guarded("cross_kernels")
def cross_kernels(arch, X1, X2, dtype=np.float64, memory_budget=None,
                  covariance: bool = False, diagonal: bool = False) -> np.ndarray:
    """Full tensor K_ij(x1^a, x2^b) for all n² patch pairs, shape (n, n, P1, P2).

    Used for test×train kernels, where K_ij(x0, x) ≠ K_ji(x0, x)ᵀ in general.
    ``diagonal=True`` returns only the blocks K_ii, shape (n, P1, P2) (all an LCN needs).
    X1, X2: raw inputs or :class:`kren.prepared.Prepared`.
    """
    dtype = _check_dtype(dtype)
    p1 = arch.prepare(X1, "X1")
    arch = p1.arch
    p2 = arch.prepare(X2, "X2")
    n, P1, P2 = arch.n, p1.P, p2.P
    n_blocks = n if diagonal else n * n
    need = n_blocks * P1 * P2 * dtype.itemsize
    check_memory(need, f"cross kernel tensor ({n_blocks} blocks of {P1}×{P2})", memory_budget)
    if diagonal:
        pairs = np.stack([np.arange(n), np.arange(n)], axis=1)
    else:
        ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        pairs = np.stack([ii.ravel(), jj.ravel()], axis=1)
    out = np.empty((n_blocks, P1, P2), dtype=dtype)
    act = activations.LINEAR if covariance else arch.act
    _fill_blocks(act, out, p1.patches_as(dtype), p2.patches_as(dtype),
                 p1.var.astype(dtype, copy=False), p2.var.astype(dtype, copy=False), pairs,
                 _scale(arch), (p1.name, p2.name))
    return out if diagonal else out.reshape(n, n, P1, P2)


@guarded("unit_means")
def unit_means(arch, X, dtype=np.float64) -> np.ndarray:
    """μ_i(x) for every patch and sample, shape (n, P)."""
    return arch.prepare(X).mu.astype(np.dtype(dtype), copy=True)


@guarded("test_diagonal")
def test_diagonal(arch, X, dtype=np.float64, covariance: bool = False,
                  diagonal: bool = False, memory_budget=None) -> np.ndarray:
    """K_ij(x0, x0) for every test input and all patch pairs, shape (n, n, P0).

    ``diagonal=True`` returns only K_ii(x0, x0), shape (n, P0).
    """
    prep = arch.prepare(X)
    arch = prep.arch
    dtype = np.dtype(dtype)
    n, P0 = arch.n, prep.P
    need = (n if diagonal else 3 * n * n) * P0 * 8 + (0 if diagonal else n * P0 * arch.M * 8)
    check_memory(need, f"test diagonal ({n if diagonal else n * n} patch pairs × {P0} inputs)",
                 memory_budget)
    var = prep.var
    if not covariance:
        check_kernel_scale(arch.act, var, var, dtype, (prep.name, prep.name))
    if diagonal:
        out = var.copy() if covariance else arch.act.kernel(var, var, var)
        return out.astype(dtype, copy=False)
    Z = prep.patches
    C = np.einsum("ipm,jpm->ijp", Z, Z) * _scale(arch)
    if covariance:
        return C.astype(dtype, copy=False)
    out = arch.act.kernel(C, var[:, None, :], var[None, :, :])
    return out.astype(dtype, copy=False)


test_diagonal.__test__ = False   # a public API name, not a pytest test when imported into one


@guarded("cross_combine")
def cross_combine(arch, W, X1, X2, dtype=np.float64, memory_budget=None) -> np.ndarray:
    """Σ_ij W_ij K_ij(x1, x2), shape (P1, P2), in chunks of X1 so the full tensor is never held."""
    p1 = arch.prepare(X1, "X1")
    arch = p1.arch
    p2 = arch.prepare(X2, "X2")
    n = arch.n
    W = np.asarray(W, dtype=float)
    per_row = n * n * p2.P * np.dtype(dtype).itemsize
    budget = get_memory_budget() if memory_budget is None else int(memory_budget)
    chunk = int(max(1, min(p1.P, (budget // 4) // max(per_row, 1))))
    out = np.empty((p1.P, p2.P))
    for rows, part in p1.chunks(chunk):
        Kx = cross_kernels(arch, part, p2, dtype=dtype, memory_budget=budget)
        out[rows] = full_combine(W, Kx)
    return out


@guarded("nngp_kernel")
def nngp_kernel(arch, X1, X2=None, dtype=np.float64, memory_budget=None) -> np.ndarray:
    """Infinite-width kernel (THEORY §2): K/λ1 (FC), (1/(λ1 n)) Σ_i K_ii (LCN and CNN) or
    (1/(λ1 n²)) Σ_ij K_ij (CNN with readout="pool", accumulated: kren.pooling).

    One accumulator, one block and the closed form's scratch (P1×P2 each) are held at a time.
    """
    if getattr(arch, "readout", "local") == "pool":
        from .pooling import pooled_nngp_kernel
        return pooled_nngp_kernel(arch, X1, X2, dtype=dtype, memory_budget=memory_budget)
    p1 = arch.prepare(X1, "X1")
    arch = p1.arch
    p2 = p1 if X2 is None else arch.prepare(X2, "X2")
    n, P1, P2 = arch.n, p1.P, p2.P
    dtype = np.dtype(dtype)
    what = f"NNGP kernel ({P1}×{P2}, accumulated over {n} blocks, {dtype})"
    # accumulator (float64), one block and the closed form's scratch, and the patches
    patches = (P1 + (0 if X2 is None else P2)) * n * arch.M * dtype.itemsize
    check_memory(P1 * P2 * 8 + 2 * P1 * P2 * dtype.itemsize + patches, what, memory_budget)
    check_kernel_scale(arch.act, p1.var, p2.var, dtype, (p1.name, p2.name))
    Z1, Z2 = p1.patches_as(dtype), p2.patches_as(dtype)
    v1, v2 = p1.var.astype(dtype, copy=False), p2.var.astype(dtype, copy=False)
    K = np.zeros((P1, P2))
    blk = np.empty((P1, P2), dtype=dtype)
    for i in range(n):
        np.matmul(Z1[i], Z2[i].T, out=blk)
        blk *= _scale(arch)
        arch.act.kernel_inplace(blk, v1[i], v2[i])
        K += blk
    if X2 is None:
        K = 0.5 * (K + K.T)
    return K / (arch.lambda1 * n)
