"""Mixed-precision passes over stored data: float32 or float64 storage, float64 accumulation.

    combine_rows(c, D) = cᵀ D        (c (k,), D (k, L): Σ_p c_p D[p])
    contract_rows(D, b) = D b         (b (L,): one inner product per row)

Both run over column chunks of CHUNK entries, each cast to float64 in a per-thread buffer (so a
float32 D never costs a float64 copy of itself) and multiplied by one BLAS call on one thread;
the chunks are spread over the cores (the passes are memory bound: one BLAS thread per worker,
:func:`kren.linalg.single_blas_thread`). Every product and sum is float64: the result is the
exact float64 pass over the stored values.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["combine_rows", "contract_rows", "CHUNK"]

#: Columns per chunk: k × CHUNK float64 values stay within a core's cache for k ≈ 136 blocks.
CHUNK = 2048
#: Passes over less data than this run on the calling thread (a pool costs more than it saves).
THREADED_BYTES = 64 * 2**20


def _threads() -> int:
    from ..kernels import _threads as t
    return t()


def _workers(data) -> int:
    if data.nbytes < THREADED_BYTES:
        return 1
    return min(_threads(), max(1, data.shape[1] // CHUNK))


def _ranges(L: int, threads: int):
    starts = list(range(0, L, CHUNK))
    per = -(-len(starts) // threads)
    for t in range(threads):
        part = starts[t * per:(t + 1) * per]
        if part:
            yield part


#: One pool of pass threads for the process (threads started once: a P = 1000 fit makes ~30
#: passes, and starting two threads a pass cost ~0.15 s of a 2 s fit); made again after a fork,
#: whose child inherits the pool object but none of its threads.
_POOL: dict = {"pool": None, "workers": 0, "pid": None}
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The process's pass pool with at least ``workers`` threads (a larger one replaces it;
    work already queued on the old one still runs)."""
    with _POOL_LOCK:
        p = _POOL
        if p["pool"] is None or p["workers"] < workers or p["pid"] != os.getpid():
            if p["pool"] is not None and p["pid"] == os.getpid():
                p["pool"].shutdown(wait=False)
            p.update(pool=ThreadPoolExecutor(workers, thread_name_prefix="kren-pass"),
                     workers=workers, pid=os.getpid())
        return p["pool"]


def _run(jobs):
    from ..linalg import single_blas_thread
    jobs = list(jobs)
    with single_blas_thread():
        if len(jobs) == 1:
            return [jobs[0]()]
        return list(_pool(len(jobs)).map(lambda f: f(), jobs))


def combine_rows(coef: np.ndarray, data: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """cᵀ D in float64, shape (L,) (module docstring)."""
    coef = np.ascontiguousarray(coef, dtype=np.float64)
    k, L = data.shape
    if out is None:
        out = np.empty(L)
    cast = data.dtype != np.float64

    def job(starts):
        def run():
            buf = np.empty((k, CHUNK)) if cast else None
            for s in starts:
                e = min(s + CHUNK, L)
                blk = data[:, s:e]
                if cast:
                    b = buf[:, :e - s]
                    np.copyto(b, blk, casting="unsafe")
                    blk = b
                np.matmul(coef, blk, out=out[s:e])
        return run

    if not cast and _workers(data) == 1:
        from ..linalg import single_blas_thread
        with single_blas_thread():
            np.matmul(coef, data, out=out)
        return out
    _run(job(p) for p in _ranges(L, _workers(data)))
    return out


def contract_rows(data: np.ndarray, b: np.ndarray) -> np.ndarray:
    """D b in float64, shape (k,) (module docstring)."""
    b = np.ascontiguousarray(b, dtype=np.float64)
    k, L = data.shape
    cast = data.dtype != np.float64

    def job(starts):
        def run():
            acc = np.zeros(k)
            buf = np.empty((k, CHUNK)) if cast else None
            for s in starts:
                e = min(s + CHUNK, L)
                blk = data[:, s:e]
                if cast:
                    bb = buf[:, :e - s]
                    np.copyto(bb, blk, casting="unsafe")
                    blk = bb
                acc += blk @ b[s:e]
            return acc
        return run

    if not cast and _workers(data) == 1:
        from ..linalg import single_blas_thread
        with single_blas_thread():
            return data @ b
    parts = _run(job(p) for p in _ranges(L, _workers(data)))
    return np.sum(parts, axis=0)
