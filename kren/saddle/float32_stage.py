"""A first Anderson stage in float32 working precision, for problems whose evaluation is
dominated by the factorization of a large A (:class:`kren.saddle.multi.MultiMatrixProblem`
with ``float32_stage``).

The stage runs the Anderson fixed-point iteration (:mod:`kren.saddle.anderson`) on float32
evaluations (Cholesky factor, inverse and contractions of A in float32: about a third of the
float64 cost on AVX2 hardware) until the relative gradient reaches FLOAT32_TOL (or the caller's
tol, if larger), or stops falling: below FLOAT32_FLOOR_ZONE, when the best of the last
FLOAT32_WINDOW iterations is not half the best before them (the float32 round-off floor
ε₃₂·κ(A), 1e-6 on 10-class digits at DP = 5000, is reached); anywhere, after FLOAT32_PATIENCE
iterations without a new best. It hands back the best point; the driver re-evaluates it in float64 and continues
there, so the solution and its convergence test are float64's: the stage only changes the path.
"""
from __future__ import annotations

from ..linalg import NotPositiveDefiniteError
from .anderson import anderson

__all__ = ["float32_stage", "FLOAT32_TOL", "FLOAT32_PATIENCE", "FLOAT32_FLOOR_ZONE",
           "FLOAT32_WINDOW"]

#: Relative gradient at which the float32 stage hands over to float64 (measured float32 floors
#: on 10-class digits: 3e-7 at DP = 1500, 1e-6 at DP = 5000; the float64 stage then needs
#: 6–8 iterations).
FLOAT32_TOL = 2e-6
#: Below this relative gradient a float32 stage that stopped halving it stops (the floor).
FLOAT32_FLOOR_ZONE = 1e-4
#: Iterations over which the relative gradient must halve below FLOAT32_FLOOR_ZONE.
FLOAT32_WINDOW = 4
#: Iterations without a new best relative gradient after which the float32 stage stops.
FLOAT32_PATIENCE = 8


def float32_stage(problem, x0, merit, *, tol: float, max_iter: int, callback=None):
    """Anderson iterations in float32 from the packed point x0 (module docstring).

    Returns (outcome, user_stopped): the :class:`kren.saddle.monitor.Outcome` of the stage (its
    ``best`` is a float32 evaluation), or None when A cannot be factorized in float32 at x0
    (the driver then starts in float64); user_stopped is True when ``callback`` returned True."""
    with problem.working_precision("float32"):
        try:
            ev = problem.evaluate(x0)
        except NotPositiveDefiniteError:
            return None, False
        if not ev.finite:
            return None, False
        state = {"best": ev.rel, "since": 0, "user": False, "rel": [float(ev.rel)]}

        def floor_reached(h):
            w = FLOAT32_WINDOW
            return (len(h) > w and h[-1] < FLOAT32_FLOOR_ZONE
                    and min(h[-w:]) > 0.5 * min(h[:-w]))

        def stop(it, e):
            if e.rel < state["best"]:
                state["best"], state["since"] = e.rel, 0
            else:
                state["since"] += 1
            state["rel"].append(float(e.rel))
            state["user"] = callback is not None and callback(it, e) is True
            return True if (state["user"] or state["since"] >= FLOAT32_PATIENCE
                            or floor_reached(state["rel"])) else None

        out = anderson(problem, ev, merit, tol=max(tol, FLOAT32_TOL), max_iter=max_iter,
                       callback=stop)
        return out, state["user"]
