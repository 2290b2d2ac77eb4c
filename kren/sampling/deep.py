"""Finite deep fully-connected networks in PyTorch (THEORY §1, exactly), C chains batched.

Built from a :class:`kren.DeepArchitecture` (``arch.network(N, ...)``), so the theory
(:class:`kren.DeepFC`), its kernels and the sampled network share one description. With
N_0 = N0 the input dimension, widths N_1 … N_L, x ∈ R^{N0}:

    h^1 = W^1 x/√N0,   h^{l+1} = W^{l+1} σ(h^l)/√N_l,   f = N_L^{-1/2} Σ_a v_a σ(h^L_a)

priors W^1 ~ N(0, 1/λ0), W^{l+1} ~ N(0, 1/λ_l) (l = 1 … L−1), v ~ N(0, 1/λ_L); σ and σ′ from
the activation object (``arch.act.sigma_torch``, ``sigma_prime_torch``). Parameters carry a
leading chain axis: ``Ws[l-1]`` (C, N_l, N_{l−1}), ``v`` (C, N_L, 1) — the layout of
:class:`kren.sampling.networks.OneHiddenLayerNetwork` (W (C, N, M), v (C, N, 1)), whose prior draw
order (W first, then v) is kept, so for L = 1 a seed gives the same network, forward pass and
gradient as the one-hidden-layer FC.

The network speaks the protocol :class:`kren.sampling.LangevinSampler` uses: ``prior_pairs()``
[(parameter, λ)], ``prepare(X)`` (1, P, N0), ``loss_and_grad`` (closed-form backpropagation),
``_predict``, ``_kernel_sum``/``kernel_scale`` (the readout's empirical kernel K̂_L) and
``layer_kernel_sums``/``layer_kernel_scales`` (every layer's K̂_l = (1/(λ_l N_l)) Σ_a φ^l_a φ^lᵀ_a,
whose NNGP limit is K^{(l)}/λ_l, :meth:`kren.DeepArchitecture.layer_kernels`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .networks import _check_chains, resolve_device, resolve_dtype

__all__ = ["DeepFCNetwork", "build_deep_network", "suggest_deep_step_size"]


class DeepFCNetwork(torch.nn.Module):
    """A finite deep FC network of widths N_1 … N_L (module docstring), C copies batched.

    Build with :func:`build_deep_network` (or ``DeepArchitecture.network``). ``forward(X)``
    returns f(x), shape (P,) for one network (``chains=None``) or (C, P); differentiable
    (autograd), unlike the internal closed-form paths.
    """

    #: Trailing shape of one output: () (one output; the sampler reads it as for
    #: kren.sampling.networks.OneHiddenLayerNetwork).
    output_shape: tuple = ()

    def __init__(self, arch, N, dtype=torch.float64, device="cpu", seed=0, chains=None):
        super().__init__()
        from ..deep_architecture import check_widths
        if arch.geometry is None:
            raise ValueError("the architecture has no input shape: pass input_shape to the "
                             "DeepArchitecture or call arch.with_input(X) first")
        self.arch = arch
        self.act = arch.act.require_torch()
        self.activation = arch.act.name
        self.L = arch.L
        self.widths = check_widths(N, arch.L, allow_inf=False, integer=True)
        self.N = self.widths[-1]
        self.N0 = self.M = arch.N0
        self.n = 1
        self.lambda0 = arch.lambda0
        self.lambdas = tuple(arch.lambdas)
        self.lambda1 = arch.lambda_L                 # the readout prior (one-hidden-layer name)
        self._single = chains is None
        self.chains = 1 if chains is None else _check_chains(chains)
        dtype = resolve_dtype(dtype)
        device = resolve_device(device)
        C = self.chains
        fan_in = (self.N0,) + self.widths[:-1]
        self.Ws = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.empty((C, n_out, n_in), dtype=dtype, device=device))
             for n_out, n_in in zip(self.widths, fan_in)])
        self.v = torch.nn.Parameter(torch.empty((C, self.N, 1), dtype=dtype, device=device))
        self.reset_from_prior(seed)

    # ------------------------------------------------------------------ setup
    @property
    def priors(self) -> tuple:
        """(λ0, λ_1, …, λ_{L−1}) of W^1 … W^L, then λ_L of v."""
        return (self.lambda0,) + self.lambdas[:-1] + (self.lambdas[-1],)

    def prior_pairs(self) -> list:
        """[(parameter, λ)] for the Langevin sampler, first layer first: (W^1, λ0),
        (W^{l+1}, λ_l), (v, λ_L)."""
        params = list(self.Ws) + [self.v]
        return list(zip(params, self.priors))

    @property
    def scale(self) -> float:
        """The readout normalization N_L^{-1/2}."""
        return 1.0 / math.sqrt(self.N)

    @property
    def dtype(self) -> torch.dtype:
        return self.v.dtype

    @property
    def device(self) -> torch.device:
        return self.v.device

    @torch.no_grad()
    def reset_from_prior(self, seed=None) -> "DeepFCNetwork":
        """Draw every weight from its prior (THEORY §1), W^1, …, W^L, then v, on the CPU in float64
        from ``torch.Generator().manual_seed(seed)`` and cast (same network on every device)."""
        gen = torch.Generator()
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(seed))
        for p, lam in self.prior_pairs():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) / math.sqrt(lam))
        return self

    @torch.no_grad()
    def set_weights(self, Ws, v) -> "DeepFCNetwork":
        """Load weights (NumPy or torch): Ws a list of L matrices (N_l, N_{l−1}) (with a leading
        chain axis for chains), v (N_L,) or (N_L, 1) (chains: (C, N_L, 1))."""
        if len(Ws) != self.L:
            raise ValueError(f"Ws must hold L = {self.L} weight matrices, got {len(Ws)}")
        for l, (p, W) in enumerate(zip(self.Ws, Ws)):
            W = torch.as_tensor(np.asarray(W) if not torch.is_tensor(W) else W)
            if self._single:
                W = W.unsqueeze(0)
            if tuple(W.shape) != tuple(p.shape):
                raise ValueError(f"Ws[{l}] has shape {tuple(W.shape)}, expected "
                                 f"{tuple(p.shape[1:]) if self._single else tuple(p.shape)}")
            p.copy_(W.to(p))
        v = torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v)
        if self._single:
            v = (v[:, None] if v.ndim == 1 else v).unsqueeze(0)
        if tuple(v.shape) != tuple(self.v.shape):
            raise ValueError(f"v has shape {tuple(v.shape)}, expected {tuple(self.v.shape)}")
        self.v.copy_(v.to(self.v))
        return self

    # ------------------------------------------------------------------ data
    def as_input(self, X, name: str = "X") -> torch.Tensor:
        """Inputs as a (P, N0) tensor (NumPy validated by ``arch.check_data``)."""
        if torch.is_tensor(X):
            X = X.reshape(X.shape[0], -1) if X.ndim > 2 else X
            if X.ndim != 2 or X.shape[1] != self.N0 or X.shape[0] == 0:
                raise ValueError(f"{name} has shape {tuple(X.shape)}; expected (P, {self.N0})")
            if not torch.isfinite(X).all():
                raise ValueError(f"{name} contains NaN or inf")
            return X.to(device=self.device, dtype=self.dtype)
        X = self.arch.check_data(X, name)
        return torch.tensor(X, dtype=self.dtype, device=self.device)

    def prepare(self, X, name: str = "X") -> torch.Tensor:
        """Inputs laid out as one patch covering the input, (1, P, N0) (the sampler's layout)."""
        from ..prepared import Prepared
        if isinstance(X, Prepared):
            return torch.tensor(self.arch.prepare(X, name).X, dtype=self.dtype,
                                device=self.device)[None]
        return self.as_input(X, name)[None]

    # ------------------------------------------------------------------ forward
    def _layers(self, x: torch.Tensor):
        """Pre-activations h^l and features φ^l = σ(h^l), each (C, P, N_l), from x (P, N0)."""
        hs, phis = [], []
        a = x
        for W in self.Ws:                                 # W (C, N_l, N_{l−1}): fan-in W.shape[2]
            h = torch.matmul(a, W.detach().transpose(1, 2)).mul_(1.0 / math.sqrt(W.shape[2]))
            a = self.act.sigma_torch(h)
            hs.append(h)
            phis.append(a)
        return hs, phis

    def _f(self, phi_L: torch.Tensor) -> torch.Tensor:
        """f = N_L^{-1/2} Σ_a v_a φ^L_a, (C, P)."""
        vt = self.v.detach().transpose(1, 2)                                   # (C, 1, N_L)
        return (phi_L[:, None] * vt[:, :, None, :]).sum(dim=(1, 3)).mul_(self.scale)

    def _predict(self, xn: torch.Tensor) -> torch.Tensor:
        """f at prepared inputs xn (1, P, N0): (C, P) (no autograd)."""
        with torch.no_grad():
            return self._f(self._layers(xn[0])[1][-1])

    def forward(self, X) -> torch.Tensor:
        """f(x^μ), shape (P,) or (C, P); differentiable in every W^l and v (autograd)."""
        a = self.as_input(X).expand(self.chains, -1, -1)
        for W in self.Ws:
            a = self.act.sigma_torch(torch.einsum("cpm,cam->cpa", a, W) / math.sqrt(W.shape[2]))
        f = torch.einsum("cpa,ca->cp", a, self.v[:, :, 0]) * self.scale
        return f[0] if self._single else f

    def preactivations(self, X) -> list:
        """[h^1, …, h^L], each (C, P, N_l) (or (P, N_l) for one network)."""
        with torch.no_grad():
            return [self._out(h) for h in self._layers(self.as_input(X))[0]]

    def features(self, X) -> list:
        """[φ^1, …, φ^L] = σ(h^l), each (C, P, N_l) (or (P, N_l))."""
        with torch.no_grad():
            return [self._out(p) for p in self._layers(self.as_input(X))[1]]

    def _out(self, t):
        return t[0] if self._single else t

    # ------------------------------------------------------------------ kernels
    @property
    def kernel_scale(self) -> float:
        """1/(λ_L N_L): the readout's K̂_L = kernel_scale · Σ_a φ^L_a φ^Lᵀ_a."""
        return 1.0 / (self.lambdas[-1] * self.N)

    @property
    def layer_kernel_scales(self) -> tuple:
        """1/(λ_l N_l) for l = 1 … L."""
        return tuple(1.0 / (lam * n) for lam, n in zip(self.lambdas, self.widths))

    def layer_kernel_sums(self, xn: torch.Tensor) -> list:
        """[Σ_a φ^l_a φ^lᵀ_a for l = 1 … L], each (C, P, P), at prepared inputs (1, P, N0)."""
        with torch.no_grad():
            return [torch.matmul(p, p.transpose(1, 2)) for p in self._layers(xn[0])[1]]

    def _kernel_sum(self, xn: torch.Tensor) -> torch.Tensor:
        """Σ_a φ^L_a φ^Lᵀ_a, (C, P, P): the readout's (the one-hidden-layer sampler's K̂)."""
        return self.layer_kernel_sums(xn)[-1]

    def empirical_kernels(self, X) -> list:
        """[K̂_1, …, K̂_L], K̂_l = (1/(λ_l N_l)) Σ_a φ^l_a(x) φ^l_a(x')ᵀ, each (C, P, P) (or
        (P, P))."""
        sums = self.layer_kernel_sums(self.prepare(X))
        return [self._out(s * c) for s, c in zip(sums, self.layer_kernel_scales)]

    # ------------------------------------------------------------------ posterior
    def _backward(self, x, hs, phis, r):
        """Closed-form backpropagation of Σ_μ r^μ f^μ: (∂/∂W^1, …, ∂/∂W^L, ∂/∂v).

        u_l = (∂/∂h^l)/√N_{l−1} (C, P, N_l): u_L = σ′(h^L) r v/(√N_L √N_{L−1}),
        u_{l−1} = (u_l W^l) σ′(h^{l−1})/√N_{l−2}; ∂/∂W^l = u_lᵀ φ^{l−1} (φ^0 = x),
        ∂/∂v = N_L^{-1/2} Σ_μ r^μ φ^L. Overwrites hs with σ′(h)."""
        C, c = self.chains, self.scale
        gv = torch.matmul(r[:, None, :], phis[-1]).view(C, self.N, 1).mul(c)
        u = self.act.sigma_prime_torch_(hs[-1])
        u.mul_(r[:, :, None])
        u.mul_(self.v.detach().transpose(1, 2) * (c / math.sqrt(self.Ws[-1].shape[2])))
        return self._backprop(x, hs, phis, u) + [gv.contiguous()]

    def _backprop(self, x, hs, phis, u):
        """[∂/∂W^1, …, ∂/∂W^L] from u_L = (∂/∂h^L)/√N_{L−1} (C, P, N_L) down the layers:
        ∂/∂W^l = u_lᵀ φ^{l−1} (φ^0 = x), u_{l−1} = (u_l W^l) σ′(h^{l−1})/√N_{l−2}.
        Overwrites hs[:-1] with σ′(h)."""
        grads = [None] * self.L
        for l in range(self.L - 1, -1, -1):
            if l == 0:
                grads[0] = torch.matmul(x.T, u).transpose(1, 2)               # (C, N_1, N0)
                break
            grads[l] = torch.matmul(u.transpose(1, 2), phis[l - 1])          # (C, N_l, N_{l−1})
            back = torch.matmul(u, self.Ws[l].detach())                      # (C, P, N_{l−1})
            u = self.act.sigma_prime_torch_(hs[l - 1]).mul_(back).mul_(
                1.0 / math.sqrt(self.Ws[l - 1].shape[2]))
        return [g.contiguous() for g in grads]

    def backprop_features(self, x, hs, phis, G):
        """[∂/∂W^1, …, ∂/∂W^L] of a function of the last features whose gradient is
        G = ∂/∂φ^L (C, P, N_L) (e.g. the integrated readout of :mod:`kren.sampling.integrated`).
        Overwrites hs with σ′(h)."""
        u = self.act.sigma_prime_torch_(hs[-1]).mul_(G).mul_(
            1.0 / math.sqrt(self.Ws[-1].shape[2]))
        return self._backprop(x, hs, phis, u)

    def loss_and_grad(self, xn: torch.Tensor, y: torch.Tensor):
        """L = ½ Σ_μ (f(x^μ) − y^μ)² per chain and its gradient in closed form (backpropagation,
        :meth:`_backward` with r = f − y). ``xn``: prepared inputs (1, P, N0).
        Returns (L (C,), f (C, P), ∂L/∂W^1, …, ∂L/∂W^L, ∂L/∂v) (no autograd graph)."""
        with torch.no_grad():
            x = xn[0]
            hs, phis = self._layers(x)
            f = self._f(phis[-1])
            r = f - y
            loss = 0.5 * (r * r).sum(dim=1)
            return (loss, f, *self._backward(x, hs, phis, r))

    def tangent_kernel(self, X) -> torch.Tensor:
        """The neural tangent (Gauss–Newton) matrix Θ = J Jᵀ, J = ∂f/∂θ at the inputs, (C, P, P):
        Θ = Σ_l (G_l G_lᵀ) ∘ (Φ_{l−1} Φ_{l−1}ᵀ)/N_{l−1} + Φ_L Φ_Lᵀ/N_L, G_l = ∂f/∂h^l (per input;
        φ^0 = x, N_0 = N0)."""
        with torch.no_grad():
            x = self.as_input(X)
            hs, phis = self._layers(x)
            # ∂f^μ/∂W^l = u_l^μ ⊗ φ^{l−1,μ}, u_l = (∂f/∂h^l)/√N_{l−1} (per input)
            fans = (self.N0,) + self.widths[:-1]
            theta = torch.matmul(phis[-1], phis[-1].transpose(1, 2)) / self.N
            u = self.act.sigma_prime_torch(hs[-1]) * (self.v.detach().transpose(1, 2)
                                                       * (self.scale / math.sqrt(fans[-1])))
            for l in range(self.L - 1, -1, -1):
                prev = x.expand(self.chains, *x.shape) if l == 0 else phis[l - 1]
                theta += torch.matmul(u, u.transpose(1, 2)) * torch.matmul(prev,
                                                                           prev.transpose(1, 2))
                if l == 0:
                    break
                u = torch.matmul(u, self.Ws[l].detach()) * self.act.sigma_prime_torch(
                    hs[l - 1]) / math.sqrt(fans[l - 1])
            return self._out(theta)

    def log_prior(self) -> torch.Tensor:
        """−Σ (λ/2)|θ|² per chain over every (parameter, λ) pair (constants dropped)."""
        out = 0.0
        for p, lam in self.prior_pairs():
            out = out - 0.5 * lam * (p ** 2).sum(dim=tuple(range(1, p.ndim)))
        return out

    def extra_repr(self) -> str:
        return (f"L={self.L}, widths={self.widths}, N0={self.N0}, activation={self.activation}, "
                f"lambda0={self.lambda0}, lambdas={self.lambdas}, "
                f"chains={None if self._single else self.chains}")


def build_deep_network(arch, N, dtype=torch.float64, device="cpu", seed=0,
                       chains=None) -> DeepFCNetwork:
    """The finite deep network of widths N (one int or L ints) for ``arch`` (THEORY §1), weights
    drawn from the prior; ``dtype``, ``device``, ``seed``, ``chains`` as
    :func:`kren.sampling.build_network`."""
    from ..deep_architecture import DeepArchitecture
    if not isinstance(arch, DeepArchitecture):
        raise TypeError(f"arch must be a kren.DeepArchitecture, got {type(arch).__name__}")
    return DeepFCNetwork(arch, N, dtype=dtype, device=device, seed=seed,
                         chains=_check_chains(chains))


def suggest_deep_step_size(arch, N, X, T: float, fraction: float = 0.1, seed: int = 0,
                           chains: int = 4) -> float:
    """η = fraction / h_max, h_max the largest eigenvalue of the tangent kernel Θ
    (:meth:`DeepFCNetwork.tangent_kernel`) over ``chains`` prior draws, plus T·max(λ): the
    curvature of U = L + (T/2) Σ λθ² (Gauss–Newton), as :func:`kren.sampling.suggest_step_size`
    for one hidden layer."""
    from ..validation import check_positive
    fraction = check_positive(fraction, "fraction")
    arch = arch.with_input(X)
    net = build_deep_network(arch, N, dtype=torch.float64, seed=seed, chains=chains)
    theta = net.tangent_kernel(X)
    if theta.ndim == 2:
        theta = theta[None]
    h_max = float(torch.linalg.eigvalsh(theta)[:, -1].max()) + T * max(net.priors)
    return fraction / h_max
