"""Infinite-width (NNGP) kernel of a deep fully-connected network (THEORY §2).

An L-layer FC network (THEORY §1) with input prior λ0 and layer priors λ_1 … λ_L (λ_L the
readout's) has, at infinite width, the kernel

    C^{(1)} = C = x·x'/(λ0 N0),   K^{(l)} = k(C^{(l)}),   C^{(l+1)} = K^{(l)}/λ_l,   NNGP = K^{(L)}/λ_L

where k is the closed form of THEORY §2 applied with the diagonals of C^{(l)}:
k(C^{(l)})(x, x') = k(C^{(l)}(x, x'), C^{(l)}(x, x), C^{(l)}(x', x')). Between two different
input sets the diagonals of each set follow their own recursion, C^{(l+1)}(x, x) =
k(C^{(l)}(x, x), C^{(l)}(x, x), C^{(l)}(x, x))/λ_l. L = 1 is the one-hidden-layer FC kernel K/λ1.

Every entry of the recursion goes through :func:`layer_kernel`, the one call into the
activation kernels. Memory is checked before anything is allocated
(:func:`kren.kernels.check_memory`, the same budget as the one-hidden-layer kernels).
"""
from __future__ import annotations

import numpy as np

from . import activations
from .kernels import check_kernel_scale, check_memory
from .guard import guarded

__all__ = ["layer_kernel", "check_depth", "check_priors", "input_covariance",
           "deep_nngp_kernel", "deep_nngp_cross", "deep_nngp_diagonal"]


def layer_kernel(activation: str, c, a, b):
    """k(c, a, b) = E[σ(h)σ(h')] for the covariance [[a, c], [c, b]] (THEORY §2), broadcasting.

    The single place the deep recursion evaluates an activation kernel.
    """
    return activations.kernel(activation, c, a, b)


def check_depth(L) -> int:
    """L, the number of hidden layers: a positive integer."""
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 1:
        raise ValueError(f"L (number of hidden layers) must be a positive integer, got {L!r}")
    return int(L)


def check_priors(lambdas, L: int) -> np.ndarray:
    """λ_1 … λ_L as an (L,) array: one positive number for every layer, or L of them."""
    lam = np.asarray(lambdas, dtype=float).reshape(-1)
    if lam.shape[0] == 1:
        lam = np.full(L, lam[0])
    if lam.shape != (L,) or not np.all(np.isfinite(lam)) or not np.all(lam > 0):
        raise ValueError(f"lambdas must be one positive prior or {L} positive priors "
                         f"(lambda_1 … lambda_L, the last one the readout's), got {lambdas!r}")
    return lam


def _as_inputs(X, name: str, N0: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim < 2 or X.shape[0] == 0:
        raise ValueError(f"{name} must have shape (P, N0) (or (P, *input_shape)), got {X.shape}")
    X = X.reshape(X.shape[0], -1)
    if N0 is not None and X.shape[1] != N0:
        raise ValueError(f"{name} has {X.shape[1]} input features, expected N0 = {N0}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or inf")
    return X


def _check_lambda0(lambda0) -> float:
    lambda0 = float(lambda0)
    if not np.isfinite(lambda0) or lambda0 <= 0:
        raise ValueError(f"lambda0 must be a positive number, got {lambda0}")
    return lambda0


@guarded("input_covariance")
def input_covariance(X1, X2=None, lambda0: float = 1.0):
    """C(x1, x2) = x1·x2/(λ0 N0) (THEORY §2) and the variances of each set.

    Returns (C12, d1, d2); with X2=None, C12 is the train×train C and d2 = d1.
    """
    lambda0 = _check_lambda0(lambda0)
    A = _as_inputs(X1, "X1")
    B = A if X2 is None else _as_inputs(X2, "X2", A.shape[1])
    scale = 1.0 / (lambda0 * A.shape[1])
    C12 = (A @ B.T) * scale
    d1 = np.einsum("pm,pm->p", A, A) * scale
    d2 = d1 if X2 is None else np.einsum("pm,pm->p", B, B) * scale
    return C12, d1, d2


def _check_scale(activation, d1, d2, layer: int, names=("X", "X")) -> None:
    """The variances entering layer ``layer`` are finite and do not overflow its kernel
    (:func:`kren.kernels.check_kernel_scale`): a named error, never NaN kernels."""
    from .validation import InvalidDataError
    if not (np.all(np.isfinite(d1)) and np.all(np.isfinite(d2))):
        raise InvalidDataError(f"{names[0]}: the variances entering layer {layer + 1} overflow "
                               "float64. To fix: standardize the inputs (e.g. "
                               "sklearn.preprocessing.StandardScaler)")
    check_kernel_scale(activation, d1, d2, np.float64, names)


def _recursion(C12, d1, d2, L, activation, lam, symmetric):
    """L layers of C12 → k(C12, d1, d2)/λ_l; the variances follow (train×train: the diagonal of
    the new matrix itself; two sets: their own recursion d → k(d, d, d)/λ_l)."""
    for l in range(L):
        _check_scale(activation, d1, d2, l, ("X1", "X2") if not symmetric else ("X", "X"))
        C12 = layer_kernel(activation, C12, d1[:, None], d2[None, :]) / lam[l]
        if symmetric:
            d1 = d2 = np.diagonal(C12).copy()
        else:
            d1 = layer_kernel(activation, d1, d1, d1) / lam[l]
            d2 = layer_kernel(activation, d2, d2, d2) / lam[l]
    return C12, d1, d2


@guarded("deep_nngp_kernel")
def deep_nngp_kernel(X, L, activation: str = "erf", lambda0: float = 1.0, lambdas=1.0,
                     memory_budget=None) -> np.ndarray:
    """Train×train deep NNGP kernel K^{(L)}/λ_L (module docstring), shape (P, P), symmetric."""
    L = check_depth(L)
    activations.check_activation(activation)
    lam = check_priors(lambdas, L)
    X = _as_inputs(X, "X")
    P = X.shape[0]
    # C, one kernel block and its scratch, the inputs
    check_memory(3 * P * P * 8 + X.nbytes, f"deep NNGP kernel ({P}×{P}, L = {L})",
                 memory_budget)
    C, _, _ = input_covariance(X, None, lambda0)
    d = np.diagonal(C).copy()
    K, _, _ = _recursion(C, d, d, L, activation, lam, symmetric=True)
    return 0.5 * (K + K.T)


@guarded("deep_nngp_cross")
def deep_nngp_cross(X1, X2, L, activation: str = "erf", lambda0: float = 1.0, lambdas=1.0,
                    memory_budget=None) -> np.ndarray:
    """Deep NNGP kernel between two input sets (e.g. test×train), shape (P1, P2)."""
    L = check_depth(L)
    activations.check_activation(activation)
    lam = check_priors(lambdas, L)
    A = _as_inputs(X1, "X1")
    B = _as_inputs(X2, "X2", A.shape[1])
    check_memory(3 * A.shape[0] * B.shape[0] * 8 + A.nbytes + B.nbytes,
                 f"deep NNGP cross kernel ({A.shape[0]}×{B.shape[0]}, L = {L})", memory_budget)
    C12, d1, d2 = input_covariance(A, B, lambda0)
    K, _, _ = _recursion(C12, d1, d2, L, activation, lam, symmetric=False)
    return K


@guarded("deep_nngp_diagonal")
def deep_nngp_diagonal(X, L, activation: str = "erf", lambda0: float = 1.0,
                       lambdas=1.0) -> np.ndarray:
    """K^{(L)}(x, x)/λ_L for every input, shape (P0,) (the variance recursion alone)."""
    L = check_depth(L)
    activations.check_activation(activation)
    lam = check_priors(lambdas, L)
    X = _as_inputs(X, "X")
    d = np.einsum("pm,pm->p", X, X) / (_check_lambda0(lambda0) * X.shape[1])
    for l in range(L):
        _check_scale(activation, d, d, l)
        d = layer_kernel(activation, d, d, d) / lam[l]
    return d
