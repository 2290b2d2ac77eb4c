"""The one failure report: every way a solve can end becomes a :class:`SolverResult` whose
message says what happened and, when it did not converge, what to change (T, precision, tol,
starting point, max_iter)."""
from __future__ import annotations

import math
import time

import numpy as np

from .result import SolverResult

__all__ = ["build_result", "advice", "precision_limited"]

_EPS64 = float(np.finfo(np.float64).eps)

_WHAT = {
    "stalled": "stalled: the relative gradient has not fallen below {best:.2e} (by half) in the "
               "last {window} iterations and the {merit} stopped decreasing",
    "diverged": "diverged: the relative gradient grew from {best:.1e} to {last:.1e}",
    "nonfinite": "diverged: the action or gradient became non-finite",
    "line_search": "line search failed along the {direction} direction ({search})",
    "max_iter": "max_iter = {max_iter} iterations used up{falling}",
    "stopped": "stopped by the callback{reason}",
}


def _reachable(best_rel: float) -> float:
    """A tolerance above the best relative gradient reached: 10^ceil(log10(3 × best))
    (infinite when no finite gradient was reached)."""
    if not math.isfinite(best_rel):
        return float("inf")
    return 10.0 ** math.ceil(math.log10(max(3.0 * best_rel, 1e-300)))


def precision_limited(problem, ev, status: str, tol: float) -> bool:
    """A stall, collapsed line search or non-finite value where the round-off ε·κ(A) of the
    stored kernels exceeds tol: no other method can do better at this precision."""
    kappa = problem.condition(ev)
    kappa = kappa if math.isfinite(kappa) else float("inf")
    return status in ("stalled", "line_search", "nonfinite") and problem.eps * kappa > tol


def _storage_eps(problem) -> float:
    return float(getattr(problem, "storage_eps", problem.eps))


def precision_note(problem) -> str:
    """What the precision of the stored kernels means for the answer (empty for float64)."""
    if _storage_eps(problem) <= 1e-12 or problem.eps > 1e-12:
        return ""
    return (" Kernels stored in float32, accumulations, factorization and gradient in float64: "
            "Q solves the saddle point of the float32-rounded kernels to tol; against float64 "
            "kernels expect differences of order 1e-7·κ(A).")


def advice(problem, ev, status: str, tol: float, best_rel: float) -> str:
    """What to change, from the kind of failure and the conditioning of A at ``ev``: a stall,
    collapsed line search or non-finite value where the round-off ε·κ(A) of the stored kernels
    exceeds tol is a precision limit (float32 kernels → float64; small T → larger T; or a tol
    the precision reaches); otherwise the starting point or T; divergence adds method='newton';
    an exhausted max_iter asks for more iterations."""
    tips = []
    kappa = problem.condition(ev)
    kappa = kappa if math.isfinite(kappa) else float("inf")
    if status in ("stalled", "line_search") and _storage_eps(problem) > 1e-12:
        tips.append("store the kernels in float64 (storage='stored' with dtype='float64', or "
                    "'streaming'): with float32 storage the arithmetic is float64 but A is "
                    "assembled from kernels rounded to 1e-7")
    if precision_limited(problem, ev, status, tol):
        if problem.eps > 1e-12:
            tips.append(f"use dtype='float64' (the kernels are stored in float32: round-off "
                        f"ε·κ ≈ {problem.eps * kappa:.0e} at condition number κ(A) ≥ {kappa:.0e} "
                        f"swamps the gradient)")
        if _EPS64 * kappa > tol:
            tips.append(f"raise T (at T = {problem.T:g}, A = T·1 + K_R has condition number "
                        f"≥ {kappa:.0e}, and float64 round-off of about ε·κ ≈ "
                        f"{_EPS64 * kappa:.0e} swamps the gradient)")
        loosen = _reachable(best_rel)
        if loosen <= 1e-3:
            tips.append(f"loosen tol to ≥ {loosen:.0e}, reachable at this precision")
    elif status in ("stalled", "line_search"):
        tips.append(f"start from another Q0 (continuation: pass the solution at a larger N as Q0), "
                    f"or raise T (T = {problem.T:g})")
    elif status in ("diverged", "nonfinite"):
        tips.append(f"start from another Q0 (continuation: pass the solution at a larger N, where "
                    f"Q is closer to 1, as Q0), raise T (T = {problem.T:g}), or use "
                    f"method='newton'")
    elif status == "max_iter":
        tips.append("raise max_iter, or pass the returned Q (and Qbar) as Q0 to continue")
    elif status == "stopped":
        tips.append("pass the returned Q (and Qbar) as Q0 to continue (and raise the time "
                    "budget, if it was the time budget that stopped the solve)")
    return "To fix: " + "; or ".join(tips) + "."


def build_result(problem, status: str, ev, *, tol: float, max_iter: int, n_iter: int,
                 history: list, method: str, t0: float, n_eval: int, best_rel: float,
                 detail: dict | None = None) -> SolverResult:
    """The SolverResult of a solve that ended with ``status`` at the evaluation ``ev``."""
    detail = detail or {}
    converged = status == "converged" and ev.rel <= tol
    seconds = time.perf_counter() - t0
    if converged:
        message = (f"converged: relative gradient norm {ev.rel:.2e} <= {tol:.0e}"
                   f"{precision_note(problem)}")
    else:
        falling = detail.get("falling")
        fields = dict(best=best_rel, last=detail.get("last", ev.rel), window=detail.get("window"),
                      merit=detail.get("merit", "merit"), direction=detail.get("direction", ""),
                      search=detail.get("search", ""), max_iter=max_iter,
                      reason=(f" ({detail['reason']})" if detail.get("reason") else ""),
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
