"""The one merit choice of the driver: what a step must lower.

* Zero-mean units: S(Q) is minimized over Q (THEORY §3), so the merit is the action S itself
  (Armijo: S(x + t d) ≤ S(x) + c t ∇S·d, or a change within the round-off of S).
* Units with a mean: (Q, Q̄) is a saddle point of S, not a minimum, so the merit is the gradient
  norm ‖∇S‖ (along a Newton direction it falls like (1 − t)‖∇S‖; Armijo with c).
"""
from __future__ import annotations

import numpy as np

from .problem import Evaluation

__all__ = ["ActionMerit", "GradientMerit", "merit_for", "ARMIJO"]

#: Sufficient-decrease constant of every line search.
ARMIJO = 1e-4
#: Transient growth of ‖∇S‖ a nonmonotone test allows (GradientMerit.nonmonotone_ref).
GROWTH = 10.0
#: Relative round-off allowed in S (a step that changes S by less is accepted, as no worse).
S_ROUNDOFF = 1e-13


class ActionMerit:
    """Merit of a minimization: the action S."""

    name = "action"

    @staticmethod
    def value(ev: Evaluation) -> float:
        return ev.S

    @staticmethod
    def noise(ev: Evaluation) -> float:
        return S_ROUNDOFF * max(1.0, abs(ev.S))

    @staticmethod
    def slope(ev: Evaluation, d: np.ndarray) -> float:
        """Directional derivative ∇S·d."""
        return float(ev.g @ d)

    newton_slope = slope

    @staticmethod
    def nonmonotone_ref(values) -> float:
        """Reference of a nonmonotone test: the largest S of the recent accepted iterates."""
        return max(values)

    def accepts(self, ref: float, ev: Evaluation, new: Evaluation, t: float, slope: float) -> bool:
        """Armijo against the reference value ``ref`` (S at x, or the largest S of a recent
        window for a nonmonotone search), or a change of S within its round-off."""
        return bool(new.S <= ref + ARMIJO * t * min(slope, 0.0)
                    or abs(new.S - ref) <= self.noise(ev))

    def progressed(self, old: float, new: float, ev: Evaluation) -> bool:
        """S fell by clearly more than its round-off (1e3 × the allowed change)."""
        return old - new > 1e3 * self.noise(ev)


class GradientMerit:
    """Merit of a saddle point: the gradient norm ‖∇S‖."""

    name = "gradient norm"

    @staticmethod
    def value(ev: Evaluation) -> float:
        return ev.gnorm

    @staticmethod
    def noise(ev: Evaluation) -> float:
        return 0.0

    @staticmethod
    def slope(ev: Evaluation, d: np.ndarray) -> float:
        """Along a direction other than Newton's the derivative of ‖∇S‖ is not known: 0 (the
        merit must then merely not increase)."""
        return 0.0

    @staticmethod
    def newton_slope(ev: Evaluation, d: np.ndarray) -> float:
        """Along the Newton direction ∇S(x + t d) ≈ (1 − t)∇S: the derivative is −‖∇S‖."""
        return -ev.gnorm

    @staticmethod
    def nonmonotone_ref(values) -> float:
        """Reference of a nonmonotone test: GROWTH × the largest recent ‖∇S‖. Mixing the
        fixed-point map of a saddle point raises ‖∇S‖ transiently (25× seen on digits relu
        CNNs before convergence); growth without end is caught as divergence by the monitor."""
        return GROWTH * max(values)

    def accepts(self, ref: float, ev: Evaluation, new: Evaluation, t: float, slope: float) -> bool:
        return bool(new.gnorm <= ref + ARMIJO * t * min(slope, 0.0))

    def progressed(self, old: float, new: float, ev: Evaluation) -> bool:
        """‖∇S‖ fell by at least half."""
        return new <= 0.5 * old


def merit_for(problem):
    """ActionMerit for a minimization (zero-mean units), GradientMerit for a saddle point."""
    return ActionMerit() if problem.minimization else GradientMerit()
