"""The fully-connected estimator: scalar Q (and Q̄ for relu), THEORY §3."""
from __future__ import annotations

from .base import KrenEstimator

__all__ = ["FC"]


class FC(KrenEstimator):
    """Fully-connected one-hidden-layer network: scalar Q (and Q̄ for relu), THEORY §3.

    K_R = Q K/λ1 for zero-mean activations: the kernel is only rescaled, and the fit predicts
    exactly what an infinite-width network with readout prior ``equivalent_prior_`` = λ1/Q
    predicts (THEORY §5.5).
    """

    _kind = "fc"

    def __init__(self, N, T, lambda0=1.0, lambda1=1.0, activation="erf", input_shape=None, *,
                 tol=1e-9, max_iter=1000, dtype="float64", memory_budget=None, cache=None,
                 storage="auto", device=None, time_budget=None, progress=False,
                 one_hot=False, label_values=(1.0, -1.0)):
        self.N = N
        self.T = T
        self.lambda0 = lambda0
        self.lambda1 = lambda1
        self.activation = activation
        self.input_shape = input_shape
        self.tol = tol
        self.max_iter = max_iter
        self.dtype = dtype
        self.memory_budget = memory_budget
        self.cache = cache
        self.storage = storage
        self.device = device
        self.time_budget = time_budget
        self.progress = progress
        self.one_hot = one_hot
        self.label_values = label_values
        self._check_params()

    @property
    def equivalent_prior_(self):
        """λ1/Q*: the readout prior of the infinite-width FC net with the same predictor (§5.5).

        Defined for zero-mean activations only (for relu the mean part of K_R is rescaled by
        1/(1+Q̄) instead of Q, so no single prior reproduces it): None there. With D outputs
        (THEORY §3c) K_R = (Q ⊗ K)/λ1 changes the shape of the kernel across outputs, not only
        its scale: the equivalent infinite-width net has output-correlated readout weights of
        covariance Q/λ1 (read Q_ itself, the "kernel shape"); None there too.
        """
        fit = self._fit_or_raise()
        if not fit.arch.zero_mean or fit.outputs is not None:
            return None
        return fit.arch.lambda1 / float(fit.Q)
