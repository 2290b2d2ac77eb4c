"""MCMC diagnostics for several independent chains: split-R̂, autocorrelation times, ESS.

Every function takes draws of shape (C, S, ...) — C chains, S draws each, any trailing shape
(e.g. one scalar per test input) — and works element-wise over the trailing axes.

- Split-R̂ (Gelman et al., Bayesian Data Analysis 3rd ed. §11.4): every chain is cut in two
  halves, giving m = 2C chains of s = ⌊S/2⌋ draws. With chain means θ̄_j, overall mean θ̄,
  within-chain variance W = (1/m) Σ_j s_j² and between-chain B = s/(m−1) Σ_j (θ̄_j − θ̄)²:
  var⁺ = (s−1)/s · W + B/s and R̂ = √(var⁺/W). R̂ → 1 for converged chains; R̂ ≥ 1.05 flags
  chains that have not mixed (or a trend inside a chain, which the split exposes).
- Integrated autocorrelation time τ = 1 + 2 Σ_{t≥1} ρ_t, with the multi-chain autocorrelation
  ρ_t = 1 − (W − (1/m) Σ_j γ_j(t)) / var⁺ (γ_j: autocovariance of chain j, FFT) and the sum
  truncated by Geyer's initial monotone positive sequence (Geyer 1992; Vehtari et al. 2021):
  Γ_k = ρ_{2k} + ρ_{2k+1} is summed while positive and made non-increasing, τ = −1 + 2 Σ_k Γ_k.
- Effective sample size ESS = C·S/τ; Monte-Carlo standard error of a posterior mean
  se = sd/√ESS, sd² = var⁺.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

RHAT_THRESHOLD = 1.05


def _as_draws(draws, name="draws", min_draws=4) -> np.ndarray:
    x = np.asarray(draws, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (chains, draws, ...), got {x.shape}")
    if x.shape[1] < min_draws:
        raise ValueError(f"{name} has {x.shape[1]} draws per chain; "
                         f"at least {min_draws} are needed")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf (a diverged chain?)")
    return x


def split_chains(draws) -> np.ndarray:
    """(C, S, ...) → (2C, ⌊S/2⌋, ...): first and second half of every chain.

    An odd S drops the middle draw."""
    x = _as_draws(draws)
    s = x.shape[1] // 2
    return np.concatenate([x[:, :s], x[:, x.shape[1] - s:]], axis=0)


def _w_b(x):
    m, s = x.shape[0], x.shape[1]
    means = x.mean(axis=1)
    W = x.var(axis=1, ddof=1).mean(axis=0)
    B = s * means.var(axis=0, ddof=1) if m > 1 else np.zeros_like(W)
    var_plus = (s - 1) / s * W + B / s
    return W, B, var_plus


def split_rhat(draws) -> np.ndarray:
    """Split-R̂ = √(var⁺/W) over 2C half-chains (module docstring), per trailing element.

    Constant draws (W = B = 0) give 1; W = 0 < B (each chain stuck at a different value) gives inf.
    """
    x = split_chains(draws)
    W, B, var_plus = _w_b(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.sqrt(var_plus / W)
    r = np.where(W > 0, r, np.where(B > 0, np.inf, 1.0))
    return r[()] if np.ndim(r) == 0 else r


def autocovariance(x) -> np.ndarray:
    """Biased autocovariance γ(t) = (1/S) Σ_s (x_s − x̄)(x_{s+t} − x̄) along axis 1 (FFT).

    Lags t = 0..S−1."""
    x = np.asarray(x, dtype=np.float64)
    S = x.shape[1]
    xc = x - x.mean(axis=1, keepdims=True)
    nfft = 1 << (2 * S - 1).bit_length()
    F = np.fft.rfft(xc, n=nfft, axis=1)
    ac = np.fft.irfft(F * np.conj(F), n=nfft, axis=1)[:, :S]
    return ac / S


def autocorrelation(draws, split: bool = True) -> np.ndarray:
    """Multi-chain autocorrelation ρ_t = 1 − (W − mean_j γ_j(t))/var⁺, t = 0..s−1.

    See the module docstring; ``split=True`` uses the 2C half-chains."""
    x = split_chains(draws) if split else _as_draws(draws)
    W, _, var_plus = _w_b(x)
    acov = autocovariance(x).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (W - acov) / var_plus
    return np.where(var_plus > 0, rho, np.where(np.arange(x.shape[1]).reshape(
        (-1,) + (1,) * (rho.ndim - 1)) == 0, 1.0, 0.0))


def integrated_autocorr_time(draws, split: bool = True) -> np.ndarray:
    """τ = −1 + 2 Σ_k Γ_k with Geyer's initial monotone positive sequence (module docstring).

    Measured in draws (after thinning). Constant draws give τ = 1. The estimate is capped at the
    number of draws per chain, where it stops being meaningful anyway.
    """
    x = split_chains(draws) if split else _as_draws(draws)
    s = x.shape[1]
    rho = autocorrelation(x, split=False)                       # (s, ...)
    K = s // 2
    Gam = rho[0:2 * K:2] + rho[1:2 * K:2]                        # (K, ...)
    positive = np.cumprod(Gam > 0, axis=0).astype(bool)          # initial positive sequence
    Gam = np.minimum.accumulate(np.where(positive, Gam, 0.0), axis=0)   # initial monotone
    tau = -1.0 + 2.0 * Gam.sum(axis=0)
    tau = np.clip(tau, 1.0 / np.log10(max(10.0, float(x.shape[0] * s))), float(s))
    return tau[()] if np.ndim(tau) == 0 else tau


def effective_sample_size(draws, split: bool = True) -> np.ndarray:
    """ESS = (number of draws, all chains) / τ."""
    x = _as_draws(draws)
    total = x.shape[0] * (2 * (x.shape[1] // 2) if split else x.shape[1])
    return total / integrated_autocorr_time(x, split=split)


def mcse_mean(draws) -> np.ndarray:
    """Monte-Carlo standard error of the posterior mean, √(var⁺/ESS)."""
    x = _as_draws(draws)
    _, _, var_plus = _w_b(split_chains(x))
    return np.sqrt(var_plus / effective_sample_size(x))


@dataclass
class Diagnostics:
    """Convergence summary of one sampling run (see :func:`diagnose`).

    ``rhat_predictions``/``tau_predictions``/``ess_predictions``: per test input (or training
    input when no test set was given); ``rhat_loss``: R̂ of the training loss after burn-in;
    ``rhat_test_error``/``ess_test_error``: of the per-draw test error (1/P0) Σ (y0 − f0)².
    ``ok`` is False, with the reasons in ``warnings``, when any R̂ ≥ ``rhat_threshold`` or the
    smallest ESS is below ``min_ess``.
    """

    rhat_predictions: np.ndarray
    tau_predictions: np.ndarray
    ess_predictions: np.ndarray
    rhat_loss: float
    ess_loss: float
    rhat_test_error: float | None
    ess_test_error: float | None
    draws_per_chain: int
    chains: int
    rhat_threshold: float = RHAT_THRESHOLD
    min_ess: float = 100.0
    warnings: list = field(default_factory=list)

    @property
    def rhat_max(self) -> float:
        """The largest R̂ over predictions, training loss and test error."""
        vals = [float(np.max(self.rhat_predictions)), self.rhat_loss]
        if self.rhat_test_error is not None:
            vals.append(self.rhat_test_error)
        return max(vals)

    @property
    def ess_min(self) -> float:
        vals = [float(np.min(self.ess_predictions)), self.ess_loss]
        if self.ess_test_error is not None:
            vals.append(self.ess_test_error)
        return min(vals)

    @property
    def tau_max(self) -> float:
        return float(np.max(self.tau_predictions))

    @property
    def ok(self) -> bool:
        return not self.warnings

    def as_dict(self) -> dict:
        return {"rhat_max": self.rhat_max, "rhat_loss": self.rhat_loss,
                "rhat_test_error": self.rhat_test_error,
                "rhat_predictions_max": float(np.max(self.rhat_predictions)),
                "tau_predictions_median": float(np.median(self.tau_predictions)),
                "tau_predictions_max": self.tau_max, "ess_min": self.ess_min,
                "ess_test_error": self.ess_test_error, "draws_per_chain": self.draws_per_chain,
                "chains": self.chains, "ok": self.ok, "warnings": list(self.warnings)}


def diagnose(predictions, loss, test_error=None, rhat_threshold: float = RHAT_THRESHOLD,
             min_ess: float = 100.0) -> Diagnostics:
    """Diagnose draws: ``predictions`` (C, S, P0), ``loss`` (C, S), ``test_error`` (C, S) or None.

    Flags (``warnings``): a split-R̂ ≥ ``rhat_threshold`` on any of them; an ESS below
    ``min_ess``; fewer than 2 chains (R̂ then only compares chain halves).
    """
    predictions = _as_draws(predictions, "predictions")
    loss = _as_draws(loss, "loss")
    C, S = predictions.shape[:2]
    rp = np.atleast_1d(split_rhat(predictions))
    tp = np.atleast_1d(integrated_autocorr_time(predictions))
    ep = np.atleast_1d(effective_sample_size(predictions))
    rl = float(split_rhat(loss))
    el = float(effective_sample_size(loss))
    rt = et = None
    if test_error is not None:
        test_error = _as_draws(test_error, "test_error")
        rt = float(split_rhat(test_error))
        et = float(effective_sample_size(test_error))
    d = Diagnostics(rp, tp, ep, rl, el, rt, et, S, C, rhat_threshold, min_ess)
    if d.rhat_max >= rhat_threshold:
        where = []
        if np.max(rp) >= rhat_threshold:
            where.append(f"predictions (max {np.max(rp):.3f} over {rp.size} inputs, "
                         f"{int(np.sum(rp >= rhat_threshold))} above)")
        if rl >= rhat_threshold:
            where.append(f"training loss ({rl:.3f})")
        if rt is not None and rt >= rhat_threshold:
            where.append(f"test error ({rt:.3f})")
        d.warnings.append(f"split-R̂ ≥ {rhat_threshold} on " + ", ".join(where)
                          + ": the chains have not mixed; run longer or with a larger burn-in")
    if d.ess_min < min_ess:
        d.warnings.append(f"effective sample size {d.ess_min:.0f} < {min_ess:.0f} "
                          f"(max autocorrelation time {d.tau_max:.1f} draws of {S} per chain): "
                          "the chains are too short for reliable averages")
    if C < 2:
        d.warnings.append("a single chain: R̂ only compares its two halves; use several chains")
    return d
