"""The renormalized kernel K_R as an object, called like scikit-learn's Gaussian-process kernels.

    K_R(x, x') = (1/(λ1 n)) Σ_ij [ Q_ij (K_ij(x, x') − μ_i(x) μ_j(x')) + ((𝟙 + Q̄)⁻¹)_ij μ_i(x) μ_j(x') ]

(THEORY §3 over the training set, §4 between any inputs; LCN: diagonal Q, Q̄; FC: n = 1, scalars;
zero-mean activations: K_R = (1/(λ1 n)) Σ_ij Q_ij K_ij). At Q = 𝟙, Q̄ = 0 it is the NNGP kernel
of THEORY §2 (the infinite-width limit, §5.2).

    K_R = RenormalizedKernel(arch, Q, Qbar)
    K_R(X1)            # (P1, P1), symmetric
    K_R(X1, X2)        # (P1, P2)
    K_R.diag(X)        # (P,) = K_R(x, x)

The numbers come from the generated ``renormalized_cross_kernel``, ``renormalized_test_diagonal``
and ``renormalized_kernel`` of the architecture's module in :mod:`kren.generated` (the physics is
printed from :mod:`derivations`); this module only prepares inputs once, cuts X1 into chunks
whose test×train blocks fit the memory budget, and asks the architecture for the blocks in the
shapes those functions take. It is a :class:`sklearn.gaussian_process.kernels.Kernel` without
hyperparameters, so it also plugs into ``GaussianProcessRegressor(kernel=K_R, alpha=T,
optimizer=None)``.

:func:`posterior_moments` is GP regression with it (THEORY §4), reusing the Cholesky factor of
A = T𝟙 + K_R made by the fit; :func:`posterior_moments_eig` the same in the eigenbasis of the
training kernel of a scalar fit (FC, pooled CNN), where K_R = Q K/λ1 (plus the mean term) is the
same kernel rescaled at every N, T and λ1.
"""
from __future__ import annotations

import numpy as np
from sklearn.gaussian_process.kernels import Kernel

from .cache import KernelCache, cached
from .kernels import get_memory_budget
from .linalg import single_blas_thread
from .validation import InvalidParameterError, check_dtype
from .guard import guarded

__all__ = ["RenormalizedKernel", "posterior_moments", "posterior_moments_eig", "CHUNK_BYTES"]

#: Upper bound on the test×train blocks of one chunk of X1 (bytes). At most 32 MiB, glibc's
#: largest mmap threshold, so a chunk reuses the memory freed by the previous one instead of
#: faulting in fresh pages; 16–512 MiB were within the noise of a loaded two-core machine
#: (benchmarks/bench_predict.py --chunk-sweep), 4–8 MiB were slower (per-chunk overhead).
CHUNK_BYTES = 32 * 2**20


def assemble(kernel, X, Y=None, eval_gradient=False):
    """K_R(X, Y), shape (P1, P2), from ``kernel.chunks`` (rows of X at a time, within the
    memory budget); Y = None: K_R(X, X), symmetrized. K_R has no hyperparameters, so with
    ``eval_gradient`` (scikit-learn's kernel protocol) the gradient is an empty (P1, P1, 0)
    array. Shared by the renormalized-kernel classes (one and deep FC layers)."""
    if eval_gradient and Y is not None:
        raise ValueError("Gradient can only be evaluated when Y is None.")
    p1 = kernel._prepare(X, "X")
    p2 = p1 if Y is None else p1.arch.prepare(Y, "Y")
    K = np.empty((p1.P, p2.P))
    for rows, kR, _ in kernel.chunks(p1, p2):
        K[rows] = kR
    if Y is None:
        K = 0.5 * (K + K.T)
    return (K, np.empty((p1.P, p1.P, 0))) if eval_gradient else K


class RenormalizedKernel(Kernel):
    """K_R(x, x') for an architecture and order parameters Q, Q̄ (module docstring).

    ``arch``: a :class:`kren.Architecture`. ``Q``: a number (FC), an n×n diagonal matrix or
    its diagonal (LCN), a symmetric n×n matrix (CNN). ``Qbar``: the same shape; may be None for
    zero-mean activations (erf, linear), where it does not enter K_R. ``dtype`` of the kernel
    blocks (float64 or float32; results are float64), ``memory_budget`` in bytes (default: the
    package budget), ``cache`` an optional :class:`kren.cache.KernelCache` for the test×train
    blocks. Inputs X may be raw arrays or :class:`kren.prepared.Prepared`.
    """

    def __init__(self, arch, Q, Qbar=None, *, dtype="float64", memory_budget=None, cache=None):
        # scikit-learn's clone needs the constructor arguments stored unchanged
        self.arch = arch
        self.Q = Q
        self.Qbar = Qbar
        self.dtype = dtype
        self.memory_budget = memory_budget
        self.cache = cache

    # ------------------------------------------------------------------ resolved state
    def _resolved(self, X=None):
        """(arch with its input shape, generated Q, generated Q̄), validated once per
        (arch, Q, Q̄) objects."""
        arch = self.arch
        if X is not None and arch.geometry is None:
            arch = arch.with_input(X)
        hit = self.__dict__.get("_state")
        if hit is not None and hit[0] is arch and hit[1] is self.Q and hit[2] is self.Qbar:
            return hit[3]
        state = (arch, *_check_order_parameters(arch, self.Q, self.Qbar))
        self.__dict__["_state"] = (arch, self.Q, self.Qbar, state)
        return state

    @property
    def _dtype(self) -> np.dtype:
        return check_dtype(self.dtype)

    def _prepare(self, X, name):
        arch, _, _ = self._resolved(X)
        return arch.prepare(X, name)

    def chunk_rows(self, arch, P2: int) -> int:
        """Rows of X1 per chunk: the test×train blocks of one chunk (``arch.cross_blocks`` blocks
        of P2 values per row) stay within min(budget/4, :data:`CHUNK_BYTES`)."""
        budget = get_memory_budget() if self.memory_budget is None else int(self.memory_budget)
        per_row = max(1, arch.cross_blocks * int(P2) * self._dtype.itemsize)
        return int(max(1, min(budget // 4, CHUNK_BYTES) // per_row))

    # ------------------------------------------------------------------ evaluation
    def chunks(self, X1, X2, diag: bool = False):
        """Yield (rows, K_R(X1[rows], X2), K_R(x, x) for x in X1[rows] or None), X1 in chunks.

        X1, X2 are prepared once (here, if raw); each chunk builds its test×train blocks with
        ``arch.cross_tensor`` (from the cache when one is given) and evaluates the generated
        ``renormalized_cross_kernel`` (and ``renormalized_test_diagonal`` with ``diag``).
        """
        p1 = self._prepare(X1, "X1")
        arch, Qa, Qba = self._resolved(p1)
        p2 = arch.prepare(X2, "X2")
        gen, dtype, lam = arch.generated, self._dtype, arch.lambda1
        mu2 = arch.generated_means(p2)
        for rows, part in p1.chunks(self.chunk_rows(arch, p2.P)):
            Kx = cached(self.cache,
                        lambda: KernelCache.key("cross", arch, dtype, part, p2),
                        lambda: arch.cross_tensor(part, p2, dtype=dtype,
                                                  memory_budget=self.memory_budget))
            mu1 = arch.generated_means(part)
            # one pass over the blocks (memory bound): a threaded BLAS only adds contention
            with single_blas_thread():
                kR = np.asarray(gen.renormalized_cross_kernel(Qa, Qba, Kx, mu1, mu2, lam),
                                dtype=np.float64)
                del Kx
                kR00 = None
                if diag:
                    Kd = arch.test_diagonal_tensor(part, dtype=dtype)
                    kR00 = np.asarray(gen.renormalized_test_diagonal(Qa, Qba, Kd, mu1, lam),
                                      dtype=np.float64)
            yield rows, kR, kR00

    @guarded("RenormalizedKernel.__call__")
    def __call__(self, X, Y=None, eval_gradient=False):
        """K_R(X, Y), shape (P1, P2); Y = None: K_R(X, X), symmetrized.

        ``eval_gradient`` (scikit-learn's kernel protocol): K_R has no hyperparameters, so the
        gradient is an empty (P1, P1, 0) array.
        """
        return assemble(self, X, Y, eval_gradient)

    @guarded("RenormalizedKernel.diag")
    def diag(self, X) -> np.ndarray:
        """K_R(x, x) for every input, shape (P,) (generated ``renormalized_test_diagonal``)."""
        p = self._prepare(X, "X")
        arch, Qa, Qba = self._resolved(p)
        out = np.empty(p.P)
        # the test diagonal needs n² values per input, not n²·P2: large chunks are fine
        for rows, part in p.chunks(max(1, self.chunk_rows(arch, 1) // 4)):
            Kd = arch.test_diagonal_tensor(part, dtype=self._dtype)
            out[rows] = arch.generated.renormalized_test_diagonal(
                Qa, Qba, Kd, arch.generated_means(part), arch.lambda1)
        return out

    @guarded("RenormalizedKernel.on_tensor")
    def on_tensor(self, tensor) -> np.ndarray:
        """K_R over a stored train×train tensor (:class:`kren.kernels.KernelTensor`), (P, P):
        the generated ``renormalized_kernel`` (THEORY §3)."""
        arch, Qa, Qba = self._resolved()
        K = arch.generated.renormalized_kernel(Qa, Qba, tensor.blocks, tensor.pairs, tensor.mu,
                                               arch.lambda1)
        return np.asarray(K, dtype=np.float64)

    # ------------------------------------------------------------------ scikit-learn protocol
    def is_stationary(self) -> bool:
        return False

    @property
    def requires_vector_input(self) -> bool:
        return True

    def __repr__(self) -> str:
        arch = self.arch
        Q = np.asarray(self.Q)
        q = f"{float(Q):.6g}" if Q.ndim == 0 else f"array{Q.shape}"
        return (f"RenormalizedKernel({arch.kind}, {arch.activation}, Q={q}, "
                f"λ1={arch.lambda1:g})")


def _check_order_parameters(arch, Q, Qbar):
    """(Q, Q̄) in the form the generated functions take (``arch.generated_order_parameters``),
    after checking shapes and finiteness; Q̄ is required for activations with a non-zero mean."""
    from .architecture import Architecture
    if not isinstance(arch, Architecture):
        raise InvalidParameterError(f"arch must be a kren.Architecture, got {type(arch).__name__}")
    if Qbar is None and not arch.zero_mean:
        raise InvalidParameterError(
            f"Qbar is required for the {arch.activation} activation (non-zero unit mean, "
            "THEORY §3)")
    n = 1 if arch.structure == "scalar" else arch.n
    out = []
    for name, M in (("Q", Q), ("Qbar", Qbar if Qbar is not None else np.zeros((n, n)))):
        try:
            M = np.asarray(M, dtype=float)
        except (TypeError, ValueError):
            raise InvalidParameterError(f"{name} must be numeric, got {M!r}") from None
        if arch.structure == "scalar":
            if M.size != 1:
                raise InvalidParameterError(f"{name} must be a number for the {arch.kind.upper()} "
                                            f"(scalar order parameter), got shape {M.shape}")
            M = M.reshape(1, 1)
        elif arch.structure == "diagonal" and M.shape == (n,):
            M = np.diag(M)
        if M.shape != (n, n):
            raise InvalidParameterError(f"{name} must be {n}×{n} for this "
                                        f"{arch.kind.upper()}, got shape {M.shape}")
        if not np.all(np.isfinite(M)):
            raise InvalidParameterError(f"{name} contains NaN or inf")
        if not np.allclose(M, M.T, rtol=1e-12, atol=1e-14):
            raise InvalidParameterError(f"{name} must be symmetric")
        if arch.structure == "diagonal" and np.any(M != np.diag(np.diag(M))):
            raise InvalidParameterError(f"{name} must be diagonal for the LCN")
        out.append(M)
    return arch.generated_order_parameters(*out)


@guarded("posterior_moments")
def posterior_moments(kernel: RenormalizedKernel, X, X_train, cho, z):
    """GP regression with K_R (THEORY §4): mean ⟨f0⟩ = k_Rᵀ A⁻¹y and
    σ0² = K_R(x0, x0) − k_Rᵀ A⁻¹ k_R, from the Cholesky factor ``cho`` of A = T𝟙 + K_R and
    z = A⁻¹y of the fit (never refactorized); the generated ``predictor_moments`` per chunk.
    Returns (mean, var), each (P0,)."""
    from .generated import predictor
    p = kernel._prepare(X, "X")
    mean = np.empty(p.P)
    var = np.empty(p.P)
    for rows, kR, kR00 in kernel.chunks(p, X_train, diag=True):
        with single_blas_thread():          # one triangular solve per chunk (see chunks)
            mean[rows], var[rows] = predictor.predictor_moments(kR, kR00, cho, z)
    return mean, var


@guarded("posterior_moments_eig")
def posterior_moments_eig(kernel: RenormalizedKernel, X, X_train, eig, yt, m, T, basis_key=()):
    """GP regression with K_R (THEORY §4) for a scalar order parameter (FC, pooled CNN) in the
    eigenbasis ``eig`` = (k, U, ...) of the training kernel (K − μμᵀ = U diag(k) Uᵀ; zero mean
    K = U diag(k) Uᵀ, :func:`kren.saddle.scalar.eigenbasis`), ỹ = Uᵀy, m = Uᵀμ (None for zero
    mean): the generated ``predictor_eig_zero_mean`` / ``predictor_eig`` of the architecture's
    module (Sherman–Morrison for the mean term), equal to :func:`posterior_moments` with the
    same fit. Per chunk of X the projections Ct = K(x0, X_train) U depend on neither N, T nor
    λ1; with ``kernel.cache`` they are kept there (keyed by the data, the architecture's kernel
    key, the dtype and ``basis_key``, which names the basis beyond those), so fits at other
    N, T, λ1 on the same data predict in O(P) per test input. Returns (mean, var), each (P0,).
    """
    k, U = eig[0], eig[1]
    p = kernel._prepare(X, "X")
    arch, Qa, Qba = kernel._resolved(p)
    if arch.structure != "scalar":
        raise InvalidParameterError(f"posterior_moments_eig needs a scalar order parameter "
                                    f"(FC, pooled CNN), got the {arch.kind.upper()}")
    p2 = arch.prepare(X_train, "X_train")
    gen, dtype, lam = arch.generated, kernel._dtype, arch.lambda1
    mean = np.empty(p.P)
    var = np.empty(p.P)

    def project(part):
        Kx = np.asarray(arch.cross_tensor(part, p2, dtype=dtype,
                                          memory_budget=kernel.memory_budget))
        return Kx.reshape(Kx.shape[-2:]).astype(np.float64, copy=False) @ U

    for rows, part in p.chunks(kernel.chunk_rows(arch, p2.P)):
        Ct = cached(kernel.cache,
                    lambda: KernelCache.key("cross-eig", arch, dtype, part, p2,
                                            extra=tuple(basis_key)),
                    lambda: project(part))
        Kd = np.asarray(arch.test_diagonal_tensor(part, dtype=dtype), dtype=np.float64)
        Kd = Kd.reshape(-1)
        with single_blas_thread():          # memory-bound passes over Ct (see chunks)
            if Qba is None:
                mean[rows], var[rows] = gen.predictor_eig_zero_mean(Qa, Ct, Kd, k, yt, T, lam)
            else:
                mu0 = np.asarray(arch.generated_means(part), dtype=np.float64).reshape(-1)
                mean[rows], var[rows] = gen.predictor_eig(Qa, Qba, Ct, Kd, mu0, k, yt, m, T,
                                                          lam)
    return mean, var
