"""Estimators: fit the saddle point of FC, LCN and CNN networks and predict (THEORY §3–5).

    m = kren.CNN(N=50, T=0.1, lambda0=1.0, lambda1=1.0, activation="erf",
                 input_shape=(1, 8, 8), mask=(2, 2), stride=(2, 2), padding="valid")
    m.fit(X_train, y_train)                  # Q_, Qbar_, result_
    mean, var = m.predict(X_test, return_var=True)
    m.test_error(X_test, y_test)             # total, bias2, variance

``N=float("inf")`` is the exact infinite-width limit (Q = 𝟙, Q̄ = 0: GP regression with the
NNGP kernel). The action, gradients, renormalized kernels and predictor moments are the generated
functions of :mod:`kren.generated`; kernels come from :mod:`kren.kernels` through the single
:class:`~kren.architecture.Architecture` of the estimator.
"""
from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import kernels as _kernels
from .architecture import Architecture, check_positive
from .linalg import cho_factor, cho_solve
from .saddle import ConvergenceWarning, SolverResult, problem_for, solve

__all__ = ["FC", "LCN", "CNN", "TestError", "ConvergenceWarning", "NotFittedError",
           "UnconvergedError", "load", "clear_kernel_cache"]


class NotFittedError(RuntimeError):
    """The estimator has not been fitted yet."""


class UnconvergedError(RuntimeError):
    """Prediction was asked of a fit whose solver did not converge."""


def _generated(kind: str):
    from .generated import cnn, fc, lcn
    return {"cnn": cnn, "lcn": lcn, "fc": fc}[kind]


def _predictor():
    from .generated import predictor
    return predictor


# --------------------------------------------------------------------------- kernel cache
_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 2


def clear_kernel_cache() -> None:
    """Drop the cached kernel tensors (train×train and test×train)."""
    _CACHE.clear()
    _CROSS.clear()


def fingerprint(*arrays) -> str:
    """sha256 of the arrays' shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _arch_key(arch: Architecture) -> str:
    d = arch.describe()
    d.pop("lambda1", None)      # kernels K_ij do not depend on λ1
    return json.dumps(d, sort_keys=True)


def _train_kernels(arch, X, dtype, memory_budget):
    key = (_arch_key(arch), np.dtype(dtype).str, fingerprint(X))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    kt = _kernels.train_kernels(arch, X, dtype=dtype, memory_budget=memory_budget)
    _CACHE[key] = kt
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return kt


_CROSS: OrderedDict = OrderedDict()


def _cached_cross(arch, X1, X2, dtype, memory_budget, diagonal):
    """Test×train kernel tensor, kept (one entry, at most 1/8 of the memory budget) so that a
    sweep over N predicting on the same test set builds it once: it does not depend on N."""
    key = (_arch_key(arch), dtype.str, diagonal, fingerprint(X1), fingerprint(X2))
    if key in _CROSS:
        return _CROSS[key]
    Kx = _kernels.cross_kernels(arch, X1, X2, dtype=dtype, memory_budget=memory_budget,
                                diagonal=diagonal)
    budget = _kernels.get_memory_budget() if memory_budget is None else memory_budget
    _CROSS.clear()
    if Kx.nbytes <= budget // 8:
        _CROSS[key] = Kx
    return Kx


# --------------------------------------------------------------------------- results
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


def _check_N(N) -> float:
    return check_positive(N, "N", allow_inf=True)


def _check_y(y, P: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and 1 in y.shape:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"y must be a vector of P = {P} targets, got shape {y.shape}")
    if y.shape[0] != P:
        raise ValueError(f"y has {y.shape[0]} targets but X has P = {P} samples")
    if not np.issubdtype(y.dtype, np.number):
        raise TypeError(f"y must be numeric, got dtype {y.dtype}")
    y = y.astype(np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or inf")
    return y


# --------------------------------------------------------------------------- base estimator
class _Estimator:
    _kind: str = ""
    _structure: str = "matrix"          # order parameter for kren.saddle.problem_for
    _param_names = ("N", "T", "lambda0", "lambda1", "activation", "input_shape", "mask", "stride",
                    "padding", "tol", "max_iter", "dtype", "memory_budget")

    def __init__(self, N, T, lambda0=1.0, lambda1=1.0, activation="erf", input_shape=None,
                 mask=None, stride=None, padding="valid", *, tol=1e-9, max_iter=1000,
                 dtype="float64", memory_budget=None):
        self.N = N
        self.T = T
        self.lambda0 = lambda0
        self.lambda1 = lambda1
        self.activation = activation
        self.input_shape = input_shape
        self.mask = mask
        self.stride = stride
        self.padding = padding
        self.tol = tol
        self.max_iter = max_iter
        self.dtype = dtype
        self.memory_budget = memory_budget
        self._validate()

    # ------------------------------------------------------------ parameters
    def _validate(self) -> Architecture | None:
        _check_N(self.N)
        check_positive(self.T, "T (temperature)")
        check_positive(self.tol, "tol")
        if int(self.max_iter) != self.max_iter or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if np.dtype(self.dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be 'float64' or 'float32', got {self.dtype!r}")
        return self._architecture()

    def _architecture(self) -> Architecture | None:
        if self._kind == "fc":
            return Architecture("fc", self.input_shape, activation=self.activation,
                                lambda0=self.lambda0, lambda1=self.lambda1)
        return Architecture(self._kind, self.input_shape, self.mask, self.stride, self.padding,
                            self.activation, self.lambda0, self.lambda1)

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in self._param_names if hasattr(self, k)}

    def set_params(self, **params):
        for k, v in params.items():
            if k not in self._param_names or not hasattr(self, k):
                raise ValueError(f"unknown parameter {k!r} for {type(self).__name__}")
            setattr(self, k, v)
        self._validate()
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()
                         if v is not None and k not in ("tol", "max_iter", "dtype", "memory_budget"))
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------ fitting
    def fit(self, X, y, Q0=None):
        """Solve the saddle-point equations of THEORY §3 on the training set (X, y).

        X: (P, N0) flattened channels-first or (P, *input_shape). ``Q0`` (optional) starts the
        solver from a previous solution (e.g. a neighbouring N in a sweep). Returns self.
        """
        arch = self._validate().with_input(X)
        Xc = arch.check_data(X)
        y = _check_y(y, Xc.shape[0])
        self.arch_ = arch
        self.X_train_, self.y_train_ = Xc, y
        self.n_ = arch.n
        self.kernels_ = _train_kernels(arch, Xc, np.dtype(self.dtype), self.memory_budget)
        N = _check_N(self.N)
        self.alpha_ = Xc.shape[0] / N
        if math.isinf(N):
            Q, Qbar = self._identity()
            S = float("nan")
            self.result_ = SolverResult(True, 0, 0.0, 0.0, S,
                                        "N = inf: infinite-width limit, Q = 1 and Qbar = 0 exactly",
                                        method="exact")
            cho = z = None
        else:
            Q, Qbar, self.result_, cho, z = self._solve(Q0)
        self._set_solution(Q, Qbar, cho, z)
        if not self.result_.converged:
            warnings.warn(f"{type(self).__name__}(N={self.N}, T={self.T}): {self.result_.message}",
                          ConvergenceWarning, stacklevel=2)
        return self

    def _identity(self):
        n = self.n_
        return np.eye(n), np.zeros((n, n))

    def _set_solution(self, Q, Qbar, cho=None, z=None):
        """Store Q, Q̄ and the Cholesky factor of A = T𝟙 + K_R with z = A⁻¹y (reused from the
        solver's last evaluation when given; otherwise K_R is built and factorized once)."""
        self.Q_, self.Qbar_ = Q, Qbar
        self._K_R = None
        if cho is None:
            K_R = self._train_K_R()
            cho = cho_factor(K_R + float(self.T) * np.eye(K_R.shape[0]), "A = T·1 + K_R")
            z = cho_solve(cho, self.y_train_)
        self.cho_, self.z_ = cho, z

    def _train_K_R(self) -> np.ndarray:
        if getattr(self, "_K_R", None) is None:
            kt = self.kernels_
            Qa, Qba = self._gen_args(self.Q_, self.Qbar_)
            K_R = _generated(self._kind).renormalized_kernel(Qa, Qba, kt.blocks, kt.pairs, kt.mu,
                                                             self.arch_.lambda1)
            self._K_R = np.asarray(K_R, dtype=np.float64)
        return self._K_R

    @property
    def K_R_(self) -> np.ndarray:
        """Renormalized kernel over the training set (THEORY §3), built on first access."""
        self._check_fitted(allow_unconverged=True)
        return self._train_K_R()

    def _gen_args(self, Q, Qbar):
        return Q, Qbar

    def _solve(self, Q0):
        """The saddle point by kren.saddle: (Q, Qbar, result, cho, z). ``Q0`` may be a
        (Q0, Qbar0) tuple."""
        Q0, Qbar0 = Q0 if isinstance(Q0, tuple) else (Q0, None)
        problem = problem_for(self._structure, self.kernels_, self.y_train_, float(self.T),
                              float(self.N), self.arch_.lambda1, self.arch_.zero_mean)
        sol = solve(problem, Q0, Qbar0, tol=float(self.tol), max_iter=int(self.max_iter),
                    memory_budget=self.memory_budget)
        return sol.Q, sol.Qbar, sol.result, sol.cho, sol.z

    # ------------------------------------------------------------ predicting
    def _check_fitted(self, allow_unconverged: bool = False):
        if not hasattr(self, "Q_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(X, y) first")
        if not self.result_.converged and not allow_unconverged:
            raise UnconvergedError(
                f"the saddle-point solver did not converge ({self.result_.message}); pass "
                "allow_unconverged=True to predict anyway")

    def _chunk(self) -> int:
        n, P = self.n_, self.X_train_.shape[0]
        blocks = n if self._kind == "lcn" else n * n       # the LCN needs only K_ii(x0, x)
        per_row = blocks * P * np.dtype(self.dtype).itemsize
        budget = _kernels.get_memory_budget() if self.memory_budget is None else self.memory_budget
        return int(max(1, min(4096, min(budget // 4, 512 * 2**20) // per_row)))

    def _cross_chunks(self, X1, X2, mu2):
        """Yield (rows, mu1, k_R) with k_R = K_R(X1[rows], X2) from the generated code, X1 in
        chunks so that the test×train kernel tensor of one chunk fits the memory budget."""
        gen = _generated(self._kind)
        Qa, Qba = self._gen_args(self.Q_, self.Qbar_)
        step = self._chunk()
        for s in range(0, X1.shape[0], step):
            part = X1[s:s + step]
            mu1 = _kernels.unit_means(self.arch_, part)
            kR = gen.renormalized_cross_kernel(Qa, Qba, self._cross_tensor(part, X2), mu1, mu2,
                                               self.arch_.lambda1)
            yield slice(s, s + step), mu1, np.asarray(kR, dtype=np.float64)

    def _cross_tensor(self, X1, X2):
        return _cached_cross(self.arch_, X1, X2, np.dtype(self.dtype), self.memory_budget,
                             diagonal=False)

    def _diag_tensor(self, X):
        return _kernels.test_diagonal(self.arch_, X)

    def renormalized_kernel(self, X1, X2=None) -> np.ndarray:
        """K_R(x, x') of THEORY §4 between X1 and X2 (default X1); with N = inf the NNGP kernel."""
        self._check_fitted(allow_unconverged=True)
        A = self.arch_.check_data(X1, "X1")
        B = A if X2 is None else self.arch_.check_data(X2, "X2")
        K = np.empty((A.shape[0], B.shape[0]))
        for rows, _, kR in self._cross_chunks(A, B, _kernels.unit_means(self.arch_, B)):
            K[rows] = kR
        return 0.5 * (K + K.T) if X2 is None else K

    def predict(self, X, return_var: bool = False, allow_unconverged: bool = False):
        """Predictor mean ⟨f0⟩ = k_Rᵀ A⁻¹ y and, with ``return_var``, σ0² = K_R(x0,x0) − k_Rᵀ A⁻¹ k_R."""
        self._check_fitted(allow_unconverged)
        gen, pred = _generated(self._kind), _predictor()
        X = self.arch_.check_data(X, "X")
        Qa, Qba = self._gen_args(self.Q_, self.Qbar_)
        mean = np.empty(X.shape[0])
        var = np.empty(X.shape[0])
        mu_train = self.kernels_.mu.astype(np.float64)
        for rows, mu0, kR in self._cross_chunks(X, self.X_train_, mu_train):
            kR00 = gen.renormalized_test_diagonal(Qa, Qba, self._diag_tensor(X[rows]), mu0,
                                                  self.arch_.lambda1)
            mean[rows], var[rows] = pred.predictor_moments(kR, kR00, self.cho_, self.z_)
        return (mean, var) if return_var else mean

    def test_error(self, X, y, allow_unconverged: bool = False) -> TestError:
        """ε = ⟨(y0 − f0)²⟩ = (y0 − ⟨f0⟩)² + σ0², averaged over the test set (THEORY §4)."""
        mean, var = self.predict(X, return_var=True, allow_unconverged=allow_unconverged)
        y = _check_y(y, mean.shape[0])
        bias2 = float(np.mean((y - mean) ** 2))
        variance = float(np.mean(var))
        return TestError(bias2 + variance, bias2, variance, int(y.shape[0]))

    def train_error(self, allow_unconverged: bool = False) -> float:
        """(1/P) [T² yᵀA⁻²y + T Tr(K_R A⁻¹)] (THEORY §4)."""
        self._check_fitted(allow_unconverged)
        return float(_predictor().train_error(self._train_K_R(), self.cho_, self.y_train_,
                                              float(self.T)))

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        """Parameters, solution, diagnostics and data fingerprint (JSON-serialisable)."""
        self._check_fitted(allow_unconverged=True)
        res = self.result_.to_dict()
        return {
            "estimator": type(self).__name__,
            "kren_version": __import__("kren").__version__,
            "params": _jsonable(self.get_params()),
            "architecture": self.arch_.describe(),
            "Q": np.asarray(self.Q_).tolist(),
            "Qbar": np.asarray(self.Qbar_).tolist(),
            "result": _jsonable(res),
            "alpha": self.alpha_,
            "data_fingerprint": fingerprint(self.X_train_, self.y_train_),
            "P": int(self.X_train_.shape[0]),
        }

    def save(self, path) -> Path:
        """Write the fit to ``.json`` (parameters, Q, Q̄, diagnostics, training data) or ``.npz``."""
        path = Path(path)
        d = self.to_dict()
        if path.suffix == ".json":
            d["X_train"] = self.X_train_.tolist()
            d["y_train"] = self.y_train_.tolist()
            path.write_text(json.dumps(d, indent=1))
        elif path.suffix == ".npz":
            np.savez_compressed(path, meta=json.dumps(d), X_train=self.X_train_,
                                y_train=self.y_train_, Q=np.asarray(self.Q_),
                                Qbar=np.asarray(self.Qbar_))
        else:
            raise ValueError(f"save path must end in .json or .npz, got {path.name!r}")
        return path


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else str(v)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def load(path):
    """Load a fit written by ``save`` and restore it so it can predict.

    The kernels and the Cholesky factor of A are rebuilt from the stored training data; the
    stored data fingerprint is checked.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved fit at {path}")
    if path.suffix == ".json":
        d = json.loads(path.read_text())
        X, y = np.asarray(d["X_train"], float), np.asarray(d["y_train"], float)
        Q, Qbar = d["Q"], d["Qbar"]
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            d = json.loads(str(f["meta"]))
            X, y, Q, Qbar = f["X_train"], f["y_train"], f["Q"], f["Qbar"]
    else:
        raise ValueError(f"expected a .json or .npz file, got {path.name!r}")
    if fingerprint(X, y) != d["data_fingerprint"]:
        raise ValueError(f"{path}: training data do not match the stored fingerprint")
    cls = {"FC": FC, "LCN": LCN, "CNN": CNN}[d["estimator"]]
    params = {k: (float(v) if k == "N" and isinstance(v, str) else v) for k, v in d["params"].items()}
    for k in ("input_shape", "mask", "stride"):
        if isinstance(params.get(k), list):
            params[k] = tuple(params[k])
    est = cls(**params)
    arch = est._validate().with_input(X)
    est.arch_, est.X_train_, est.y_train_, est.n_ = arch, arch.check_data(X), y, arch.n
    est.alpha_ = X.shape[0] / float(est.N)
    est.kernels_ = _train_kernels(arch, est.X_train_, np.dtype(est.dtype), est.memory_budget)
    r = d["result"]
    numeric = {"grad_norm", "rel_grad_norm", "action", "seconds"}
    est.result_ = SolverResult(**{k: (float(v) if k in numeric else v) for k, v in r.items()})
    if cls is FC:
        est._set_solution(float(np.asarray(Q)), float(np.asarray(Qbar)))
    else:
        est._set_solution(np.asarray(Q, float), np.asarray(Qbar, float))
    return est


# --------------------------------------------------------------------------- FC
class FC(_Estimator):
    """Fully-connected one-hidden-layer network: scalar Q (and Q̄ for relu), THEORY §3.

    K_R = Q K/λ1 for zero-mean activations: the kernel is only rescaled, and the fit predicts
    exactly what an infinite-width network with readout prior ``equivalent_prior_`` = λ1/Q
    predicts (THEORY §5.5).
    """

    _kind = "fc"
    _structure = "scalar"
    _param_names = ("N", "T", "lambda0", "lambda1", "activation", "input_shape", "tol",
                    "max_iter", "dtype", "memory_budget")

    def __init__(self, N, T, lambda0=1.0, lambda1=1.0, activation="erf", input_shape=None, *,
                 tol=1e-9, max_iter=1000, dtype="float64", memory_budget=None):
        super().__init__(N, T, lambda0, lambda1, activation, input_shape, tol=tol,
                         max_iter=max_iter, dtype=dtype, memory_budget=memory_budget)

    def _identity(self):
        return 1.0, 0.0

    def _gen_args(self, Q, Qbar):
        return float(Q), float(Qbar)

    @property
    def equivalent_prior_(self):
        """λ1/Q*: the readout prior of the infinite-width FC net with the same predictor (§5.5).

        Defined for zero-mean activations only (for relu the mean part of K_R is rescaled by
        1/(1+Q̄) instead of Q, so no single prior reproduces it): None there.
        """
        self._check_fitted(allow_unconverged=True)
        if not self.arch_.zero_mean:
            return None
        return self.arch_.lambda1 / float(self.Q_)


# --------------------------------------------------------------------------- LCN, CNN
class _Local(_Estimator):
    def patch_importance(self) -> np.ndarray:
        """Σ_j Q_ij painted back onto the input grid (THEORY §6)."""
        self._check_fitted(allow_unconverged=True)
        return self.arch_.geometry.paint(np.asarray(self.Q_).sum(axis=1))


class CNN(_Local):
    """Convolutional one-hidden-layer network: symmetric positive-definite n×n Q (THEORY §3).

    Q can reweight patches and switch on the cross-patch blocks K_ij (i ≠ j) that the NNGP
    kernel lacks: local kernel renormalization (THEORY §5.5).
    """

    _kind = "cnn"


class LCN(_Local):
    """Locally connected network (no weight sharing): diagonal Q, Q̄ (THEORY §3).

    ``Q_`` is returned as an n×n diagonal matrix; the LCN only reweights the blocks K_ii.
    """

    _kind = "lcn"
    _structure = "diagonal"

    def _gen_args(self, Q, Qbar):
        return np.diag(Q).copy(), np.diag(Qbar).copy()

    def _cross_tensor(self, X1, X2):
        return _cached_cross(self.arch_, X1, X2, np.dtype(self.dtype), self.memory_budget,
                             diagonal=True)

    def _diag_tensor(self, X):
        return _kernels.test_diagonal(self.arch_, X, diagonal=True)
