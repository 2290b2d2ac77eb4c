"""What a saddle-point solve hands back: :class:`SolverResult` (diagnostics), :class:`Solution`
(the order parameters and the factorization of A at them) and :class:`ConvergenceWarning`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning

__all__ = ["ConvergenceWarning", "SolverResult", "Solution"]


class ConvergenceWarning(_SklearnConvergenceWarning):
    """The saddle-point solver stopped before reaching its tolerance (a subclass of
    :class:`sklearn.exceptions.ConvergenceWarning`, so scikit-learn's filters catch it)."""


@dataclass
class SolverResult:
    """Diagnostics of a saddle-point solve.

    ``converged`` is True iff the relative gradient norm ``rel_grad_norm`` reached the tolerance
    (the scales are those of :mod:`kren.saddle.problem`); otherwise ``message`` says what
    happened and what to change. ``n_eval`` counts evaluations of the action and gradient,
    ``history`` the relative gradient norm after every iteration.
    """

    converged: bool
    n_iter: int
    grad_norm: float
    rel_grad_norm: float
    action: float
    message: str
    n_eval: int = 0
    seconds: float = 0.0
    method: str = ""
    history: list = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Solution:
    """Order parameters at the end of a solve and what the predictor reuses.

    ``Q``, ``Qbar``: floats for the "scalar" structure, (n, n) arrays otherwise (the LCN as
    diagonal matrices); for zero-mean units Q̄ = Q⁻¹ − 𝟙 (the generated ``eliminated_Qbar``).
    ``cho``, ``z``: the Cholesky factor of A = T𝟙 + K_R and A⁻¹y at Q, or None when the problem
    never formed A (the eigenbasis of the scalar problem).
    """

    Q: float | np.ndarray
    Qbar: float | np.ndarray
    result: SolverResult
    cho: tuple | None = None
    z: np.ndarray | None = None
