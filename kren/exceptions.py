"""kren's exceptions and warnings, each a subclass of scikit-learn's where one exists.

- :class:`kren.validation.InvalidParameterError` (sklearn's ``InvalidParameterError``; both
  ``ValueError`` and ``TypeError``): a parameter is invalid, the message names it.
- :class:`kren.validation.InvalidDataError` (``ValueError`` and ``TypeError``): an input array
  or target vector is invalid, the message names it.
- :class:`NotFittedError` (sklearn's ``NotFittedError``): no fit yet.
- :class:`StaleFitError` (a :class:`NotFittedError`): parameters were changed by ``set_params``
  after the fit, so the fit does not describe the estimator as it is configured; the message
  names each parameter with its fitted and current values.
- :class:`UnconvergedError`: a prediction was asked of a fit whose solver did not converge.
- :class:`ConvergenceWarning` (sklearn's ``ConvergenceWarning``): the solver stopped early.
- :class:`StaleParametersWarning`: a save of a fit whose estimator parameters have changed
  since (the file holds the parameters the fit was made with).
"""
from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SkNotFittedError

from .saddle import ConvergenceWarning
from .validation import InvalidDataError, InvalidParameterError

__all__ = ["NotFittedError", "StaleFitError", "UnconvergedError", "ConvergenceWarning",
           "StaleParametersWarning", "InvalidParameterError", "InvalidDataError"]


class NotFittedError(_SkNotFittedError):
    """The estimator has not been fitted yet (subclass of scikit-learn's ``NotFittedError``)."""


class StaleFitError(NotFittedError):
    """Estimator parameters changed after the fit; refit (or set them back) before using it."""


class UnconvergedError(RuntimeError):
    """Prediction was asked of a fit whose solver did not converge."""


class StaleParametersWarning(UserWarning):
    """The estimator's parameters differ from those its fit was made with."""
