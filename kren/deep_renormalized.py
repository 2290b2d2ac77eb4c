"""The renormalized kernel of a deep FC network (THEORY §3d, §4) as an object, called like
scikit-learn's Gaussian-process kernels (the deep counterpart of :class:`kren.RenormalizedKernel`).

    product: K_R(x, x') = (Π_l Q_l) K^{(L)}(x, x')/λ_L
    nested:  K_R^{(0)} = C, K_R^{(l)} = (Q_l/λ_l) k(K_R^{(l−1)}), K_R = K_R^{(L)}

between any two inputs (the nested recursion carries the variances of each set along with the
covariances). At Q = 𝟙 both are the deep NNGP kernel K^{(L)}/λ_L of THEORY §2, which is then
evaluated by the NNGP recursion of :mod:`kren.deep_kernels` whatever the form (so N = ∞ works for
every activation with a kernel, relu and tanh included).

    K_R = DeepRenormalizedKernel(arch, Q, form="nested")
    K_R(X1), K_R(X1, X2), K_R.diag(X)

The numbers come from the generated ``product_renormalized_kernel``, ``nested_renormalized_kernel``
and ``nested_cross_kernel`` of :mod:`kren.generated.deep_fc`; this module prepares the inputs once
and cuts X1 into chunks (:data:`kren.renormalized.CHUNK_BYTES`). :func:`kren.renormalized.
posterior_moments` works with it unchanged (it asks for ``_prepare`` and ``chunks``).
"""
from __future__ import annotations

import numpy as np
from sklearn.gaussian_process.kernels import Kernel

from .cache import KernelCache, cached
from .kernels import get_memory_budget
from .renormalized import CHUNK_BYTES, assemble
from .validation import InvalidParameterError

__all__ = ["DeepRenormalizedKernel"]

#: P1×P2 float64 arrays a deep cross-kernel chunk holds at once (covariances, kernel, scratch).
_BLOCKS = 4


class DeepRenormalizedKernel(Kernel):
    """K_R(x, x') of a :class:`kren.DeepArchitecture` at order parameters Q (L,) in ``form``
    ("product" or "nested"); module docstring. ``memory_budget`` in bytes, ``cache`` an optional
    :class:`kren.cache.KernelCache` for the test×train NNGP blocks (product form)."""

    def __init__(self, arch, Q, form="product", *, memory_budget=None, cache=None):
        self.arch = arch
        self.Q = Q
        self.form = form
        self.memory_budget = memory_budget
        self.cache = cache

    # ------------------------------------------------------------------ resolved state
    def _resolved(self, X=None):
        """(arch with input shape, Q as an (L,) array, path): path "nngp" at Q = 𝟙."""
        from .deep_architecture import DeepArchitecture
        from .saddle.deep import FORMS, nested_activation
        arch = self.arch
        if not isinstance(arch, DeepArchitecture):
            raise InvalidParameterError(f"arch must be a kren.DeepArchitecture, got "
                                        f"{type(arch).__name__}")
        if X is not None:
            arch = arch.with_input(X)
        if self.form not in FORMS:
            raise InvalidParameterError(f"form must be one of {FORMS}, got {self.form!r}")
        Q = np.asarray(self.Q, dtype=float).reshape(-1)
        if Q.shape == (1,) and arch.L > 1:
            Q = np.full(arch.L, Q[0])
        if Q.shape != (arch.L,) or not (np.all(np.isfinite(Q)) and np.all(Q > 0)):
            raise InvalidParameterError(f"Q must hold L = {arch.L} positive order parameters, "
                                        f"got {self.Q!r}")
        if np.all(Q == 1.0):
            return arch, Q, "nngp"
        if self.form == "nested":
            try:
                nested_activation(arch.act)
            except ValueError as exc:
                raise InvalidParameterError(str(exc)) from None
        return arch, Q, self.form

    def _prepare(self, X, name):
        arch, _, _ = self._resolved(X)
        return arch.prepare(X, name)

    def chunk_rows(self, P2: int) -> int:
        """Rows of X1 per chunk: _BLOCKS arrays of P2 float64 per row within min(budget/4,
        CHUNK_BYTES)."""
        budget = get_memory_budget() if self.memory_budget is None else int(self.memory_budget)
        per_row = max(1, _BLOCKS * int(P2) * 8)
        return int(max(1, min(budget // 4, CHUNK_BYTES) // per_row))

    # ------------------------------------------------------------------ evaluation
    def chunks(self, X1, X2, diag: bool = False):
        """Yield (rows, K_R(X1[rows], X2), K_R(x, x) for x in X1[rows] or None)."""
        from . import deep_kernels as dk
        from .generated import deep_fc as gen
        p1 = self._prepare(X1, "X1")
        arch, Q, path = self._resolved(p1)
        p2 = arch.prepare(X2, "X2")
        lam = np.asarray(arch.lambdas)
        for rows, part in p1.chunks(self.chunk_rows(p2.P)):
            if path == "nested":
                C12, d1, d2 = dk.input_covariance(part.X, p2.X, arch.lambda0)
                kR, kR00, _ = gen.nested_cross_kernel(Q, C12, d1, d2, lam, arch.activation)
                yield rows, np.asarray(kR, dtype=np.float64), (kR00 if diag else None)
                continue
            K = cached(self.cache, lambda: KernelCache.key("deep-cross", arch, np.float64, part,
                                                           p2),
                       lambda: arch.nngp_kernel(part, p2, memory_budget=self.memory_budget))
            kR = gen.product_renormalized_kernel(Q, K * arch.lambda_L, arch.lambda_L)
            kR00 = None
            if diag:
                kR00 = gen.product_renormalized_kernel(Q, arch.nngp_diagonal(part) * arch.lambda_L,
                                                       arch.lambda_L)
            yield rows, np.asarray(kR, dtype=np.float64), kR00

    def __call__(self, X, Y=None, eval_gradient=False):
        """K_R(X, Y), shape (P1, P2); Y = None: K_R(X, X), symmetrized. No hyperparameters:
        ``eval_gradient`` gives an empty (P1, P1, 0) gradient."""
        return assemble(self, X, Y, eval_gradient)

    def diag(self, X) -> np.ndarray:
        """K_R(x, x) for every input, shape (P,) (the variance recursion alone)."""
        from .generated import deep_fc as gen
        p = self._prepare(X, "X")
        arch, Q, path = self._resolved(p)
        if path == "nested":
            _, d, _ = arch.input_covariance(p, p.rows(0, 1))
            # the recursion of the variances d → (Q_l/λ_l) k(d, d, d), against one dummy column
            return np.asarray(gen.nested_cross_kernel(Q, np.zeros((p.P, 1)), d, d[:1],
                                                      np.asarray(arch.lambdas),
                                                      arch.activation)[1])
        return gen.product_renormalized_kernel(Q, arch.nngp_diagonal(p) * arch.lambda_L,
                                               arch.lambda_L)

    def on_train(self, kernels) -> np.ndarray:
        """K_R over the training set from its :class:`kren.deep_architecture.DeepTrainKernels`
        (generated ``product_renormalized_kernel`` / ``nested_renormalized_kernel``), (P, P)."""
        from .generated import deep_fc as gen
        arch, Q, path = self._resolved()
        if path == "nested":
            K = gen.nested_renormalized_kernel(Q, kernels.C, np.asarray(arch.lambdas),
                                               arch.activation)
        else:
            K = gen.product_renormalized_kernel(Q, kernels.K_L, arch.lambda_L)
        return np.asarray(0.5 * (K + K.T), dtype=np.float64)

    # ------------------------------------------------------------------ scikit-learn protocol
    def is_stationary(self) -> bool:
        return False

    @property
    def requires_vector_input(self) -> bool:
        return True

    def __repr__(self) -> str:
        Q = np.asarray(self.Q, dtype=float).reshape(-1)
        return (f"DeepRenormalizedKernel(L={self.arch.L}, {self.form}, {self.arch.act.name}, "
                f"Q={np.array2string(Q, precision=6)})")
