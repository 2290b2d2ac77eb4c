"""``multi_problem_for``: the D-output saddle-point problem of an order-parameter structure
(THEORY §3c)."""
from __future__ import annotations

import numpy as np

from .multi import MultiMatrixProblem
from .multi_eig import MultiEigProblem

__all__ = ["multi_problem_for"]


def multi_problem_for(structure: str, tensor, Y, T, N, lambda1, zero_mean: bool):
    """The D-output problem for ``structure`` (T, N, λ1 already checked by
    :func:`kren.saddle.problem_for`): "scalar" (FC, pooled CNN) → :class:`MultiEigProblem` (the
    joint eigenbasis of Q and K), "diagonal" (LCN) → :class:`MultiMatrixProblem` with
    block-diagonal Q, "matrix" (CNN) → :class:`MultiMatrixProblem`. ``Y``: (P, D) targets."""
    P = np.asarray(tensor.blocks).shape[1]
    Y = np.asarray(Y, dtype=float)
    if Y.ndim != 2 or Y.shape[0] != P or Y.shape[1] < 1 or not np.all(np.isfinite(Y)):
        raise ValueError(f"Y must be a finite (P, D) array of targets with P = {P}, got shape "
                         f"{Y.shape}")
    mu = np.asarray(tensor.mu)
    if zero_mean and np.any(mu != 0):
        raise ValueError("zero_mean=True but the tensor's unit means mu are not zero")
    if structure == "scalar":
        return MultiEigProblem(tensor, Y, T, N, lambda1, zero_mean)
    return MultiMatrixProblem(tensor, Y, T, N, lambda1, zero_mean,
                              block_diagonal=structure == "diagonal")
