"""The one saddle-point driver: :func:`solve` iterates any problem of the protocol
(:mod:`kren.saddle.problem`) with Newton's method or Anderson-accelerated fixed-point iteration,
one line search (:mod:`kren.saddle.linesearch`), one merit (:mod:`kren.saddle.merit`), one
progress monitor (:mod:`kren.saddle.monitor`) and one failure report (:mod:`kren.saddle.report`).

``method="auto"``:
* Newton first when the problem generates one that costs at most
  NEWTON_FLOPS flops and half the memory budget (every scalar problem, LCN/CNN of moderate
  size), Anderson from the best point if Newton stops short; where one exact Hessian costs at
  least WARMUP_FLOPS (a CNN from P ≈ 160), ANDERSON_WARMUP Anderson iterations (one evaluation
  each) come first and bring the point nearer Newton's fast region, so fewer exact Hessians;
* else, when the exact Hessian fits in memory, Anderson for at most ANDERSON_BEFORE_NEWTON
  iterations, then Newton with the exact Hessian;
* else (units with a mean, or a Hessian too large to store) Anderson while it makes progress,
  then Newton on Hessian-vector products (GMRES) if it stalls or diverges.
``method="newton"``: Newton only (exact Hessian at every step where it fits, else
Hessian-vector products); ``method="quasi-newton"``: the same stage with exact Hessians only
where quasi-Newton updates go stale. "auto" runs its Newton stages with exact Hessians that
way too (:mod:`kren.saddle.quasi`: BFGS or SR1 updates between exact Hessians), so a small
problem spends its time in evaluations rather than in Hessians.
``method="anderson"``: Anderson only. A later stage starts from the best point of the earlier
ones, unless the last one stopped at the precision floor (kren.saddle.report.precision_limited);
``callback(it, ev)`` returning True stops the solve (a progress display or time budget).

A problem with ``float32_stage`` set (large D-output problems, kren.saddle.multi) runs, under
"auto" and "anderson", a first Anderson stage on float32 evaluations
(:mod:`kren.saddle.float32_stage`); the stages above then start from its best point, evaluated
in float64 (the first Anderson stage mixing the float32 stage's differences from its first
step), so convergence is always decided on float64 evaluations.

Convergence: relative gradient ≤ tol (scales in :mod:`kren.saddle.problem`). A solve that does
not converge says so in ``Solution.result`` and hands back the best point it found.
"""
from __future__ import annotations

import math
import time

from ..linalg import NotPositiveDefiniteError
from .anderson import anderson
from .float32_stage import float32_stage
from .merit import merit_for
from .monitor import Monitor, Outcome
from .newton import newton
from .quasi import quasi_newton
from .report import build_result, precision_limited
from .result import Solution

__all__ = ["solve", "plan", "METHODS", "NEWTON_FLOPS", "ANDERSON_BEFORE_NEWTON",
           "ANDERSON_WARMUP", "WARMUP_FLOPS"]

METHODS = ("auto", "newton", "quasi-newton", "anderson")
#: Newton with the exact Hessian runs first when one Hessian costs at most this many flops.
NEWTON_FLOPS = 2.5e10
#: Anderson iterations before switching to Newton when the exact Hessian fits in memory.
ANDERSON_BEFORE_NEWTON = 30
#: Anderson iterations before Newton where the exact Hessian is cheap enough for Newton first
#: but costs at least WARMUP_FLOPS. Measured on erf CNN 2×2/2 fits of digits, solve times
#: (exact Hessians) without → with 6 warm-up iterations: even/odd P = 300 T = 0.01 N = 5
#: 1.92 s (8) → 1.39 s (5); 0/1 P = 300 T = 0.01 N = 5 1.66 s (6) → 0.80 s (2); even/odd
#: P = 300 T = 0.03 N = 20 1.36 s (4) → 0.56 s (1); even/odd P = 200 T = 0.01 N = 5 1.19 s (7)
#: → 0.66 s (4); 0/1 P = 200 T = 0.1 N = 50 0.23 s (1) → 0.09 s (0); Q within 7e-10 of exact
#: Newton at tol 1e-11 in every case.
ANDERSON_WARMUP = 6
#: Flops of one exact Hessian from which the Anderson warm-up runs (below, a Hessian costs a
#: few evaluations and Newton from the start is cheaper).
WARMUP_FLOPS = 1e9

_LABEL = {("newton", True): "newton (exact Hessian)",
          ("quasi", True): "quasi-newton (exact Hessians where the updates go stale)",
          ("newton", False): "newton (Hessian-vector products, GMRES)",
          ("anderson", None): "anderson fixed point"}


def plan(problem, method: str = "auto", memory_budget: int | None = None) -> list:
    """The stages [(kind, exact, cap)] that :func:`solve` runs (module docstring)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    cost = problem.hessian_cost()
    if memory_budget is None:
        from ..kernels import get_memory_budget
        memory_budget = get_memory_budget()
    fits = cost is not None and cost[1] <= memory_budget // 2
    if method in ("newton", "quasi-newton"):
        return [("newton", fits, None)]
    if method == "anderson":
        return [("anderson", None, None)]
    if fits and cost[0] <= NEWTON_FLOPS:
        warm = [("anderson", None, ANDERSON_WARMUP)] if cost[0] >= WARMUP_FLOPS else []
        return warm + [("newton", True, None), ("anderson", None, None)]
    if fits:
        return [("anderson", None, ANDERSON_BEFORE_NEWTON), ("newton", True, None)]
    return [("anderson", None, None), ("newton", False, None)]


def _updates_meaningful(problem, ev, tol) -> bool:
    """Quasi-Newton updates are built from gradient differences: where float64 round-off
    ε·κ(A) already exceeds tol at the start (a precision-limited problem, e.g. T = 1e-10 on
    duplicated points) those differences are noise, and the Newton stage keeps exact Hessians."""
    kappa = problem.condition(ev)
    return bool(math.isfinite(kappa) and problem.eps * kappa <= tol)


def _check(tol, max_iter):
    try:
        tol_ok = math.isfinite(float(tol)) and float(tol) > 0
    except (TypeError, ValueError):
        tol_ok = False
    if not tol_ok:
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if isinstance(max_iter, bool) or int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    return float(tol), int(max_iter)


def solve(problem, Q0=None, Qbar0=None, tol: float = 1e-9, max_iter: int = 1000,
          method: str = "auto", memory_budget: int | None = None, callback=None) -> Solution:
    """Solve ∇S = 0 for ``problem`` (THEORY §3) from Q0 (default 𝟙) and Q̄0 (default 0, or
    Q0⁻¹ − 𝟙 when only Q0 is given).

    ``max_iter`` bounds the iterations of all stages together; ``callback(it, ev)`` is called
    after every accepted iterate. Returns a :class:`~kren.saddle.result.Solution`; its
    ``result.converged`` is False, with a message saying what to change, when the relative
    gradient did not reach ``tol``.
    """
    tol, max_iter = _check(tol, max_iter)
    stages = plan(problem, method, memory_budget)
    t0 = time.perf_counter()
    evals0 = problem.n_eval
    x0 = problem.start(Q0, Qbar0)
    merit = merit_for(problem)
    pre, user_stopped = None, False
    if getattr(problem, "float32_stage", False) and method in ("auto", "anderson"):
        pre, user_stopped = float32_stage(problem, x0, merit, tol=tol, max_iter=max_iter,
                                          callback=callback)
    try:
        ev = problem.evaluate(x0 if pre is None else pre.best.x)
    except NotPositiveDefiniteError as exc:
        raise NotPositiveDefiniteError(
            f"{exc} at the starting point; raise T (T = {problem.T:g}) or start from another "
            f"Q0") from None
    history, names, n_iter = [float(ev.rel)], [], 0
    if pre is not None:
        history = pre.history + [float(ev.rel)]
        names.append("anderson fixed point in float32")
        n_iter = pre.n_iter
    best = ev
    out = None
    # the float32 stage's Anderson differences seed the first float64 Anderson stage (the
    # same fixed-point map; without them its first step is a plain, unmixed one)
    carry = getattr(pre, "anderson_history", None)
    if not ev.finite:
        out = Outcome("nonfinite", ev, Monitor(tol, 1, merit, ev), 0)
    elif user_stopped:
        out = Outcome("stopped", ev, Monitor(tol, 1, merit, ev), 0)
    for kind, exact, cap in ([] if out else stages):
        left = max_iter - n_iter
        if left <= 0:
            break
        budget = left if cap is None else min(left, cap)

        def relay(it, e, offset=n_iter):
            return callback(offset + it, e) if callback is not None else None

        if kind == "newton" and exact and method != "newton" and _updates_meaningful(
                problem, ev, tol):
            kind = "quasi"                    # exact Hessians only where the updates go stale
            out = quasi_newton(problem, ev, merit, tol=tol, max_iter=budget, callback=relay)
        elif kind == "newton":
            out = newton(problem, ev, merit, tol=tol, max_iter=budget, exact=exact,
                         callback=relay)
        else:
            out = anderson(problem, ev, merit, tol=tol, max_iter=budget, callback=relay,
                           history=carry)
            carry = None
        names.append(_LABEL[(kind, exact)])
        history += out.history[1:]
        n_iter += out.n_iter
        if out.best.rel < best.rel:
            best = out.best
        if out.status in ("converged", "stopped") or precision_limited(problem, best, out.status,
                                                                        tol):
            break                             # (at the precision floor no method does better)
        ev = best                             # the next stage starts from the best point
    if out is None:                           # the float32 stage used up max_iter
        out = Outcome("max_iter", ev, Monitor(tol, 1, merit, ev), 0)
    status = out.status
    if status == "stopped" and getattr(callback, "stop_reason", None):
        out.detail["reason"] = callback.stop_reason
    final = out.ev if status == "converged" else best
    result = build_result(problem, status, final, tol=tol, max_iter=max_iter, n_iter=n_iter,
                          history=history, method=", then ".join(names) or "none", t0=t0,
                          n_eval=problem.n_eval - evals0, best_rel=best.rel, detail=out.detail)
    Q, Qbar, cho, z = problem.solution(final)
    return Solution(Q, Qbar, result, cho, z)
