"""Newton's method on the saddle-point equations ∇S = 0, with the driver's line search and
merit. Directions: the exact Hessian where the problem generates one (shifted to positive
definite, a Levenberg shift, when S is minimized), otherwise GMRES on Hessian-vector products
(:mod:`kren.saddle.krylov`)."""
from __future__ import annotations

import numpy as np

from ..linalg import single_blas_thread
from .krylov import krylov_direction
from .linesearch import line_search
from .monitor import Monitor, Outcome

__all__ = ["newton", "newton_direction", "WINDOW"]

#: Newton steps without progress (monitor) before the loop reports a stall.
WINDOW = 6


def newton_direction(problem, ev, exact: bool) -> np.ndarray | None:
    """Solve H d = −∇S. Minimization: H + τ𝟙 with τ = 1.1 |λ_min| + 1e-10 max(1, λ_max) when
    λ_min ≤ 1e-12 max(1, λ_max) (so d is a descent direction for S). Saddle: H itself."""
    g = ev.g
    if not exact:
        return krylov_direction(problem, ev, rtol=float(np.clip(np.sqrt(ev.rel), 1e-6, 0.1)))
    H = problem.hessian(ev)
    H = 0.5 * (H + H.T)
    with single_blas_thread():               # n_p × n_p: threads only add contention
        return _solve(H, g, problem.minimization)


def _solve(H, g, minimization):
    if minimization:
        w = np.linalg.eigvalsh(H)
        top = max(1.0, abs(w[-1]))
        shift = 0.0 if w[0] > 1e-12 * top else 1.1 * (-w[0]) + 1e-10 * top
        return -np.linalg.solve(H + shift * np.eye(len(g)), g)
    try:
        return -np.linalg.solve(H, g)
    except np.linalg.LinAlgError:
        return -np.linalg.lstsq(H, g, rcond=None)[0]


def newton(problem, ev, merit, *, tol: float, max_iter: int, exact: bool, callback=None,
           window: int = WINDOW) -> Outcome:
    """Newton iterations from ``ev``; every step through the one line search on the merit."""
    mon = Monitor(tol, window, merit, ev)
    if ev.rel <= tol:
        return Outcome("converged", ev, mon, 0)
    for it in range(1, max_iter + 1):
        d = newton_direction(problem, ev, exact)
        slope = merit.newton_slope(ev, d) if d is not None else 0.0
        if d is None or (problem.minimization and not slope < 0):
            d = ev.fallback - ev.x             # descent direction for S (problem.Evaluation)
            slope = merit.slope(ev, d)
        ref = merit.value(ev)
        ls = line_search(problem, ev.x, d,
                         lambda new, t, ev=ev, ref=ref, s=slope: merit.accepts(ref, ev, new, t, s))
        if not ls.ok:
            return Outcome("line_search", ev, mon, it - 1, direction="Newton",
                           search=ls.describe())
        ev = ls.ev
        verdict = mon.observe(ev)
        if callback is not None and callback(it, ev) is True and verdict is None:
            verdict = "stopped"
        if verdict:
            return Outcome(verdict, ev, mon, it)
    return Outcome("max_iter", ev, mon, max_iter)
