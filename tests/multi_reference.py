"""An independent solver of the FC D-output saddle point (THEORY §3c), for the tests and
benchmarks/bench_multi_output.py. Nothing here imports kren.

Zero-mean activations: S(Q) = Tr Q − log det Q + (1/N)[log det A + yᵀA⁻¹y],
A = T𝟙_{DP} + (Q ⊗ K)/λ1 (output-major stacking, index (d, μ)). In the eigenbasis of K alone
(K = U diag(k) Uᵀ, Ỹ = UᵀY of shape (P, D)) A splits into P blocks of size D×D,
A_m = T𝟙_D + k_m Q/λ1, so

    log det A = Σ_m log det A_m,     yᵀA⁻¹y = Σ_m Ỹ_mᵀ A_m⁻¹ Ỹ_m,
    ∂S/∂Q = 𝟙 − Q⁻¹ + (1/(Nλ1)) Σ_m k_m (A_m⁻¹ − A_m⁻¹Ỹ_m Ỹ_mᵀ A_m⁻¹).

(kren diagonalizes Q and K jointly instead; this solver never diagonalizes Q.) S is minimized
over Q = LLᵀ, L lower triangular, by BFGS with that gradient, then polished by Newton steps
on the packed upper triangle with a central-difference Hessian of the analytic gradient.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize


class FCMultiAction:
    """S(Q) and ∂S/∂Q of the module docstring for a kernel K (P×P), targets Y (P×D)."""

    def __init__(self, K, Y, T, N, lambda1=1.0):
        k, U = np.linalg.eigh(np.asarray(K, dtype=float))
        self.k, self.Yt = k, U.T @ np.asarray(Y, dtype=float)
        self.D = self.Yt.shape[1]
        self.T, self.N, self.lambda1 = float(T), float(N), float(lambda1)

    def _blocks(self, Q):
        A = self.T * np.eye(self.D)[None] + self.k[:, None, None] * Q[None] / self.lambda1
        return A

    def value(self, Q):
        A = self._blocks(Q)
        sign, logdet = np.linalg.slogdet(A)
        w = np.linalg.solve(A, self.Yt[:, :, None])[:, :, 0]
        s, ld = np.linalg.slogdet(Q)
        if np.any(sign <= 0) or s <= 0:
            return np.inf
        return np.trace(Q) - ld + (logdet.sum() + np.sum(self.Yt * w)) / self.N

    def gradient(self, Q):
        A = self._blocks(Q)
        Ainv = np.linalg.inv(A)
        w = np.einsum("mde,me->md", Ainv, self.Yt)
        M = Ainv - w[:, :, None] * w[:, None, :]
        G = np.einsum("m,mde->de", self.k, M) / (self.N * self.lambda1)
        G = np.eye(self.D) - np.linalg.inv(Q) + G
        return (G + G.T) / 2


def solve_fc_multi(K, Y, T, N, lambda1=1.0, newton_steps=4):
    """The minimizer Q (D×D) of S (module docstring), and the max |∂S/∂Q| there."""
    act = FCMultiAction(K, Y, T, N, lambda1)
    D = act.D
    tril = np.tril_indices(D)

    def unpack(x):
        L = np.zeros((D, D))
        L[tril] = x
        return L

    def fun(x):
        L = unpack(x)
        Q = L @ L.T
        v = act.value(Q)
        if not np.isfinite(v):
            return np.inf, np.zeros_like(x)
        return v, (2 * act.gradient(Q) @ L)[tril]

    x0 = np.eye(D)[tril]
    res = minimize(fun, x0, jac=True, method="BFGS", options={"gtol": 1e-11, "maxiter": 5000})
    L = unpack(res.x)
    Q = L @ L.T
    # Newton polish on the packed upper triangle (coordinates Q_IJ, I ≤ J, both triangles moved)
    iu = np.triu_indices(D)

    def grad_packed(Q):
        G = act.gradient(Q)
        return np.where(iu[0] == iu[1], 1.0, 2.0) * G[iu]

    def sym(x):
        M = np.zeros((D, D))
        M[iu] = x
        return M + np.triu(M, 1).T

    for _ in range(newton_steps):
        g = grad_packed(Q)
        h = 1e-6
        H = np.empty((g.size, g.size))
        for c in range(g.size):
            e = np.zeros(g.size)
            e[c] = h
            H[:, c] = (grad_packed(Q + sym(e)) - grad_packed(Q - sym(e))) / (2 * h)
        H = (H + H.T) / 2
        Q = Q - sym(np.linalg.solve(H, g))
    return Q, float(np.max(np.abs(act.gradient(Q))))
