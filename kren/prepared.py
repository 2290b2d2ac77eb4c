"""Inputs prepared once for one architecture: validated, cut into patches, variances and means.

``arch.prepare(X, name="X")`` (:meth:`kren.architecture.Architecture.prepare`) returns a
:class:`Prepared`:

- ``X``       (P, N0) the validated inputs, flattened channels-first (a read-only copy);
- ``patches`` (n, P, M) the patches x_i^μ, patch-major and contiguous, so that every kernel block
  K_ij is one matrix product ``patches[i] @ patches[j].T`` (THEORY §2);
- ``var``     (n, P) the local variances C_ii(x, x) = |x_i|²/(λ0 M) (THEORY §2);
- ``mu``      (n, P) the unit means μ_i(x) = E[σ(h)], h ~ N(0, C_ii(x, x)) (THEORY §2);
- ``fingerprint`` a sha256 of the inputs, computed on first use only (cache keys, saves).

Every kernel (train tensor, test×train blocks, test diagonal, NNGP kernel), the renormalized
kernel and the predictor take Prepared inputs; a raw array is prepared at the door, once. A chunk
of rows (:meth:`Prepared.rows`) is a view that shares the arrays and derives its fingerprint
from its parent's, so nothing is validated, cut or hashed again.
"""
from __future__ import annotations

import hashlib
from functools import cached_property

import numpy as np

from .validation import InvalidDataError

__all__ = ["Prepared", "fingerprint"]


def fingerprint(*arrays) -> str:
    """sha256 of the arrays' shapes, dtypes and bytes (the data identity used by caches and saves)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class Prepared:
    """Validated inputs with their patches, local variances and unit means (module docstring).

    Build with :meth:`kren.architecture.Architecture.prepare`. Immutable: the arrays are
    read-only and owned (never a view of the caller's array).
    """

    def __init__(self, arch, name, X, parent=None):
        self.arch = arch
        self.name = name
        self.X = X
        self._parent = parent          # (Prepared, start, stop) for a chunk of rows

    @classmethod
    def build(cls, arch, X, name: str = "X") -> "Prepared":
        """Validate X once (``arch.geometry.check_data``); the patches (cut once, by
        ``arch.geometry.patches``), C_ii = |x_i|²/(λ0 M) and μ_i = ``arch.unit_mean(C_ii)``
        follow on first use, so a memory check can run between validation and allocation."""
        Xc = arch.geometry.check_data(X, name)
        if Xc.dtype != np.float64:
            Xc = Xc.astype(np.float64)
        elif isinstance(X, np.ndarray) and np.shares_memory(Xc, X):
            Xc = Xc.copy()                       # own the data: the caller may modify theirs
        return cls(arch, name, _frozen(Xc))

    @cached_property
    def patches(self) -> np.ndarray:
        """x_i^μ, shape (n, P, M), patch-major and contiguous per patch."""
        if self._parent is not None:
            parent, s, e = self._parent
            return parent.patches[:, s:e]
        geom = self.arch.geometry
        return _frozen(np.ascontiguousarray(geom.patches(self.X).transpose(1, 0, 2)))

    @cached_property
    def var(self) -> np.ndarray:
        """C_ii(x, x) = |x_i|²/(λ0 M), shape (n, P)."""
        if self._parent is not None:
            parent, s, e = self._parent
            return parent.var[:, s:e]
        Z = self.patches
        with np.errstate(over="ignore", invalid="ignore"):
            var = np.einsum("npm,npm->np", Z, Z) / (self.arch.lambda0 * Z.shape[2])
        if not np.all(np.isfinite(var)):
            big = float(np.max(np.abs(self.X)))
            raise InvalidDataError(
                f"{self.name}: the local variances |x_i|²/(λ0 M) overflow float64 (inputs up to "
                f"{big:.1e} in absolute value). To fix: standardize the inputs (e.g. "
                "sklearn.preprocessing.StandardScaler) or rescale them to order 1")
        return _frozen(var)

    @cached_property
    def mu(self) -> np.ndarray:
        """μ_i(x) = E[σ(h)], h ~ N(0, C_ii(x, x)), shape (n, P)."""
        if self._parent is not None:
            parent, s, e = self._parent
            return parent.mu[:, s:e]
        return _frozen(np.asarray(self.arch.unit_mean(self.var), dtype=np.float64))

    # ------------------------------------------------------------------ sizes
    @property
    def P(self) -> int:
        """Number of inputs."""
        return int(self.X.shape[0])

    def __len__(self) -> int:
        return self.P

    @property
    def n(self) -> int:
        return self.arch.n

    @property
    def M(self) -> int:
        return self.arch.M

    # ------------------------------------------------------------------ derived, lazily
    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the validated inputs (a chunk: of its parent's fingerprint and its rows)."""
        if self._parent is not None:
            parent, s, e = self._parent
            return hashlib.sha256(f"{parent.fingerprint}[{s}:{e}]".encode()).hexdigest()
        return fingerprint(self.X)

    def patches_as(self, dtype) -> np.ndarray:
        """The patches in ``dtype`` (float64: the stored array; float32: a copy made once)."""
        dtype = np.dtype(dtype)
        if dtype == self.patches.dtype:
            return self.patches
        if self._parent is not None:
            parent, s, e = self._parent
            return parent.patches_as(dtype)[:, s:e]
        cast = self.__dict__.setdefault("_cast", {})
        if dtype.str not in cast:
            cast[dtype.str] = _frozen(self.patches.astype(dtype))
        return cast[dtype.str]

    def rows(self, start: int, stop: int) -> "Prepared":
        """Rows start:stop as a Prepared view (no validation, no patch extraction, no hashing)."""
        start, stop = max(0, int(start)), min(self.P, int(stop))
        if start == 0 and stop == self.P:
            return self
        if stop <= start:
            raise InvalidDataError(f"empty row range {start}:{stop} of {self.name} (P = {self.P})")
        return Prepared(self.arch, self.name, self.X[start:stop], (self, start, stop))

    def chunks(self, size: int):
        """Consecutive row chunks of at most ``size`` rows: yields (slice, Prepared view)."""
        size = max(1, int(size))
        for s in range(0, self.P, size):
            yield slice(s, min(s + size, self.P)), self.rows(s, s + size)

    def __repr__(self) -> str:
        return (f"Prepared({self.name}: P={self.P}, n={self.n}, M={self.M}, "
                f"{self.arch.kind}, {self.arch.activation})")
