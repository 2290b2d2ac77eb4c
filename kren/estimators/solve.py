"""The one call from the estimators into the saddle-point solver (THEORY §3).

:func:`solve_saddle` is the only function that knows which solver runs: the eigenbasis Newton
for a scalar order parameter (FC), Anderson mixing with an exact-Hessian Newton fallback for
the diagonal (LCN) and matrix (CNN) ones, from :mod:`kren.solvers`. Switching the estimators to
another driver (``kren.saddle.problem_for`` / ``solve``) is a change of this module only (the
estimators import :class:`SolverResult` from here; ``kren.exceptions`` imports
``ConvergenceWarning`` from the solver package). It asks the architecture for the structure and
the generated module; it holds no physics.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels import get_memory_budget
from ..solvers import MatrixSaddle, SolverResult, anderson_solve, newton_fc, newton_solve
from ..validation import InvalidParameterError

__all__ = ["Solution", "SolverResult", "solve_saddle", "NEWTON_FLOPS", "ANDERSON_MAX_ITER"]

#: Newton (exact Hessian) is used from the start when one Hessian costs at most this many flops;
#: above it Anderson mixing runs first and Newton is the fallback.
NEWTON_FLOPS = 2.5e10
#: Anderson iterations before switching to Newton (when Newton fits in memory).
ANDERSON_MAX_ITER = 30


@dataclass
class Solution:
    """A solved saddle point: Q, Q̄ (floats for a scalar order parameter, n×n arrays
    otherwise, the LCN's as diagonal matrices), the :class:`SolverResult`, and the Cholesky
    factor of A = T𝟙 + K_R with z = A⁻¹y at the solution (None when the solver never formed A)."""

    Q: object
    Qbar: object
    result: SolverResult
    cho: tuple | None = None
    z: np.ndarray | None = None


def solve_saddle(arch, tensor, y, *, T, N, tol, max_iter, memory_budget=None,
                 Q0=None) -> Solution:
    """Solve ∂S/∂Q = ∂S/∂Q̄ = 0 for the architecture's action on the train tensor (THEORY §3).

    ``Q0``: optional start (a number for a scalar order parameter; an n×n Q, or a (Q, Q̄) pair,
    otherwise). For zero-mean activations Q̄ = Q⁻¹ − 𝟙 is returned (∂S/∂Q̄ = 0).
    """
    if arch.structure == "scalar":
        return _solve_scalar(arch, tensor, y, T, N, tol, max_iter, Q0)
    return _solve_matrix(arch, tensor, y, T, N, tol, max_iter, memory_budget, Q0)


def _solve_scalar(arch, tensor, y, T, N, tol, max_iter, Q0):
    K = tensor.blocks[0].astype(np.float64)
    mu = tensor.mu[0].astype(np.float64)
    zero_mean = arch.zero_mean
    Kc = K if zero_mean else K - np.outer(mu, mu)
    k, U = np.linalg.eigh(0.5 * (Kc + Kc.T))
    k = np.maximum(k, 0.0)              # PSD kernel: clip round-off negatives
    yt = U.T @ y
    m = U.T @ mu
    Q0 = 1.0 if Q0 is None else float(np.asarray(Q0).reshape(-1)[0])
    Q, Qbar, res = newton_fc(arch.generated, k, yt, m, T, N, arch.lambda1, zero_mean, Q0=Q0,
                             tol=tol, max_iter=max_iter)
    if zero_mean:
        Qbar = 1.0 / Q - 1.0                     # ∂S/∂Q̄ = 0 (THEORY §3)
    return Solution(float(Q), float(Qbar), res)


def _start(n, Q0):
    if Q0 is None:
        return np.eye(n), np.zeros((n, n))
    if isinstance(Q0, tuple):
        Q0m, Qb0 = (np.asarray(a, float) for a in Q0)
    else:
        Q0m = np.asarray(Q0, float)
        if Q0m.shape != (n, n):
            raise InvalidParameterError(f"Q0 must be {n}×{n}, got shape {Q0m.shape}")
        Qb0 = np.linalg.inv(Q0m) - np.eye(n)
    if Q0m.shape != (n, n) or Qb0.shape != (n, n):
        raise InvalidParameterError(f"Q0 must be {n}×{n}, got shape {Q0m.shape}")
    return Q0m, Qb0


def _solve_matrix(arch, tensor, y, T, N, tol, max_iter, memory_budget, Q0):
    zero_mean = arch.zero_mean
    problem = MatrixSaddle(arch.generated, tensor, y, T, N, arch.lambda1, zero_mean,
                           arch.structure == "diagonal")
    n = tensor.n
    flops, mem = problem.hessian_cost()
    budget = get_memory_budget() if memory_budget is None else memory_budget
    newton_ok = zero_mean and mem <= budget // 2
    newton_first = newton_ok and flops <= NEWTON_FLOPS
    x0 = problem.pack(*_start(n, Q0))
    if newton_first:
        x, ev, res = newton_solve(problem, x0, tol=tol, max_iter=max_iter)
    else:
        # Anderson iterations are cheap (two passes, one Cholesky); when Newton is available
        # as a fallback, stop mixing after a few dozen and let Newton finish.
        cap = min(max_iter, ANDERSON_MAX_ITER) if newton_ok else max_iter
        x, ev, res = anderson_solve(problem, x0, tol=tol, max_iter=cap)
        if not res.converged and newton_ok:
            first = res
            x, ev, res = newton_solve(problem, x, tol=tol,
                                      max_iter=max(1, max_iter - first.n_iter))
            res.n_iter += first.n_iter
            res.seconds += first.seconds
            res.history = first.history + res.history
            res.method = "anderson fixed point, then newton (exact Hessian)"
    Q, Qbar = problem.unpack(x)
    if zero_mean:
        Qbar = np.linalg.inv(Q) - np.eye(n)      # ∂S/∂Q̄ = 0 (THEORY §3)
    return Solution(Q, Qbar, res, ev["cho"], ev["z"])
