"""The kernel tensor, its passes and the factorizations of A on a PyTorch device.

``device="cuda"`` (or ``"cuda:1"``, or ``"cpu"`` for PyTorch's CPU build, which the tests use)
runs the expensive part of every evaluation where the data lives:

* :class:`TorchBlocks` (a :class:`kren.tensors.source.BlockSource`): the prepared patches on the
  device; the blocks K̃_p either stored there (``stored=True``) or recomputed tile by tile on
  every pass (streaming), with the closed forms of erf, relu and linear written in torch
  (THEORY §2; erf by the rescaled-patch arcsin of :mod:`kren.tensors.tiles`). Accumulations
  are float64 whatever the tile precision.
* :class:`DeviceMatrix`: the P×P matrices of an evaluation (K_R, A, its Cholesky factor, A⁻¹,
  B) stay on the device. The generated physics is unchanged: ``A = T*np.eye(P) + K_R`` works
  because NumPy defers to the device matrix (``__array_ufunc__ = None``), and
  :func:`kren.linalg.cho_factor`, ``cho_solve``, ``cho_logdet``, ``cho_inverse``,
  ``pair_combine``, ``pair_contract`` and ``pair_hessian_terms`` dispatch on it (Cholesky by
  ``torch.linalg.cholesky_ex``, A⁻¹ by ``torch.cholesky_inverse``). Anything that is not P×P
  (z = A⁻¹y, μBμᵀ, G) comes back as a NumPy array; the factor is copied to the host once, for
  the predictor, at the end of the fit.

The predictor (test×train kernels) stays on the host.
"""
from __future__ import annotations

import math

import numpy as np

from .. import activations
from ..validation import InvalidParameterError
from .packed import partners
from .source import BlockSource

__all__ = ["DeviceMatrix", "TorchBlocks", "torch_device"]


def _torch():
    try:
        import torch
    except ImportError:                                     # pragma: no cover - nn extra
        raise InvalidParameterError(
            "device=... needs PyTorch (pip install 'kren[nn]'); use device=None for NumPy"
        ) from None
    return torch


def torch_device(name: str):
    """The torch.device for ``name``, with a clear error when it is not available."""
    torch = _torch()
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise InvalidParameterError(f"device={name!r} is not a PyTorch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(f"device={name!r}: CUDA is not available to this PyTorch "
                                    f"build ({torch.__version__}); use device='cpu' or None")
    return dev


class _Threads:
    """PyTorch's CPU threads under kren's BLAS policy (:func:`kren.linalg.blas_threads`): one
    thread for work on matrices below THREADED_MIN (torch's pool waits on a busy core costs
    ~10 ms per small operation on a loaded two-core machine, 25× the work), the default above;
    nothing to do on CUDA."""

    def __init__(self, device, n: int):
        self.active = device.type == "cpu"
        self.n = n

    def __enter__(self):
        if self.active:
            from ..linalg import blas_threads
            torch = _torch()
            self.old = torch.get_num_threads()
            if blas_threads(self.n) == 1:
                torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self.active:
            _torch().set_num_threads(self.old)
        return False


class DeviceMatrix:
    """A float64 matrix on a PyTorch device in the generated code's arithmetic (module
    docstring). Binary operations with NumPy arrays or numbers move the other operand to the
    device; a result that is not P×P is returned as a NumPy array."""

    kren_device = True
    __array_ufunc__ = None          # NumPy hands a + b, a @ b, ... to our reflected methods

    def __init__(self, t):
        self.t = t

    # ------------------------------------------------------------------ conversions
    @property
    def shape(self):
        return tuple(self.t.shape)

    @property
    def ndim(self):
        return self.t.ndim

    @property
    def dtype(self):
        return np.dtype(np.float64)

    def __array__(self, dtype=None, copy=None):
        a = self.t.detach().cpu().numpy()
        return a.astype(dtype, copy=False) if dtype is not None else a

    def diagonal(self):
        return self.t.diagonal().cpu().numpy()

    def _other(self, x):
        if isinstance(x, DeviceMatrix):
            return x.t
        if isinstance(x, np.ndarray):
            return _torch().as_tensor(np.ascontiguousarray(x, dtype=np.float64),
                                      device=self.t.device)
        return x

    def _wrap(self, r):
        if r.ndim == 2 and r.shape[0] == r.shape[1] == self.t.shape[0]:
            return DeviceMatrix(r)
        return r.cpu().numpy()

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, o):
        return self._wrap(self.t + self._other(o))

    __radd__ = __add__

    def __sub__(self, o):
        return self._wrap(self.t - self._other(o))

    def __rsub__(self, o):
        return self._wrap(self._other(o) - self.t)

    def __mul__(self, o):
        return self._wrap(self.t * self._other(o))

    __rmul__ = __mul__

    def __truediv__(self, o):
        return self._wrap(self.t / self._other(o))

    def __neg__(self):
        return DeviceMatrix(-self.t)

    def __matmul__(self, o):
        return self._wrap(self.t @ self._other(o))

    def __rmatmul__(self, o):
        return self._wrap(self._other(o) @ self.t)

    @property
    def T(self):
        return DeviceMatrix(self.t.T)

    # ------------------------------------------------------------------ factorizations
    def cholesky(self, what: str = "matrix"):
        """(L, True) with A = LLᵀ, on the device (kren.linalg.cho_factor)."""
        from ..linalg import NotPositiveDefiniteError
        with _Threads(self.t.device, self.t.shape[0]):
            L, info = _torch().linalg.cholesky_ex(self.t)
        if int(info) != 0:
            raise NotPositiveDefiniteError(f"{what} is not positive definite (the leading minor "
                                           f"of order {int(info)} is not)")
        return DeviceMatrix(L), True

    def cho_solve(self, b):
        """A⁻¹b for this lower factor L of A; b a NumPy vector or matrix (returned as NumPy)."""
        torch = _torch()
        bt = self._other(b)
        vec = bt.ndim == 1
        with _Threads(self.t.device, self.t.shape[0]):
            x = torch.cholesky_solve(bt[:, None] if vec else bt, self.t)
        return (x[:, 0] if vec else x).cpu().numpy()

    def cho_logdet(self) -> float:
        return float(2.0 * self.t.diagonal().log().sum())

    def cho_inverse(self):
        with _Threads(self.t.device, self.t.shape[0]):
            r = _torch().cholesky_inverse(self.t)
        return DeviceMatrix(0.5 * (r + r.T))


class TorchBlocks(BlockSource):
    """The train×train kernels on a PyTorch device (module docstring); ``prep`` a
    :class:`kren.prepared.Prepared`, ``dtype`` the precision of the tiles (and of the storage
    when ``stored``), ``device`` a torch device name."""

    kind = "torch"
    #: Target bytes of one tile (n partners × rows × P values).
    TILE_BYTES = {"cpu": 8 * 2**20, "cuda": 512 * 2**20}

    def __init__(self, prep, pairs, dtype=np.float64, device="cpu", stored=False):
        torch = _torch()
        self.dev = torch_device(device)
        arch = prep.arch
        self.act = arch.act
        if self.act not in (activations.ERF, activations.RELU, activations.LINEAR):
            raise InvalidParameterError(
                f"the PyTorch device path has the closed forms of erf, relu and linear; "
                f"activation {self.act.name!r} needs device=None (NumPy)")
        self.pairs = np.asarray(pairs, dtype=np.intp)
        self.n, self.P = arch.n, prep.P
        self.dtype = np.dtype(dtype)
        self.tdtype = torch.float64 if self.dtype == np.float64 else torch.float32
        self.partners = partners(self.pairs, self.n)
        scale = 1.0 / (arch.lambda0 * arch.M)
        Z = torch.as_tensor(np.array(prep.patches, dtype=np.float64), device=self.dev)
        var = torch.as_tensor(np.array(prep.var, dtype=np.float64), device=self.dev)
        if self.act is activations.ERF:
            Z = Z * torch.sqrt(2.0 * scale / (1.0 + 2.0 * var))[:, :, None]
            self.scale = 1.0
        else:
            self.scale = scale
        self.Z = Z.to(self.tdtype).contiguous()
        self.var = var.to(self.tdtype)
        width = max(len(j) for j in self.partners)
        budget = self.TILE_BYTES["cuda" if self.dev.type == "cuda" else "cpu"]
        self.rows = int(max(1, min(self.P, budget // max(1, width * self.P * 8))))
        self.tiles = [(s, min(s + self.rows, self.P)) for s in range(0, self.P, self.rows)]
        self.stored = None
        if stored:
            P = self.P
            K = torch.empty((len(self.pairs), P, P), dtype=self.tdtype, device=self.dev)
            with _Threads(self.dev, P):
                for p, (i, j) in enumerate(self.pairs):
                    K[p] = self._sym(int(i), int(j)).to(self.tdtype)
            self.stored = K

    @property
    def nbytes(self) -> int:
        size = self.Z.element_size() * self.Z.nelement()
        if self.stored is not None:
            size += self.stored.element_size() * self.stored.nelement()
        return int(size)

    def arrays(self) -> list:
        return []

    # ------------------------------------------------------------------ tiles
    def _kernel(self, C, a, b):
        """K(C; a, b) elementwise (torch), C (k, r, c), a (r,), b (k, c)."""
        if self.act is activations.ERF:
            return C.asin_().mul_(2.0 / math.pi)
        if self.scale != 1.0:
            C = C.mul_(self.scale)
        if self.act is activations.LINEAR:
            return C
        ab = a[None, :, None] * b[:, None, :]                      # relu
        s = (ab - C * C).clamp_(min=0.0).sqrt_()
        theta = _torch().atan2(s, C)
        return (s + (math.pi - theta) * C) / (2.0 * math.pi)

    def _ordered(self, i, js, r0, r1, c1):
        """K_ij[r0:r1, 0:c1] for j in js, (k, r, c1) in the tile dtype."""
        jt = _torch().as_tensor(js, device=self.dev)
        Zi = self.Z[i, r0:r1]
        Zj = self.Z[jt, :c1]
        C = _torch().matmul(Zi[None], Zj.transpose(1, 2))
        return self._kernel(C, self.var[i, r0:r1], self.var[jt, :c1])

    def _sym(self, i, j):
        K = self._ordered(i, [j], 0, self.P, self.P)[0].double()
        return K + K.T if i != j else 0.5 * (K + K.T)

    # ------------------------------------------------------------------ passes
    def _matrix(self, X):
        if isinstance(X, DeviceMatrix):
            return X.t
        return _torch().as_tensor(np.asarray(X, dtype=np.float64), device=self.dev)

    def _combine(self, W) -> DeviceMatrix:
        """Σ_ij W_ij K_ij as a P×P device matrix (float64)."""
        torch = _torch()
        W = self._weights(W)
        if self.stored is not None:
            coef = W[self.pairs[:, 0], self.pairs[:, 1]]
            K = torch.zeros((self.P, self.P), dtype=torch.float64, device=self.dev)
            for p, c in enumerate(coef):
                if c != 0.0:
                    K.add_(self.stored[p].double(), alpha=float(c))
            return DeviceMatrix(K)
        Wt = torch.as_tensor(W, device=self.dev)
        K = torch.empty((self.P, self.P), dtype=torch.float64, device=self.dev)
        for r0, r1 in self.tiles:
            acc = torch.zeros((r1 - r0, r1), dtype=torch.float64, device=self.dev)
            for i in range(self.n):
                js = self.partners[i]
                if len(js):
                    X = self._ordered(i, js, r0, r1, r1).double()
                    acc += torch.tensordot(Wt[i, js], X, dims=1)
            K[r0:r1, :r1] = acc
        low = torch.tril(K)
        return DeviceMatrix(low + torch.tril(K, -1).T)

    def _contract(self, B) -> np.ndarray:
        """G_ij = ⟨K_ij, B⟩ for symmetric B (NumPy n×n, float64)."""
        torch = _torch()
        Bt = self._matrix(B)
        n = self.n
        if self.stored is not None:
            g = torch.stack([(self.stored[p].double() * Bt).sum() for p in range(len(self.pairs))])
            g = g.cpu().numpy()
            i, j = self.pairs[:, 0], self.pairs[:, 1]
            G = np.zeros((n, n))
            vals = np.where(i == j, g, 0.5 * g)
            G[i, j] = vals
            G[j, i] = vals
            return G
        Bw = 2.0 * torch.tril(Bt, -1) + torch.diag(torch.diagonal(Bt))
        h = torch.zeros((n, n), dtype=torch.float64, device=self.dev)
        for r0, r1 in self.tiles:
            w = Bw[r0:r1, :r1]
            for i in range(n):
                js = self.partners[i]
                if len(js):
                    X = self._ordered(i, js, r0, r1, r1).double()
                    h[i, js] += torch.tensordot(X, w, dims=2)
        h = h.cpu().numpy()
        G = 0.5 * (h + h.T)
        keep = np.zeros((n, n), dtype=bool)
        keep[self.pairs[:, 0], self.pairs[:, 1]] = True
        return np.where(keep | keep.T, G, 0.0)

    def combine(self, W) -> DeviceMatrix:
        """Σ_ij W_ij K_ij as a P×P device matrix (float64)."""
        with _Threads(self.dev, self.P):
            return self._combine(W)

    def contract(self, B) -> np.ndarray:
        """G_ij = ⟨K_ij, B⟩ for symmetric B (NumPy n×n, float64)."""
        with _Threads(self.dev, self.P):
            return self._contract(B)

    def hessian_terms(self, pairs, cho, z, mu=None, V=None, sign=1.0):
        """T1, T2 of :func:`kren.linalg.pair_hessian_terms`, on the device."""
        with _Threads(self.dev, self.P):
            return self._hessian_terms(pairs, cho, z, mu, V, sign)

    def symmetrized(self, p: int) -> np.ndarray:
        i, j = self.pairs[p]
        return self._sym(int(i), int(j)).cpu().numpy()

    def block(self, i: int, j: int) -> np.ndarray:
        return self._ordered(i, [j], 0, self.P, self.P)[0].double().cpu().numpy()

    def _hessian_terms(self, pairs, cho, z, mu=None, V=None, sign=1.0):
        """T1, T2 of :func:`kren.linalg.pair_hessian_terms` on the device: S_p = L⁻¹D_pL⁻ᵀ by two
        triangular solves, T1 = Gram of the packed S_p, T2 = YᵀY with Y = L⁻¹[D_p z]."""
        from ..linalg import assemble_hessian_terms
        torch = _torch()
        self.check_pairs(pairs)
        L = cho[0].t if isinstance(cho[0], DeviceMatrix) else self._matrix(cho[0]).tril()
        P, n_p = self.P, len(self.pairs)
        zt = torch.as_tensor(np.asarray(z, dtype=np.float64), device=self.dev)
        ii, jj = torch.tril_indices(P, P, device=self.dev)
        w = torch.where(ii == jj, 1.0, math.sqrt(2.0)).to(torch.float64)
        F = torch.empty((n_p, ii.numel()), dtype=torch.float64, device=self.dev)
        U = torch.empty((n_p, P), dtype=torch.float64, device=self.dev)
        Vt = Wt = Gv = None
        if V is not None:
            Vt = torch.as_tensor(np.asarray(V, dtype=np.float64), device=self.dev)
            Wt = torch.cholesky_solve(Vt, L)
            Gv = torch.empty((n_p, Vt.shape[1], Vt.shape[1]), dtype=torch.float64,
                             device=self.dev)
        mut = None if mu is None else torch.as_tensor(np.asarray(mu, dtype=np.float64),
                                                      device=self.dev)
        for p, (i, j) in enumerate(self.pairs):
            i, j = int(i), int(j)
            D = self.stored[p].double().clone() if self.stored is not None else self._sym(i, j)
            if mut is not None:
                M = torch.outer(mut[i], mut[j])
                D -= M + M.T if i != j else M
            U[p] = D @ zt
            if Wt is not None:
                Gv[p] = Wt.T @ (D @ Wt)
            X = torch.linalg.solve_triangular(L, D, upper=False)
            S = torch.linalg.solve_triangular(L, X.T, upper=False)
            F[p] = S[ii, jj] * w
        T1 = (F @ F.T).cpu().numpy()
        Y = torch.linalg.solve_triangular(L, U.T, upper=False)
        T2 = (Y.T @ Y).cpu().numpy()
        T1 = 0.5 * (T1 + T1.T)
        return assemble_hessian_terms(
            T1, T2, U.cpu().numpy(), None if Gv is None else Gv.cpu().numpy(), self.pairs,
            np.asarray(z, dtype=np.float64), None if V is None else np.asarray(V, dtype=float),
            None if Wt is None else Wt.cpu().numpy(), sign)
