"""The scikit-learn estimator shared by FC, LCN and CNN (THEORY §3–5).

    m = kren.CNN(N=50, T=0.1, lambda0=1.0, lambda1=1.0, activation="erf",
                 input_shape=(1, 8, 8), mask=(2, 2), stride=(2, 2), padding="valid")
    m.fit(X_train, y_train)                  # Q_, Qbar_, result_
    mean, var = m.predict(X_test, return_var=True)
    m.test_error(X_test, y_test)             # total, bias2, variance
    m.score(X_test, y_test)                  # R² of the predictor mean (RegressorMixin)

``N=float("inf")`` is the exact infinite-width limit (Q = 𝟙, Q̄ = 0: GP regression with the
NNGP kernel) through the same path. Parameters follow scikit-learn's conventions: stored as given
by the constructor and ``set_params``, validated by ``fit`` (:attr:`_parameter_constraints`,
then the architecture), which raises :class:`kren.validation.InvalidParameterError` naming the
parameter. The constructor validates too, so a bad value fails where it is written.

The fitted state is one immutable :class:`kren.estimators.state.Fit` (``fit_``), swapped in at
the end of a successful fit; ``Q_``, ``Qbar_``, ``result_``, ... read from it. After a
``set_params`` that changes the model, predict and the errors raise
:class:`kren.exceptions.StaleFitError` naming the parameter until the next fit.

The estimators never branch on the kind: the architecture
(:class:`kren.architecture.Architecture`) supplies the structure, the kernels and the generated
module, :func:`kren.estimators.solve.solve_saddle` the saddle point, and
:class:`kren.renormalized.RenormalizedKernel` the predictor's kernel.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils._param_validation import InvalidParameterError as _SkInvalidParameterError

from ..architecture import Architecture
from ..cache import KernelCache, cached
from ..saddle.progress import Progress
from ..tensors.storage import STORAGES, plan_storage, solver_tensor
from ..exceptions import (ConvergenceWarning, NotFittedError, StaleFitError,
                          StaleParametersWarning, UnconvergedError)
from ..guard import guarded
from ..validation import InvalidParameterError, check_dtype, check_n_features, check_targets
from .multi import (check_label_values, check_labels, check_multi_targets, encode_labels,
                    multi_storage_plan,
                    prepare_targets, test_error_multi)
from .solve import SolverResult, solve_saddle
from .state import Fit, scalar_eigenbasis
from ..renormalized_multi import multi_identity

__all__ = ["KrenEstimator", "TestError"]

_POSITIVE = Interval(Real, 0, np.inf, closed="neither")
_SIZE = Interval(Integral, 1, None, closed="left")


@dataclass(frozen=True)
class TestError:
    """Test error ε = bias² + variance, averaged over a test set (THEORY §4)."""

    __test__ = False  # not a pytest class

    total: float
    bias2: float
    variance: float
    n: int

    def to_dict(self) -> dict:
        return {"total": self.total, "bias2": self.bias2, "variance": self.variance, "n": self.n}


class KrenEstimator(RegressorMixin, BaseEstimator):
    """Base of :class:`~kren.FC`, :class:`~kren.LCN`, :class:`~kren.CNN` (module docstring).

    Subclasses set ``_kind`` and declare ``__init__`` with their parameters.
    """

    _kind: str = ""

    _parameter_constraints: dict = {
        "N": [Interval(Real, 0, None, closed="right")],          # N = inf: infinite width
        "T": [_POSITIVE],
        "lambda0": [_POSITIVE],
        "lambda1": [_POSITIVE],
        "activation": "no_validation",        # resolved by the architecture (the registry)
        "input_shape": [None, _SIZE, tuple, list],
        "tol": [_POSITIVE],
        "max_iter": [_SIZE],
        "dtype": [StrOptions({"float64", "float32"}), type, np.dtype],
        "memory_budget": [None, Interval(Real, 0, None, closed="neither")],
        "cache": [None, KernelCache],
        "one_hot": ["boolean"],
        "label_values": [tuple, list],
        "storage": [StrOptions(set(STORAGES))],
        "device": [None, str],
        "time_budget": [None, _POSITIVE],
        "progress": ["boolean"],
    }

    # ------------------------------------------------------------ parameters
    def _architecture(self) -> Architecture:
        """The architecture the current parameters describe (input shape possibly unknown)."""
        kw = {k: getattr(self, k) for k in ("mask", "stride", "padding", "readout")
              if hasattr(self, k)}
        shape = self.input_shape
        if isinstance(shape, list):
            shape = tuple(shape)
        return Architecture(self._kind, shape, activation=self.activation,
                            lambda0=self.lambda0, lambda1=self.lambda1, **kw)

    def _check_params(self) -> Architecture:
        """Validate every parameter (constraints, then the architecture); raise
        :class:`InvalidParameterError` naming the first bad one. Returns the architecture."""
        try:
            self._validate_params()
        except _SkInvalidParameterError as exc:
            raise InvalidParameterError(str(exc)) from None
        check_dtype(self.dtype)
        check_label_values(self.label_values)
        try:
            return self._architecture()
        except InvalidParameterError:
            raise
        except (ValueError, TypeError, KeyError) as exc:      # e.g. an unknown activation
            raise InvalidParameterError(f"{type(self).__name__}: {exc}") from None

    def __sklearn_is_fitted__(self) -> bool:
        return "fit_" in self.__dict__

    # ------------------------------------------------------------ fitting
    @guarded(".fit")
    def fit(self, X, y, Q0=None):
        """Solve the saddle-point equations of THEORY §3 on the training set (X, y).

        X: (P, N0) flattened channels-first or (P, *input_shape). ``Q0`` (optional) starts the
        solver from a previous solution (e.g. a neighbouring N in a sweep). Returns self. The
        new fit replaces the previous one only when everything succeeded.
        """
        arch = self._check_params()
        params = self.get_params(deep=False)
        dtype = check_dtype(self.dtype)
        train = arch.prepare(X, "X")
        arch = train.arch
        y, classes = prepare_targets(y, train.P, self.one_hot, self.label_values)
        # subclasses that predate these parameters get the defaults (storage "auto", NumPy)
        storage, device = getattr(self, "storage", "auto"), getattr(self, "device", None)
        time_budget, progress = getattr(self, "time_budget", None), getattr(self, "progress", False)
        if y.ndim == 2:                 # D outputs (THEORY §3c): the stacked blocks
            plan = multi_storage_plan(arch, train.P, storage, device, dtype, D=y.shape[1],
                                      memory_budget=self.memory_budget)
            tensor = cached(self.cache,
                            lambda: KernelCache.key("train", arch, plan.dtype, train,
                                                    extra=("stacked", None)),
                            lambda: arch.train_tensor(train, dtype=plan.dtype,
                                                      memory_budget=self.memory_budget))
        else:
            plan = plan_storage(arch, train.P, storage, dtype, self.memory_budget, device)
            tensor = cached(self.cache,
                            lambda: KernelCache.key("train", arch, plan.dtype, train,
                                                    extra=(plan.mode, plan.device)),
                            lambda: solver_tensor(arch, train, plan))
        N, T = float(self.N), float(self.T)
        eig, eig_key = scalar_eigenbasis(arch, train, tensor, plan, self.cache, y.ndim == 1, N)
        if math.isinf(N):
            Q, Qbar = (arch.identity_order_parameters() if y.ndim == 1
                       else multi_identity(arch, y.shape[1]))
            sol_cho = sol_z = None
            result = SolverResult(True, 0, 0.0, 0.0, float("nan"),
                                  "N = inf: infinite-width limit, Q = 1 and Qbar = 0 exactly",
                                  method="exact")
        else:
            callback = None
            if progress or time_budget is not None:
                callback = Progress(time_budget, display=bool(progress),
                                    total=int(self.max_iter)).start()
            try:
                sol = solve_saddle(arch, tensor, y, T=T, N=N, tol=float(self.tol),
                                   max_iter=int(self.max_iter), memory_budget=self.memory_budget,
                                   Q0=Q0, callback=callback, eig=eig)
            finally:
                if callback is not None:
                    callback.close()
            Q, Qbar, result, sol_cho, sol_z = sol.Q, sol.Qbar, sol.result, sol.cho, sol.z
        fit = Fit.build(type(self).__name__, params, arch, train, y, tensor, Q, Qbar, T, N,
                        dtype, result, sol_cho, sol_z, storage=plan.describe(), classes=classes,
                        eig=eig, eig_key=eig_key or ())
        self.fit_ = fit                                   # the one state change, at the end
        if not result.converged:
            warnings.warn(f"{type(self).__name__}(N={self.N}, T={self.T}): {result.message}",
                          ConvergenceWarning, stacklevel=2)
        return self

    # ------------------------------------------------------------ the fit in use
    def _fit_or_raise(self) -> Fit:
        fit = self.__dict__.get("fit_")
        if fit is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(X, y) first")
        return fit

    def _changed(self, fit: Fit) -> str:
        return ", ".join(f"{k} (fitted with {old!r}, now {new!r})"
                         for k, old, new in fit.changed_params(self.get_params(deep=False)))

    def _usable_fit(self, allow_unconverged: bool = False, what: str = "predict") -> Fit:
        """The fit, if it describes the estimator as configured now and (unless allowed) its
        solver converged; otherwise a named error."""
        fit = self._fit_or_raise()
        changed = self._changed(fit)
        if changed:
            raise StaleFitError(
                f"{type(self).__name__}: parameter(s) changed by set_params since fit: {changed}. "
                f"Call fit(X, y) again, or set them back, before {what}")
        if not fit.result.converged and not allow_unconverged:
            raise UnconvergedError(
                f"the saddle-point solver did not converge ({fit.result.message}); refit as its "
                "message advises, or pass allow_unconverged=True to predict anyway")
        return fit

    def _fit_for_save(self) -> Fit:
        """The fit; a warning naming any parameter changed since (the fit's own are saved)."""
        fit = self._fit_or_raise()
        changed = self._changed(fit)
        if changed:
            warnings.warn(f"{type(self).__name__}: parameter(s) changed since fit: {changed}; "
                          "the parameters the fit was made with are written",
                          StaleParametersWarning, stacklevel=3)
        return fit

    # ------------------------------------------------------------ fitted attributes
    Q_ = property(lambda self: _readable(self._fit_or_raise(), "Q"),
                  doc="Order parameter Q at the saddle point (THEORY §3); with D outputs "
                      "(THEORY §3c) reshaped as (n, D, n, D) for reading (FC, pooled CNN: (D, D)).")
    Qbar_ = property(lambda self: _readable(self._fit_or_raise(), "Qbar"),
                     doc="Conjugate order parameter Q̄ (zero-mean activations: Q⁻¹ − 𝟙); D outputs "
                         "as Q_.")
    n_outputs_ = property(lambda self: self._fit_or_raise().outputs or 1,
                          doc="D, the number of outputs of the fit (THEORY §1).")
    classes_ = property(lambda self: self._fit_or_raise().classes,
                        doc="The class labels of a one-hot fit (output d is classes_[d]); None "
                            "otherwise.")
    result_ = property(lambda self: self._fit_or_raise().result,
                       doc="Solver diagnostics (:class:`kren.saddle.SolverResult`).")
    arch_ = property(lambda self: self._fit_or_raise().arch,
                     doc="The architecture of the fit, input shape included.")
    n_ = property(lambda self: self._fit_or_raise().arch.n, doc="Number of patches n.")
    alpha_ = property(lambda self: self._fit_or_raise().alpha, doc="α = P/N of the fit.")
    X_train_ = property(lambda self: self._fit_or_raise().train.X,
                        doc="Validated training inputs (P, N0), read-only.")
    y_train_ = property(lambda self: self._fit_or_raise().y, doc="Training targets, read-only.")
    kernels_ = property(lambda self: self._fit_or_raise().tensor,
                        doc="The train×train kernel tensor of the fit.")
    cho_ = property(lambda self: self._fit_or_raise().factor()[0],
                    doc="Cholesky factor of A = T𝟙 + K_R at the saddle point (made on first "
                        "access for a fit in the kernel's eigenbasis).")
    z_ = property(lambda self: self._fit_or_raise().factor()[1],
                  doc="z = A⁻¹y at the saddle point.")
    storage_ = property(lambda self: self._fit_or_raise().storage,
                        doc="How the fit held the train×train kernels: the storage mode "
                            "('stored', 'float32', 'streaming'), dtype, device and why "
                            "(kren.tensors.storage).")
    n_iter_ = property(lambda self: self._fit_or_raise().result.n_iter,
                       doc="Solver iterations of the fit (0 at N = ∞).")
    n_features_in_ = property(lambda self: self._fit_or_raise().train.X.shape[1],
                              doc="N0, the number of input features seen by fit.")

    @property
    def K_R_(self) -> np.ndarray:
        """Renormalized kernel over the training set (THEORY §3), built on first access."""
        return self._fit_or_raise().K_R

    @property
    def kernel_(self):
        """K_R(x, x') of the fit as a :class:`kren.renormalized.RenormalizedKernel`."""
        return self.renormalized_kernel()

    # ------------------------------------------------------------ predicting
    @guarded(".renormalized_kernel")
    def renormalized_kernel(self, X1=None, X2=None):
        """K_R(x, x') of THEORY §4 between X1 and X2 (default X1), a (P1, P2) matrix; with
        N = inf the NNGP kernel.

        Without arguments: the kernel itself, a :class:`kren.renormalized.RenormalizedKernel`
        (call it as ``K_R(X1, X2)``, ``K_R.diag(X)``; it shares the estimator's cache).
        """
        fit = self._usable_fit(allow_unconverged=True, what="renormalized_kernel")
        K_R = fit.kernel(self.cache, self.memory_budget)
        if X1 is None:
            if X2 is not None:
                raise InvalidParameterError("renormalized_kernel: X2 given without X1")
            return K_R
        return K_R(X1, X2)

    @guarded(".predict")
    def predict(self, X, return_var: bool = False, allow_unconverged: bool = False,
                return_cov: bool = False):
        """Predictor mean ⟨f0⟩ = k_Rᵀ A⁻¹ y and, with ``return_var``,
        σ0² = K_R(x0,x0) − k_Rᵀ A⁻¹ k_R (THEORY §4): GP regression with the fit's K_R and the
        factor of A from the fit. X is validated and cut into patches once.

        D outputs (THEORY §4): the mean is (P0, D); ``return_cov=True`` adds the (P0, D, D)
        predictive covariances, ``return_var=True`` their diagonals (P0, D). (One output:
        ``return_cov`` gives the variances as (P0, 1, 1).)"""
        fit = self._usable_fit(allow_unconverged)
        check_n_features(X, fit.arch.N0, type(self).__name__)
        mean, var = fit.predict(X, self.cache, self.memory_budget)
        if return_cov:
            return mean, (var if fit.outputs is not None else var[:, None, None])
        if return_var and fit.outputs is not None:
            var = np.diagonal(var, axis1=1, axis2=2).copy()
        return (mean, var) if return_var else mean

    def predict_class(self, X, allow_unconverged: bool = False) -> np.ndarray:
        """The class of argmax_d ⟨f_d(x0)⟩ for every test input (one-hot fits, THEORY §4)."""
        fit = self._usable_fit(allow_unconverged)
        if fit.classes is None:
            raise InvalidParameterError(f"{type(self).__name__}: predict_class needs a fit with "
                                        "one_hot=True (integer class labels)")
        return fit.classes[np.argmax(self.predict(X, allow_unconverged=allow_unconverged),
                                     axis=1)]

    def accuracy(self, X, y, allow_unconverged: bool = False) -> float:
        """Fraction of test inputs whose argmax_d ⟨f_d⟩ is their label (one-hot fits)."""
        pred = self.predict_class(X, allow_unconverged)
        return float(np.mean(pred == check_labels(y, pred.shape[0])))

    def score(self, X, y, sample_weight=None):
        """One-hot fits: the accuracy of argmax_d ⟨f_d⟩ against the labels y; otherwise the R²
        of the predictor mean (scikit-learn's RegressorMixin; D outputs: averaged uniformly)."""
        fit = self.__dict__.get("fit_")
        if fit is not None and fit.classes is not None and sample_weight is None:
            return self.accuracy(X, y)
        return super().score(X, y, sample_weight)

    @guarded(".test_error")
    def test_error(self, X, y, allow_unconverged: bool = False) -> TestError:
        """ε = ⟨(y0 − f0)²⟩ = (y0 − ⟨f0⟩)² + σ0², averaged over the test set (THEORY §4).

        D outputs: ε = (1/D) Σ_d ⟨(y_d − f_d)²⟩ with the per-output values and, for one-hot
        fits (y: the labels), the accuracy of argmax (:class:`MultiTestError`)."""
        fit = self._usable_fit(allow_unconverged)
        if fit.outputs is not None:
            mean, cov = self.predict(X, return_cov=True, allow_unconverged=allow_unconverged)
            if fit.classes is not None:
                labels = check_labels(y, mean.shape[0])
                Y = encode_labels(labels, fit.classes, check_label_values(
                    fit.params.get("label_values", (1.0, -1.0))))
                return test_error_multi(Y, mean, cov, fit.classes, labels)
            return test_error_multi(check_multi_targets(y, mean.shape[0], fit.outputs), mean,
                                    cov)
        mean, var = self.predict(X, return_var=True, allow_unconverged=allow_unconverged)
        y = check_targets(y, mean.shape[0])
        bias2 = float(np.mean((y - mean) ** 2))
        variance = float(np.mean(var))
        return TestError(bias2 + variance, bias2, variance, int(y.shape[0]))

    @guarded(".train_error")
    def train_error(self, allow_unconverged: bool = False) -> float:
        """(1/P) [T² yᵀA⁻²y + T Tr(K_R A⁻¹)] with the fit's T and A (THEORY §4)."""
        return self._usable_fit(allow_unconverged, "train_error").train_error()

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        """Parameters, solution, diagnostics and data fingerprint of the fit (JSON-serialisable)."""
        from .persistence import fit_to_dict
        return fit_to_dict(self._fit_for_save())

    @guarded(".save")
    def save(self, path):
        """Write the fit to ``.json`` (parameters, Q, Q̄, diagnostics, training data) or ``.npz``,
        atomically: a save that fails leaves any previous file at ``path`` intact. The parameters
        written are those the fit was made with (a parameter changed since is warned about)."""
        from .persistence import save_fit
        return save_fit(self._fit_for_save(), path)


def _readable(fit, name):
    """Q or Q̄ of a fit for reading: as stored for one output; with D outputs (n, D, n, D)
    (FC, pooled CNN: (D, D)), a read-only view of the (nD)×(nD) matrix."""
    M = getattr(fit, name)
    D = fit.outputs
    if D is None or fit.arch.structure == "scalar":
        return M
    n = fit.arch.n
    return np.asarray(M).reshape(n, D, n, D)
