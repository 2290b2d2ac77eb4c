"""Estimators: fit the saddle point of FC, LCN, CNN and deep FC networks and predict (THEORY §3–5).

Modules: :mod:`.base` (the scikit-learn estimator shared by all kinds), :mod:`.fc` (FC),
:mod:`.local` (LCN, CNN), :mod:`.deep` (deep FC), :mod:`.state` (the immutable fitted state), :mod:`.solve` (the one
call into the saddle-point solver), :mod:`.persistence` (save and load).
"""
from ..exceptions import (ConvergenceWarning, NotFittedError, StaleFitError,
                          StaleParametersWarning, UnconvergedError)
from ..prepared import fingerprint
from .base import KrenEstimator, TestError
from .deep import DeepFC
from .fc import FC
from .local import CNN, LCN
from .persistence import load
from .state import Fit

__all__ = ["FC", "LCN", "CNN", "DeepFC", "KrenEstimator", "Fit", "TestError", "ConvergenceWarning",
           "NotFittedError", "StaleFitError", "StaleParametersWarning", "UnconvergedError",
           "load", "fingerprint"]
