"""Which estimator a sweep point runs: ``arch = "cnn"`` in a config is looked up here.

    from kren.sweeps import register_estimator
    register_estimator("deep_fc", DeepFC, label="deep FC", sampled=False)

An entry names a scikit-learn-style kren estimator class (a
:class:`kren.estimators.KrenEstimator`: ``fit(X, y, Q0=None)``, ``test_error``, ``train_error``,
``Q_``, ``Qbar_``, ``result_``, and an architecture behind ``_check_params()``). The grid keys a
point passes to it are the class's constructor parameters (``get_params``), so an estimator with
new parameters (D outputs, depth) adds grid keys by being registered; keys it does not take are
not applied to it (its table cells stay empty). ``sampled``: whether :mod:`kren.sampling` can
sample its finite networks (``arch.network(N)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import SweepConfigError

__all__ = ["EstimatorEntry", "register_estimator", "get_estimator", "estimator_names",
           "RESERVED_PARAMS"]

#: Constructor parameters a sweep sets itself (from [data] and [solver]), never grid keys.
RESERVED_PARAMS = frozenset({"input_shape", "cache", "memory_budget", "tol", "max_iter", "dtype"})


@dataclass(frozen=True)
class EstimatorEntry:
    """One registered estimator: config name, class, figure label, samplable or not."""

    name: str
    cls: type
    label: str
    sampled: bool = True
    params: frozenset = field(init=False, compare=False)

    def __post_init__(self):
        # the grid keys this estimator takes: its constructor parameters, the reserved ones out
        object.__setattr__(self, "params",
                           frozenset(self.cls._get_param_names()) - RESERVED_PARAMS)


_REGISTRY: dict[str, EstimatorEntry] = {}


def register_estimator(name: str, cls: type, label: str | None = None,
                       sampled: bool = True) -> EstimatorEntry:
    """Make ``arch = name`` in a sweep config run ``cls`` (module docstring)."""
    if not isinstance(name, str) or not name:
        raise SweepConfigError(f"estimator name must be a non-empty string, got {name!r}")
    entry = EstimatorEntry(name, cls, label or name.upper(), bool(sampled))
    _REGISTRY[name] = entry
    return entry


def get_estimator(name: str) -> EstimatorEntry:
    """The entry registered as ``name``; an error listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SweepConfigError(f"grid.arch: unknown estimator {name!r}; known: "
                               f"{', '.join(estimator_names())} (kren.sweeps."
                               "register_estimator adds one)") from None


def estimator_names() -> list[str]:
    """The registered estimator names, in registration order."""
    return list(_REGISTRY)


def _register_builtin():
    from ..estimators import CNN, FC, LCN
    register_estimator("fc", FC, "FC")
    register_estimator("lcn", LCN, "LCN")
    register_estimator("cnn", CNN, "CNN")


_register_builtin()
