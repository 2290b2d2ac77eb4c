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
from ..renormalized import RenormalizedKernel, posterior_moments, posterior_moments_eig
from .solve import SolverResult

__all__ = ["Fit", "RESOURCE_PARAMS", "same_value", "scalar_eigenbasis"]

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

    ``eig``: for a scalar order parameter (FC, pooled CNN) with one output, the eigenbasis
    (k, U) of the training kernel the solve used (:func:`kren.saddle.scalar.eigenbasis`), and
    ``eig_key`` what identifies it beyond the data (the storage mode, for cache keys). With it
    the predictor and the training error are evaluated in that basis (the generated
    ``predictor_eig*``, ``train_error_eig*``: O(P) per test input once the projections
    K(x0, X) U are made, and those are cached with the kernels), and A is factorized only
    when ``cho``/``z`` are asked for (:meth:`factor`).
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
    eig: tuple | None = field(default=None, repr=False)
    eig_key: tuple = ()

    @classmethod
    def build(cls, estimator, params, arch, train, y, tensor, Q, Qbar, T, N, dtype, result,
              cho=None, z=None, storage=None, classes=None, eig=None, eig_key=()):
        """Freeze the arrays; when the solver returned no factor of A (scalar problems, N = ∞)
        and no eigenbasis is given, build K_R over the training set and factorize
        A = T𝟙 + K_R once (THEORY §3).

        ``y`` (P, D) with ``Q``, ``Qbar`` (nD, nD) is a D-output fit (THEORY §3c; A over the
        targets stacked output-major); ``classes`` the labels of a one-hot fit; ``eig`` the
        training kernel's eigenbasis (k, U) of a scalar fit with one output (class docstring;
        ignored otherwise)."""
        from ..linalg import cho_factor, cho_solve
        from ..multi_linalg import stack
        Q, Qbar = _frozen(Q), _frozen(Qbar)
        if eig is not None and not (arch.structure == "scalar" and np.ndim(y) == 1):
            eig, eig_key = None, ()
        K_R = None
        if cho is None and eig is None:
            K_R = _kernel(arch, Q, Qbar, y).on_tensor(tensor)
            cho = cho_factor(K_R + T * np.eye(K_R.shape[0]), "A = T·1 + K_R")
            z = cho_solve(cho, stack(y) if np.ndim(y) == 2 else y)
            K_R.flags.writeable = False
        if cho is not None:
            cho, z = (_frozen(cho[0]), cho[1]), _frozen(z)
        if eig is not None:
            eig = _checked_eigenbasis(arch, Q, Qbar, T, eig)
        return cls(estimator, dict(params), arch, train, _frozen(y), tensor,
                   Q, Qbar, float(T), float(N), np.dtype(dtype), cho, z, result, K_R,
                   storage, None if classes is None else np.asarray(classes).copy(), eig,
                   tuple(eig_key))

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
    def _factor(self) -> tuple:
        from ..linalg import cho_factor, cho_solve
        cho = cho_factor(self.K_R + self.T * np.eye(self.P), "A = T·1 + K_R")
        return (_frozen(cho[0]), cho[1]), _frozen(cho_solve(cho, self.y))

    def factor(self) -> tuple:
        """(cho, z): the Cholesky factor of A = T𝟙 + K_R and z = A⁻¹y (THEORY §3); a fit
        made in the eigenbasis (``eig``) factorizes A here, on first use."""
        if self.cho is not None:
            return self.cho, self.z
        return self._factor

    @cached_property
    def eig_projections(self) -> tuple:
        """(ỹ, m) = (Uᵀy, Uᵀμ) in the fit's eigenbasis (m None for zero-mean units)."""
        U = self.eig[1]
        mu = None if self.arch.zero_mean else U.T @ np.asarray(self.tensor.mu,
                                                                dtype=np.float64).reshape(-1)
        return U.T @ self.y, mu

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
        if self.eig is not None:
            yt, m = self.eig_projections
            return posterior_moments_eig(self.kernel(cache, memory_budget), X, self.train,
                                         self.eig, yt, m, self.T, self.eig_key)
        return posterior_moments(self.kernel(cache, memory_budget), X, self.train,
                                 *self.factor())

    def train_error(self) -> float:
        """(1/P) [T² yᵀA⁻²y + T Tr(K_R A⁻¹)] with this fit's T and A (THEORY §4); with D
        outputs y stacked output-major and the prefactor 1/(DP) (averaged over outputs)."""
        from ..generated import predictor
        from ..multi_linalg import stack
        if self.eig is not None:                 # in the eigenbasis (class docstring)
            yt, m = self.eig_projections
            gen, (Qa, Qba) = self.arch.generated, self.arch.generated_order_parameters(
                self.Q, self.Qbar)
            if Qba is None:
                return float(gen.train_error_eig_zero_mean(Qa, self.eig[0], yt, self.T,
                                                           self.arch.lambda1))
            return float(gen.train_error_eig(Qa, Qba, self.eig[0], yt, m, self.T,
                                             self.arch.lambda1))
        y = stack(self.y) if self.outputs is not None else self.y
        cho, _ = self.factor()
        return float(predictor.train_error(self.K_R, cho, y, self.T))

    def changed_params(self, current: dict) -> list[tuple[str, object, object]]:
        """(name, value at fit, current value) for every parameter that differs, resources
        (``memory_budget``, ``cache``) excepted."""
        return [(k, v, current.get(k)) for k, v in self.params.items()
                if k not in RESOURCE_PARAMS and not same_value(v, current.get(k))]


def _checked_eigenbasis(arch, Q, Qbar, T, eig):
    """The eigenbasis, frozen, after the check a Cholesky factorization of A would make:
    A = T𝟙 + K_R = U [diag(T + Q k/λ1) + β m mᵀ] Uᵀ (β = 1/(λ1(1 + Q̄)) > 0, zero mean β = 0),
    so A is positive definite iff T + Q k_min/λ1 > 0 with k_min the smallest eigenvalue of the
    kernel as computed (a singular kernel, e.g. conflicting duplicate inputs, has k_min ≈ 0
    up to round-off: at a large Q that round-off outweighs T). Raises
    :class:`kren.linalg.NotPositiveDefiniteError` otherwise, as the Cholesky factor would."""
    from ..linalg import NotPositiveDefiniteError
    from ..saddle.scalar import Eigenbasis
    k, U = eig[0], eig[1]
    k_min = float(eig[2]) if len(eig) > 2 else float(np.min(k))
    Qa, _ = arch.generated_order_parameters(Q, Qbar)
    lowest = T + Qa * k_min / arch.lambda1
    if not lowest > 0:
        raise NotPositiveDefiniteError(
            f"A = T·1 + K_R is not positive definite (its smallest eigenvalue T + Q k_min/λ1 = "
            f"{lowest:.3g} with Q = {Qa:.6g}, k_min = {k_min:.3g})")
    return Eigenbasis(_frozen(k), _frozen(U), k_min)


def scalar_eigenbasis(arch, train, tensor, plan, cache, one_output: bool, N: float):
    """(eig, eig_key) for :meth:`Fit.build`: the eigenbasis (k, U, k_min) of the training kernel
    (:func:`kren.saddle.scalar.eigenbasis`) for a scalar order parameter (FC, pooled CNN), and
    what names it beyond the data (the storage plan); (None, ()) where it is not used.

    It depends on neither N, T nor λ1: with a :class:`kren.cache.KernelCache` it is built once
    per cached tensor and shared by fits at other N, T, λ1. A fit with one output uses it for
    the solve, the predictor and the training error at finite N (the solve needs it anyway) and,
    with a cache, at N = ∞ too; at N = ∞ without a cache one Cholesky factor of A is cheaper
    than the O(P³) eigendecomposition and is used instead (the two predict the same numbers to
    ~κ(A)·ε, tests/test_predict_eig.py). With D outputs only the solver takes it (finite N),
    from a cache."""
    if arch.structure != "scalar":
        return None, ()
    finite = not math.isinf(N)
    if not ((finite or cache is not None) if one_output else (finite and cache is not None)):
        return None, ()
    from ..cache import KernelCache, cached
    from ..saddle.scalar import eigenbasis
    eig = cached(cache,
                 lambda: KernelCache.key("train-eigenbasis", arch, plan.dtype, train,
                                         extra=(plan.mode, plan.device)),
                 lambda: eigenbasis(tensor, arch.zero_mean))
    return eig, (plan.mode, plan.device, np.dtype(plan.dtype).str)


def _kernel(arch, Q, Qbar, y, **kw):
    """The K_R object of a fit: one output, or D outputs when the targets are (P, D)."""
    if np.ndim(y) == 2:
        from ..renormalized_multi import MultiRenormalizedKernel
        return MultiRenormalizedKernel(arch, Q, Qbar, int(np.shape(y)[1]), **kw)
    return RenormalizedKernel(arch, Q, Qbar, **kw)
