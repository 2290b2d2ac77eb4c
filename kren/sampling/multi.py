"""Finite FC, LCN, CNN and pooled-CNN networks with D outputs (THEORY §1), in PyTorch.

    f_d(x) = (N n_r)^{-1/2} Σ_{a,k} v_{a,k,d} r_{a,k}(x),   d = 1..D,

with the readout features r_{a,k} of :mod:`kren.sampling.networks` (φ_{a,i} for the local
readout, n_r = n; the patch average φ̄_a for the pooled one, n_r = 1; FC: n = 1). Every readout
weight v_{a,k,d} ~ N(0, 1/λ1). The loss is summed over outputs, L = ½ Σ_{μ,d} (f_d(x^μ) − y_d^μ)²
(the likelihood of THEORY §1 for D outputs), so the first layer sees the sum over outputs of
the single-output back-propagated signals. The empirical kernel K̂ (THEORY §3 step 2) does not
depend on the output: it is inherited unchanged.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .networks import OneHiddenLayerNetwork

__all__ = ["MultiOutputNetwork"]


def _check_outputs(D) -> int:
    if isinstance(D, (bool, np.bool_)) or not isinstance(D, (int, np.integer)) or D < 1:
        raise ValueError(f"outputs (D) must be a positive integer, got {D!r}")
    return int(D)


class MultiOutputNetwork(OneHiddenLayerNetwork):
    """A width-N network with D outputs (module docstring); build with
    ``build_network(arch, N, outputs=D)``. ``v`` has shape (C, N, n_r, D); ``forward(X)``
    returns (P, D) for a single network or (C, P, D)."""

    def __init__(self, arch, N: int, outputs: int, dtype=torch.float64, device="cpu", seed=0,
                 chains=None):
        self.D = _check_outputs(outputs)
        super().__init__(arch, N, dtype=dtype, device=device, seed=seed, chains=chains)

    @property
    def output_shape(self) -> tuple:
        return (self.D,)

    @torch.no_grad()
    def set_weights(self, W, v) -> "MultiOutputNetwork":
        """Load weights: W as for one output; v (N, n_r, D) for a single network (pooled or
        FC: (N, D) accepted), (C, N, n_r, D) for chains."""
        v = torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v)
        if self._single and self.n_readout == 1 and v.ndim == 2:
            v = v[:, None, :]
        if self._single:
            W = torch.as_tensor(np.asarray(W) if not torch.is_tensor(W) else W)
            W, v = W.unsqueeze(0), v.unsqueeze(0)
        if tuple(W.shape) != tuple(self.W.shape):
            raise ValueError(f"W has shape {tuple(W.shape)}, expected {self._shape_doc(self.W)}")
        if tuple(v.shape) != tuple(self.v.shape):
            raise ValueError(f"v has shape {tuple(v.shape)}, expected {self._shape_doc(self.v)}")
        self.W.copy_(W.to(self.W))
        self.v.copy_(v.to(self.v))
        return self

    def _f(self, phi: torch.Tensor) -> torch.Tensor:
        """f_d = c Σ_{a,k} v_{a,k,d} r_{a,k} from φ in the internal layout (C, n, P, N):
        (C, P, D)."""
        r = self._readout(phi)                                          # (C, n_r, P, N)
        return torch.einsum("ckpa,ckad->cpd", r, self._vt()).mul_(self.scale)

    def forward(self, X) -> torch.Tensor:
        """f_d(x^μ), shape (P, D) or (C, P, D); differentiable in W and v (autograd)."""
        x = self.patches(X)
        if self.kind == "lcn":
            h = torch.einsum("pim,caim->cpai", x, self.W)
        else:
            h = torch.einsum("pim,cam->cpai", x, self.W)
        phi = self.act.sigma_torch(h / math.sqrt(self.M))
        if self.readout == "pool":
            phi = phi.mean(dim=3, keepdim=True)
        return self._out(torch.einsum("cpai,caid->cpd", phi, self.v) * self.scale)

    def loss_and_grad(self, xn: torch.Tensor, y: torch.Tensor):
        """L = ½ Σ_{μ,d} (f_d(x^μ) − y_d^μ)² per chain and its gradient in closed form.

        With r = f − y (C, P, D), c = (N n_r)^{-1/2}: ∂L/∂v_{a,k,d} = c Σ_μ r_d^μ r_{a,k}^μ
        (r_{a,k} the readout features); g_{a,i}^μ = c σ'(h_{a,i}^μ) Σ_d r_d^μ u_{a,i,d} with
        u = v (local readout) or v_a/n (pooled); ∂L/∂w as for one output. ``y``: (P, D).
        Returns (L (C,), f (C, P, D), ∂L/∂W, ∂L/∂v) (no autograd graph).
        """
        with torch.no_grad():
            n, P, M = xn.shape
            C, N = self.chains, self.N
            c = self.scale
            h = self._pre(xn)                                          # (C, n, P, N)
            phi = self.act.sigma_torch(h)
            phi_r = self._readout(phi)                                 # (C, n_r, P, N)
            f = torch.einsum("ckpa,ckad->cpd", phi_r, self._vt()).mul_(c)
            r = f - y
            loss = 0.5 * (r * r).sum(dim=(1, 2))
            gv = torch.einsum("cpd,ckpa->cakd", r, phi_r).mul_(c)     # (C, N, n_r, D)
            back = torch.einsum("cpd,ckad->ckpa", r, self._vt_patch())   # (C, n_r, P, N)
            g = self.act.sigma_prime_torch_(h)                         # overwrites h
            g.mul_(back).mul_(c / math.sqrt(M))
            if self.kind == "lcn":
                gW = torch.matmul(xn.transpose(1, 2), g)               # (C, n, M, N)
                gW = gW.permute(0, 3, 1, 2)
            else:
                gW = torch.matmul(xn.reshape(n * P, M).T, g.reshape(C, n * P, N))
                gW = gW.transpose(1, 2)
        return loss, f, gW.contiguous(), gv.contiguous()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", outputs={self.D}"
