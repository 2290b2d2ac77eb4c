"""Sampled finite networks beside the theory (PyTorch; install the ``nn`` extra).

- :func:`build_network` (also ``Architecture.network``): finite FC, LCN, CNN of THEORY §1;
  :func:`build_deep_network` (also ``DeepArchitecture.network``): finite deep FC networks.
- :class:`LangevinSampler`, :func:`sample_posterior`: full-batch Langevin (optionally MALA)
  sampling of the posterior with several seeded chains, burn-in and thinning.
- :class:`SamplingResult`: posterior predictive mean/variance, test error with standard errors,
  the averaged empirical kernel K̂ (THEORY §3 step 2), and :mod:`~kren.sampling.diagnostics`
  (split-R̂, integrated autocorrelation time, effective sample size).
"""
try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("kren.sampling needs PyTorch: pip install 'kren[nn]' "
                      "(torch==2.13.0)") from exc

from .diagnostics import (Diagnostics, autocorrelation, diagnose, effective_sample_size,
                          integrated_autocorr_time, mcse_mean, split_rhat)
from .langevin import (LangevinSampler, SamplingResult, TestError, sample_posterior,
                       suggest_step_size)
from .deep import DeepFCNetwork, build_deep_network, suggest_deep_step_size
from .networks import OneHiddenLayerNetwork, build_network

__all__ = ["build_network", "OneHiddenLayerNetwork", "build_deep_network", "DeepFCNetwork",
           "suggest_deep_step_size", "LangevinSampler", "SamplingResult",
           "TestError", "sample_posterior", "suggest_step_size", "Diagnostics", "diagnose",
           "split_rhat", "integrated_autocorr_time", "effective_sample_size", "autocorrelation",
           "mcse_mean"]
