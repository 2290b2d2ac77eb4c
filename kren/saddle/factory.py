"""``problem_for``: the saddle-point problem of an order-parameter structure."""
from __future__ import annotations

import math

import numpy as np

from .matrix import MatrixProblem
from .scalar import ScalarProblem

__all__ = ["problem_for", "STRUCTURES"]

STRUCTURES = ("scalar", "diagonal", "matrix")


def _positive(v, name, finite=True):
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {v!r}") from None
    if not (f > 0) or (finite and not math.isfinite(f)):
        kind = "a positive finite" if finite else "a positive"
        raise ValueError(f"{name} must be {kind} number, got {v!r}")
    return f


def problem_for(structure: str, tensor, y, T, N, lambda1, zero_mean: bool, eig=None):
    """The problem for ``structure``: "scalar" (FC, pooled CNN; THEORY §3, §3b) →
    :class:`ScalarProblem`, "diagonal" (LCN) or "matrix" (CNN) → :class:`MatrixProblem`.

    ``tensor``: a :class:`kren.kernels.KernelTensor` (blocks, pairs, n, mu, var) of the training
    set; ``y`` the P targets, or a (P, D) array for D outputs (THEORY §3c: the problems of
    :func:`kren.saddle.multi_factory.multi_problem_for`); T, N, λ1 as in THEORY §1; ``zero_mean`` True for units with μ = 0
    (Q̄ eliminated, S minimized over Q). N must be finite (N = ∞ is Q = 𝟙 exactly, no solve).
    ``eig``: for "scalar", the kernel's eigenbasis if already computed
    (:func:`kren.saddle.scalar.eigenbasis`; it depends on neither N, T nor λ1).
    """
    if structure not in STRUCTURES:
        raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")
    T = _positive(T, "T (temperature)")
    N = _positive(N, "N")
    lambda1 = _positive(lambda1, "lambda1")
    blocks = tensor.blocks
    P = (blocks.shape if hasattr(blocks, "shape") else np.asarray(blocks).shape)[1]
    y = np.asarray(y, dtype=float)
    if y.ndim == 2:                     # D outputs (THEORY §3c): kren.saddle.multi_factory
        from .multi_factory import multi_problem_for
        return multi_problem_for(structure, tensor, y, T, N, lambda1, zero_mean)
    if y.shape != (P,) or not np.all(np.isfinite(y)):
        raise ValueError(f"y must be a finite vector of the P = {P} targets, got shape {y.shape}")
    mu = np.asarray(tensor.mu)
    if zero_mean and np.any(mu != 0):
        raise ValueError("zero_mean=True but the tensor's unit means mu are not zero")
    if structure == "scalar":
        return ScalarProblem(tensor, y, T, N, lambda1, zero_mean, eig=eig)
    return MatrixProblem(tensor, y, T, N, lambda1, zero_mean, diagonal=structure == "diagonal")
