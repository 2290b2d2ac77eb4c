"""The LCN (diagonal Q, Q̄) and CNN (symmetric n×n Q, Q̄) saddle points (THEORY §3).

Packed coordinates: the CNN's entries Q_ij, i ≤ j, in the order of the tensor's pairs (the order
of the generated Hessian), then Q̄ likewise for units with a mean; the LCN's diagonals q (then
q̄). Everything physical is a generated function of :mod:`kren.generated.cnn` / ``.lcn``:
``action_gradient*`` (one Cholesky of A, two passes over the kernel tensor), ``fixed_point*``,
``hessian_zero_mean`` and ``hessian``, ``eliminated_Qbar``.
"""
from __future__ import annotations

import numpy as np

from ..linalg import NotPositiveDefiniteError
from .problem import Evaluation

__all__ = ["MatrixProblem"]


def _is_pd(M: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(M)
        return True
    except np.linalg.LinAlgError:
        return False


class MatrixProblem:
    """LCN (``diagonal=True``) or CNN saddle point over a stored kernel tensor.

    ``tensor``: a :class:`kren.kernels.KernelTensor`. The CNN needs every pair i ≤ j; the LCN
    uses the diagonal blocks K_ii (a tensor holding more pairs is reduced to them).
    """

    def __init__(self, tensor, y, T, N, lambda1, zero_mean: bool, diagonal: bool):
        from ..generated import cnn, lcn
        from ..tensors.source import is_source
        n = int(tensor.n)
        blocks, pairs = tensor.blocks, np.asarray(tensor.pairs)
        lazy = is_source(blocks)           # packed, streamed or device tensor: never an array
        if not lazy:
            blocks = np.asarray(blocks)
        self.structure = "diagonal" if diagonal else "matrix"
        if diagonal:
            d = pairs[:, 0] == pairs[:, 1]
            if not d.all():
                if lazy:
                    raise ValueError("the diagonal (LCN) structure needs a tensor of the blocks "
                                     "K_ii only; this packed/streamed tensor holds others")
                blocks, pairs = blocks[d], pairs[d]
            order = np.argsort(pairs[:, 0])
            if not np.array_equal(pairs[order, 0], np.arange(n)):
                raise ValueError(f"the diagonal (LCN) structure needs the blocks K_ii of all "
                                 f"n = {n} patches, the tensor holds pairs {pairs.tolist()}")
            if not np.array_equal(order, np.arange(n)):
                if lazy:
                    raise ValueError("the blocks K_ii of a packed/streamed tensor must be in "
                                     "patch order")
                blocks, pairs = blocks[order], pairs[order]
            self.iu = (np.arange(n), np.arange(n))
        else:
            want = {(i, j) for i in range(n) for j in range(i, n)}
            if len(pairs) != len(want) or {tuple(p) for p in pairs.tolist()} != want:
                raise ValueError(f"the matrix (CNN) structure needs every pair i <= j of the "
                                 f"n = {n} patches ({len(want)} blocks), the tensor holds "
                                 f"{len(pairs)}")
            self.iu = (pairs[:, 0].copy(), pairs[:, 1].copy())
        self.gen = lcn if diagonal else cnn
        self.blocks, self.pairs, self.mu = blocks, pairs, np.asarray(tensor.mu)
        self.y = np.asarray(y, dtype=np.float64)
        self.n, self.diagonal = n, bool(diagonal)
        self.zero_mean, self.minimization = bool(zero_mean), bool(zero_mean)
        self.T, self.N, self.lambda1 = float(T), float(N), float(lambda1)
        # every accumulation, factorization and the gradient are float64 (kren.linalg,
        # kren.tensors.mixed): the round-off floor of the solve is float64's whatever the
        # storage; storage_eps is the precision of the stored kernels themselves
        self.eps = float(np.finfo(np.float64).eps)
        self.storage_eps = float(np.finfo(blocks.dtype).eps)
        self.k = len(self.iu[0])
        self.dim = self.k if zero_mean else 2 * self.k
        self._offdiag = self.iu[0] != self.iu[1]
        self.n_eval = 0

    # ------------------------------------------------------------------ coordinates
    def _sym(self, v) -> np.ndarray:
        M = np.zeros((self.n, self.n))
        M[self.iu] = v
        M[self.iu[1], self.iu[0]] = v
        return M

    def pack(self, Q, Qbar=None) -> np.ndarray:
        """Packed coordinates of n×n matrices Q, Q̄ (or, for the LCN, their diagonals)."""
        def part(M):
            M = np.asarray(M, dtype=float)
            return M.copy() if (self.diagonal and M.ndim == 1) else M[self.iu]
        x = part(Q)
        return x if self.zero_mean else np.concatenate([x, part(Qbar)])

    def unpack(self, x):
        """(Q, Q̄) as the generated functions take them: vectors (LCN) or symmetric matrices."""
        x = np.asarray(x, dtype=float)
        a, b = x[:self.k], (None if self.zero_mean else x[self.k:])
        if self.diagonal:
            return a.copy(), (None if b is None else b.copy())
        return self._sym(a), (None if b is None else self._sym(b))

    def _matrix(self, v):
        return np.diag(v) if self.diagonal else v

    def start(self, Q0=None, Qbar0=None) -> np.ndarray:
        n = self.n
        Q = np.eye(n) if Q0 is None else np.asarray(Q0, dtype=float)
        if Q.shape != (n, n):
            raise ValueError(f"Q0 must be {n}×{n}, got shape {Q.shape}")
        if not (np.all(np.isfinite(Q)) and np.allclose(Q, Q.T, rtol=1e-12, atol=1e-14)):
            raise ValueError("Q0 must be a finite symmetric matrix")
        if self.diagonal and np.any(Q != np.diag(np.diag(Q))):
            raise ValueError("Q0 must be diagonal for the LCN")
        if not _is_pd(Q):
            raise ValueError("Q0 must be positive definite")
        if self.zero_mean:
            return self.pack(0.5 * (Q + Q.T))
        if Qbar0 is None:
            Qb = np.zeros((n, n)) if Q0 is None else self._matrix(self.gen.eliminated_Qbar(
                np.diag(Q).copy() if self.diagonal else Q))
        else:
            Qb = np.asarray(Qbar0, dtype=float)
        if Qb.shape != (n, n) or not np.all(np.isfinite(Qb)):
            raise ValueError(f"Qbar0 must be a finite {n}×{n} matrix, got shape {Qb.shape}")
        if self.diagonal and np.any(Qb != np.diag(np.diag(Qb))):
            raise ValueError("Qbar0 must be diagonal for the LCN")
        if not _is_pd(np.eye(n) + 0.5 * (Qb + Qb.T)):
            raise ValueError("1 + Qbar0 must be positive definite")
        return self.pack(0.5 * (Q + Q.T), 0.5 * (Qb + Qb.T))

    def feasible(self, x) -> bool:
        x = np.asarray(x, dtype=float)
        if not np.all(np.isfinite(x)):
            return False
        Q, Qb = self.unpack(x)
        if self.diagonal:
            return bool(np.all(Q > 0) and (Qb is None or np.all(Qb > -1)))
        return _is_pd(Q) and (Qb is None or _is_pd(np.eye(self.n) + Qb))

    def packed_gradient(self, G) -> np.ndarray:
        """Gradient in packed coordinates: dS = Σ_p g_p dx_p (off-diagonal entries count twice,
        Q_ij = Q_ji being one coordinate)."""
        if self.diagonal:
            return np.asarray(G, dtype=float).copy()
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
        g, b = self.gen, self.blocks
        args = (self.y, self.T, self.N, self.lambda1)
        if self.zero_mean:
            S, gQ, cho, z = g.action_gradient_zero_mean(Q, b, self.pairs, *args)
            gnorm = float(np.linalg.norm(gQ))
            Qinv = 1.0 / Q if self.diagonal else np.linalg.inv(Q)   # n×n: the scale only
            try:
                image = self.pack(g.fixed_point_zero_mean(Q, gQ))
            except NotPositiveDefiniteError:
                image = None                  # 𝟙 + G/(Nλ1n) not PD: the map has no image
            fallback = Q - Q * gQ * Q if self.diagonal else Q - Q @ gQ @ Q
            return Evaluation(x, float(S), self.packed_gradient(gQ), gnorm,
                              gnorm / (np.sqrt(self.n) + np.linalg.norm(Qinv)), image,
                              self.pack(fallback), cho, z)
        S, gQ, gQb, cho, z = g.action_gradient(Q, Qb, b, self.pairs, self.mu, *args)
        gnorm = float(np.sqrt(np.sum(gQ ** 2) + np.sum(gQb ** 2)))
        try:
            image = self.pack(*g.fixed_point(Q, Qb, gQ, gQb))
        except NotPositiveDefiniteError:
            image = None                      # 𝟙 + Qbar_new not PD: no image
        scale = np.sqrt(self.n) + np.linalg.norm(Q) + np.linalg.norm(Qb)
        return Evaluation(x, float(S), np.concatenate([self.packed_gradient(gQ),
                                                       self.packed_gradient(gQb)]),
                          gnorm, gnorm / scale, image, self.pack(Q + gQb, Qb + gQ), cho, z)

    def hessian(self, ev: Evaluation) -> np.ndarray:
        """Exact Hessian in packed coordinates: the generated ``hessian_zero_mean`` (Q only) or
        ``hessian`` ((Q, Q̄), indefinite at the saddle point), from the factorization of A that
        the evaluation kept."""
        Q, Qb = self.unpack(ev.x)
        args = (self.y, self.T, self.N, self.lambda1, ev.cho, ev.z)
        if self.zero_mean:
            return self.gen.hessian_zero_mean(Q, self.blocks, self.pairs, *args)
        return self.gen.hessian(Q, Qb, self.blocks, self.pairs, self.mu, *args)

    def hessian_cost(self) -> tuple[float, int]:
        """(flops, bytes) of one exact Hessian in the symmetric form of
        :func:`kren.linalg.sym_hessian_terms`: two triangular solves per block (2 n_p P³) and
        the packed Gram product (n_p² P²/2); with unit means also n_p products of P × P by
        P × n blocks. Memory: the packed L⁻¹K̃_pL⁻ᵀ (n_p P²/2 values) and a few P×P arrays."""
        n_p, P = self.blocks.shape[0], self.blocks.shape[1]
        flops = 2.0 * n_p * P ** 3 + 0.5 * n_p ** 2 * P ** 2
        if not self.zero_mean:
            flops += 2.0 * n_p * P ** 2 * self.n + 8.0 * n_p ** 2 * P
        return flops, (n_p * P * (P + 1) // 2 + 4 * P * P) * 8

    def condition(self, ev: Evaluation) -> float:
        """(max L_ii / min L_ii)² of the Cholesky factor L of A: a lower bound on κ(A)."""
        if ev.cho is None:
            return float("nan")
        from ..linalg import cho_diagonal
        d = np.abs(cho_diagonal(ev.cho))
        return float((np.max(d) / np.min(d)) ** 2) if np.min(d) > 0 else float("inf")

    def solution(self, ev: Evaluation):
        from ..linalg import cho_to_numpy
        Q, Qb = self.unpack(ev.x)
        if self.zero_mean:
            Qb = self.gen.eliminated_Qbar(Q)
        cho = None if ev.cho is None else cho_to_numpy(ev.cho)
        return self._matrix(Q), self._matrix(Qb), cho, None if ev.z is None else np.asarray(ev.z)
