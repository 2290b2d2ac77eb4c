"""Finite one-hidden-layer FC, LCN and CNN networks in PyTorch (THEORY §1, exactly).

The network is built from the same :class:`kren.architecture.Architecture` as the theory, and its
patches come from ``arch.geometry.index`` so the patch geometry is never re-implemented. With
x_i^μ the i-th patch (M entries) of input μ (patch index i = 0..n−1, row-major; FC: one patch,
n = 1, M = N0):

- FC:  f(x) = N^{-1/2} Σ_a v_a σ(w_a · x / √N0)
- CNN: f(x) = (N n)^{-1/2} Σ_{a,i} v_{a,i} σ(w_a · x_i / √M)        (w_a shared by all patches)
- LCN: f(x) = (N n)^{-1/2} Σ_{a,i} v_{a,i} σ(w_{a,i} · x_i / √M)    (one w per channel and patch)
- CNN, pooled readout (``readout="pool"``, THEORY §3b):
       f(x) = N^{-1/2} Σ_a v_a φ̄_a(x),  φ̄_a = (1/n) Σ_i σ(w_a · x_i / √M)   (one v per channel)

Priors (THEORY §1): every first-layer weight ~ N(0, 1/λ0), every readout weight ~ N(0, 1/λ1).

A network may hold several independent copies (``chains``) that share nothing but the code:
parameters carry a leading chain axis, so C Langevin chains advance in one batched computation.
Shapes (C = chains): ``W`` (C, N, M) for FC and CNN, (C, N, n, M) for LCN; ``v`` (C, N, n_r)
with n_r = n readout weights per channel for the local readout and n_r = 1 for the pooled
readout (a single network's pooled v may be given as (N,)). With the readout features r_{a,k}
(φ_{a,i} for the local readout, the patch average φ̄_a for the pooled one) every readout is
f = (N n_r)^{-1/2} Σ_{a,k} v_{a,k} r_{a,k} and the empirical kernel is
K̂ = (1/(λ1 N n_r)) Σ_{a,k} r_{a,k} r_{a,k}ᵀ (THEORY §3 step 2; §3b).
"""
from __future__ import annotations

import math

import numpy as np
import torch

def resolve_dtype(dtype) -> torch.dtype:
    """float32 / float64 from a torch dtype, a NumPy dtype or a name ("float32", "float64")."""
    if isinstance(dtype, torch.dtype):
        out = dtype
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
        out = {"float32": torch.float32, "float64": torch.float64}.get(name)
    if out not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return out


def resolve_device(device) -> torch.device:
    """A torch device: "cpu" (default), "cuda"/"cuda:k" (must be available) or "auto".

    "auto" picks CUDA when it is available and the CPU otherwise. Asking for CUDA on a machine
    without it raises a RuntimeError instead of silently running elsewhere.
    """
    if device is None:
        device = "cpu"
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be 'cpu', 'cuda', 'cuda:<k>' or 'auto', got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} was asked for but CUDA is not available on this "
                               "machine (torch.cuda.is_available() is False); use device='cpu' "
                               "or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:<k>' or 'auto', got {device!r}")
    return dev


def _check_width(N) -> int:
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)):
        if isinstance(N, float) and N.is_integer() and math.isfinite(N):
            N = int(N)
        else:
            raise TypeError(f"N (hidden width) must be a positive integer, got {N!r}")
    if N <= 0:
        raise ValueError(f"N (hidden width) must be a positive integer, got {N}")
    return int(N)


def _check_chains(chains):
    if chains is None:
        return None
    if isinstance(chains, bool) or not isinstance(chains, (int, np.integer)) or chains <= 0:
        raise ValueError(f"chains must be a positive integer or None, got {chains!r}")
    return int(chains)


class OneHiddenLayerNetwork(torch.nn.Module):
    """A finite FC, LCN or CNN of width N (THEORY §1), C independent copies batched.

    Do not construct directly: use :func:`build_network` (or ``Architecture.network``).
    ``forward(X)`` returns f(x) with shape (P,) for a single network (``chains=None``) or (C, P).
    """

    def __init__(self, arch, N: int, dtype=torch.float64, device="cpu", seed=0, chains=None):
        super().__init__()
        if arch.geometry is None:
            raise ValueError("the architecture has no input shape: pass input_shape to the "
                             "Architecture (FC: an int N0) or call arch.with_input(X) first")
        self.arch = arch
        self.kind = arch.kind
        self.act = arch.act.require_torch()     # σ, σ′ on tensors (clear error without them)
        self.activation = arch.act.name
        self.N = _check_width(N)
        self.n = arch.n
        self.readout = arch.readout
        self.n_readout = 1 if arch.readout == "pool" else arch.n     # readout weights per channel
        self.M = arch.M
        self.N0 = arch.N0
        self.lambda0 = arch.lambda0
        self.lambda1 = arch.lambda1
        self._single = chains is None
        self.chains = 1 if chains is None else _check_chains(chains)
        dtype = resolve_dtype(dtype)
        device = resolve_device(device)
        self.register_buffer("index", torch.as_tensor(arch.geometry.index, dtype=torch.long,
                                                      device=device), persistent=False)
        C, N, n, M = self.chains, self.N, self.n, self.M
        wshape = (C, N, n, M) if self.kind == "lcn" else (C, N, M)
        self.W = torch.nn.Parameter(torch.empty(wshape, dtype=dtype, device=device))
        self.v = torch.nn.Parameter(torch.empty((C, N, self.n_readout) + self.output_shape,
                                                dtype=dtype, device=device))
        self.reset_from_prior(seed)

    #: Trailing shape of one output: () here, (D,) for D outputs (kren.sampling.multi).
    output_shape: tuple = ()

    # ------------------------------------------------------------------ setup
    def prior_pairs(self) -> list:
        """[(parameter, λ)] for the Langevin sampler, first layer first: (W, λ0), (v, λ1)."""
        return [(self.W, self.lambda0), (self.v, self.lambda1)]

    @property
    def scale(self) -> float:
        """The readout normalization (N n_r)^{-1/2}: (N n)^{-1/2} (local readout), N^{-1/2} (FC,
        pooled readout)."""
        return 1.0 / math.sqrt(self.N * self.n_readout)

    @property
    def dtype(self) -> torch.dtype:
        return self.W.dtype

    @property
    def device(self) -> torch.device:
        return self.W.device

    @torch.no_grad()
    def reset_from_prior(self, seed=None) -> "OneHiddenLayerNetwork":
        """Draw every weight from the prior: W ~ N(0, 1/λ0), v ~ N(0, 1/λ1) (THEORY §1).

        The draw is made on the CPU in float64 from ``torch.Generator().manual_seed(seed)`` and
        then cast, so a seed gives the same network on every device and in every dtype.
        """
        gen = torch.Generator()
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(seed))
        W = torch.randn(self.W.shape, generator=gen, dtype=torch.float64) / math.sqrt(self.lambda0)
        v = torch.randn(self.v.shape, generator=gen, dtype=torch.float64) / math.sqrt(self.lambda1)
        self.W.copy_(W)
        self.v.copy_(v)
        return self

    @torch.no_grad()
    def set_weights(self, W, v) -> "OneHiddenLayerNetwork":
        """Load weights (NumPy or torch). Shapes as the attributes, without the chain axis for a
        single network: W (N, M) for FC/CNN, (N, n, M) for LCN; v (N, n) (FC: (N, 1) or (N,);
        pooled readout: (N, 1) or (N,))."""
        W = torch.as_tensor(np.asarray(W) if not torch.is_tensor(W) else W)
        v = torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v)
        if self._single:
            W = W.unsqueeze(0)
            if self.n_readout == 1 and v.ndim == 1:
                v = v[:, None]
            v = v.unsqueeze(0)
        if tuple(W.shape) != tuple(self.W.shape):
            raise ValueError(f"W has shape {tuple(W.shape)}, expected {self._shape_doc(self.W)}")
        if tuple(v.shape) != tuple(self.v.shape):
            raise ValueError(f"v has shape {tuple(v.shape)}, expected {self._shape_doc(self.v)}")
        self.W.copy_(W.to(self.W))
        self.v.copy_(v.to(self.v))
        return self

    def _shape_doc(self, t):
        return tuple(t.shape[1:]) if self._single else tuple(t.shape)

    # ------------------------------------------------------------------ data
    def as_input(self, X, name: str = "X") -> torch.Tensor:
        """Inputs as a (P, N0) tensor on this network's device and dtype.

        NumPy arrays are validated by ``arch.check_data`` ((P, N0) or (P, *input_shape), finite).
        """
        if torch.is_tensor(X):
            shape = self.arch.input_shape
            if X.ndim == 1 + len(shape) and tuple(X.shape[1:]) == shape:
                X = X.reshape(X.shape[0], -1)
            if X.ndim != 2 or X.shape[1] != self.N0 or X.shape[0] == 0:
                raise ValueError(f"{name} has shape {tuple(X.shape)}; expected (P, {self.N0}) "
                                 f"or (P, {', '.join(map(str, self.arch.input_shape))})")
            if not torch.isfinite(X).all():
                raise ValueError(f"{name} contains NaN or inf")
            return X.to(device=self.device, dtype=self.dtype)
        X = self.arch.check_data(X, name)          # a kren.prepared.Prepared: not checked again
        if not X.flags.writeable:                  # prepared inputs are read-only
            return torch.tensor(X, dtype=self.dtype, device=self.device)
        return torch.as_tensor(X, dtype=self.dtype, device=self.device)

    def patches(self, X, name: str = "X") -> torch.Tensor:
        """x_i^μ, shape (P, n, M), gathered with ``arch.geometry.index``."""
        return self.as_input(X, name)[:, self.index]

    def prepare(self, X, name: str = "X") -> torch.Tensor:
        """Patch-major contiguous patches, shape (n, P, M): the input of the internal methods.

        X may be a :class:`kren.prepared.Prepared` (``arch.prepare(X)``), whose patches are
        used as they are (validated and cut once, shared with the theory side)."""
        from ..prepared import Prepared
        if isinstance(X, Prepared):
            Z = self.arch.prepare(X, name).patches
            return torch.tensor(Z, dtype=self.dtype, device=self.device)
        return self.patches(X, name).transpose(0, 1).contiguous()

    # ------------------------------------------------------------------ forward
    # Internally the pre-activations are laid out (C, n, P, N): patch, sample, channel.
    def _pre(self, xn: torch.Tensor) -> torch.Tensor:
        """h_{a,i}^μ = w_(a[,i]) · x_i^μ / √M from patch-major inputs xn (n, P, M): (C, n, P, N)."""
        n, P, M = xn.shape
        if self.kind == "lcn":
            h = torch.matmul(xn, self.W.detach().permute(0, 2, 3, 1))              # (C, n, P, N)
        else:
            h = torch.matmul(xn.reshape(n * P, M), self.W.detach().transpose(1, 2))
            h = h.view(self.chains, n, P, self.N)
        return h.mul_(1.0 / math.sqrt(self.M))

    def _vt(self) -> torch.Tensor:
        """Readout in the internal layout (C, n_r, N)."""
        return self.v.detach().transpose(1, 2)

    def _readout(self, phi: torch.Tensor) -> torch.Tensor:
        """Readout features from φ in the internal layout (C, n, P, N): φ itself (local readout)
        or the patch average φ̄ = (1/n) Σ_i φ_i, (C, 1, P, N) (pooled readout)."""
        return phi.mean(dim=1, keepdim=True) if self.readout == "pool" else phi

    def _vt_patch(self) -> torch.Tensor:
        """∂f/∂φ_{a,i} divided by the scale c, internal layout (C, n_r, N) broadcasting over the
        patches: v_{a,i} (local readout) or v_a/n (pooled readout)."""
        vt = self._vt()
        return vt / self.n if self.readout == "pool" else vt

    def _f(self, phi: torch.Tensor) -> torch.Tensor:
        """f = c Σ_{a,k} v_{a,k} r_{a,k} (r the readout features), phi (φ_{a,i}) in the internal
        layout: (C, P)."""
        return (self._readout(phi) * self._vt()[:, :, None, :]).sum(dim=(1, 3)).mul_(self.scale)

    def _predict(self, xn: torch.Tensor) -> torch.Tensor:
        """f at patch-major inputs xn (n, P, M): (C, P) (internal fast path, no autograd)."""
        return self._f(self.act.sigma_torch(self._pre(xn)))

    def _public(self, t: torch.Tensor) -> torch.Tensor:
        """(C, n, P, N) → (C, P, N, n), or (P, N, n) for a single network."""
        return self._out(t.permute(0, 2, 3, 1))

    def preactivations(self, X) -> torch.Tensor:
        """First-layer pre-activations h_{a,i}(x^μ), shape (C, P, N, n) (or (P, N, n))."""
        with torch.no_grad():
            return self._public(self._pre(self.prepare(X)))

    def features(self, X) -> torch.Tensor:
        """φ_{a,i}^μ = σ(h_{a,i}^μ), shape (C, P, N, n) (or (P, N, n) for a single network)."""
        with torch.no_grad():
            return self._public(self.act.sigma_torch(self._pre(self.prepare(X))))

    def forward(self, X) -> torch.Tensor:
        """f(x^μ) = (N n)^{-1/2} Σ_{a,i} v_{a,i} φ_{a,i}^μ (pooled readout:
        N^{-1/2} Σ_a v_a φ̄_a^μ): shape (P,) or (C, P).

        Differentiable in W and v (autograd), unlike the internal fast paths.
        """
        x = self.patches(X)
        if self.kind == "lcn":
            h = torch.einsum("pim,caim->cpai", x, self.W)
        else:
            h = torch.einsum("pim,cam->cpai", x, self.W)
        phi = self.act.sigma_torch(h / math.sqrt(self.M))
        if self.readout == "pool":
            phi = phi.mean(dim=3, keepdim=True)                    # φ̄_a, (C, P, N, 1)
        return self._out(torch.einsum("cpai,cai->cp", phi, self.v) * self.scale)

    def _out(self, t):
        return t[0] if self._single else t

    def _kernel_sum(self, xn1, xn2=None) -> torch.Tensor:
        """Σ_{a,k} r_{a,k}(x) r_{a,k}(x') over the readout features (φ_{a,i}, or φ̄_a for the pooled
        readout), (C, P1, P2), from patch-major inputs."""
        phi1 = self._readout(self.act.sigma_torch(self._pre(xn1)))
        phi1 = phi1.permute(0, 2, 1, 3).reshape(self.chains, phi1.shape[2], -1)
        if xn2 is None:
            return torch.matmul(phi1, phi1.transpose(1, 2))
        phi2 = self._readout(self.act.sigma_torch(self._pre(xn2)))
        phi2 = phi2.permute(0, 2, 1, 3).reshape(self.chains, phi2.shape[2], -1)
        return torch.matmul(phi1, phi2.transpose(1, 2))

    @property
    def kernel_scale(self) -> float:
        """1/(λ1 N n_r): K̂ = kernel_scale · Σ_{a,k} r_{a,k} r_{a,k}ᵀ."""
        return 1.0 / (self.lambda1 * self.N * self.n_readout)

    def empirical_kernel(self, X1, X2=None) -> torch.Tensor:
        """K̂(x, x') = (1/(λ1 N n)) Σ_{a,i} φ_{a,i}(x) φ_{a,i}(x') (THEORY §3 step 2); pooled
        readout: K̂ = (1/(λ1 N)) Σ_a φ̄_a(x) φ̄_a(x'), φ̄_a = (1/n) Σ_i φ_{a,i} (THEORY §3b).

        Shape (P1, P2) per network: (C, P1, P2) for chains, (P1, P2) for a single network.
        """
        with torch.no_grad():
            K = self._kernel_sum(self.prepare(X1, "X1"),
                                 None if X2 is None else self.prepare(X2, "X2"))
            return self._out(K * self.kernel_scale)

    # ------------------------------------------------------------------ posterior
    def loss_and_grad(self, xn: torch.Tensor, y: torch.Tensor):
        """L = ½ Σ_μ (f(x^μ) − y^μ)² per chain and its gradient, computed in closed form.

        ``xn``: patch-major inputs (n, P, M) from :meth:`prepare`; ``y``: (P,). With r = f − y,
        c = (Nn)^{-1/2}: ∂L/∂v_{a,i} = c Σ_μ r^μ φ_{a,i}^μ;
        g_{a,i}^μ = c r^μ v_{a,i} σ'(h_{a,i}^μ);
        ∂L/∂w_a = Σ_{μ,i} g_{a,i}^μ x_i^μ/√M (CNN, FC);  ∂L/∂w_{a,i} = Σ_μ g_{a,i}^μ x_i^μ/√M (LCN).
        Pooled readout (c = N^{-1/2}): ∂L/∂v_a = c Σ_μ r^μ φ̄_a^μ and g_{a,i}^μ = c r^μ (v_a/n)
        σ'(h_{a,i}^μ), the same ∂L/∂w_a.
        Returns (L (C,), f (C, P), ∂L/∂W, ∂L/∂v) with the shapes of W and v (no autograd graph).
        """
        with torch.no_grad():
            n, P, M = xn.shape
            C, N = self.chains, self.N
            c = self.scale
            h = self._pre(xn)                                          # (C, n, P, N)
            phi = self.act.sigma_torch(h)
            vt = self._vt()                                            # (C, n_r, N)
            phi_r = self._readout(phi)                                 # (C, n_r, P, N)
            nr = phi_r.shape[1]
            f = (phi_r * vt[:, :, None, :]).sum(dim=(1, 3)).mul_(c)
            r = f - y
            loss = 0.5 * (r * r).sum(dim=1)
            gv = torch.matmul(r[:, None, None, :], phi_r)              # (C, n_r, 1, N)
            gv = gv.view(C, nr, N).transpose(1, 2).mul(c)              # (C, N, n_r)
            g = self.act.sigma_prime_torch_(h)                         # overwrites h
            g.mul_(r[:, None, :, None])
            g.mul_(self._vt_patch()[:, :, None, :] * (c / math.sqrt(M)))
            if self.kind == "lcn":
                gW = torch.matmul(xn.transpose(1, 2), g)               # (C, n, M, N)
                gW = gW.permute(0, 3, 1, 2)                            # (C, N, n, M)
            else:
                gW = torch.matmul(xn.reshape(n * P, M).T, g.view(C, n * P, N))   # (C, M, N)
                gW = gW.transpose(1, 2)                                # (C, N, M)
        return loss, f, gW.contiguous(), gv.contiguous()

    def log_prior(self) -> torch.Tensor:
        """−(λ0/2)|W|² − (λ1/2)|v|² per chain (the Gaussian priors, constants dropped)."""
        dims_w = tuple(range(1, self.W.ndim))
        return -(0.5 * self.lambda0 * (self.W ** 2).sum(dim=dims_w)
                 + 0.5 * self.lambda1 * (self.v ** 2).sum(dim=tuple(range(1, self.v.ndim))))

    def extra_repr(self) -> str:
        return (f"kind={self.kind}, readout={self.readout}, N={self.N}, n={self.n}, M={self.M}, "
                f"N0={self.N0}, "
                f"activation={self.activation}, lambda0={self.lambda0}, lambda1={self.lambda1}, "
                f"chains={None if self._single else self.chains}")


def build_network(arch, N: int, dtype=torch.float64, device="cpu", seed=0,
                  chains=None, outputs=None) -> OneHiddenLayerNetwork:
    """The finite network of width N for ``arch`` (THEORY §1), weights drawn from the prior.

    ``dtype``: float32 or float64 (default float64); ``device``: "cpu" (default), "cuda" or
    "auto"; ``seed``: seed of the prior draw (default 0; None: fresh entropy); ``chains``: None
    for one network (outputs without a chain axis) or C independent copies batched along a
    leading axis.
    An FC architecture without input shape must be fixed first with ``arch.with_input(X)``.
    ``outputs``: None (one output) or D, a network with D outputs, readout weights v_{a,i,d}
    (:class:`kren.sampling.multi.MultiOutputNetwork`, THEORY §1).
    """
    from ..architecture import Architecture
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be a kren.Architecture, got {type(arch).__name__}")
    if outputs is not None:
        from .multi import MultiOutputNetwork
        return MultiOutputNetwork(arch, N, outputs, dtype=dtype, device=device, seed=seed,
                                  chains=_check_chains(chains))
    return OneHiddenLayerNetwork(arch, N, dtype=dtype, device=device, seed=seed,
                                 chains=_check_chains(chains))
