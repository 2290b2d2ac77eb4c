"""Scratch buffers that the evaluations of one solve reuse.

An evaluation of a D-output action at DP = 5000 makes large temporaries (the D²·P² blocks of the
combine GEMM and of A⁻¹ gathered for the contraction, potri's working copy of the factor):
100–200 MB each, a gigabyte an evaluation. Fresh memory of that size is mapped and faulted in
page by page at every evaluation, which on a virtual machine costs up to ≈ 2.5 ms per MB (0.5 s
an evaluation of 2 s measured at P = 500, D = 10). Inside :meth:`ScratchPool.active` the
temporaries named by :func:`scratch` are allocated once and reused; outside, :func:`scratch` is
``np.empty``.

Rules for a caller of :func:`scratch`: the buffer is uninitialized, and it is dead when the
function that asked for it returns (it must not escape into a result). Two temporaries that are
alive at the same time need different names. A pool serves one evaluation at a time (its lock).
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

__all__ = ["ScratchPool", "scratch"]

_LOCAL = threading.local()


class ScratchPool:
    """Named buffers reused across the evaluations of one problem (module docstring). One buffer
    per name: asking for a name with another shape, dtype or order replaces it."""

    def __init__(self):
        self._buffers: dict = {}
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def active(self):
        """Within this context (in this thread) :func:`scratch` draws from this pool."""
        with self._lock:
            previous = getattr(_LOCAL, "pool", None)
            _LOCAL.pool = self
            try:
                yield self
            finally:
                _LOCAL.pool = previous

    @property
    def nbytes(self) -> int:
        """Bytes held by the pool's buffers."""
        return sum(a.nbytes for a in self._buffers.values())

    def clear(self) -> None:
        """Release every buffer."""
        self._buffers.clear()

    def get(self, name: str, shape, dtype, order: str = "C") -> np.ndarray:
        shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        a = self._buffers.get(name)
        if a is None or a.shape != shape or a.dtype != dtype or not _has_order(a, order):
            self._buffers.pop(name, None)           # free the old buffer before the new one
            a = np.empty(shape, dtype=dtype, order=order)
            self._buffers[name] = a
        return a


def _has_order(a: np.ndarray, order: str) -> bool:
    return a.flags.f_contiguous if order == "F" else a.flags.c_contiguous


def scratch(name: str, shape, dtype, order: str = "C") -> np.ndarray:
    """An uninitialized array for a temporary: the active pool's buffer ``name`` (module
    docstring), or a new array when no pool is active."""
    pool = getattr(_LOCAL, "pool", None)
    if pool is None:
        return np.empty(tuple(int(s) for s in shape), dtype=dtype, order=order)
    return pool.get(name, shape, dtype, order)
