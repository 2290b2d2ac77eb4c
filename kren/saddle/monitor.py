"""Progress of an iteration loop: convergence, stagnation and divergence, decided the same way
for every method, so that every loop stops within a bounded number of iterations.

* converged: relative gradient ≤ tol;
* stalled: over the last ``window`` iterations the best relative gradient did not fall below
  PROGRESS × the best before them, and the merit did not progress (merit.progressed);
* diverged: the relative gradient exceeds DIVERGENCE × the best seen, or the action or gradient
  is not finite.
"""
from __future__ import annotations

import numpy as np

from .problem import Evaluation

__all__ = ["Monitor", "PROGRESS", "DIVERGENCE"]

PROGRESS = 0.5
DIVERGENCE = 1e6


class Monitor:
    """Watches the accepted iterates of one loop (``observe`` after each)."""

    def __init__(self, tol: float, window: int, merit, ev: Evaluation):
        self.tol, self.window, self.merit = float(tol), int(window), merit
        self.history = [float(ev.rel)]
        self.merits = [merit.value(ev)]
        self.best = ev

    def observe(self, ev: Evaluation) -> str | None:
        """None to go on, else "converged", "stalled", "diverged" or "nonfinite"."""
        if not ev.finite:
            return "nonfinite"
        self.history.append(float(ev.rel))
        self.merits.append(self.merit.value(ev))
        if ev.rel <= self.tol:
            self.best = ev
            return "converged"
        if ev.rel > DIVERGENCE * self.best.rel:
            return "diverged"
        if ev.rel < self.best.rel:
            self.best = ev
        w = self.window
        if len(self.history) > w:
            before = min(self.history[:-w])
            recent = min(self.history[-w:])
            if recent > PROGRESS * before and not self.merit.progressed(
                    self.merits[-w - 1], self.merits[-1], ev):
                return "stalled"
        return None

    def still_falling(self, k: int = 10) -> tuple[float, float] | None:
        """(first, last) relative gradient of the last k iterations if it fell by ≥ 2×."""
        h = self.history[-k:]
        return (h[0], h[-1]) if len(h) > 1 and h[-1] <= 0.5 * h[0] else None

    @property
    def best_rel(self) -> float:
        return float(self.best.rel) if np.isfinite(self.best.rel) else float("inf")


class Outcome:
    """How one loop ended: ``status`` ("converged", "stalled", "diverged", "nonfinite",
    "line_search", "max_iter"), the last accepted evaluation ``ev``, the best one (lowest
    relative gradient) ``best``, ``n_iter`` iterations, the relative-gradient ``history``
    (starting point first) and ``detail`` for the report."""

    def __init__(self, status: str, ev: Evaluation, monitor: Monitor, n_iter: int, **detail):
        self.status, self.ev, self.best = status, ev, monitor.best
        self.n_iter, self.history, self.detail = int(n_iter), list(monitor.history), detail
        if status == "stalled":
            self.detail.setdefault("window", monitor.window)
            self.detail.setdefault("merit", monitor.merit.name)
        if status == "diverged":
            self.detail.setdefault("last", ev.rel)
        if status == "max_iter":
            self.detail.setdefault("falling", monitor.still_falling())
