"""An explicit kernel cache: an object that a user or a sweep creates, owns and passes in.

kren keeps no module-level caches: without a :class:`KernelCache` nothing outlives the call that
needed it. With one, kernel tensors are reused across fits and predictions that need the same
kernels, e.g. a sweep over N or T (the local kernels K_ij do not depend on N, T or λ1)::

    cache = kren.KernelCache(max_bytes=2**30)           # 1 GiB, least recently used evicted
    for N in (1000, 100, 10):
        m = kren.CNN(N=N, T=0.1, ..., cache=cache).fit(X, y)   # one train tensor, built once
        m.test_error(X_test, y_test)                             # one test×train tensor
    GridSearchCV(kren.CNN(..., cache=cache), {"N": [...], "T": [...]}, cv=3)

Entries are keyed by what they are (train tensor, test×train blocks), the architecture's
kernel-relevant description (:attr:`kren.architecture.Architecture.kernel_key`: everything but
λ1), the dtype and the fingerprints of the prepared inputs. Stored arrays are made read-only.

The cache is shared, never copied: ``copy.copy``, ``copy.deepcopy`` and therefore
``sklearn.base.clone`` return the same object, so every clone made by ``GridSearchCV`` fills and
reads the one cache. Pickling (e.g. to a joblib worker process) gives an empty cache with the
same bound.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from .validation import check_positive

__all__ = ["KernelCache", "cached"]


def _arrays(value):
    """The arrays an entry holds: itself, its array attributes, and those of attributes that
    list theirs with ``arrays()`` (the packed and streamed tensors of kren.tensors)."""
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, tuple):
        return [a for v in value for a in _arrays(v)]
    if not hasattr(value, "__dict__"):
        return []
    out = []
    for a in vars(value).values():
        if isinstance(a, np.ndarray):
            out.append(a)
        elif callable(getattr(a, "arrays", None)):
            out.extend(x for x in a.arrays() if isinstance(x, np.ndarray))
    return out


def _nbytes(value) -> int:
    return int(sum(a.nbytes for a in _arrays(value)))


def _freeze(value):
    for a in _arrays(value):
        a.flags.writeable = False
    return value


class KernelCache:
    """Bounded (``max_bytes``), least-recently-used store of kernel tensors (module docstring).

    ``max_bytes=None``: a quarter of the memory budget in force when the cache is created
    (:func:`kren.kernels.get_memory_budget`). An entry larger than the bound is not kept.
    ``hits`` and ``misses`` count lookups.
    """

    def __init__(self, max_bytes=None):
        if max_bytes is None:
            from .kernels import get_memory_budget
            max_bytes = get_memory_budget() // 4
        self.max_bytes = int(check_positive(max_bytes, "max_bytes"))
        self._store: OrderedDict = OrderedDict()
        self._sizes: dict = {}
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        self.misses_by: dict = {}         # misses per kind of entry (the key's first item)

    # ------------------------------------------------------------------ keys
    @staticmethod
    def key(what: str, arch, dtype, *prepared, extra=()) -> tuple:
        """(what, arch.kernel_key, dtype, fingerprints of the prepared inputs, extra)."""
        return (what, arch.kernel_key, np.dtype(dtype).str,
                tuple(p.fingerprint for p in prepared), tuple(extra))

    # ------------------------------------------------------------------ use
    def get(self, key, build):
        """The entry under ``key``; on a miss ``build()`` is called and its result kept (if it
        fits), evicting the least recently used entries beyond ``max_bytes``."""
        with self._lock:
            if key in self._store:
                self._store.move_to_end(key)
                self.hits += 1
                return self._store[key]
            self.misses += 1
            what = key[0] if isinstance(key, tuple) and key else None
            self.misses_by[what] = self.misses_by.get(what, 0) + 1
        value = _freeze(build())
        size = _nbytes(value)
        if size <= self.max_bytes:
            with self._lock:
                self._store[key] = value
                self._sizes[key] = size
                self._store.move_to_end(key)
                while self.nbytes > self.max_bytes:
                    old, _ = self._store.popitem(last=False)
                    del self._sizes[old]
        return value

    def __contains__(self, key) -> bool:
        return key in self._store

    def __len__(self) -> int:
        return len(self._store)

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored arrays."""
        return int(sum(self._sizes.values()))

    def clear(self) -> None:
        """Drop every entry (the counters are kept)."""
        with self._lock:
            self._store.clear()
            self._sizes.clear()

    # ------------------------------------------------------------------ shared, never copied
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return (KernelCache, (self.max_bytes,))

    def __repr__(self) -> str:
        return (f"KernelCache(max_bytes={self.max_bytes}, entries={len(self)}, "
                f"nbytes={self.nbytes}, hits={self.hits}, misses={self.misses})")


def cached(cache: KernelCache | None, key_fn, build):
    """``build()`` without a cache; ``cache.get(key_fn(), build)`` with one (the key, which may
    hash data, is only computed when a cache is given)."""
    if cache is None:
        return build()
    return cache.get(key_fn(), build)
