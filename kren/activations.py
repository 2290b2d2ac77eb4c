"""Activation functions, their Gaussian kernels and unit means (THEORY §2).

For (h, h') jointly Gaussian with zero mean and covariance [[a, c], [c, b]]:

- erf:    K = (2/π) arcsin(2c / √((1 + 2a)(1 + 2b)))
- relu:   K = √(ab)/(2π) · (sin θ + (π − θ) cos θ),  cos θ = c/√(ab)
- linear: K = c

and the unit mean μ = E[σ(h)], h ~ N(0, a): 0 for erf and linear, √(a/(2π)) for relu.

The closed forms are evaluated in arctan2 form, which is well conditioned as the correlation
c/√(ab) approaches ±1 and never produces NaN when round-off pushes it past ±1:

- erf:  arcsin(u/√D) = arctan2(u, √max(D − u², 0)),  u = 2c, D = (1 + 2a)(1 + 2b)
- relu: θ = arctan2(√max(ab − c², 0), c),  K = (√max(ab − c², 0) + (π − θ) c) / (2π)
"""
from __future__ import annotations

import numpy as np
from scipy.special import erf as _erf

ACTIVATIONS = ("erf", "relu", "linear")
ZERO_MEAN = {"erf": True, "relu": False, "linear": True}


def check_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
    return name


def sigma(name: str, h):
    """The activation σ(h) itself (NumPy)."""
    check_activation(name)
    h = np.asarray(h)
    if name == "erf":
        return _erf(h)
    if name == "relu":
        return np.maximum(h, 0.0)
    return h


def kernel(name: str, c, a, b):
    """K = E[σ(h)σ(h')] for covariance [[a, c], [c, b]] (broadcasting arrays)."""
    check_activation(name)
    c = np.asarray(c, dtype=np.result_type(c, a, b, np.float64))
    a = np.asarray(a, dtype=c.dtype)
    b = np.asarray(b, dtype=c.dtype)
    if name == "linear":
        return np.array(np.broadcast_arrays(c, a, b)[0], copy=True)
    if name == "erf":
        u = 2.0 * c
        D = (1.0 + 2.0 * a) * (1.0 + 2.0 * b)
        return (2.0 / np.pi) * np.arctan2(u, np.sqrt(np.maximum(D - u * u, 0.0)))
    s = np.sqrt(np.maximum(a * b - c * c, 0.0))
    theta = np.arctan2(s, c)
    return (s + (np.pi - theta) * c) / (2.0 * np.pi)


def kernel_inplace(name: str, block: np.ndarray, a: np.ndarray, b: np.ndarray,
                   work: np.ndarray | None = None) -> np.ndarray:
    """Overwrite ``block`` (covariances c, shape (p, q)) with K(c, a[:, None], b[None, :]).

    Same formulas as :func:`kernel`, written to touch each element a minimal number of times
    (used by the kernel-tensor builders on large blocks). ``work`` is optional scratch space of
    the same shape and dtype.
    """
    if name == "linear":
        return block
    if work is None:
        work = np.empty_like(block)
    if name == "erf":
        block *= 2.0                                              # u = 2c
        np.multiply.outer(1.0 + 2.0 * a, 1.0 + 2.0 * b, out=work)  # D
        work -= _sq(block)
        np.maximum(work, 0.0, out=work)
        np.sqrt(work, out=work)
        np.arctan2(block, work, out=block)
        block *= 2.0 / np.pi
        return block
    if name == "relu":
        np.multiply.outer(a, b, out=work)                         # ab
        work -= _sq(block)
        np.maximum(work, 0.0, out=work)
        np.sqrt(work, out=work)                                   # s = √(ab − c²)
        theta = np.arctan2(work, block)
        np.subtract(np.pi, theta, out=theta)
        theta *= block
        theta += work
        theta *= 1.0 / (2.0 * np.pi)
        block[...] = theta
        return block
    check_activation(name)
    raise AssertionError("unreachable")


def _sq(x: np.ndarray) -> np.ndarray:
    return np.multiply(x, x)


def unit_mean(name: str, a):
    """μ = E[σ(h)], h ~ N(0, a): 0 for erf/linear, √(a/(2π)) for relu."""
    check_activation(name)
    a = np.asarray(a, dtype=np.result_type(a, np.float64))
    if name == "relu":
        return np.sqrt(np.maximum(a, 0.0) / (2.0 * np.pi))
    return np.zeros_like(a)
