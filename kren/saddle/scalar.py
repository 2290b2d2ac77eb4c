"""The scalar saddle point (FC, THEORY §3 with n = 1; the pooled CNN, THEORY §3b, is the same
action on K_pool) in the eigenbasis of the single kernel block: O(P) per evaluation.

Zero-mean units: x = (Q,), S(Q) minimized. Otherwise x = (Q, Q̄), a saddle point. The action,
its derivatives, the fixed-point map and Q̄ = 1/Q − 1 are the generated functions of
:mod:`kren.generated.fc` (``action_eig_zero_mean``, ``action_eig``, ``fixed_point_zero_mean``,
``fixed_point``, ``eliminated_Qbar``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..linalg import NotPositiveDefiniteError
from .problem import Evaluation

__all__ = ["ScalarProblem", "Eigenbasis", "eigenbasis"]


def _number(v, name) -> float:
    a = np.asarray(v, dtype=float)
    if a.size != 1:
        raise ValueError(f"{name} must be a number for the scalar (FC) order parameter, got "
                         f"shape {a.shape}")
    return float(a.reshape(-1)[0])


def _image(fn):
    """The map's image, or None where it has none (a zero denominator 1/(1 + Qbar_new))."""
    try:
        return fn()
    except ZeroDivisionError:
        return None


class Eigenbasis(NamedTuple):
    """The eigenbasis of a scalar structure's kernel block (:func:`eigenbasis`): eigenvalues
    ``k`` (ascending, clipped to ≥ 0), eigenvectors ``U`` (columns), and ``k_min`` the smallest
    eigenvalue as computed, before clipping (≤ 0 by round-off for a singular kernel)."""

    k: np.ndarray
    U: np.ndarray
    k_min: float


def eigenbasis(tensor, zero_mean: bool) -> Eigenbasis:
    """(k, U, k_min): K = U diag(k) Uᵀ for zero-mean units, K − μμᵀ = U diag(k) Uᵀ otherwise
    (float64, eigenvalues below zero clipped to 0; k_min the smallest before clipping), of the
    tensor's single block. It depends on neither N, T nor λ1, so fits that share the tensor may
    share it (a :class:`kren.cache.KernelCache` entry, see
    :func:`kren.estimators.state.scalar_eigenbasis`)."""
    blocks = np.asarray(tensor.blocks)
    if blocks.ndim != 3 or blocks.shape[0] != 1:
        raise ValueError(f"the scalar structure needs a tensor with one block (1, P, P), got "
                         f"blocks of shape {blocks.shape}")
    K = blocks[0].astype(np.float64)
    mu = np.asarray(tensor.mu, dtype=np.float64).reshape(-1)
    Kc = K if zero_mean else K - np.outer(mu, mu)
    k, U = np.linalg.eigh(0.5 * (Kc + Kc.T))
    return Eigenbasis(np.maximum(k, 0.0), U, float(k[0]) if k.size else 0.0)


class ScalarProblem:
    """Scalar order parameters in the eigenbasis of the kernel (THEORY §3, §3b).

    ``tensor`` holds one block (blocks (1, P, P), mu (1, P)). The generated ``action_eig*``
    take the eigen-decomposition of the kernel their docstrings name: K = U diag(k) Uᵀ for
    zero-mean units, the centered K − μμᵀ = U diag(k) Uᵀ otherwise, with ỹ = Uᵀy, m = Uᵀμ;
    eigenvalues below zero (round-off of a PSD kernel) are clipped to 0. ``eig``: that
    decomposition, (k, U, ...) of :func:`eigenbasis`, when already computed (else computed here).
    """

    structure = "scalar"

    def __init__(self, tensor, y, T, N, lambda1, zero_mean: bool, eig=None):
        from ..generated import fc
        blocks = np.asarray(tensor.blocks)
        if blocks.ndim != 3 or blocks.shape[0] != 1:
            raise ValueError(f"the scalar structure needs a tensor with one block (1, P, P), got "
                             f"blocks of shape {blocks.shape}")
        self.gen = fc
        self.n, self.zero_mean, self.minimization = 1, bool(zero_mean), bool(zero_mean)
        self.dim = 1 if zero_mean else 2
        self.T, self.N, self.lambda1 = float(T), float(N), float(lambda1)
        self.eps = float(np.finfo(np.float64).eps)          # the eigenbasis is float64
        self.storage_eps = float(np.finfo(blocks.dtype).eps)
        self.P = blocks.shape[1]
        mu = np.asarray(tensor.mu, dtype=np.float64).reshape(-1)
        y = np.asarray(y, dtype=np.float64)
        k, U = (eigenbasis(tensor, zero_mean) if eig is None else eig)[:2]
        if np.shape(k) != (self.P,) or np.shape(U) != (self.P, self.P):
            raise ValueError(f"eig must be (k, U) of shapes ({self.P},) and ({self.P}, "
                             f"{self.P}), got {np.shape(k)} and {np.shape(U)}")
        self.k = np.asarray(k, dtype=np.float64)
        self.yt = U.T @ y
        self.m = U.T @ mu
        self.n_eval = 0

    # ------------------------------------------------------------------ coordinates
    def pack(self, Q, Qbar=None) -> np.ndarray:
        return np.array([Q], dtype=float) if self.zero_mean else np.array([Q, Qbar], dtype=float)

    def unpack(self, x):
        return (float(x[0]), None) if self.zero_mean else (float(x[0]), float(x[1]))

    def start(self, Q0=None, Qbar0=None) -> np.ndarray:
        Q = 1.0 if Q0 is None else _number(Q0, "Q0")
        if not (np.isfinite(Q) and Q > 0):
            raise ValueError(f"Q0 must be a positive number, got {Q}")
        if self.zero_mean:
            return self.pack(Q)
        Qb = (0.0 if Q0 is None else float(self.gen.eliminated_Qbar(Q))) if Qbar0 is None \
            else _number(Qbar0, "Qbar0")
        if not (np.isfinite(Qb) and Qb > -1):
            raise ValueError(f"Qbar0 must be a number with 1 + Qbar0 > 0, got {Qb}")
        return self.pack(Q, Qb)

    def feasible(self, x) -> bool:
        x = np.asarray(x, dtype=float)
        return bool(np.all(np.isfinite(x)) and x[0] > 0 and (self.zero_mean or x[1] > -1))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, x) -> Evaluation:
        x = np.asarray(x, dtype=float)
        if not self.feasible(x):
            raise NotPositiveDefiniteError("Q > 0" + ("" if self.zero_mean else " and 1 + Qbar > 0")
                                           + f" violated at {x}")
        self.n_eval += 1
        g = self.gen
        if self.zero_mean:
            Q = x[0]
            S, d1, d2 = g.action_eig_zero_mean(Q, self.k, self.yt, self.T, self.N, self.lambda1)
            gnorm = abs(float(d1))
            image = _image(lambda: self.pack(g.fixed_point_zero_mean(Q, d1)))
            return Evaluation(x, float(S), np.array([d1], dtype=float), gnorm,
                              gnorm / (1.0 + 1.0 / Q), self._keep(image),
                              self.pack(Q - Q * d1 * Q), extra={"hessian": np.array([[d2]])})
        Q, Qb = x
        S, grad, hess = g.action_eig(Q, Qb, self.k, self.yt, self.m, self.T, self.N, self.lambda1)
        gnorm = float(np.linalg.norm(grad))
        image = _image(lambda: np.array(g.fixed_point(Q, Qb, grad[0], grad[1]), dtype=float))
        return Evaluation(x, float(S), np.asarray(grad, dtype=float), gnorm,
                          gnorm / (1.0 + abs(Q) + abs(Qb)), self._keep(image),
                          np.array([Q + grad[1], Qb + grad[0]]), extra={"hessian": hess})

    def _keep(self, image):
        """The image where the map is defined: F = dS/dQ + 1/Q > 0 (zero mean, image Q = 1/F)
        or 1 + Qbar_new > 0 (an image with Q_new <= 0 is kept: the line search shortens it)."""
        if image is None or not np.all(np.isfinite(image)):
            return None
        return image if (image[0] > 0 if self.zero_mean else image[1] > -1) else None

    def hessian(self, ev: Evaluation) -> np.ndarray:
        """Exact Hessian of the eigenbasis action (SymPy's derivatives, generated)."""
        return np.asarray(ev.extra["hessian"], dtype=float)

    def hessian_cost(self) -> tuple[float, int]:
        """Part of every evaluation: O(P) flops, no memory beyond it."""
        return 40.0 * self.P, 0

    def condition(self, ev: Evaluation) -> float:
        """κ(A) of A = T𝟙 + Q K/λ1 (zero mean: exact; otherwise of the centered part)."""
        D = self.T + ev.x[0] * self.k / self.lambda1
        return float(np.max(D) / np.min(D))

    def solution(self, ev: Evaluation):
        Q, Qb = self.unpack(ev.x)
        if self.zero_mean:
            Qb = float(self.gen.eliminated_Qbar(Q))
        return Q, Qb, None, None
