"""One set of validation rules for the whole package: the same error type for the same mistake.

Two error types, both subclasses of ``ValueError`` *and* ``TypeError`` (as scikit-learn's own
``InvalidParameterError``), so code that catches either keeps working:

- :class:`InvalidParameterError` (a subclass of scikit-learn's): a parameter of an estimator,
  architecture, kernel or sampler is invalid (T ≤ 0, N = NaN, a mask larger than the input, ...).
  The message names the parameter.
- :class:`InvalidDataError`: an input array or target vector is invalid (wrong shape, NaN or inf,
  complex or non-numeric values). The message names the array (``X``, ``X_test``, ``y``, ...).

Every check returns the coerced value, so callers write ``T = check_positive(T, "T")``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.utils._param_validation import InvalidParameterError as _SkInvalidParameterError

from .errorbase import KrenError

__all__ = ["InvalidParameterError", "InvalidDataError", "check_positive", "check_positive_int",
           "check_dtype", "check_inputs", "check_n_features", "check_targets"]


class InvalidParameterError(KrenError, _SkInvalidParameterError):
    """A parameter has an invalid type or value; the message names the parameter.

    Subclass of :class:`sklearn.utils._param_validation.InvalidParameterError`, hence of both
    ``ValueError`` and ``TypeError``.
    """


class InvalidDataError(KrenError, ValueError, TypeError):
    """An input array or target vector is invalid (shape, NaN/inf, complex, non-numeric);
    the message names the array. Both ``ValueError`` and ``TypeError``."""


# --------------------------------------------------------------------------- parameters
def check_positive(value, name: str, allow_inf: bool = False) -> float:
    """A positive real number (``allow_inf``: +inf accepted, e.g. the width N = ∞)."""
    if isinstance(value, (bool, np.bool_)):
        raise InvalidParameterError(f"{name} must be a positive number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a positive number, got {value!r}") from None
    if math.isnan(v):
        raise InvalidParameterError(f"{name} is NaN; it must be a positive number")
    if math.isinf(v) and not allow_inf:
        raise InvalidParameterError(f"{name} must be finite, got {v}")
    if v <= 0:
        raise InvalidParameterError(f"{name} must be > 0, got {v}")
    return v


def check_positive_int(value, name: str) -> int:
    """A positive integer (floats with an integer value are not accepted silently)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_dtype(value, name: str = "dtype") -> np.dtype:
    """float32 or float64 (a string, a NumPy type or a dtype)."""
    try:
        dt = np.dtype(value)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InvalidParameterError(f"{name} must be 'float64' or 'float32', got {value!r}")
    return dt


# --------------------------------------------------------------------------- data
def check_inputs(X, input_shape: tuple, name: str = "X") -> np.ndarray:
    """Inputs flattened channels-first, shape (P, N0), floating point.

    Accepts (P, N0) or (P, *input_shape) (numeric, or an object array of numbers); rejects
    sparse matrices, complex values, empty arrays, NaN and inf, naming ``name``.
    """
    if _issparse(X):
        raise InvalidDataError(f"{name} is a sparse matrix: sparse input is not supported; pass a "
                               f"dense array ({name}.toarray())")
    X = np.asarray(X)
    if np.iscomplexobj(X):
        raise InvalidDataError(f"{name}: Complex data not supported (dtype {X.dtype}); "
                               "kren needs real inputs")
    if X.dtype == object:
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidDataError(f"{name} must be a numeric array, got dtype object with "
                                   f"non-numeric entries ({exc})") from None
    if not np.issubdtype(X.dtype, np.number):
        raise InvalidDataError(f"{name} must be a numeric array, got dtype {X.dtype}")
    N0 = int(np.prod(input_shape))
    shape_doc = (f"expected (P, {N0}) flattened channels-first or "
                 f"(P, {', '.join(map(str, input_shape))}) for input_shape {tuple(input_shape)}")
    if X.ndim == 1 + len(input_shape) and tuple(X.shape[1:]) == tuple(input_shape):
        X = X.reshape(X.shape[0], -1)
    elif X.ndim < 2:
        raise InvalidDataError(
            f"{name} has shape {X.shape}, a {X.ndim}D array; {shape_doc}. Reshape your data "
            "with X.reshape(1, -1) if it is a single sample")
    elif X.ndim != 2 or X.shape[1] != N0:
        raise InvalidDataError(f"{name} has shape {X.shape}; {shape_doc}")
    if X.shape[0] == 0:
        raise InvalidDataError(f"{name} has no samples: 0 sample(s) (shape={X.shape}) while a "
                               "minimum of 1 is required")
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        raise InvalidDataError(f"{name} contains NaN or inf")
    return X


def check_n_features(X, N0: int, owner: str, name: str = "X") -> None:
    """Shape-only check (no pass over the data) that 2D inputs have the N0 features ``owner``
    was fitted with: ``"X has k features, but CNN is expecting N0 features as input"``."""
    shape = getattr(X, "shape", None)      # lists and array-likes: left to check_inputs
    if shape is not None and len(shape) == 2 and shape[1] != N0:
        raise InvalidDataError(
            f"{name} has {shape[1]} features, but {owner} is expecting {N0} features as input "
            f"({name} has shape {tuple(shape)}; flattened channels-first inputs or "
            "(P, *input_shape))")


def check_targets(y, P: int, name: str = "y") -> np.ndarray:
    """A real target vector of P entries (a (P, 1) column is flattened with a
    ``DataConversionWarning``), float64."""
    if y is None:
        raise InvalidDataError(f"fit requires {name} to be passed, but the target {name} "
                               "is None")
    if _issparse(y):
        raise InvalidDataError(f"{name} is sparse: sparse input is not supported")
    y = np.asarray(y)
    if np.iscomplexobj(y):
        raise InvalidDataError(f"{name}: Complex data not supported (dtype {y.dtype}); "
                               "kren does not drop imaginary parts")
    if y.dtype == object:
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidDataError(f"{name} must be numeric, got dtype object with non-numeric "
                                   f"entries ({exc})") from None
    if not np.issubdtype(y.dtype, np.number):
        raise InvalidDataError(f"{name} must be numeric, got dtype {y.dtype}")
    if y.ndim == 2 and 1 in y.shape:
        if y.shape[1] == 1 and y.shape[0] != 1:
            from sklearn.exceptions import DataConversionWarning
            warnings.warn(f"A column-vector {name} was passed when a 1d array was expected; "
                          "it is flattened", DataConversionWarning, stacklevel=3)
        y = y.ravel()
    if y.ndim != 1:
        raise InvalidDataError(f"{name} must be a vector of P = {P} targets, got shape {y.shape}")
    if y.shape[0] != P:
        raise InvalidDataError(f"{name} has {y.shape[0]} targets but X has P = {P} samples")
    y = y.astype(np.float64)
    if not np.all(np.isfinite(y)):
        raise InvalidDataError(f"{name} contains NaN or inf")
    return y


def _issparse(X) -> bool:
    from scipy.sparse import issparse
    return issparse(X)
