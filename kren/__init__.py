"""kren: local kernel renormalization in Bayesian one-hidden-layer networks.

Effective actions of fully-connected (FC), locally connected (LCN) and convolutional (CNN)
networks in the proportional limit (THEORY.md), their saddle points and predictor statistics.
"""
from .architecture import Architecture
from .geometry import PatchGeometry
from .kernels import KernelTensor, MemoryBudgetError, set_memory_budget

__version__ = "0.1.0"

__all__ = ["Architecture", "PatchGeometry", "KernelTensor", "MemoryBudgetError",
           "set_memory_budget", "__version__"]

try:  # the estimators arrive with the solver module
    from .estimators import CNN, FC, LCN, ConvergenceWarning  # noqa: F401
    __all__ += ["FC", "LCN", "CNN", "ConvergenceWarning"]
except ImportError as _exc:  # pragma: no cover - only while the package is being assembled
    if "estimators" not in str(_exc):
        raise
