"""The FC (and pooled-CNN) saddle point with D outputs in the joint eigenbasis of Q and K
(THEORY §3c): the kernel block is eigendecomposed once, K = U diag(k) Uᵀ (the centered
K − μμᵀ for units with a mean), and every evaluation costs O(P·D²) after a D×D
eigendecomposition of Q, never forming the (DP)×(DP) matrix A.

Packed coordinates: Q_ab, a ≤ b (kren.linalg.triu_pairs(D)), then Q̄ likewise. The action, its
gradient and (zero mean) its exact Hessian are the generated functions of
:mod:`kren.generated.multi_fc`; the fixed-point maps and Q̄ = Q⁻¹ − 𝟙 those of
:mod:`kren.generated.multi` (the n = 1 case).
"""
from __future__ import annotations

import numpy as np

from ..linalg import NotPositiveDefiniteError, triu_pairs
from .problem import Evaluation
from .symmetric_start import SymmetricStart

__all__ = ["MultiEigProblem"]


class MultiEigProblem(SymmetricStart):
    """D×D order parameters of the FC / pooled CNN with D outputs (module docstring).

    ``tensor`` holds one block (blocks (1, P, P), mu (1, P)); ``Y`` the (P, D) targets.
    Eigenvalues below zero (round-off of a PSD kernel) are clipped to 0.
    """

    structure = "scalar"

    def __init__(self, tensor, Y, T, N, lambda1, zero_mean: bool):
        from ..generated import multi, multi_fc
        blocks = np.asarray(tensor.blocks)
        if blocks.ndim != 3 or blocks.shape[0] != 1:
            raise ValueError(f"the FC structure needs a tensor with one block (1, P, P), got "
                             f"blocks of shape {blocks.shape}")
        self.gen, self.fc = multi, multi_fc
        Y = np.asarray(Y, dtype=np.float64)
        self.D = int(Y.shape[1])
        self.n, self.size = 1, self.D
        self.zero_mean, self.minimization = bool(zero_mean), bool(zero_mean)
        self.T, self.N, self.lambda1 = float(T), float(N), float(lambda1)
        self.eps = float(np.finfo(blocks.dtype).eps)
        self.P = blocks.shape[1]
        K = blocks[0].astype(np.float64)
        mu = np.asarray(tensor.mu, dtype=np.float64).reshape(-1)
        Kc = K if zero_mean else K - np.outer(mu, mu)
        k, U = np.linalg.eigh(0.5 * (Kc + Kc.T))
        self.k = np.maximum(k, 0.0)
        self.Yu = U.T @ Y
        self.m = U.T @ mu
        gp = triu_pairs(self.D)
        self.iu = (gp[:, 0].copy(), gp[:, 1].copy())
        self.npk = len(gp)
        self.dim = self.npk if zero_mean else 2 * self.npk
        self._offdiag = self.iu[0] != self.iu[1]
        self.n_eval = 0

    # ------------------------------------------------------------------ coordinates
    def _sym(self, v) -> np.ndarray:
        M = np.zeros((self.D, self.D))
        M[self.iu] = v
        M[self.iu[1], self.iu[0]] = v
        return M

    def pack(self, Q, Qbar=None) -> np.ndarray:
        x = np.asarray(Q, dtype=float)[self.iu]
        return x if self.zero_mean else np.concatenate([x, np.asarray(Qbar, dtype=float)[self.iu]])

    def unpack(self, x):
        x = np.asarray(x, dtype=float)
        return self._sym(x[:self.npk]), (None if self.zero_mean else self._sym(x[self.npk:]))

    def _check_start(self, M, name):
        M = np.asarray(M, dtype=float)
        if M.shape != (self.D, self.D):
            raise ValueError(f"{name} must be {self.D}×{self.D} (D outputs), got shape {M.shape}")
        if not (np.all(np.isfinite(M)) and np.allclose(M, M.T, rtol=1e-12, atol=1e-14)):
            raise ValueError(f"{name} must be a finite symmetric matrix")
        return 0.5 * (M + M.T)

    def packed_gradient(self, G) -> np.ndarray:
        g = np.asarray(G)[self.iu].copy()
        g[self._offdiag] *= 2.0
        return g

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, x) -> Evaluation:
        x = np.asarray(x, dtype=float)
        if not self.feasible(x):
            raise NotPositiveDefiniteError("Q" + ("" if self.zero_mean else " or 1 + Qbar")
                                           + " is not positive definite")
        self.n_eval += 1
        Q, Qb = self.unpack(x)
        args = (self.T, self.N, self.lambda1)
        if self.zero_mean:
            S, gQ, H = self.fc.action_eig_zero_mean(Q, self.k, self.Yu, *args)
            gnorm = float(np.linalg.norm(gQ))
            try:
                image = self.pack(self.gen.fixed_point_zero_mean(Q, gQ))
            except NotPositiveDefiniteError:
                image = None
            scale = np.sqrt(self.D) + np.linalg.norm(np.linalg.inv(Q))
            return Evaluation(x, float(S), self.packed_gradient(gQ), gnorm, gnorm / scale, image,
                              self.pack(Q - Q @ gQ @ Q), extra={"hessian": H})
        S, gQ, gQb = self.fc.action_eig(Q, Qb, self.k, self.Yu, self.m, *args)
        gnorm = float(np.sqrt(np.sum(gQ ** 2) + np.sum(gQb ** 2)))
        try:
            image = self.pack(*self.gen.fixed_point(Q, Qb, gQ, gQb))
        except NotPositiveDefiniteError:
            image = None
        scale = np.sqrt(self.D) + np.linalg.norm(Q) + np.linalg.norm(Qb)
        return Evaluation(x, float(S), np.concatenate([self.packed_gradient(gQ),
                                                       self.packed_gradient(gQb)]),
                          gnorm, gnorm / scale, image, self.pack(Q + gQb, Qb + gQ))

    def hessian(self, ev: Evaluation):
        """The generated exact Hessian (zero mean); None with unit means (the driver then
        takes Hessian-vector products by differences of the gradient)."""
        H = ev.extra.get("hessian")
        return None if H is None else np.asarray(H, dtype=float)

    def hessian_cost(self):
        """Part of every zero-mean evaluation (O(P·D⁴) at most, no memory beyond it); None
        with unit means (no exact Hessian is generated for the eigenbasis there)."""
        if not self.zero_mean:
            return None
        return 4.0 * self.P * self.D ** 2 * self.npk + 2.0 * self.npk ** 2 * self.P * self.D, 0

    def condition(self, ev: Evaluation) -> float:
        """κ of the covariance part of A = T𝟙 + (Q ⊗ K)/λ1 (exact for zero mean)."""
        Q, _ = self.unpack(ev.x)
        q = np.linalg.eigvalsh(Q)
        top = self.T + max(q[-1] * self.k.max(), 0.0) / self.lambda1
        bottom = self.T + max(q[0] * self.k.min(), 0.0) / self.lambda1
        return float(top / bottom)

    def solution(self, ev: Evaluation):
        Q, Qb = self.unpack(ev.x)
        if self.zero_mean:
            Qb = self.gen.eliminated_Qbar(Q)
        return Q, Qb, None, None
