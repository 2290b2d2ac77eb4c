"""kren: local kernel renormalization in Bayesian one-hidden-layer networks.

Effective actions of fully-connected (FC), locally connected (LCN) and convolutional (CNN)
networks in the proportional limit (THEORY.md), their saddle points and predictor statistics.
"""
from .architecture import Architecture
from .cache import KernelCache
from .deep_architecture import DeepArchitecture
from .exceptions import (ConvergenceWarning, FitFileError, KrenError, NotFittedError,
                         NumericalError, OutputError, StaleFitError, UnconvergedError)
from .geometry import PatchGeometry
from .kernels import KernelTensor, MemoryBudgetError, set_memory_budget
from .prepared import Prepared
from .renormalized import RenormalizedKernel
from .validation import InvalidDataError, InvalidParameterError

__version__ = "0.1.0"

__all__ = ["Architecture", "PatchGeometry", "Prepared", "KernelTensor", "KernelCache",
           "RenormalizedKernel", "MemoryBudgetError", "set_memory_budget",
           "InvalidParameterError", "InvalidDataError", "NotFittedError", "StaleFitError",
           "UnconvergedError", "ConvergenceWarning", "KrenError", "FitFileError",
           "NumericalError", "OutputError", "FC", "LCN", "CNN", "DeepFC", "DeepArchitecture",
           "sweep", "__version__"]

from .estimators import CNN, FC, LCN, DeepFC  # noqa: E402  (after the modules they build on)


def sweep(config, out=None, **kw):
    """Run a sweep of fits and sampled networks into the folder ``out`` (kernels reused,
    resumable, local or on Dask): :func:`kren.sweeps.sweep`, schema in :mod:`kren.sweeps.config`."""
    from .sweeps import sweep as _sweep
    return _sweep(config, out, **kw)
