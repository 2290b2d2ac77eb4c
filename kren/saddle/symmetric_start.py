"""Starting points and feasibility of the D-output problems (THEORY §3c), shared by
:class:`kren.saddle.multi.MultiMatrixProblem` ((nD)×(nD) order parameters) and
:class:`kren.saddle.multi_eig.MultiEigProblem` (D×D).

A start is Q0 (default 𝟙) and, for units with a mean, Q̄0 (default 0 at Q0 = 𝟙, else the
eliminated Q̄ of the generated code, Q̄ = Q⁻¹ − 𝟙 at the saddle point); both symmetric, Q ≻ 0
and 𝟙 + Q̄ ≻ 0. The feasible set is the same pair of conditions.
"""
from __future__ import annotations

import numpy as np

from ..linalg import single_blas_thread
from .matrix import _is_pd


class SymmetricStart:
    """Mixin: ``start`` and ``feasible`` for a problem with ``size`` (the side of Q),
    ``zero_mean``, ``gen.eliminated_Qbar``, ``pack``/``unpack`` and ``_check_start(M, name)``
    (shape, finiteness, symmetry; returns the symmetrized matrix)."""

    size: int

    def start(self, Q0=None, Qbar0=None) -> np.ndarray:
        """Packed coordinates of (Q0, Q̄0) after the checks of the module docstring."""
        Q = np.eye(self.size) if Q0 is None else self._check_start(Q0, "Q0")
        if not _is_pd(Q):
            raise ValueError("Q0 must be positive definite")
        if self.zero_mean:
            return self.pack(Q)
        if Qbar0 is None:
            Qb = np.zeros_like(Q) if Q0 is None else self.gen.eliminated_Qbar(Q)
        else:
            Qb = self._check_start(Qbar0, "Qbar0")
        if not _is_pd(np.eye(self.size) + Qb):
            raise ValueError("1 + Qbar0 must be positive definite")
        return self.pack(Q, Qb)

    def feasible(self, x) -> bool:
        """Finite coordinates with Q ≻ 0 and 𝟙 + Q̄ ≻ 0."""
        x = np.asarray(x, dtype=float)
        if not np.all(np.isfinite(x)):
            return False
        Q, Qb = self.unpack(x)
        with single_blas_thread():          # small matrices: threads only add contention
            return _is_pd(Q) and (Qb is None or _is_pd(np.eye(self.size) + Qb))
