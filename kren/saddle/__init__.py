"""Saddle points of the effective actions (THEORY §3): one problem protocol, one driver.

    problem = problem_for("matrix", tensor, y, T, N, lambda1, zero_mean)
    sol = solve(problem, tol=1e-9)          # sol.Q, sol.Qbar, sol.result, sol.cho, sol.z

Modules, one idea each: :mod:`.problem` (the protocol and an evaluation), :mod:`.scalar` and
:mod:`.matrix` (the problems, calling only generated functions; :mod:`.multi`,
:mod:`.multi_eig` and :mod:`.multi_factory` for D outputs, THEORY §3c; :mod:`.deep` the deep FC
problems, one Q_l per layer), :mod:`.factory`
(``problem_for``), :mod:`.driver` (``solve`` and its method policy), :mod:`.newton`,
:mod:`.krylov`, :mod:`.anderson` (the iterations), :mod:`.linesearch`, :mod:`.merit`,
:mod:`.monitor` (stagnation, divergence), :mod:`.report` (the one failure report),
:mod:`.result` (SolverResult, Solution, ConvergenceWarning).
"""
from .deep import NestedProblem, ProductProblem, deep_problem
from .driver import METHODS, plan, solve
from .factory import STRUCTURES, problem_for
from .matrix import MatrixProblem
from .multi import MultiMatrixProblem
from .multi_eig import MultiEigProblem
from .problem import Evaluation, SaddleProblem
from .result import ConvergenceWarning, Solution, SolverResult
from .scalar import ScalarProblem

__all__ = ["solve", "plan", "METHODS", "problem_for", "STRUCTURES", "ScalarProblem",
           "MatrixProblem", "SaddleProblem", "Evaluation", "Solution", "SolverResult",
           "ConvergenceWarning", "MultiMatrixProblem", "MultiEigProblem", "ProductProblem",
           "NestedProblem", "deep_problem"]
