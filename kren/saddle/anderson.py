"""Anderson-accelerated fixed-point iteration (Walker & Ni 2011) of the printed fixed-point
maps, with the driver's line search and merit.

Each iteration proposes the Anderson mixture of the last ``memory`` images; it is accepted when
the merit passes the nonmonotone test against its last NONMONOTONE values
(``merit.nonmonotone_ref``: mixing may raise the merit briefly). Otherwise the history is
forgotten and the plain step toward the image (or, where the map has no image, toward the
problem's fallback point) is backtracked with the same test (Armijo along it when the merit's
slope is known).

A history carried from an earlier stage (``history``: the float32 stage of
:mod:`kren.saddle.float32_stage`) comes without merit values this stage can compare: the float32
stage's S differs from float64's by more than the changes of S near convergence. The first mixed
step of a carried history is therefore accepted when its relative gradient is at most
CARRIED_GROWTH times the start's (the transient growth of a mixing step), and judged by the
merit otherwise; later steps are judged by the merit as usual. (10-class digits, P = 500, D = 10:
the float64 merit rejected that step, 1.2e-6 → 3.2e-6, and the plain step after it, costing
three float64 evaluations; accepted, it led to 4.0e-7 at the next iteration.)
"""
from __future__ import annotations

from collections import deque

import numpy as np

from .linesearch import line_search
from .monitor import Monitor, Outcome

__all__ = ["anderson", "WINDOW", "MEMORY", "NONMONOTONE", "CARRIED_GROWTH"]

#: Iterations without progress (monitor) before the loop reports a stall.
WINDOW = 25
#: Anderson memory (number of past differences mixed).
MEMORY = 8
#: Accepted merit values the nonmonotone test compares against.
NONMONOTONE = 10
#: Growth of the relative gradient allowed to the first mixed step of a carried history.
CARRIED_GROWTH = 10.0


def anderson(problem, ev, merit, *, tol: float, max_iter: int, callback=None,
             window: int = WINDOW, memory: int = MEMORY, history=None) -> Outcome:
    """Anderson iterations from ``ev``.

    ``history``: differences (dX, dF) of an earlier stage on the same fixed-point map (lists,
    oldest first) to mix from the first iteration on (they are forgotten like any other if that
    mixture is rejected). The outcome's ``anderson_history`` holds the differences at the end.
    """
    mon = Monitor(tol, window, merit, ev)
    if ev.rel <= tol:
        return Outcome("converged", ev, mon, 0)
    x = ev.x
    dX, dF = ([], []) if history is None else (list(history[0])[-memory:],
                                               list(history[1])[-memory:])
    x_prev = f_prev = None
    recent = deque([merit.value(ev)], maxlen=NONMONOTONE)
    for it in range(1, max_iter + 1):
        f = (ev.image if ev.image is not None else ev.fallback) - x
        if x_prev is not None and ev.image is not None:
            dX.append(x - x_prev)
            dF.append(f - f_prev)
            if len(dX) > memory:
                dX.pop(0)
                dF.pop(0)
        elif ev.image is None:
            dX, dF = [], []
        ref = merit.nonmonotone_ref(recent)
        ls = None
        if dF:
            Fm, Xm = np.stack(dF, axis=1), np.stack(dX, axis=1)
            gamma, *_ = np.linalg.lstsq(Fm, f, rcond=1e-12)
            mixed = f - (Xm + Fm) @ gamma
            carried = it == 1 and history is not None

            def accept(new, t, ev=ev, carried=carried):
                if carried and new.finite and new.rel <= CARRIED_GROWTH * ev.rel:
                    return True
                return merit.accepts(ref, ev, new, t, 0.0)

            ls = line_search(problem, x, mixed, accept, max_evals=1, max_trials=1)
            if not ls.ok:
                dX, dF = [], []
        if ls is None or not ls.ok:
            slope = merit.slope(ev, f)
            ls = line_search(problem, x, f,
                             lambda new, t, ev=ev: merit.accepts(ref, ev, new, t, slope))
        if not ls.ok:
            return _with(Outcome("line_search", ev, mon, it - 1, direction="fixed-point",
                                 search=ls.describe()), dX, dF)
        x_prev, f_prev = x, f
        x, ev = ls.ev.x, ls.ev
        recent.append(merit.value(ev))
        verdict = mon.observe(ev)
        if callback is not None and callback(it, ev) is True and verdict is None:
            verdict = "stopped"
        if verdict:
            return _with(Outcome(verdict, ev, mon, it), dX, dF)
    return _with(Outcome("max_iter", ev, mon, max_iter), dX, dF)


def _with(out: Outcome, dX, dF) -> Outcome:
    out.anderson_history = (list(dX), list(dF))
    return out
