"""Newton's method with fewer exact Hessians: quasi-Newton updates between them.

An exact Hessian (the generated ``hessian*``) costs 2 n_p P³ flops, an evaluation of the action
and gradient one Cholesky and two passes over the kernel tensor: at P = 200–300 with n_p = 136
the Hessian is worth 10–20 evaluations. So the exact Hessian is computed at the start and then
only when the model has gone stale; in between the Hessian is updated from the gradient change
y = ∇S(x + s) − ∇S(x) along the accepted step s:

* minimization (zero-mean units, S minimized over Q): BFGS,
  H ← H − H s sᵀ H/(sᵀ H s) + y yᵀ/(yᵀ s), skipped unless yᵀs > 0 (H stays positive definite);
* saddle point (units with a mean): symmetric rank one, H ← H + r rᵀ/(rᵀ s), r = y − H s,
  skipped when |rᵀ s| ≤ 1e-8 ‖r‖ ‖s‖ (SR1 keeps the indefinite inertia a saddle needs).

The Hessians here have their P³ products in float32 where A is well enough conditioned
(ε32 κ̂(A) ≤ FLOAT32_HESSIAN_ROUNDOFF; :class:`kren.linalg.hessian_precision`: 3× faster,
accurate to ~1e-5, which only chooses directions; a fresh float32 Hessian whose direction the
line search rejects is recomputed in float64). The Hessian is recomputed when a step shrank the relative gradient by less than
a factor PROGRESS_EXACT (0.3), or the line search failed along the updated model's direction (the
iteration is then retried with the exact Hessian; a failure with a fresh exact Hessian ends the
loop as Newton's would). A solve that converges in the linear phase of the updates takes one
more updated step (POLISH). Directions, line search, merit, monitor: those of :mod:`.newton`.
The fixed point is the same (∇S = 0 to tol), so the solution agrees with exact Newton to the
tolerance.
"""
from __future__ import annotations

import numpy as np

from ..linalg import hessian_precision, single_blas_thread
from .linesearch import line_search
from .monitor import Monitor, Outcome
from .newton import WINDOW

__all__ = ["quasi_newton", "PROGRESS_EXACT"]

#: A step that leaves the relative gradient above this fraction of the previous one triggers an
#: exact Hessian at the new point. 0.3 rather than 0.5, measured on erf CNN 2×2/2 fits of
#: digits (even/odd P = 300 T = 0.01 N = 5; even/odd P = 200 T = 0.01 N = 5; 0/1 P = 300
#: T = 0.01 N = 5; even/odd P = 300 T = 0.03 N = 20; 0/1 P = 200 T = 0.1 N = 50): exact
#: Hessians 9/8/7/3/1 became 8/7/6/4/1 and evaluations 27/26/22/13/9 became 16/15/12/12/9.
PROGRESS_EXACT = 0.3
#: Converged by a step that cut the relative gradient by less than this factor (linear phase of
#: the updates): one more updated step, kept if it lowers the gradient, so that Q is as close
#: to the saddle point as a quadratically converged Newton's (its error is ~H⁻¹∇S).
POLISH = 1e-2
#: Trial points the line search spends on a direction of an updated (not fresh) model.
STALE_EVALS = 4


def _polish(problem, ev, H, merit, prev):
    """One more quasi-Newton step from the converged ``ev`` (model updated with the last step);
    the better of the two evaluations is returned."""
    from ..linalg import NotPositiveDefiniteError
    with single_blas_thread():
        H = _update(H, ev.x - prev.x, ev.g - prev.g, problem.minimization)
        d = _direction(H, ev.g, problem.minimization)
    x = ev.x + d
    if not problem.feasible(x):
        return ev
    try:
        new = problem.evaluate(x)
    except (NotPositiveDefiniteError, np.linalg.LinAlgError):
        return ev
    return new if new.finite and new.rel < ev.rel else ev


def _direction(H: np.ndarray, g: np.ndarray, minimization: bool) -> np.ndarray:
    """−H⁻¹g; for a minimization H is shifted to positive definite first (as in newton)."""
    H = 0.5 * (H + H.T)
    if minimization:
        w = np.linalg.eigvalsh(H)
        top = max(1.0, abs(w[-1]))
        shift = 0.0 if w[0] > 1e-12 * top else 1.1 * (-w[0]) + 1e-10 * top
        return -np.linalg.solve(H + shift * np.eye(len(g)), g)
    try:
        return -np.linalg.solve(H, g)
    except np.linalg.LinAlgError:
        return -np.linalg.lstsq(H, g, rcond=None)[0]


def _update(H: np.ndarray, s: np.ndarray, y: np.ndarray, minimization: bool) -> np.ndarray:
    """BFGS (minimization) or SR1 (saddle) update of the Hessian model (module docstring)."""
    if minimization:
        ys = float(y @ s)
        Hs = H @ s
        sHs = float(s @ Hs)
        if ys <= 1e-12 * np.linalg.norm(y) * np.linalg.norm(s) or sHs <= 0:
            return H
        return H - np.outer(Hs, Hs) / sHs + np.outer(y, y) / ys
    r = y - H @ s
    rs = float(r @ s)
    if abs(rs) <= 1e-8 * np.linalg.norm(r) * np.linalg.norm(s):
        return H
    return H + np.outer(r, r) / rs


#: float32 Hessian products only where ε32 · κ̂(A) stays below this (κ̂ the problem's
#: condition estimate, a lower bound): a Hessian accurate to ~1e-4 still gives fast convergence.
FLOAT32_HESSIAN_ROUNDOFF = 1e-4


def _hessian(problem, ev, dtype=np.float32):
    if dtype == np.float32:
        kappa = problem.condition(ev)
        if not (np.isfinite(kappa) and np.finfo(np.float32).eps * kappa
                <= FLOAT32_HESSIAN_ROUNDOFF):
            dtype = np.float64
    with hessian_precision(dtype):
        return problem.hessian(ev)


def quasi_newton(problem, ev, merit, *, tol: float, max_iter: int, callback=None,
                 window: int = WINDOW) -> Outcome:
    """Quasi-Newton iterations from ``ev`` with exact Hessians where the model is stale
    (module docstring). ``Outcome.detail["exact_hessians"]`` counts the exact Hessians."""
    mon = Monitor(tol, window, merit, ev)
    exact = 0
    if ev.rel <= tol:
        return Outcome("converged", ev, mon, 0, exact_hessians=0)
    H = _hessian(problem, ev)
    exact, fresh = 1, True
    full = False                                   # float64 Hessian asked for at this point
    for it in range(1, max_iter + 1):
        while True:
            with single_blas_thread():
                d = _direction(H, ev.g, problem.minimization)
            slope = merit.newton_slope(ev, d)
            if problem.minimization and not slope < 0:
                d = ev.fallback - ev.x
                slope = merit.slope(ev, d)
            ref = merit.value(ev)
            # a stale model gets a short search (STALE_EVALS trial points) before a refresh
            ls = line_search(problem, ev.x, d,
                             lambda new, t, ev=ev, ref=ref, s=slope:
                             merit.accepts(ref, ev, new, t, s),
                             max_evals=30 if fresh else STALE_EVALS)
            if ls.ok or (fresh and full):
                break
            # the model failed: exact Hessian (float64 if a fresh float32 one failed), retry
            full = fresh
            H = _hessian(problem, ev, np.float64 if full else np.float32)
            exact, fresh = exact + 1, True
        if not ls.ok:
            return Outcome("line_search", ev, mon, it - 1, direction="Newton",
                           search=ls.describe(), exact_hessians=exact)
        new = ls.ev
        verdict = mon.observe(new)
        if callback is not None and callback(it, new) is True and verdict is None:
            verdict = "stopped"
        if verdict == "converged" and new.rel > POLISH * ev.rel:
            new = _polish(problem, new, H, merit, ev)
            mon.best = new if new.rel < mon.best.rel else mon.best
        if verdict:
            return Outcome(verdict, new, mon, it, exact_hessians=exact)
        full = False
        if new.rel > PROGRESS_EXACT * ev.rel:
            H = _hessian(problem, new)
            exact, fresh = exact + 1, True
        else:
            with single_blas_thread():
                H = _update(H, new.x - ev.x, new.g - ev.g, problem.minimization)
            fresh = False
        ev = new
    return Outcome("max_iter", ev, mon, max_iter, exact_hessians=exact)
