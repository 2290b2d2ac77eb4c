"""The fitted state of an estimator: one immutable object, built at the end of a successful fit.

An estimator holds at most one :class:`Fit` (``est.fit_``). ``fit`` builds a new one from local
variables only and assigns it as its last step, so a fit that fails part-way (bad data, a
non-positive-definite A, a memory error) leaves the previous fit untouched. Everything that uses
a fit — predict, the errors, the renormalized kernel, saves — reads its parameters from the fit,
never from the estimator; a parameter changed by ``set_params`` since is reported
(:meth:`Fit.changed_params`), never mixed in.

The train tensor is held as ``tensor`` and used only through ``RenormalizedKernel.on_tensor``
(K_R over the training set) and the solver, so a lazily computed tensor (streaming, issue 13)
can take its place.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..prepared import Prepared, fingerprint
from ..renormalized import RenormalizedKernel, posterior_moments
from .solve import SolverResult

__all__ = ["Fit", "RESOURCE_PARAMS", "same_value"]

#: Parameters that decide how, not what, is computed: changing them does not make a fit stale.
RESOURCE_PARAMS = frozenset({"memory_budget", "cache", "storage", "device", "time_budget",
                             "progress"})


def _normalize(v):
    if isinstance(v, (list, tuple)):
        return tuple(_normalize(u) for u in v)
    if isinstance(v, np.ndarray):
        return tuple(_normalize(u) for u in v.tolist())
    if isinstance(v, (np.dtype, type)):
        try:
            return np.dtype(v).str
        except TypeError:
            return v
    if isinstance(v, str) and v in ("float32", "float64"):
        return np.dtype(v).str
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return v


def same_value(a, b) -> bool:
    """Parameter values equal up to spelling (tuple/list, NumPy scalars, dtype names)."""
    if a is b:
        return True
    try:
        return bool(_normalize(a) == _normalize(b))
    except Exception:                      # noqa: BLE001 - incomparable values differ
        return False


def _frozen(a):
    if isinstance(a, np.ndarray):
        a = np.array(a, dtype=np.float64, copy=True)
        a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Fit:
    """A successful fit (module docstring). Fields:

    ``estimator`` (class name), ``params`` (the estimator's parameters at fit time, a copy; do not
    modify), ``arch`` (the architecture with its input shape), ``train`` (the prepared training
    inputs), ``y`` (float64 targets), ``tensor`` (the train×train kernel tensor the action
    needs), ``Q``, ``Qbar`` (floats for FC, n×n arrays otherwise), ``T``, ``N``, ``dtype``,
    ``cho`` (the Cholesky factor of A = T𝟙 + K_R) and ``z`` = A⁻¹y, ``result`` (the
    :class:`kren.saddle.SolverResult`), ``storage`` (how the solver held the kernels,
    :meth:`kren.tensors.storage.StoragePlan.describe`).
    """

    estimator: str
    params: dict
    arch: object
    train: Prepared
    y: np.ndarray
    tensor: object
    Q: object
    Qbar: object
    T: float
    N: float
    dtype: np.dtype
    cho: tuple
    z: np.ndarray
    result: SolverResult
    K_R_train: np.ndarray | None = field(default=None, repr=False)
    storage: str | None = None
    classes: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def build(cls, estimator, params, arch, train, y, tensor, Q, Qbar, T, N, dtype, result,
              cho=None, z=None, storage=None, classes=None):
        """Freeze the arrays; when the solver returned no factor of A (scalar problems, N = ∞),
        build K_R over the training set and factorize A = T𝟙 + K_R once (THEORY §3).

        ``y`` (P, D) with ``Q``, ``Qbar`` (nD, nD) is a D-output fit (THEORY §3c; A over the
        targets stacked output-major); ``classes`` the labels of a one-hot fit."""
        from ..linalg import cho_factor, cho_solve
        from ..multi_linalg import stack
        Q, Qbar = _frozen(Q), _frozen(Qbar)
        K_R = None
        if cho is None:
            K_R = _kernel(arch, Q, Qbar, y).on_tensor(tensor)
            cho = cho_factor(K_R + T * np.eye(K_R.shape[0]), "A = T·1 + K_R")
            z = cho_solve(cho, stack(y) if np.ndim(y) == 2 else y)
            K_R.flags.writeable = False
        cho = (_frozen(cho[0]), cho[1])
        return cls(estimator, dict(params), arch, train, _frozen(y), tensor,
                   Q, Qbar, float(T), float(N), np.dtype(dtype), cho, _frozen(z), result, K_R,
                   storage, None if classes is None else np.asarray(classes).copy())

    @property
    def outputs(self) -> int | None:
        """D for a D-output fit (targets (P, D)), None for one output."""
        return int(self.y.shape[1]) if self.y.ndim == 2 else None

    # ------------------------------------------------------------------ derived, lazily
    @property
    def P(self) -> int:
        return self.train.P

    @property
    def alpha(self) -> float:
        """α = P/N (0 at N = ∞)."""
        return self.P / self.N if math.isfinite(self.N) else 0.0

    @cached_property
    def K_R(self) -> np.ndarray:
        """K_R over the training set (THEORY §3), built on first use."""
        if self.K_R_train is not None:
            return self.K_R_train
        K = _kernel(self.arch, self.Q, self.Qbar, self.y).on_tensor(self.tensor)
        K.flags.writeable = False
        return K

    @cached_property
    def data_fingerprint(self) -> str:
        """sha256 of the training inputs and targets (saves)."""
        return fingerprint(self.train.X, self.y)

    # ------------------------------------------------------------------ use
    def kernel(self, cache=None, memory_budget=None) -> RenormalizedKernel:
        """K_R(x, x') of this fit as a :class:`kren.renormalized.RenormalizedKernel` (D outputs:
        :class:`kren.renormalized_multi.MultiRenormalizedKernel`)."""
        return _kernel(self.arch, self.Q, self.Qbar, self.y, dtype=self.dtype.name,
                       memory_budget=memory_budget, cache=cache)

    def predict(self, X, cache=None, memory_budget=None):
        """GP regression with K_R (THEORY §4) on X (raw or prepared): (mean, var); with D
        outputs (mean (P0, D), cov (P0, D, D))."""
        if self.outputs is not None:
            from ..renormalized_multi import multi_posterior_moments
            return multi_posterior_moments(self.kernel(cache, memory_budget), X, self.train,
                                           self.cho, self.z)
        return posterior_moments(self.kernel(cache, memory_budget), X, self.train, self.cho,
                                 self.z)

    def train_error(self) -> float:
        """(1/P) [T² yᵀA⁻²y + T Tr(K_R A⁻¹)] with this fit's T and A (THEORY §4); with D
        outputs y stacked output-major and the prefactor 1/(DP) (averaged over outputs)."""
        from ..generated import predictor
        from ..multi_linalg import stack
        y = stack(self.y) if self.outputs is not None else self.y
        return float(predictor.train_error(self.K_R, self.cho, y, self.T))

    def changed_params(self, current: dict) -> list[tuple[str, object, object]]:
        """(name, value at fit, current value) for every parameter that differs, resources
        (``memory_budget``, ``cache``) excepted."""
        return [(k, v, current.get(k)) for k, v in self.params.items()
                if k not in RESOURCE_PARAMS and not same_value(v, current.get(k))]


def _kernel(arch, Q, Qbar, y, **kw):
    """The K_R object of a fit: one output, or D outputs when the targets are (P, D)."""
    if np.ndim(y) == 2:
        from ..renormalized_multi import MultiRenormalizedKernel
        return MultiRenormalizedKernel(arch, Q, Qbar, int(np.shape(y)[1]), **kw)
    return RenormalizedKernel(arch, Q, Qbar, **kw)
