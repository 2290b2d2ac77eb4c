"""The one line search of the driver: backtracking along a direction until the trial point is
feasible (Q, and 𝟙 + Q̄, positive definite; checked before any evaluation) and the merit accepts
it. It never loops unboundedly: at most ``max_evals`` evaluations, ``max_trials`` trials, and no
step shorter than T_MIN of the direction (below that the search has collapsed)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..linalg import NotPositiveDefiniteError
from .problem import Evaluation

__all__ = ["LineSearch", "line_search", "T_MIN"]

#: Shortest step tried, as a fraction of the direction.
T_MIN = 1e-12


@dataclass
class LineSearch:
    """Outcome: ``ev`` is the accepted evaluation (None on failure) at step ``t``; ``evals``
    trial points were evaluated and rejected or accepted, ``infeasible`` left the feasible set
    (or made A not positive definite), ``nonfinite`` gave a non-finite action or gradient."""

    ev: Evaluation | None
    t: float
    evals: int = 0
    infeasible: int = 0
    nonfinite: int = 0

    @property
    def ok(self) -> bool:
        return self.ev is not None

    def describe(self) -> str:
        parts = [f"{self.evals} trial points evaluated and rejected"]
        if self.infeasible:
            parts.append(f"{self.infeasible} outside the positive-definite cone")
        if self.nonfinite:
            parts.append(f"{self.nonfinite} with a non-finite action or gradient")
        return ", ".join(parts)


def line_search(problem, x: np.ndarray, d: np.ndarray, accept, t: float = 1.0,
                shrink: float = 0.5, max_evals: int = 30, max_trials: int = 80) -> LineSearch:
    """Try x + t d for t = t, t·shrink, t·shrink², ...; ``accept(new, t)`` decides."""
    out = LineSearch(None, t)
    for _ in range(max_trials):
        if out.evals >= max_evals or t < T_MIN:
            break
        xt = x + t * d
        if problem.feasible(xt):
            try:
                new = problem.evaluate(xt)
            except (NotPositiveDefiniteError, np.linalg.LinAlgError):
                out.infeasible += 1
            else:
                out.evals += 1
                if not new.finite:
                    out.nonfinite += 1
                elif accept(new, t):
                    out.ev, out.t = new, t
                    out.evals -= 1
                    return out
        else:
            out.infeasible += 1
        t *= shrink
    out.t = t
    return out
