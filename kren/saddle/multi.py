"""D-output saddle points over a stored kernel tensor (THEORY §3c): the LCN (block-diagonal
(nD)×(nD) Q, one D×D block per patch) and the CNN (symmetric (nD)×(nD) Q), also any FC or
pooled-CNN tensor (n = 1, a D×D Q) solved on the (DP)×(DP) matrix A.

Packed coordinates: the entries Q_IJ, I ≤ J, of :func:`kren.multi_linalg.output_pairs` over
the tensor's patch pairs (every I ≤ J for the CNN, the D×D diagonal blocks for the LCN: the
packing respects the symmetry of Q and the LCN's block structure), then Q̄ likewise for units
with a mean. Everything physical is a generated function of :mod:`kren.generated.multi`
(``action_gradient*``, ``fixed_point*``, ``hessian*``, ``eliminated_Qbar``); the LCN's gradient
is the block-diagonal part of the generated (nD)×(nD) gradient (its coordinates are those
entries), and the fixed-point maps are fed that part.

Working precision: a problem whose (DP)×(DP) matrix A is large (DP ≥ FLOAT32_MIN) can be
evaluated in float32 (:meth:`MultiMatrixProblem.working_precision`, the same generated functions
on a float32 copy of the blocks inside :func:`kren.multi_linalg.float32_work`): the Cholesky
factor, inverse and contractions of A then cost about a third of float64's. The driver uses it
for a first Anderson stage only (kren.saddle.float32_stage); every converged result is a float64
evaluation.
"""
from __future__ import annotations

import numpy as np

from ..linalg import NotPositiveDefiniteError, blas_context
from ..multi_linalg import float32_work, output_pairs, stack
from ..scratch import ScratchPool
from .problem import Evaluation
from .symmetric_start import SymmetricStart

__all__ = ["MultiMatrixProblem", "FLOAT32_MIN"]

#: Side DP of A from which the driver runs a float32 Anderson stage first (below it the
#: factorization of A is cheap and float64 throughout costs little).
FLOAT32_MIN = 2000


class MultiMatrixProblem(SymmetricStart):
    """LCN (``block_diagonal=True``) or CNN saddle point with D outputs (module docstring).

    ``tensor``: a :class:`kren.kernels.KernelTensor`; ``Y``: the (P, D) targets. The CNN needs
    every patch pair i ≤ j; the LCN uses the blocks K_ii (a tensor holding more is reduced).
    """

    def __init__(self, tensor, Y, T, N, lambda1, zero_mean: bool, block_diagonal: bool,
                 float32_stage: bool | None = None):
        from ..generated import multi
        n = int(tensor.n)
        blocks, pairs = np.asarray(tensor.blocks), np.asarray(tensor.pairs)
        if block_diagonal:
            d = pairs[:, 0] == pairs[:, 1]
            blocks, pairs = blocks[d], pairs[d]
            order = np.argsort(pairs[:, 0])
            if not np.array_equal(pairs[order, 0], np.arange(n)):
                raise ValueError(f"the block-diagonal (LCN) structure needs the blocks K_ii of all "
                                 f"n = {n} patches, the tensor holds pairs {pairs.tolist()}")
            blocks, pairs = blocks[order], pairs[order]
        else:
            want = {(i, j) for i in range(n) for j in range(i, n)}
            if len(pairs) != len(want) or {tuple(p) for p in pairs.tolist()} != want:
                raise ValueError(f"the matrix (CNN) structure needs every pair i <= j of the "
                                 f"n = {n} patches ({len(want)} blocks), the tensor holds "
                                 f"{len(pairs)}")
        Y = np.asarray(Y, dtype=np.float64)
        self.D = int(Y.shape[1])
        self.structure = "diagonal" if block_diagonal else "matrix"
        self.gen = multi
        self.blocks, self.pairs, self.mu = blocks, pairs, np.asarray(tensor.mu)
        self.y = stack(Y)
        self.n, self.block_diagonal = n, bool(block_diagonal)
        self.size = n * self.D
        self.zero_mean, self.minimization = bool(zero_mean), bool(zero_mean)
        self.T, self.N, self.lambda1 = float(T), float(N), float(lambda1)
        self.eps = float(np.finfo(blocks.dtype).eps)
        gp = output_pairs(pairs, self.D)
        self.iu = (gp[:, 0].copy(), gp[:, 1].copy())
        self.k = len(gp)
        self.dim = self.k if zero_mean else 2 * self.k
        self._offdiag = self.iu[0] != self.iu[1]
        self.n_eval = 0
        DP = self.D * blocks.shape[1]
        #: whether kren.saddle.driver.solve runs a float32 Anderson stage first (None: DP ≥
        #: FLOAT32_MIN for zero-mean units, the case measured, when the float32 copy of the
        #: blocks fits in a quarter of the memory budget)
        if float32_stage is None:
            from ..kernels import get_memory_budget
            copy = 0 if blocks.dtype == np.float32 else blocks.size * 4
            float32_stage = (DP >= FLOAT32_MIN and self.zero_mean
                             and copy <= get_memory_budget() // 4)
        self.float32_stage = bool(float32_stage)
        self.precision = np.float64
        self._blocks32 = None
        #: the evaluations' large temporaries, allocated once (kren.scratch): freed with the
        #: problem, or by release_scratch()
        self._scratch = ScratchPool()

    def release_scratch(self) -> None:
        """Free the buffers the evaluations reuse (kren.scratch); later evaluations make them
        again."""
        self._scratch.clear()

    # ------------------------------------------------------------------ coordinates
    def _sym(self, v) -> np.ndarray:
        M = np.zeros((self.size, self.size))
        M[self.iu] = v
        M[self.iu[1], self.iu[0]] = v
        return M

    def project(self, M) -> np.ndarray:
        """The part of an (nD)×(nD) symmetric matrix on the packed coordinates (the LCN: its
        D×D diagonal blocks; the CNN: the matrix itself)."""
        return self._sym(np.asarray(M)[self.iu]) if self.block_diagonal else np.asarray(M)

    def pack(self, Q, Qbar=None) -> np.ndarray:
        x = np.asarray(Q, dtype=float)[self.iu]
        return x if self.zero_mean else np.concatenate([x, np.asarray(Qbar, dtype=float)[self.iu]])

    def unpack(self, x):
        x = np.asarray(x, dtype=float)
        Q = self._sym(x[:self.k])
        return Q, (None if self.zero_mean else self._sym(x[self.k:]))

    def _check_start(self, M, name):
        M = np.asarray(M, dtype=float)
        if M.shape != (self.size, self.size):
            raise ValueError(f"{name} must be {self.size}×{self.size} (n·D with n = {self.n}, "
                             f"D = {self.D}), got shape {M.shape}")
        if not (np.all(np.isfinite(M)) and np.allclose(M, M.T, rtol=1e-12, atol=1e-14)):
            raise ValueError(f"{name} must be a finite symmetric matrix")
        if self.block_diagonal and np.any(self.project(M) != M):
            raise ValueError(f"{name} must be block-diagonal (one D×D block per patch) for the "
                             "LCN")
        return 0.5 * (M + M.T)

    def _blas(self):
        """One BLAS thread unless A = T𝟙 + K_R is large (the policy of kren.linalg: on two
        shared cores threaded BLAS on small matrices was several times slower)."""
        return blas_context(self.D * self.blocks.shape[1])

    def packed_gradient(self, G) -> np.ndarray:
        """dS = Σ_p g_p dx_p: off-diagonal entries count twice (Q_IJ = Q_JI one coordinate)."""
        g = np.asarray(G)[self.iu].copy()
        g[self._offdiag] *= 2.0
        return g

    # ------------------------------------------------------------------ evaluation
    def working_precision(self, dtype):
        """Context manager: evaluations inside it run A's factorization, inverse and the passes
        over the blocks in ``dtype`` (np.float32 or np.float64; module docstring). Their
        ``Evaluation.extra["precision"]`` records it."""
        import contextlib
        dtype = np.dtype(dtype).type
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"working precision must be float32 or float64, got {dtype}")

        @contextlib.contextmanager
        def ctx():
            old = self.precision
            self.precision = dtype
            try:
                yield self
            finally:
                self.precision = old
        return ctx()

    def evaluate(self, x) -> Evaluation:
        with self._blas(), self._scratch.active():
            if self.precision == np.float32:
                if self._blocks32 is None:
                    self._blocks32 = self.blocks.astype(np.float32, copy=False)
                with float32_work():
                    ev = self._evaluate(x, self._blocks32)
                ev.extra["precision"] = "float32"
                return ev
            return self._evaluate(x)

    def _evaluate(self, x, blocks=None) -> Evaluation:
        x = np.asarray(x, dtype=float)
        if not self.feasible(x):
            raise NotPositiveDefiniteError("Q" + ("" if self.zero_mean else " or 1 + Qbar")
                                           + " is not positive definite")
        self.n_eval += 1
        Q, Qb = self.unpack(x)
        g, b = self.gen, (self.blocks if blocks is None else blocks)
        args = (self.D, self.y, self.T, self.N, self.lambda1)
        if self.zero_mean:
            S, gQ, cho, z = g.action_gradient_zero_mean(Q, b, self.pairs, *args)
            gQ = self.project(gQ)
            gnorm = float(np.linalg.norm(gQ))
            try:
                image = self.pack(g.fixed_point_zero_mean(Q, gQ))
            except NotPositiveDefiniteError:
                image = None
            scale = np.sqrt(self.size) + np.linalg.norm(np.linalg.inv(Q))
            return Evaluation(x, float(S), self.packed_gradient(gQ), gnorm, gnorm / scale, image,
                              self.pack(Q - Q @ gQ @ Q), cho, z)
        S, gQ, gQb, cho, z = g.action_gradient(Q, Qb, b, self.pairs, self.mu, *args)
        gQ, gQb = self.project(gQ), self.project(gQb)
        gnorm = float(np.sqrt(np.sum(gQ ** 2) + np.sum(gQb ** 2)))
        try:
            image = self.pack(*g.fixed_point(Q, Qb, gQ, gQb))
        except NotPositiveDefiniteError:
            image = None
        scale = np.sqrt(self.size) + np.linalg.norm(Q) + np.linalg.norm(Qb)
        return Evaluation(x, float(S), np.concatenate([self.packed_gradient(gQ),
                                                       self.packed_gradient(gQb)]),
                          gnorm, gnorm / scale, image, self.pack(Q + gQb, Qb + gQ), cho, z)

    def hessian(self, ev: Evaluation) -> np.ndarray:
        """The generated ``hessian_zero_mean`` / ``hessian`` in the packed coordinates, from the
        factorization of A that the evaluation kept (small problems: hessian_cost)."""
        Q, Qb = self.unpack(ev.x)
        args = (self.D, self.y, self.T, self.N, self.lambda1, ev.cho, ev.z)
        if self.zero_mean:
            return self.gen.hessian_zero_mean(Q, self.blocks, self.pairs, *args)
        return self.gen.hessian(Q, Qb, self.blocks, self.pairs, self.mu, *args)

    def hessian_cost(self) -> tuple[float, int]:
        """(flops, bytes) of one exact Hessian: the lifted directions (n_dirs of (DP)×(DP)),
        one (DP) × (DP) × n_dirs·(DP) product and their Gram matrix."""
        DP = self.D * self.blocks.shape[1]
        n_dirs = self.k
        flops = 2.0 * n_dirs * DP ** 3 + 2.0 * n_dirs ** 2 * DP ** 2
        if not self.zero_mean:
            flops += 2.0 * n_dirs * DP ** 2 * self.size + 8.0 * n_dirs ** 2 * DP
        return flops, 3 * n_dirs * DP * DP * 8

    def condition(self, ev: Evaluation) -> float:
        """(max L_ii / min L_ii)² of the Cholesky factor of A: a lower bound on κ(A)."""
        if ev.cho is None:
            return float("nan")
        d = np.abs(np.diagonal(ev.cho[0]))
        return float((np.max(d) / np.min(d)) ** 2) if np.min(d) > 0 else float("inf")

    def solution(self, ev: Evaluation):
        Q, Qb = self.unpack(ev.x)
        if self.zero_mean:
            Qb = self.gen.eliminated_Qbar(Q)
        return Q, Qb, ev.cho, ev.z
