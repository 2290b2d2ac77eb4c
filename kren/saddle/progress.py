"""A progress display and a time budget for long solves, as the driver's callback.

    cb = Progress(time_budget=600, display=True)
    solve(problem, callback=cb)        # or kren.CNN(..., progress=True, time_budget=600)

After every accepted iterate the driver calls ``cb(it, ev)``; the bar (tqdm, on stderr) shows
the iteration, the relative gradient and the seconds per iteration. When the time spent since
the first call exceeds ``time_budget`` seconds the callback returns True: the driver stops and
its report (``SolverResult.message``) says "stopped by the callback (time budget of … s used up
…)" and what to do next (pass the returned Q as Q0 to continue). ``history`` keeps
(iteration, relative gradient, seconds since the start) of every call.
"""
from __future__ import annotations

import math
import sys
import time

__all__ = ["Progress"]


class Progress:
    """Callback for :func:`kren.saddle.solve` (module docstring). ``time_budget``: seconds, or
    None for no limit; ``display``: show a tqdm bar; ``total``: the bar's length (max_iter)."""

    def __init__(self, time_budget: float | None = None, display: bool = True,
                 total: int | None = None, stream=None, label: str = "saddle point"):
        if time_budget is not None:
            t = float(time_budget)
            if not (math.isfinite(t) and t > 0):
                raise ValueError(f"time_budget must be a positive number of seconds, got "
                                 f"{time_budget!r}")
            time_budget = t
        self.time_budget = time_budget
        self.display, self.total, self.label = bool(display), total, label
        self.stream = stream
        self.t0 = None
        self.history: list[tuple[int, float, float]] = []
        self.stop_reason: str | None = None
        self._bar = None

    def start(self) -> "Progress":
        """Start the clock (the first call does it otherwise)."""
        self.t0 = time.perf_counter()
        return self

    def __call__(self, it: int, ev) -> bool:
        now = time.perf_counter()
        if self.t0 is None:
            self.t0 = now
        elapsed = now - self.t0
        self.history.append((int(it), float(ev.rel), elapsed))
        per = elapsed / max(1, it)
        if self.display:
            if self._bar is None:
                from tqdm.auto import tqdm
                self._bar = tqdm(total=self.total, desc=self.label, unit="it",
                                 file=self.stream or sys.stderr, leave=True)
            self._bar.update(it - self._bar.n)
            self._bar.set_postfix_str(f"rel. gradient {ev.rel:.2e}, {per:.2f} s/it")
        if self.time_budget is not None and elapsed > self.time_budget:
            self.stop_reason = (f"time budget of {self.time_budget:g} s used up after {it} "
                                f"iterations, {elapsed:.1f} s, {per:.2f} s per iteration, "
                                f"relative gradient {ev.rel:.2e}")
            self.close()
            return True
        return False

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
