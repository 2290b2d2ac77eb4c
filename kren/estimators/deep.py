"""The deep fully-connected estimator (THEORY §1, §3d): one scalar Q_l per hidden layer.

    m = kren.DeepFC(L=3, N=200, T=0.1, lambda0=1.0, lambdas=1.0, activation="erf",
                    form="product")          # or form="nested" (deepbays' FC_deep)
    m.fit(X, y)                              # Q_ (L,), Qbar_ = 1/Q_ − 1, result_
    mean, var = m.predict(X_test, return_var=True)
    m.test_error(X_test, y_test); m.train_error(); m.score(X_test, y_test)
    m.renormalized_kernel()(X1, X2); m.save("fit.json"); kren.estimators.load("fit.json")

The same estimator as :class:`kren.FC` (:class:`kren.estimators.base.KrenEstimator`: parameters,
validation, the immutable fitted state, stale-parameter errors, predict, the errors, score,
save/load); what differs is the description (:class:`kren.DeepArchitecture`), the saddle-point
problem (:mod:`kren.saddle.deep` through the one driver :func:`kren.saddle.solve`) and the kernel
(:class:`kren.deep_renormalized.DeepRenormalizedKernel`).

The action (THEORY §3d; unequal widths derived in derivations.deep, step D6):
S = Σ_l (N_l/N_L)(Q_l − log Q_l) + (1/N_L)[log det A + yᵀA⁻¹y], A = T𝟙 + K_R, with K_R the
product form (Π_l Q_l) K^{(L)}/λ_L or the nested form K_R^{(l)} = (Q_l/λ_l) k(K_R^{(l−1)}).

What is derived, hence accepted: zero-mean activations (erf, linear, tanh, a user σ with zero
mean) in the product form, which needs K^{(L)} alone; erf and linear in the nested form, which
differentiates the kernel k(c, a, b) through every layer (closed-form partial derivatives exist
for these only). Activations with a unit mean (relu) need the Q̄_l terms of every layer, which are
not derived. N = inf (Q_l = 1, the deep NNGP kernel, GP regression) accepts every activation.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import cached_property
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils._param_validation import InvalidParameterError as _SkInvalidParameterError

from ..cache import KernelCache, cached
from ..deep_architecture import DeepArchitecture, check_widths
from ..deep_renormalized import DeepRenormalizedKernel
from ..exceptions import ConvergenceWarning
from ..guard import guarded
from ..saddle import solve
from ..saddle.deep import FORMS, deep_problem, nested_activation
from ..validation import InvalidParameterError, check_dtype, check_targets
from .base import KrenEstimator
from .solve import SolverResult
from .state import Fit, _frozen

__all__ = ["DeepFC", "DeepFit"]

_POSITIVE = Interval(Real, 0, np.inf, closed="neither")
_SIZE = Interval(Integral, 1, None, closed="left")


@dataclass(frozen=True, eq=False)
class DeepFit(Fit):
    """A successful deep fit (:class:`kren.estimators.state.Fit` with ``form``): ``Q`` and
    ``Qbar`` are (L,) arrays, ``tensor`` the :class:`kren.deep_architecture.DeepTrainKernels`,
    ``N`` the readout width N_L (α = P/N_L), ``widths`` (N_1, …, N_L) or None at N = ∞."""

    form: str = "product"
    widths: tuple | None = None

    @classmethod
    def build_deep(cls, estimator, params, arch, train, y, kernels, Q, T, widths, form, result,
                   cho=None, z=None):
        """Freeze the arrays; without a factor of A from the solver (product form, N = ∞) build
        K_R over the training set and factorize A = T𝟙 + K_R once (THEORY §3d)."""
        from ..linalg import cho_factor, cho_solve
        Q = _frozen(np.asarray(Q, dtype=float).reshape(-1))
        Qbar = _frozen(1.0 / Q - 1.0)
        K_R = None
        if cho is None:
            K_R = DeepRenormalizedKernel(arch, Q, form).on_train(kernels)
            cho = cho_factor(K_R + T * np.eye(K_R.shape[0]), "A = T·1 + K_R")
            z = cho_solve(cho, y)
            K_R.flags.writeable = False
        cho = (_frozen(cho[0]), cho[1])
        N = float("inf") if widths is None else float(widths[-1])
        return cls(estimator, dict(params), arch, train, _frozen(np.asarray(y, dtype=float)),
                   kernels, Q, Qbar, float(T), N, np.dtype(np.float64), cho, _frozen(z), result,
                   K_R_train=K_R, form=form, widths=widths)

    @cached_property
    def K_R(self) -> np.ndarray:
        if self.K_R_train is not None:
            return self.K_R_train
        K = DeepRenormalizedKernel(self.arch, self.Q, self.form).on_train(self.tensor)
        K.flags.writeable = False
        return K

    def kernel(self, cache=None, memory_budget=None) -> DeepRenormalizedKernel:
        """K_R(x, x') of this fit (:class:`kren.deep_renormalized.DeepRenormalizedKernel`)."""
        return DeepRenormalizedKernel(self.arch, self.Q, self.form, memory_budget=memory_budget,
                                      cache=cache)


class DeepFC(KrenEstimator):
    """Deep fully-connected network with L hidden layers, one order parameter Q_l per layer
    (module docstring; THEORY §3d).

    Parameters: ``L`` hidden layers; ``N`` one width for every layer or the widths N_1 … N_L
    (``float("inf")``: infinite width, the deep NNGP kernel); ``T``; ``lambda0`` (first layer);
    ``lambdas`` one prior for every layer or λ_1 … λ_L (λ_L the readout's); ``activation``;
    ``form`` "product" (K_R = Π_l Q_l K^{(L)}/λ_L) or "nested" (each Q_l feeds the next
    nonlinearity); ``input_shape``; ``tol``, ``max_iter`` of the saddle-point driver; ``dtype``
    float64 only (the nested recursion and its derivatives run in float64); ``memory_budget``,
    ``cache`` as for :class:`kren.FC`.
    """

    _kind = "deep-fc"
    _parameter_constraints: dict = {
        "L": [_SIZE],
        "N": [Interval(Real, 0, None, closed="right"), list, tuple, np.ndarray],
        "T": [_POSITIVE],
        "lambda0": [_POSITIVE],
        "lambdas": [_POSITIVE, list, tuple, np.ndarray],
        "activation": "no_validation",
        "form": [StrOptions(set(FORMS))],
        "input_shape": [None, _SIZE, tuple, list],
        "tol": [_POSITIVE],
        "max_iter": [_SIZE],
        "dtype": [StrOptions({"float64", "float32"}), type, np.dtype],
        "memory_budget": [None, Interval(Real, 0, None, closed="neither")],
        "cache": [None, KernelCache],
    }

    def __init__(self, L, N, T, lambda0=1.0, lambdas=1.0, activation="erf", form="product",
                 input_shape=None, *, tol=1e-9, max_iter=1000, dtype="float64",
                 memory_budget=None, cache=None):
        self.L = L
        self.N = N
        self.T = T
        self.lambda0 = lambda0
        self.lambdas = lambdas
        self.activation = activation
        self.form = form
        self.input_shape = input_shape
        self.tol = tol
        self.max_iter = max_iter
        self.dtype = dtype
        self.memory_budget = memory_budget
        self.cache = cache
        self._check_params()

    # ------------------------------------------------------------ parameters
    def _architecture(self) -> DeepArchitecture:
        shape = tuple(self.input_shape) if isinstance(self.input_shape, list) else \
            self.input_shape
        lambdas = list(self.lambdas) if isinstance(self.lambdas, (list, tuple, np.ndarray)) \
            else self.lambdas
        return DeepArchitecture(self.L, shape, activation=self.activation, lambda0=self.lambda0,
                                lambdas=lambdas)

    def _check_params(self) -> DeepArchitecture:
        """Validate every parameter; raise :class:`InvalidParameterError` naming the first bad one
        or the combination that is not derived (module docstring). Returns the architecture."""
        try:
            self._validate_params()
        except _SkInvalidParameterError as exc:
            raise InvalidParameterError(str(exc)) from None
        if check_dtype(self.dtype) != np.float64:
            raise InvalidParameterError(
                "DeepFC: dtype must be 'float64' (the deep kernels, the nested recursion and its "
                f"derivatives are computed in float64), got {self.dtype!r}")
        try:
            arch = self._architecture()
        except InvalidParameterError as exc:
            raise InvalidParameterError(f"DeepFC: {exc}") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidParameterError(f"DeepFC: {exc}") from None
        widths = check_widths(self.N, arch.L)
        if widths is not None:
            if not arch.zero_mean:
                raise InvalidParameterError(
                    f"DeepFC(activation={arch.act.name!r}) at finite N: the unit mean of "
                    f"{arch.act.name} is not zero, and the deep action with unit means (the "
                    "Q̄_l terms of every layer, THEORY §3d) is not derived; use a zero-mean "
                    "activation (erf, linear, tanh) or N=inf (the deep NNGP kernel)")
            if self.form == "nested":
                try:
                    nested_activation(arch.act)
                except ValueError as exc:
                    raise InvalidParameterError(f"DeepFC: {exc}") from None
        return arch

    def _widths(self, arch):
        return check_widths(self.N, arch.L)

    # ------------------------------------------------------------ fitting
    @guarded(".fit")
    def fit(self, X, y, Q0=None):
        """Solve ∂S/∂Q_l = 0 (THEORY §3d) on the training set (X, y) with the driver of
        :mod:`kren.saddle`; ``Q0`` (L,) optionally starts it (e.g. the solution at a neighbouring
        N). N = inf: Q_l = 1 exactly (the deep NNGP kernel). Returns self; the new fit replaces
        the previous one only when everything succeeded."""
        arch = self._check_params()
        params = self.get_params(deep=False)
        train = arch.prepare(X, "X")
        arch = arch.with_input(train)
        y = check_targets(y, train.P)
        kernels = cached(self.cache, lambda: KernelCache.key("deep-train", arch, np.float64, train),
                         lambda: arch.train_kernels(train, memory_budget=self.memory_budget))
        widths = self._widths(arch)
        T = float(self.T)
        cho = z = None
        if widths is None:
            Q = np.ones(arch.L)
            result = SolverResult(True, 0, 0.0, 0.0, float("nan"),
                                  "N = inf: infinite-width limit, Q_l = 1 exactly",
                                  method="exact")
        else:
            problem = deep_problem(self.form, kernels, y, T, widths, arch.lambdas, arch.act)
            try:
                problem.start(Q0)
            except ValueError as exc:
                raise InvalidParameterError(str(exc)) from None
            sol = solve(problem, Q0, tol=float(self.tol), max_iter=int(self.max_iter),
                        memory_budget=self.memory_budget)
            Q, result, cho, z = sol.Q, sol.result, sol.cho, sol.z
        fit = DeepFit.build_deep(type(self).__name__, params, arch, train, y, kernels, Q, T,
                                 widths, self.form, result, cho, z)
        self.fit_ = fit                                   # the one state change, at the end
        if not result.converged:
            warnings.warn(f"DeepFC(L={self.L}, N={self.N}, T={self.T}, form={self.form!r}): "
                          f"{result.message}", ConvergenceWarning, stacklevel=2)
        return self

    def _restore(self, arch, train, y, kernels, Q, result, cho=None, z=None):
        """Install a saved fit that :mod:`kren.estimators.fitfile_deep` has checked: the kernels
        rebuilt from the stored training data, the stored Q, and the factor of A from the check's
        evaluation (None: factorized here)."""
        self.fit_ = DeepFit.build_deep(type(self).__name__, self.get_params(deep=False), arch,
                                       train, y, kernels, Q, float(self.T), self._widths(arch),
                                       self.form, result, cho, z)
        return self

    # ------------------------------------------------------------ fitted attributes
    widths_ = property(lambda self: self._fit_or_raise().widths,
                       doc="(N_1, …, N_L) of the fit, None at N = ∞.")

    @property
    def equivalent_prior_(self):
        """Product form: λ_L/Π_l Q_l, the readout prior of the infinite-width deep network with the
        same predictor (K_R is the NNGP kernel rescaled, THEORY §5.5); None for the nested form,
        whose K_R is not a rescaling of the NNGP kernel."""
        fit = self._fit_or_raise()
        if fit.form != "product":
            return None
        return fit.arch.lambda_L / float(np.prod(fit.Q))

    @property
    def alpha_(self) -> float:
        """α = P/N_L of the fit (0 at N = ∞)."""
        fit = self._fit_or_raise()
        return fit.P / fit.N if math.isfinite(fit.N) else 0.0
