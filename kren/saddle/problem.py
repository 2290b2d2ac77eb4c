"""The saddle-point problem protocol: what the driver (:mod:`kren.saddle.driver`) needs from a
problem, and the :class:`Evaluation` a problem returns.

A problem works in *packed coordinates* x (a float vector): Q alone for zero-mean units (S is
then minimized over Q, THEORY §3), (Q, Q̄) otherwise (a saddle point). Every evaluation comes
from the generated functions of :mod:`kren.generated`; a problem holds no physics of its own.

Convergence scale (THEORY §3): the relative gradient is ‖∇S‖_F / scale with
scale = √n + ‖Q⁻¹‖_F for zero-mean units (the size of the terms 𝟙 and Q⁻¹ that cancel at the
saddle point) and scale = √n + ‖Q‖_F + ‖Q̄‖_F otherwise; ‖∇S‖_F is the Frobenius norm of the
gradient matrices (for the LCN: of the diagonal matrices).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Evaluation", "SaddleProblem"]


@dataclass
class Evaluation:
    """One evaluation of a problem at the packed point ``x``.

    ``g`` is the gradient in packed coordinates (dS = g · dx); ``gnorm`` the Frobenius norm of
    the gradient matrices and ``rel`` = gnorm/scale (module docstring). ``image`` is the packed
    image of x under the printed fixed-point map (None where the map has no feasible image);
    ``fallback`` a feasible-direction point for a damped step when it has none (zero mean: the
    natural-gradient point Q − Q ∇S Q, a descent direction; otherwise (Q + ∇_Q̄ S, Q̄ + ∇_Q S)).
    ``cho``, ``z``: Cholesky factor of A and A⁻¹y (None for the eigenbasis). ``extra`` holds
    what only the problem reads (e.g. an eigenbasis Hessian).
    """

    x: np.ndarray
    S: float
    g: np.ndarray
    gnorm: float
    rel: float
    image: np.ndarray | None
    fallback: np.ndarray
    cho: tuple | None = None
    z: np.ndarray | None = None
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.S) and np.all(np.isfinite(self.g)) and np.isfinite(self.rel))


@runtime_checkable
class SaddleProblem(Protocol):
    """What :func:`kren.saddle.solve` iterates.

    Attributes: ``structure`` ("scalar", "diagonal", "matrix"), ``zero_mean``, ``minimization``
    (True when S is minimized over Q alone: zero-mean units), ``dim`` (packed coordinates),
    ``n`` (patches), ``T``, ``N``, ``eps`` (machine epsilon of the stored kernels), ``n_eval``
    (evaluations so far).
    """

    structure: str
    zero_mean: bool
    minimization: bool
    dim: int
    n: int
    T: float
    N: float
    eps: float
    n_eval: int

    def start(self, Q0=None, Qbar0=None) -> np.ndarray:
        """Packed starting point (default Q = 𝟙, Q̄ = 0); ValueError naming Q0/Qbar0 if invalid."""

    def pack(self, Q, Qbar) -> np.ndarray:
        """Packed coordinates of (Q, Q̄) (Q̄ ignored for zero-mean units)."""

    def unpack(self, x) -> tuple:
        """(Q, Q̄) in the problem's own form (scalars, vectors q, q̄, or symmetric matrices)."""

    def feasible(self, x) -> bool:
        """Q positive definite (and 𝟙 + Q̄ too when Q̄ is a coordinate); cheap (n×n work)."""

    def evaluate(self, x) -> Evaluation:
        """Action, gradient, fixed-point image at x; NotPositiveDefiniteError if x (or A) is
        not positive definite."""

    def hessian(self, ev: Evaluation) -> np.ndarray | None:
        """Exact Hessian in packed coordinates at ev, or None where none is generated."""

    def hessian_cost(self) -> tuple[float, int] | None:
        """(flops, bytes) of one exact Hessian, or None where none is generated.

        Optional: ``hessian_vector(ev, v)``, exact Hessian-vector products; without it the
        driver's Hessian-free Newton takes differences of the gradient (kren.saddle.krylov)."""

    def condition(self, ev: Evaluation) -> float:
        """An estimate of the condition number of A = T𝟙 + K_R at ev (for failure advice)."""

    def solution(self, ev: Evaluation) -> tuple:
        """(Q, Qbar, cho, z) at ev, as :class:`kren.saddle.Solution` holds them."""
