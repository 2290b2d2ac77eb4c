"""Deep FC networks with the readout integrated out exactly: Langevin on the hidden weights of the
exact marginal posterior, Rao–Blackwellized predictions (THEORY §1, §3 steps 2–3 at finite N).

Given the hidden weights θ_h = (W^1, …, W^L), the readout is Gaussian (prior v ~ N(0, 1/λ_L),
Gaussian likelihood at temperature T), so it integrates out in closed form:

    p(θ_h | data) ∝ prior(θ_h) · N(y; 0, A),   A = T𝟙 + K̂_L(θ_h),   K̂_L = (1/(λ_L N_L)) Φ Φᵀ

(Φ = φ^L over the training set), and given θ_h the prediction at x0 is Gaussian with

    mean m(x0) = k̂ᵀ A⁻¹ y,   variance s²(x0) = K̂_L(x0, x0) − k̂ᵀ A⁻¹ k̂,   k̂ = K̂_L(x0, x^μ).

:class:`IntegratedReadout` wraps a :class:`kren.sampling.deep.DeepFCNetwork` as a network of the
Langevin sampler's protocol (``prior_pairs`` without v, ``loss_and_grad``, ``_predict``), with the
"loss" U = (T/2)[log det A + yᵀA⁻¹y] so that the sampler's stationary law
exp(−U/T − Σ λθ²/2) is the marginal posterior above (MALA included), ∂U/∂Φ = Tκ(A⁻¹ − zzᵀ)Φ
(κ = 1/(λ_L N_L), z = A⁻¹y) backpropagated by ``DeepFCNetwork.backprop_features``. Its ``_predict``
returns (m, s²) at the current hidden weights; the sampler records both, and
:class:`kren.sampling.SamplingResult` combines them (predictive mean = mean of m, predictive
variance = mean of s² + variance of m). This is the same posterior as sampling (θ_h, v) jointly
(checked against it in tests/test_deep_sampling.py) without the readout's slowest modes: readout
directions that the training data do not constrain relax at the rate Tλ_L under Langevin
dynamics, here they are exact. The P×P algebra is done in float64.
"""
from __future__ import annotations

import torch

__all__ = ["IntegratedReadout"]


class IntegratedReadout(torch.nn.Module):
    """``net`` (a :class:`kren.sampling.deep.DeepFCNetwork`) with its readout integrated out at
    temperature ``T`` (module docstring). The training set is the one ``loss_and_grad`` was last
    called with; ``_predict`` conditions on it."""

    #: One output (the integrated readout serves D = 1; the sampler reads the trailing shape).
    output_shape: tuple = ()

    def __init__(self, net, T: float):
        super().__init__()
        from .deep import DeepFCNetwork
        if not isinstance(net, DeepFCNetwork):
            raise TypeError(f"readout='integrated' needs a deep FC network (kren.DeepArchitecture; "
                            f"L = 1 is the one-hidden-layer FC), got {type(net).__name__}")
        self.net = net
        self.T = float(T)
        self.rao_blackwell = True          # _predict returns (conditional mean, variance)
        for name in ("arch", "act", "L", "widths", "N", "N0", "M", "n", "chains", "lambda0",
                     "lambdas", "lambda1", "_single"):
            setattr(self, name, getattr(net, name))
        self._train = None

    @property
    def dtype(self):
        return self.net.dtype

    @property
    def device(self):
        return self.net.device

    # ------------------------------------------------------------------ protocol
    def prior_pairs(self) -> list:
        """The hidden layers' (W^l, λ) pairs; v is integrated out."""
        return self.net.prior_pairs()[:-1]

    def prepare(self, X, name: str = "X"):
        return self.net.prepare(X, name)

    @property
    def kernel_scale(self) -> float:
        return self.net.kernel_scale

    @property
    def layer_kernel_scales(self) -> tuple:
        return self.net.layer_kernel_scales

    def layer_kernel_sums(self, xn):
        return self.net.layer_kernel_sums(xn)

    def _kernel_sum(self, xn):
        return self.net._kernel_sum(xn)

    def _factor(self, Phi, y):
        """(Cholesky factor of A (C, P, P), z = A⁻¹y (C, P), log det A (C,)) in float64."""
        Phi = Phi.to(torch.float64)
        K = torch.matmul(Phi, Phi.transpose(1, 2)).mul_(self.kernel_scale)
        K.diagonal(dim1=1, dim2=2).add_(self.T)
        chol = torch.linalg.cholesky(K)
        yy = y.to(torch.float64).expand(Phi.shape[0], -1)[..., None]
        z = torch.cholesky_solve(yy, chol)[..., 0]
        logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(dim=1)
        return chol, z, logdet

    def loss_and_grad(self, xn: torch.Tensor, y: torch.Tensor):
        """U = (T/2)[log det A + yᵀA⁻¹y] per chain and its gradient in the hidden weights
        (module docstring). Returns (U (C,), the conditional mean over the training set
        K̂_L A⁻¹y = y − T z (C, P), ∂U/∂W^1, …, ∂U/∂W^L)."""
        with torch.no_grad():
            x = xn[0]
            self._train = (xn, y)
            hs, phis = self.net._layers(x)
            Phi = phis[-1]
            chol, z, logdet = self._factor(Phi, y)
            U = 0.5 * self.T * (logdet + (z * y.to(torch.float64)).sum(dim=1))
            B = torch.cholesky_inverse(chol)
            B.sub_(z[:, :, None] * z[:, None, :])
            G = torch.matmul(B, Phi.to(torch.float64)).mul_(self.T * self.kernel_scale)
            grads = self.net.backprop_features(x, hs, phis, G.to(Phi.dtype))
            f = (y.to(torch.float64) - self.T * z).to(Phi.dtype)
            return (U.to(Phi.dtype), f, *grads)

    def _predict(self, xt: torch.Tensor):
        """(m, s²) at prepared test inputs (1, P0, N0) given the current hidden weights, each
        (C, P0) (module docstring)."""
        if self._train is None:
            raise RuntimeError("IntegratedReadout._predict needs the training set: call "
                               "loss_and_grad first")
        with torch.no_grad():
            xn, y = self._train
            Phi = self.net._layers(xn[0])[1][-1].to(torch.float64)
            Pt = self.net._layers(xt[0])[1][-1].to(torch.float64)
            chol, z, _ = self._factor(Phi, y)
            k = torch.matmul(Pt, Phi.transpose(1, 2)).mul_(self.kernel_scale)   # (C, P0, P)
            mean = torch.matmul(k, z[..., None])[..., 0]
            w = torch.linalg.solve_triangular(chol, k.transpose(1, 2), upper=False)
            var = (Pt * Pt).sum(dim=2).mul_(self.kernel_scale) - (w * w).sum(dim=1)
            return mean.to(self.dtype), var.clamp_min_(0.0).to(self.dtype)
