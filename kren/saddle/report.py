"""The one failure report: every way a solve can end becomes a :class:`SolverResult` whose
message says what happened and, when it did not converge, what to change (T, precision, tol,
starting point, max_iter)."""
from __future__ import annotations

import math
import time

from .result import SolverResult

__all__ = ["build_result", "advice"]

_WHAT = {
    "stalled": "stalled: the relative gradient has not fallen below {best:.2e} (by half) in the "
               "last {window} iterations and the {merit} stopped decreasing",
    "diverged": "diverged: the relative gradient grew from {best:.1e} to {last:.1e}",
    "nonfinite": "diverged: the action or gradient became non-finite",
    "line_search": "line search failed along the {direction} direction ({search})",
    "max_iter": "max_iter = {max_iter} iterations used up{falling}",
}


def _reachable(best_rel: float) -> float:
    """A tolerance above the best relative gradient reached: 10^ceil(log10(3 × best))."""
    return 10.0 ** math.ceil(math.log10(max(3.0 * best_rel, 1e-300)))


def advice(problem, ev, status: str, tol: float, best_rel: float) -> str:
    """What to change, from the kind of failure and the conditioning of A at ``ev``."""
    tips = []
    kappa = problem.condition(ev)
    floor = problem.eps * kappa if math.isfinite(kappa) else float("inf")
    if problem.eps > 1e-12:
        tips.append(f"use dtype='float64' (the kernels are stored with round-off {problem.eps:.0e}, "
                    f"which caps the reachable relative gradient)")
    if status in ("stalled", "line_search", "nonfinite") and floor > tol:
        tips.append(f"raise T (T = {problem.T:g} makes A = T·1 + K_R ill-conditioned, condition "
                    f"number ≈ {kappa:.0e}, so round-off limits the relative gradient to about "
                    f"{floor:.0e}) or loosen tol to ≥ {_reachable(best_rel):.0e}, reachable at "
                    f"this precision")
    elif status in ("stalled", "line_search"):
        tips.append(f"start from another Q0 (continuation: pass the solution at a larger N as Q0), "
                    f"or raise T (T = {problem.T:g})")
    elif status in ("diverged", "nonfinite"):
        tips.append(f"start from another Q0 (continuation: pass the solution at a larger N, where "
                    f"Q is closer to 1, as Q0), raise T (T = {problem.T:g}), or use "
                    f"method='newton'")
    elif status == "max_iter":
        tips.append("raise max_iter, or pass the returned Q (and Qbar) as Q0 to continue")
    return "To fix: " + "; or ".join(tips) + "."


def build_result(problem, status: str, ev, *, tol: float, max_iter: int, n_iter: int,
                 history: list, method: str, t0: float, n_eval: int, best_rel: float,
                 detail: dict | None = None) -> SolverResult:
    """The SolverResult of a solve that ended with ``status`` at the evaluation ``ev``."""
    detail = detail or {}
    converged = status == "converged" and ev.rel <= tol
    seconds = time.perf_counter() - t0
    if converged:
        message = f"converged: relative gradient norm {ev.rel:.2e} <= {tol:.0e}"
    else:
        falling = detail.get("falling")
        fields = dict(best=best_rel, last=detail.get("last", ev.rel), window=detail.get("window"),
                      merit=detail.get("merit", "merit"), direction=detail.get("direction", ""),
                      search=detail.get("search", ""), max_iter=max_iter,
                      falling=(f" while the relative gradient was still falling ({falling[0]:.1e} "
                               f"→ {falling[1]:.1e} over the last iterations)" if falling else ""))
        what = _WHAT.get(status, status).format(**fields)
        message = (f"not converged: {what}; relative gradient norm {ev.rel:.2e} > tol {tol:.0e} "
                   f"after {n_iter} iterations, {n_eval} evaluations, {seconds:.1f} s "
                   f"({method}). {advice(problem, ev, status, tol, best_rel)}")
    return SolverResult(converged=bool(converged), n_iter=int(n_iter), grad_norm=float(ev.gnorm),
                        rel_grad_norm=float(ev.rel), action=float(ev.S), message=message,
                        n_eval=int(n_eval), seconds=seconds, method=method,
                        history=[float(h) for h in history])
