"""The D-output renormalized kernel (THEORY §3c, §4) as an object, and GP regression with it.

    (K_R)_de(x, x') = (1/(λ1 n)) Σ_ij [ Q_(i,d),(j,e) (K_ij(x, x') − μ_i(x) μ_j(x'))
                                        + ((𝟙 + Q̄)⁻¹)_(i,d),(j,e) μ_i(x) μ_j(x') ]

with (nD)×(nD) order parameters indexed (i, d) → i·D + d (FC and pooled CNN: D×D, n = 1;
LCN: block-diagonal). Between two input sets it is a (D·P1)×(D·P2) matrix whose rows and
columns are stacked output-major, (d, a) → d·P1 + a (THEORY §1). At Q = 𝟙, Q̄ = 0 it is
𝟙_D ⊗ K_NNGP: D independent GPs (THEORY §5.7).

    K_R = MultiRenormalizedKernel(arch, Q, Qbar, outputs=D)
    K_R(X1, X2)       # (D·P1, D·P2)
    K_R.diag(X)       # (P, D, D): the D×D block K_R(x, x) of every input

The numbers come from :mod:`kren.generated.multi`; this module prepares inputs once and cuts X1
into chunks (the machinery of :class:`kren.renormalized.RenormalizedKernel`, which it extends).
:func:`multi_posterior_moments` is the D-output GP regression (THEORY §4), reusing the Cholesky
factor of A = T𝟙 + K_R made by the fit.
"""
from __future__ import annotations

import numpy as np

from .cache import KernelCache, cached
from .kernels import get_memory_budget
from .linalg import single_blas_thread
from .renormalized import CHUNK_BYTES, RenormalizedKernel
from .validation import InvalidParameterError

__all__ = ["MultiRenormalizedKernel", "multi_posterior_moments", "check_multi_order_parameters",
           "multi_identity"]


def multi_identity(arch, D: int):
    """(Q, Q̄) = (𝟙, 0) of the infinite-width limit with D outputs (THEORY §5.2, §5.7):
    (nD)×(nD) (FC and pooled CNN: D×D)."""
    size = (1 if arch.structure == "scalar" else arch.n) * int(D)
    return np.eye(size), np.zeros((size, size))


def check_multi_order_parameters(arch, Q, Qbar, D):
    """(Q, Q̄ or None) as float arrays after checking shape (nD)×(nD) (FC, pooled: D×D),
    symmetry, finiteness and, for the LCN, the block-diagonal structure; Q̄ is required for
    activations with a non-zero mean and returned as None for zero-mean ones."""
    from .architecture import Architecture
    if not isinstance(arch, Architecture):
        raise InvalidParameterError(f"arch must be a kren.Architecture, got {type(arch).__name__}")
    if isinstance(D, (bool, np.bool_)) or not isinstance(D, (int, np.integer)) or D < 1:
        raise InvalidParameterError(f"outputs must be a positive integer, got {D!r}")
    if Qbar is None and not arch.zero_mean:
        raise InvalidParameterError(
            f"Qbar is required for the {arch.activation} activation (non-zero unit mean, "
            "THEORY §3c)")
    n = 1 if arch.structure == "scalar" else arch.n
    size = n * int(D)
    out = []
    for name, M in (("Q", Q), ("Qbar", Qbar if Qbar is not None else np.zeros((size, size)))):
        try:
            M = np.asarray(M, dtype=float)
        except (TypeError, ValueError):
            raise InvalidParameterError(f"{name} must be numeric, got {M!r}") from None
        if M.ndim == 4:
            M = M.reshape(M.shape[0] * M.shape[1], M.shape[2] * M.shape[3])
        if M.shape != (size, size):
            raise InvalidParameterError(f"{name} must be {size}×{size} (n·D with n = {n}, "
                                        f"D = {D}) for this {arch.kind.upper()}, got shape "
                                        f"{M.shape}")
        if not np.all(np.isfinite(M)):
            raise InvalidParameterError(f"{name} contains NaN or inf")
        if not np.allclose(M, M.T, rtol=1e-12, atol=1e-14):
            raise InvalidParameterError(f"{name} must be symmetric")
        if arch.structure == "diagonal":
            blockmask = np.kron(np.eye(n), np.ones((D, D))) > 0
            if np.any(M[~blockmask] != 0):
                raise InvalidParameterError(f"{name} must be block-diagonal (one D×D block per "
                                            "patch) for the LCN")
        out.append(M)
    return out[0], (None if arch.zero_mean else out[1])


class MultiRenormalizedKernel(RenormalizedKernel):
    """K_R(x, x') with D outputs for an architecture and (nD)×(nD) order parameters (module
    docstring). ``Q``, ``Qbar``: (nD, nD) or (n, D, n, D) arrays (FC, pooled CNN: (D, D));
    ``Qbar`` may be None for zero-mean activations. Other arguments as
    :class:`kren.renormalized.RenormalizedKernel`."""

    def __init__(self, arch, Q, Qbar=None, outputs=1, *, dtype="float64", memory_budget=None,
                 cache=None):
        super().__init__(arch, Q, Qbar, dtype=dtype, memory_budget=memory_budget, cache=cache)
        self.outputs = outputs

    def _resolved(self, X=None):
        arch = self.arch
        if X is not None and arch.geometry is None:
            arch = arch.with_input(X)
        hit = self.__dict__.get("_state")
        if hit is not None and hit[0] is arch and hit[1] is self.Q and hit[2] is self.Qbar:
            return hit[3]
        state = (arch, *check_multi_order_parameters(arch, self.Q, self.Qbar, self.outputs))
        self.__dict__["_state"] = (arch, self.Q, self.Qbar, state)
        return state

    def _gen(self, arch):
        from .generated import multi
        if arch.spec.cross == "diagonal":
            return multi.renormalized_cross_kernel_diagonal, multi.renormalized_test_diagonal_diagonal
        return multi.renormalized_cross_kernel, multi.renormalized_test_diagonal

    def chunk_rows(self, arch, P2: int) -> int:
        """Rows of X1 per chunk: the test×train blocks and the chunk's (D·rows)×(D·P2) kernel
        stay within min(budget/4, CHUNK_BYTES)."""
        budget = get_memory_budget() if self.memory_budget is None else int(self.memory_budget)
        D = int(self.outputs)
        per_row = max(1, arch.cross_blocks * int(P2) * self._dtype.itemsize + D * D * int(P2) * 8)
        return int(max(1, min(budget // 4, CHUNK_BYTES) // per_row))

    def chunks(self, X1, X2, diag: bool = False):
        """Yield (rows, K_R(X1[rows], X2) (D·r, D·P2), the (r, D, D) blocks K_R(x, x) or None)."""
        p1 = self._prepare(X1, "X1")
        arch, Qa, Qba = self._resolved(p1)
        p2 = arch.prepare(X2, "X2")
        cross, tdiag = self._gen(arch)
        dtype, lam, D = self._dtype, arch.lambda1, int(self.outputs)
        mu2 = arch.generated_means(p2)
        for rows, part in p1.chunks(self.chunk_rows(arch, p2.P)):
            Kx = cached(self.cache,
                        lambda: KernelCache.key("cross", arch, dtype, part, p2),
                        lambda: arch.cross_tensor(part, p2, dtype=dtype,
                                                  memory_budget=self.memory_budget))
            mu1 = arch.generated_means(part)
            with single_blas_thread():
                kR = np.asarray(cross(Qa, Qba, Kx, mu1, mu2, D, lam), dtype=np.float64)
                del Kx
                kR00 = None
                if diag:
                    Kd = arch.test_diagonal_tensor(part, dtype=dtype)
                    kR00 = np.asarray(tdiag(Qa, Qba, Kd, mu1, D, lam), dtype=np.float64)
            yield rows, kR, kR00

    def __call__(self, X, Y=None, eval_gradient=False):
        """K_R(X, Y), shape (D·P1, D·P2), rows and columns (d, a) → d·P + a; Y = None:
        K_R(X, X), symmetrized. No hyperparameters: ``eval_gradient`` gives an empty gradient."""
        if eval_gradient and Y is not None:
            raise ValueError("Gradient can only be evaluated when Y is None.")
        p1 = self._prepare(X, "X")
        p2 = p1 if Y is None else p1.arch.prepare(Y, "Y")
        D = int(self.outputs)
        K = np.empty((D, p1.P, D * p2.P))
        for rows, kR, _ in self.chunks(p1, p2):
            K[:, rows] = kR.reshape(D, -1, D * p2.P)
        K = K.reshape(D * p1.P, D * p2.P)
        if Y is None:
            K = 0.5 * (K + K.T)
        return (K, np.empty((K.shape[0], K.shape[0], 0))) if eval_gradient else K

    def diag(self, X) -> np.ndarray:
        """The D×D blocks K_R(x, x) for every input, shape (P, D, D)."""
        p = self._prepare(X, "X")
        arch, Qa, Qba = self._resolved(p)
        _, tdiag = self._gen(arch)
        D = int(self.outputs)
        out = np.empty((p.P, D, D))
        for rows, part in p.chunks(max(1, self.chunk_rows(arch, 1) // 4)):
            Kd = arch.test_diagonal_tensor(part, dtype=self._dtype)
            out[rows] = tdiag(Qa, Qba, Kd, arch.generated_means(part), D, arch.lambda1)
        return out

    def on_tensor(self, tensor) -> np.ndarray:
        """K_R over a stored train×train tensor, (DP, DP) rows (d, μ) (generated
        ``multi.renormalized_kernel``, THEORY §3c)."""
        from .generated import multi
        arch, Qa, Qba = self._resolved()
        K = multi.renormalized_kernel(Qa, Qba, tensor.blocks, tensor.pairs, tensor.mu,
                                      int(self.outputs), arch.lambda1)
        return np.asarray(K, dtype=np.float64)

    def __repr__(self) -> str:
        arch = self.arch
        return (f"MultiRenormalizedKernel({arch.kind}, {arch.activation}, D={self.outputs}, "
                f"Q=array{np.shape(self.Q)}, λ1={arch.lambda1:g})")


def multi_posterior_moments(kernel: MultiRenormalizedKernel, X, X_train, cho, z):
    """D-output GP regression with K_R (THEORY §4): the (P0, D) means ⟨f_d(x0)⟩ = (k_R A⁻¹y)
    and the (P0, D, D) covariances K_R(x0, x0) − k_R A⁻¹ k_Rᵀ of every test input, from the
    Cholesky factor ``cho`` of A and z = A⁻¹y (stacked (d, μ)) of the fit; the generated
    ``multi.predictor_moments`` per chunk."""
    from .generated import multi
    p = kernel._prepare(X, "X")
    D = int(kernel.outputs)
    mean = np.empty((p.P, D))
    cov = np.empty((p.P, D, D))
    for rows, kR, kR00 in kernel.chunks(p, X_train, diag=True):
        with single_blas_thread():
            mean[rows], cov[rows] = multi.predictor_moments(kR, kR00, cho, z, D)
    return mean, cov
