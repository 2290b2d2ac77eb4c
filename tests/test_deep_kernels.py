"""Deep FC NNGP kernel (kren.deep_kernels, THEORY §2) against the independent reference of
tests/nngp_reference.py (joint Gram matrix, textbook closed forms), the one-hidden-layer kernels
of kren.kernels, the nested form of kren.generated.deep_fc at Q = 1, and Monte-Carlo sampling of
wide deep networks drawn from the prior."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from kren import deep_kernels as dk
from kren.architecture import Architecture
from kren.generated import deep_fc
from kren.kernels import MemoryBudgetError

from nngp_reference import deep_nngp_fc


def _data(seed=0, P=25, P0=6, N0=12):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((P, N0)), rng.standard_normal((P0, N0))


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("activation", ["erf", "relu"])
@pytest.mark.parametrize("L", [2, 3])
def test_deep_nngp_equals_independent_reference(activation, L):
    """Train×train, test×train and the test diagonal to 1e-12 (relative to the largest entry;
    both are ~10 floating-point operations per layer deep, so round-off is ~1e-16)."""
    X, X0 = _data(L)
    lams = [1.3, 0.7, 1.1][:L]
    K = dk.deep_nngp_kernel(X, L, activation, 0.8, lams)
    assert _rel(K, deep_nngp_fc(X, X, L, activation, 0.8, lams)) < 1e-12
    assert np.array_equal(K, K.T)
    Kx = dk.deep_nngp_cross(X0, X, L, activation, 0.8, lams)
    assert _rel(Kx, deep_nngp_fc(X0, X, L, activation, 0.8, lams)) < 1e-12
    d = dk.deep_nngp_diagonal(X0, L, activation, 0.8, lams)
    assert _rel(d, np.diag(deep_nngp_fc(X0, X0, L, activation, 0.8, lams))) < 1e-12


@pytest.mark.parametrize("activation", ["erf", "relu", "linear"])
def test_one_layer_is_the_fc_kernel(activation):
    """L = 1 is the one-hidden-layer FC NNGP kernel K/λ1 of kren.kernels (THEORY §2)."""
    X, X0 = _data(1)
    arch = Architecture("fc", activation=activation, lambda0=0.6, lambda1=1.4)
    assert _rel(dk.deep_nngp_kernel(X, 1, activation, 0.6, 1.4), arch.nngp_kernel(X)) < 1e-13
    assert _rel(dk.deep_nngp_cross(X0, X, 1, activation, 0.6, 1.4),
                arch.nngp_kernel(X0, X)) < 1e-13


def test_linear_deep_kernel_is_the_rescaled_input_covariance():
    """Linear σ: K^{(L)}/λ_L = C/(λ_1⋯λ_L) exactly (every layer only divides by its prior)."""
    X, _ = _data(2)
    C, _, _ = dk.input_covariance(X, None, 0.9)
    lams = [1.5, 0.5, 2.0]
    assert _rel(dk.deep_nngp_kernel(X, 3, "linear", 0.9, lams), C / np.prod(lams)) < 1e-14


@pytest.mark.parametrize("activation", ["erf", "linear"])
@pytest.mark.parametrize("L", [1, 2, 3])
def test_nested_form_at_Q_one_is_the_deep_nngp_kernel(activation, L):
    """THEORY §5.9 (N → ∞): the generated nested recursion at Q_l = 1 is the deep NNGP kernel,
    train×train, test×train and test diagonal."""
    X, X0 = _data(3)
    lams = [1.3, 0.7, 1.1][:L]
    C, _, _ = dk.input_covariance(X, None, 0.8)
    KR = deep_fc.nested_renormalized_kernel(np.ones(L), C, lams, activation)
    assert _rel(KR, dk.deep_nngp_kernel(X, L, activation, 0.8, lams)) < 1e-13
    C12, d1, d2 = dk.input_covariance(X0, X, 0.8)
    Kx, d0, dtr = deep_fc.nested_cross_kernel(np.ones(L), C12, d1, d2, lams, activation)
    assert _rel(Kx, dk.deep_nngp_cross(X0, X, L, activation, 0.8, lams)) < 1e-13
    assert _rel(d0, dk.deep_nngp_diagonal(X0, L, activation, 0.8, lams)) < 1e-13
    assert _rel(dtr, np.diag(KR)) < 1e-13


def _sample_last_kernel(X, L, N, activation, lambda0, lambdas, draws, rng):
    """K̂_L = φ^L φ^Lᵀ/(λ_L N) of `draws` networks of width N drawn from the prior (THEORY §1).

    Layer 1 uses real weights W¹ ~ N(0, 1/λ0). For l ≥ 2, given φ^{l−1} the pre-activations of the
    N units are exactly i.i.d. N(0, K̂_{l−1}) (they are W^l φ^{l−1}/√N with Gaussian W^l,
    derivations.deep.step_d2_conditional_gaussian), so they are drawn as chol(K̂_{l−1})·G with
    G ~ N(0, 1)^{P×N}: the same law as multiplying by an N×N weight matrix, at P/N of the cost.
    """
    P, N0 = X.shape
    sig = erf if activation == "erf" else (lambda h: np.maximum(h, 0.0))
    out = np.empty((draws, P, P))
    for s in range(draws):
        W = rng.standard_normal((N0, N)) / np.sqrt(lambda0)
        phi = sig(X @ W / np.sqrt(N0))
        for layer in range(1, L):
            Kh = phi @ phi.T / (lambdas[layer - 1] * N)
            phi = sig(np.linalg.cholesky(Kh) @ rng.standard_normal((P, N)))
        out[s] = phi @ phi.T / (lambdas[L - 1] * N)
    return out


@pytest.mark.parametrize("activation", ["erf", "relu"])
@pytest.mark.parametrize("L", [2, 3])
def test_deep_nngp_against_monte_carlo_prior_sampling(activation, L):
    """The prior average of K̂_L over wide networks (N = 5000, 100 draws, seeded) equals the
    NNGP kernel within 4 standard errors in each of the 10 entries. The finite-width bias is
    O(1/N) while the standard error is O(1/√(N·draws)): their ratio is ~√(draws/N) ≈ 0.14.
    The same draws reject the kernel of a network one layer shallower."""
    rng = np.random.default_rng(100 + L)
    X = rng.standard_normal((4, 16))
    lams = [1.2, 0.9, 1.1][:L]
    Ks = _sample_last_kernel(X, L, 5000, activation, 1.0, lams, 100, rng)
    mean, se = Ks.mean(axis=0), Ks.std(axis=0, ddof=1) / np.sqrt(len(Ks))
    iu = np.triu_indices(4)
    z = ((mean - dk.deep_nngp_kernel(X, L, activation, 1.0, lams)) / se)[iu]
    assert np.abs(z).max() < 4.0, z
    shallower = dk.deep_nngp_kernel(X, L - 1, activation, 1.0, lams[:L - 2] + [lams[L - 1]])
    assert np.abs(((mean - shallower) / se)[iu]).max() > 10.0


def test_bad_input_is_rejected_and_memory_is_checked():
    X, X0 = _data(4)
    with pytest.raises(ValueError, match="positive integer"):
        dk.deep_nngp_kernel(X, 0)
    with pytest.raises(ValueError, match="lambdas must be one positive prior or 2"):
        dk.deep_nngp_kernel(X, 2, lambdas=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="activation"):
        dk.deep_nngp_kernel(X, 2, activation="tanh-ish")
    with pytest.raises(ValueError, match="input features"):
        dk.deep_nngp_cross(X0[:, :5], X, 2)
    with pytest.raises(ValueError, match="NaN"):
        dk.deep_nngp_kernel(np.full((3, 4), np.nan), 2)
    with pytest.raises(MemoryBudgetError, match="deep NNGP kernel"):
        dk.deep_nngp_kernel(X, 2, memory_budget=1000)
