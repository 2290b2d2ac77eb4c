"""kren's exceptions and warnings, each a subclass of scikit-learn's where one exists.

Every error kren raises on purpose is a :class:`KrenError` (``except kren.KrenError`` catches
exactly those; the command line prints them as one ``kren: error: ...`` line):

- :class:`kren.validation.InvalidParameterError` (sklearn's ``InvalidParameterError``; both
  ``ValueError`` and ``TypeError``): a parameter is invalid, the message names it.
- :class:`kren.validation.InvalidDataError` (``ValueError`` and ``TypeError``): an input array
  or target vector is invalid (shape, NaN/inf, complex, overflowing scale), the message names it.
- :class:`NotFittedError` (sklearn's ``NotFittedError``): no fit yet.
- :class:`StaleFitError` (a :class:`NotFittedError`): parameters were changed by ``set_params``
  after the fit, so the fit does not describe the estimator as it is configured; the message
  names each parameter with its fitted and current values.
- :class:`UnconvergedError`: a prediction was asked of a fit whose solver did not converge.
- :class:`FitFileError` (``ValueError``): a saved fit could not be read or failed a check; the
  message names the file and the field.
- :class:`NumericalError` (``ArithmeticError``): a numerical failure inside NumPy/SciPy
  (overflow, a failed eigen-decomposition, ...) at kren's public API, with advice.
- :class:`kren.linalg.NotPositiveDefiniteError` (NumPy's ``LinAlgError``): a matrix that must be
  positive definite (A = T𝟙 + K_R, Q, 𝟙 + Q̄) is not.
- :class:`kren.kernels.MemoryBudgetError` (``MemoryError``): a request over the memory budget.
- :class:`OutputError` (``OSError``): an output file or folder cannot be written, or is in use.
- :class:`ConvergenceWarning` (sklearn's ``ConvergenceWarning``): the solver stopped early.
- :class:`StaleParametersWarning`: a save of a fit whose estimator parameters have changed
  since (the file holds the parameters the fit was made with).
"""
from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SkNotFittedError

from .errorbase import KrenError
from .saddle import ConvergenceWarning
from .validation import InvalidDataError, InvalidParameterError

__all__ = ["KrenError", "NotFittedError", "StaleFitError", "UnconvergedError", "FitFileError",
           "NumericalError", "OutputError", "ConvergenceWarning", "StaleParametersWarning",
           "InvalidParameterError", "InvalidDataError"]


class NotFittedError(KrenError, _SkNotFittedError):
    """The estimator has not been fitted yet (subclass of scikit-learn's ``NotFittedError``)."""


class StaleFitError(NotFittedError):
    """Estimator parameters changed after the fit; refit (or set them back) before using it."""


class UnconvergedError(KrenError, RuntimeError):
    """Prediction was asked of a fit whose solver did not converge."""


class FitFileError(KrenError, ValueError):
    """A saved fit is unreadable or inconsistent. ``path`` is the file, ``field`` the entry
    that failed (``"(file)"`` when the file itself cannot be parsed)."""

    def __init__(self, path, field: str, problem: str):
        self.path, self.field, self.problem = str(path), str(field), str(problem)
        super().__init__(f"{self.path}: field {self.field!r}: {self.problem}")

    def __reduce__(self):
        return type(self), (self.path, self.field, self.problem)


class NumericalError(KrenError, ArithmeticError):
    """A numerical failure (overflow, non-finite values, a decomposition that did not converge)
    caught at kren's public API; the message says where and what to change."""


class OutputError(KrenError, OSError):
    """An output file or folder cannot be written (missing, read-only) or is in use by
    another run; the message names it (and the command-line flag)."""


class StaleParametersWarning(UserWarning):
    """The estimator's parameters differ from those its fit was made with."""
