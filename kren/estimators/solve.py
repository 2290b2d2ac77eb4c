"""The one call from the estimators into the saddle-point solver (THEORY §3).

:func:`solve_saddle` builds the problem of the architecture's order-parameter structure
(:func:`kren.saddle.problem_for`: "scalar" for the FC and the pooled CNN, "diagonal" for the LCN,
"matrix" for the CNN) and runs the one driver (:func:`kren.saddle.solve`), whose method policy,
stagnation and divergence checks and failure report live in :mod:`kren.saddle`. The estimators
import :class:`SolverResult` from here; ``kren.exceptions`` imports ``ConvergenceWarning`` from
:mod:`kren.saddle`. It asks the architecture for the structure; it holds no physics.
"""
from __future__ import annotations

from ..saddle import Solution, SolverResult, problem_for, solve
from ..validation import InvalidParameterError

__all__ = ["Solution", "SolverResult", "solve_saddle"]


def solve_saddle(arch, tensor, y, *, T, N, tol, max_iter, memory_budget=None,
                 Q0=None, callback=None, eig=None) -> Solution:
    """Solve ∂S/∂Q = ∂S/∂Q̄ = 0 for the architecture's action on the train tensor (THEORY §3).

    ``Q0``: optional start (a number for a scalar order parameter; an n×n Q, or a (Q, Q̄) pair,
    otherwise). ``callback(it, ev)`` (e.g. :class:`kren.saddle.progress.Progress`) is called
    after every iterate and stops the solve by returning True. For zero-mean activations Q̄ = Q⁻¹ − 𝟙 is returned (∂S/∂Q̄ = 0).
    ``eig``: the scalar structure's kernel eigenbasis when already computed (a cached one).
    """
    Q0, Qbar0 = Q0 if isinstance(Q0, tuple) else (Q0, None)
    problem = problem_for(arch.structure, tensor, y, T, N, arch.lambda1, arch.zero_mean,
                          eig=eig)
    try:
        problem.start(Q0, Qbar0)
    except ValueError as exc:
        raise InvalidParameterError(str(exc)) from None
    return solve(problem, Q0, Qbar0, tol=tol, max_iter=max_iter, memory_budget=memory_budget,
                 callback=callback)
