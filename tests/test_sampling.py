"""Sampled finite networks (kren.sampling): forward pass, gradients, Langevin/MALA and diagnostics.

Every check compares against a number fixed independently: the NumPy forward pass, autograd,
a closed-form Gaussian posterior, a one-dimensional quadrature, GP regression with the NNGP
kernel, or an AR(1) process with known autocorrelation time. Monte-Carlo tolerances are stated in
units of a standard error estimated from the draws themselves.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kren  # noqa: E402
from kren import forward as npforward  # noqa: E402
from kren.sampling import (LangevinSampler, build_network, diagnose,  # noqa: E402
                           effective_sample_size, integrated_autocorr_time, mcse_mean,
                           sample_posterior, split_rhat, suggest_step_size)
from kren.sampling.diagnostics import autocorrelation  # noqa: E402

torch.set_num_threads(1)   # tiny tensors: threading only adds overhead on a shared machine

# Architectures covering FC, LCN, CNN; 1D and 2D inputs; several input channels; overlapping
# patches; valid and circular padding; non-default priors.
ARCHS = [
    dict(kind="fc", input_shape=(2, 5), lambda0=1.5, lambda1=0.7),
    dict(kind="cnn", input_shape=(2, 6, 5), mask=(2, 3), stride=(1, 2), padding="circular",
         lambda0=0.8, lambda1=1.3),
    dict(kind="cnn", input_shape=(1, 7), mask=3, stride=2, padding="valid"),
    dict(kind="lcn", input_shape=(3, 7), mask=3, stride=2, padding="circular", lambda0=2.0),
    dict(kind="lcn", input_shape=(1, 8, 8), mask=2, stride=2, padding="valid", lambda1=0.5),
]


def _arch(spec, activation="erf"):
    return kren.Architecture(activation=activation, **spec)


# ---------------------------------------------------------------- network = THEORY §1
@pytest.mark.parametrize("activation", ["erf", "relu", "linear"])
@pytest.mark.parametrize("spec", ARCHS, ids=lambda s: f"{s['kind']}-{len(s['input_shape']) - 1}d")
def test_network_matches_numpy_forward(spec, activation):
    """Same weights → same f(x), features and K̂ as kren.forward (float64: round-off only)."""
    arch = _arch(spec, activation)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(6, arch.N0))
    params = npforward.init_weights(arch, 4, 7)
    net = arch.network(4, dtype=torch.float64).set_weights(params["W"], params["v"])
    np.testing.assert_allclose(net(X).detach().numpy(), npforward.forward(arch, X, params),
                               rtol=0, atol=1e-13)
    np.testing.assert_allclose(net.features(X).numpy(), npforward.features(arch, X, params["W"]),
                               rtol=0, atol=1e-13)
    X2 = rng.normal(size=(3, arch.N0))
    np.testing.assert_allclose(net.empirical_kernel(X, X2).numpy(),
                               npforward.empirical_kernel(arch, X, params["W"], X2),
                               rtol=0, atol=1e-13)
    # inputs given with their shape (P, *input_shape) are the same inputs
    np.testing.assert_allclose(net(X.reshape((6,) + arch.input_shape)).detach().numpy(),
                               net(X).detach().numpy(), rtol=0, atol=0)


@pytest.mark.parametrize("spec", ARCHS, ids=lambda s: f"{s['kind']}-{len(s['input_shape']) - 1}d")
def test_closed_form_gradient_matches_autograd(spec):
    """loss_and_grad (closed form, used by the sampler) = autograd of ½Σ(f − y)², per chain."""
    for activation in ("erf", "relu", "linear"):
        arch = _arch(spec, activation)
        rng = np.random.default_rng(2)
        X = rng.normal(size=(5, arch.N0))
        y = torch.as_tensor(rng.normal(size=5))
        net = build_network(arch, 3, dtype=torch.float64, seed=3, chains=2)
        L, f, gW, gv = net.loss_and_grad(net.prepare(X), y)
        out = net(X)
        (0.5 * ((out - y) ** 2).sum()).backward()
        np.testing.assert_allclose(f.numpy(), out.detach().numpy(), rtol=0, atol=1e-13)
        np.testing.assert_allclose(L.numpy(), 0.5 * ((out - y) ** 2).sum(1).detach().numpy(),
                                   rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(gW.numpy(), net.W.grad.numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(gv.numpy(), net.v.grad.numpy(), rtol=0, atol=1e-12)


def test_network_shapes_chains_and_seed():
    arch = _arch(ARCHS[3])
    net = build_network(arch, 5, seed=11, chains=3)
    assert net.W.shape == (3, 5, arch.n, arch.M) and net.v.shape == (3, 5, arch.n)
    X = np.random.default_rng(0).normal(size=(4, arch.N0))
    assert net(X).shape == (3, 4) and net.empirical_kernel(X).shape == (3, 4, 4)
    single = arch.network(5, seed=11)
    assert single(X).shape == (4,) and single.features(X).shape == (4, 5, arch.n)
    # the prior draw depends on the seed only (drawn in float64 on the CPU, then cast)
    a = build_network(arch, 5, seed=11, dtype=torch.float32)
    b = build_network(arch, 5, seed=11, dtype=torch.float64)
    np.testing.assert_allclose(a.W.detach().numpy(), b.W.detach().numpy(), rtol=1e-6)
    c = build_network(arch, 5, seed=12)
    assert not np.allclose(b.W.detach().numpy(), c.W.detach().numpy())


def test_prior_draw_moments():
    """W ~ N(0, 1/λ0), v ~ N(0, 1/λ1): sample variances of ~10⁵ weights within 5 standard
    errors (relative SE of a variance estimate from k Gaussian numbers: √(2/k))."""
    arch = kren.Architecture("cnn", input_shape=(1, 16), mask=4, stride=1, lambda0=4.0,
                             lambda1=0.25)
    net = build_network(arch, 2000, seed=5, chains=4)
    for t, lam in ((net.W, 4.0), (net.v, 0.25)):
        x = t.detach().numpy().ravel()
        se = math.sqrt(2.0 / x.size)
        assert abs(x.var() * lam - 1.0) < 5 * se
        assert abs(x.mean()) * math.sqrt(lam) < 5 / math.sqrt(x.size)


def test_bad_input_raises():
    arch = _arch(ARCHS[1])
    with pytest.raises(ValueError, match="N"):
        build_network(arch, 0)
    with pytest.raises(TypeError, match="N"):
        build_network(arch, 2.5)
    with pytest.raises(ValueError, match="dtype"):
        build_network(arch, 3, dtype=torch.int32)
    with pytest.raises(ValueError, match="chains"):
        build_network(arch, 3, chains=0)
    with pytest.raises(ValueError, match="device"):
        build_network(arch, 3, device="tpu")
    with pytest.raises(TypeError, match="Architecture"):
        build_network("cnn", 3)
    with pytest.raises(ValueError, match="input_shape|input shape"):
        build_network(kren.Architecture("fc"), 3)
    net = build_network(arch, 3)
    with pytest.raises(ValueError, match="shape"):
        net(np.zeros((2, arch.N0 + 1)))
    with pytest.raises(ValueError, match="NaN"):
        net(np.full((2, arch.N0), np.nan))
    with pytest.raises(ValueError, match="W has shape"):
        net.set_weights(np.zeros((3, arch.M + 1)), np.zeros((3, arch.n)))
    X = np.zeros((4, arch.N0))
    with pytest.raises(ValueError, match="y must have shape"):
        sample_posterior(arch, 3, X, np.zeros(3), 0.1, 0.01, steps=10, thin=1)
    with pytest.raises(ValueError, match="burn_in"):
        sample_posterior(arch, 3, X, np.zeros(4), 0.1, 0.01, steps=10, burn_in=10)
    with pytest.raises(ValueError, match="no draws"):
        sample_posterior(arch, 3, X, np.zeros(4), 0.1, 0.01, steps=10, burn_in=5, thin=6)
    with pytest.raises(ValueError, match="T"):
        sample_posterior(arch, 3, X, np.zeros(4), -0.1, 0.01, steps=10, thin=1)
    with pytest.raises(ValueError, match="step_size"):
        sample_posterior(arch, 3, X, np.zeros(4), 0.1, 0.0, steps=10, thin=1)
    with pytest.raises(FloatingPointError, match="step size"):
        sample_posterior(arch, 3, 30 * np.ones((4, arch.N0)), np.ones(4), 0.1, 50.0, steps=50,
                         thin=1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: the error path cannot occur")
def test_cuda_requested_but_unavailable_raises():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        build_network(_arch(ARCHS[0]), 3, device="cuda")
    assert build_network(_arch(ARCHS[0]), 3, device="auto").device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    """Same weights on CPU and GPU (float64): same outputs and gradients to round-off."""
    arch = _arch(ARCHS[1])
    X = np.random.default_rng(0).normal(size=(5, arch.N0))
    y = torch.as_tensor(np.random.default_rng(1).normal(size=5))
    cpu = build_network(arch, 4, seed=1, chains=2)
    gpu = build_network(arch, 4, seed=1, chains=2, device="cuda")
    a = cpu.loss_and_grad(cpu.prepare(X), y)
    b = gpu.loss_and_grad(gpu.prepare(X), y.cuda())
    for s, t in zip(a, b):
        np.testing.assert_allclose(s.numpy(), t.cpu().numpy(), rtol=1e-10, atol=1e-12)
    r = sample_posterior(arch, 4, X, y.numpy(), 0.5, 0.01, steps=50, device="cuda", dtype="float64")
    assert np.all(np.isfinite(r.loss_trace))


def test_step_size_curvature_matches_autograd_jacobian():
    """suggest_step_size: the analytic tangent matrix JJᵀ equals autograd's Jacobian product."""
    arch = _arch(ARCHS[1])
    X = np.random.default_rng(4).normal(size=(7, arch.N0))
    T = 0.3
    eta = suggest_step_size(arch, 3, X, T, fraction=1.0, seed=2, chains=2)
    net = build_network(arch, 3, seed=2, chains=2)
    h_max = 0.0
    for c in range(2):
        single = arch.network(3).set_weights(net.W.data[c], net.v.data[c])
        J = torch.autograd.functional.jacobian(
            lambda W, v: _f_of(single, X, W, v), (single.W.detach(), single.v.detach()))
        Jm = torch.cat([J[0].reshape(7, -1), J[1].reshape(7, -1)], dim=1)
        h_max = max(h_max, float(torch.linalg.eigvalsh(Jm @ Jm.T)[-1]))
    assert eta == pytest.approx(1.0 / (h_max + T * max(arch.lambda0, arch.lambda1)), rel=1e-10)


def _f_of(net, X, W, v):
    """f(X) of a single network as an explicit function of (W, v), for autograd's Jacobian."""
    x = net.patches(X)
    eq = "pim,caim->cpai" if net.kind == "lcn" else "pim,cam->cpai"
    h = torch.einsum(eq, x, W) / math.sqrt(net.M)
    return (torch.einsum("cpai,cai->cp", torch.erf(h), v) * net.scale)[0]


# ---------------------------------------------------------------- the sampler, exact cases
def _fixed_feature_case(metropolis, eta):
    """Frozen first layer: the readout posterior is Gaussian, f(x0) ~ GP with kernel K̂(W).

    All 64 chains share one frozen W (copied from chain 0), so their draws pool into one
    estimate. With J = ∂f/∂v = c Φ (P × Nn) and H = JᵀJ + Tλ1𝟙 the readout posterior is
    N(H⁻¹Jᵀy, T H⁻¹): ⟨f0⟩ = j0ᵀH⁻¹Jᵀy, Var f0 = T j0ᵀH⁻¹j0 — by Woodbury the GP formulas
    k̂ᵀ(K̂ + T)⁻¹y and k̂00 − k̂ᵀ(K̂ + T)⁻¹k̂ with the empirical kernel K̂ (THEORY §3 step 2).
    """
    arch = kren.Architecture("cnn", input_shape=(1, 6), mask=3, stride=1, padding="circular",
                             lambda1=1.5)
    rng = np.random.default_rng(8)
    X, Xt = rng.normal(size=(5, arch.N0)), rng.normal(size=(3, arch.N0))
    y = np.sign(X[:, 0]) + 0.3
    T = 0.4
    s = LangevinSampler(arch, 4, T, eta, chains=64, dtype=torch.float64, seed=3,
                        metropolis=metropolis, train_first_layer=False)
    with torch.no_grad():
        s.network.W[:] = s.network.W[0].clone()
    W_init = s.network.W.detach().clone()
    r = s.run(X, y, steps=1500, burn_in=100, thin=2, X_test=Xt, X_kernel=None)
    assert torch.equal(s.network.W.detach(), W_init)          # the first layer never moved
    net = arch.network(4).set_weights(W_init[0], s.network.v.detach()[0])
    Phi = net.features(X).numpy().reshape(5, -1) * net.scale  # J = cΦ
    Phi0 = net.features(Xt).numpy().reshape(3, -1) * net.scale
    H = Phi.T @ Phi + T * arch.lambda1 * np.eye(Phi.shape[1])
    Hinv = np.linalg.inv(H)
    mean = Phi0 @ Hinv @ Phi.T @ y
    var_exact = T * np.einsum("ij,jk,ik->i", Phi0, Hinv, Phi0)
    var_ula = T * np.einsum("ij,jk,ik->i", Phi0,
                            Hinv @ np.linalg.inv(np.eye(H.shape[0]) - eta * H / 2), Phi0)
    Kh = net.empirical_kernel(X).numpy()
    k0 = net.empirical_kernel(Xt, X).numpy()
    k00 = np.diag(net.empirical_kernel(Xt).numpy())
    A = Kh + T * np.eye(5)
    np.testing.assert_allclose(k0 @ np.linalg.solve(A, y), mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(k00 - np.einsum("ij,ji->i", k0, np.linalg.solve(A, k0.T)),
                               var_exact, rtol=1e-9, atol=1e-12)
    return r, mean, var_exact, var_ula


def _z_scores(r, mean, var):
    """(estimate − exact)/se for the posterior mean and variance of every test prediction.

    se: Monte-Carlo standard errors √(var⁺/ESS) over all 64 chains (for the variance, of the
    mean of (f0 − f̄0)²)."""
    F = r.test_predictions
    m, se = r.predictive_mean()
    dev2 = (F - m) ** 2
    return (m - mean) / se, (dev2.mean(axis=(0, 1)) - var) / mcse_mean(dev2)


def test_mala_fixed_features_is_exact_gp_regression():
    """MALA (frozen W): posterior mean/variance of f(x0) = GP regression with kernel K̂(W),
    within 4 (mean) and 5 (variance) standard errors — the variance's SE is itself estimated
    from the draws (ESS of (f0 − f̄0)²), so its z-scores have heavier tails than a normal's."""
    r, mean, var_exact, _ = _fixed_feature_case(True, 0.3)
    assert 0.5 < r.acceptance.mean() < 1.0
    zm, zv = _z_scores(r, mean, var_exact)
    assert np.all(np.abs(zm) < 4) and np.all(np.abs(zv) < 5), (zm, zv)


def test_ula_fixed_features_has_its_known_stationary_law():
    """ULA (frozen W) targets N(H⁻¹Jᵀy, T H⁻¹(𝟙 − ηH/2)⁻¹): exact mean, known O(η) variance bias.

    The step is large enough that the ULA variance exceeds the posterior one by ≥ 10 % on every
    test input; the sampled variance matches the ULA formula within 5 SE and misses the exact
    one by more than 6 SE: this tests the update θ ← θ − η(∇L + Tλθ) + √(2ηT)ξ itself
    (drift, prior term and noise amplitude).
    """
    eta = 0.3
    r, mean, var_exact, var_ula = _fixed_feature_case(False, eta)
    assert np.min(var_ula / var_exact) > 1.1
    zm, zv = _z_scores(r, mean, var_ula)
    assert np.all(np.abs(zm) < 4) and np.all(np.abs(zv) < 5), (zm, zv)
    _, zv_exact = _z_scores(r, mean, var_exact)
    assert np.all(zv_exact > 6), zv_exact


def test_linear_network_posterior_predictive_by_quadrature():
    """Linear FC, N = 2, N0 = 1: f(x) = u x with u = (v1 w1 + v2 w2)/√2.

    A product v w of independent N(0, 1/λ1), N(0, 1/λ0) numbers has characteristic function
    (1 + t²/(λ0λ1))^{-1/2}; the sum of two is (1 + t²/(λ0λ1))^{-1}: a Laplace law of scale
    1/√(λ0λ1). So u is Laplace with scale b = 1/√(2λ0λ1), the posterior of u is
    ∝ exp(−|u|/b − Σ(y − u x)²/(2T)) and ⟨f0⟩, Var f0 are one-dimensional integrals.
    The sampler (MALA on all four weights) must reproduce them within 4 standard errors.
    """
    from scipy import integrate
    x = np.array([[1.0], [0.5], [-1.0]])
    y = np.array([0.6, 0.2, -0.4])
    T, l0, l1 = 0.5, 1.0, 2.0
    x0 = 1.5
    b = 1.0 / math.sqrt(2 * l0 * l1)

    def weight(u):
        return math.exp(-abs(u) / b - ((y - u * x[:, 0]) ** 2).sum() / (2 * T))
    Z = integrate.quad(weight, -12, 12, points=[0.0], epsabs=1e-14)[0]
    m1 = integrate.quad(lambda u: u * weight(u), -12, 12, points=[0.0], epsabs=1e-14)[0] / Z
    m2 = integrate.quad(lambda u: u * u * weight(u), -12, 12, points=[0.0], epsabs=1e-14)[0] / Z
    mean_exact, var_exact = m1 * x0, (m2 - m1 ** 2) * x0 ** 2

    arch = kren.Architecture("fc", input_shape=1, activation="linear", lambda0=l0, lambda1=l1)
    r = sample_posterior(arch, 2, x, y, T, step_size=0.2, steps=2000, burn_in=200, thin=5,
                         chains=256, X_test=[[x0]], dtype=torch.float64, metropolis=True,
                         X_kernel=None, seed=1)
    F = r.test_predictions[:, :, 0]
    mean, se = r.predictive_mean()
    assert abs(mean[0] - mean_exact) < 4 * se[0]
    dev2 = (F - F.mean()) ** 2
    assert abs(dev2.mean() - var_exact) < 4 * mcse_mean(dev2)
    assert r.diagnostics().ok


def test_large_width_is_gp_regression_with_the_nngp_kernel():
    """THEORY §5.2: N → ∞ at fixed P, the posterior predictor is GP regression with the NNGP
    kernel and noise T. FC with N = 500 and P = 6: the finite-width shift is O(α) with
    α = P/N = 0.012 in the proportional theory (Q − 1 ≈ 7·10⁻⁴ here) and O(1/N) beyond it,
    both far below the Monte-Carlo error (≈ 1–2 %). Means within 4 SE, variances within 5 SE of
    the second-moment estimator (an estimated SE), the averaged K̂ within 1.5 % of the NNGP
    kernel (its draws average over 8 chains × 320 draws × 500 units)."""
    rng = np.random.default_rng(3)
    arch = kren.Architecture("fc", input_shape=3)
    X, Xt = rng.normal(size=(6, 3)), rng.normal(size=(4, 3))
    y = np.sign(X[:, 0])
    T = 0.5
    K, k, k00 = arch.nngp_kernel(X), arch.nngp_kernel(Xt, X), np.diag(arch.nngp_kernel(Xt))
    A = K + T * np.eye(6)
    gp_mean = k @ np.linalg.solve(A, y)
    gp_var = k00 - np.einsum("ij,ji->i", k, np.linalg.solve(A, k.T))
    r = sample_posterior(arch, 500, X, y, T, step_size=0.1, steps=2000, burn_in=400, thin=5,
                         chains=8, X_test=Xt, dtype=torch.float32, metropolis=True, seed=0)
    mean, se = r.predictive_mean()
    assert np.all(np.abs(mean - gp_mean) < 4 * se), (mean, gp_mean, se)
    var, var_se = r.predictive_var(return_se=True)
    assert np.all(np.abs(var - gp_var) < 5 * var_se), (var, gp_var, var_se)
    np.testing.assert_allclose(r.kernel, K, rtol=0, atol=0.015 * np.abs(K).max())
    d = r.diagnostics()
    assert d.rhat_max < 1.05 and d.ok


@pytest.mark.parametrize("kind", ["cnn", "lcn"])
def test_prior_sampling_first_layer_statistics_match_nngp(kind):
    """Sampling the prior (no data, MALA): ⟨K̂⟩ over draws = NNGP kernel (1/(λ1 n)) Σ_i K_ii,
    ⟨W²⟩ = 1/λ0 and ⟨v²⟩ = 1/λ1 (THEORY §1-2). Tolerance 5 standard errors of the mean over
    32 independent chains (the chain means are independent, so their spread gives the SE)."""
    arch = kren.Architecture(kind, input_shape=(2, 6), mask=3, stride=2, padding="circular",
                             lambda0=2.0, lambda1=0.5)
    Xk = np.random.default_rng(6).normal(size=(5, arch.N0))
    s = LangevinSampler(arch, 40, 1.0, 0.3, chains=32, dtype=torch.float64, seed=4,
                        metropolis=True)
    r = s.run(None, None, steps=400, burn_in=0, thin=2, X_kernel=Xk)
    K = arch.nngp_kernel(Xk)
    se = r.kernel_chains.std(axis=0, ddof=1) / math.sqrt(32)
    assert np.all(np.abs(r.kernel - K) < 5 * se + 1e-12), np.max(np.abs(r.kernel - K) / se)
    # the check is not toothless: a 10 % error in either prior would be resolved on the diagonal
    assert np.all(0.1 * np.diag(K) > 5 * np.diag(se))
    for t, lam in ((s.network.W, 2.0), (s.network.v, 0.5)):
        x = t.detach().numpy().reshape(32, -1)
        m2 = (x ** 2).mean(axis=1) * lam                       # per chain
        assert abs(m2.mean() - 1.0) < 5 * m2.std(ddof=1) / math.sqrt(32)


def test_sampler_is_reproducible_and_chains_are_independent():
    arch = _arch(ARCHS[2])
    X = np.random.default_rng(0).normal(size=(5, arch.N0))
    y = np.sign(X[:, 0])
    kw = dict(steps=60, burn_in=20, thin=4, chains=3, dtype=torch.float64)
    a = sample_posterior(arch, 4, X, y, 0.2, 0.01, seed=9, **kw)
    b = sample_posterior(arch, 4, X, y, 0.2, 0.01, seed=9, **kw)
    c = sample_posterior(arch, 4, X, y, 0.2, 0.01, seed=10, **kw)
    np.testing.assert_array_equal(a.loss_trace, b.loss_trace)
    assert not np.allclose(a.loss_trace, c.loss_trace)
    assert len({round(float(t), 12) for t in a.loss_trace[:, -1]}) == 3
    assert a.train_predictions.shape == (3, 10, 5) and a.loss_trace.shape == (3, 60)
    # the kept training predictions are the states recorded in the loss trace
    kept = 0.5 * ((a.train_predictions - y) ** 2).sum(axis=2)
    np.testing.assert_allclose(kept, a.loss_trace[:, 23::4], rtol=1e-12)
    te = a.error("train")
    assert te.total == pytest.approx(te.bias2 + te.variance, rel=1e-12)
    # two runs of one sampler continue the same chains: 30 + 30 steps = 60 steps at once
    for metropolis in (False, True):
        one = LangevinSampler(arch, 4, 0.2, 0.01, chains=2, dtype=torch.float64, seed=3,
                              metropolis=metropolis)
        full = one.run(X, y, steps=60, burn_in=0, thin=1)
        two = LangevinSampler(arch, 4, 0.2, 0.01, chains=2, dtype=torch.float64, seed=3,
                              metropolis=metropolis)
        first = two.run(X, y, steps=30, burn_in=0, thin=1)
        second = two.run(X, y, steps=30, burn_in=0, thin=1)
        np.testing.assert_allclose(np.concatenate([first.loss_trace, second.loss_trace], 1),
                                   full.loss_trace, rtol=1e-12)


# ---------------------------------------------------------------- diagnostics
def test_autocorrelation_time_of_ar1():
    """AR(1) x_t = ρ x_{t−1} + ε: ρ_t = ρ^t and τ = (1 + ρ)/(1 − ρ) = 19 for ρ = 0.9.
    8 chains × 20 000 draws: the estimator's relative error is ≈ √(2·(2W+1)/n) with window
    W ≈ 5τ, i.e. ≈ 7 %; we allow 20 %."""
    rho, C, S = 0.9, 8, 20000
    rng = np.random.default_rng(0)
    eps = rng.normal(size=(C, S))
    x = np.empty((C, S))
    x[:, 0] = eps[:, 0] / math.sqrt(1 - rho ** 2)
    for t in range(1, S):
        x[:, t] = rho * x[:, t - 1] + eps[:, t]
    tau = integrated_autocorr_time(x)
    assert tau == pytest.approx((1 + rho) / (1 - rho), rel=0.2)
    ac = autocorrelation(x)
    np.testing.assert_allclose(ac[:4], rho ** np.arange(4), atol=0.03)
    assert effective_sample_size(x) == pytest.approx(C * S / tau, rel=1e-12)
    # independent draws: τ ≈ 1, ESS ≈ number of draws
    assert integrated_autocorr_time(rng.normal(size=(4, 5000))) == pytest.approx(1.0, abs=0.1)


def test_split_rhat_formula_by_hand():
    """Split-R̂ on a hand-sized example, against the BDA3 formula written out."""
    d = np.array([[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 4.0, 2.0]])
    halves = np.array([[0, 1], [1, 1], [2, 3], [4, 2]], dtype=float)   # first halves, then second
    s = 2                                                     # draws per half-chain
    means = halves.mean(axis=1)
    W = halves.var(axis=1, ddof=1).mean()
    B = s * means.var(ddof=1)
    expect = math.sqrt(((s - 1) / s * W + B / s) / W)
    assert split_rhat(d) == pytest.approx(expect, rel=1e-14)
    # identical iid chains: R̂ ≈ 1; chains offset by 1 sd: clearly above 1.05
    rng = np.random.default_rng(1)
    iid = rng.normal(size=(4, 4000))
    assert abs(split_rhat(iid) - 1.0) < 0.01
    shifted = iid + np.arange(4)[:, None]
    assert split_rhat(shifted) > 1.3
    # a trend inside every chain is caught by the split
    trend = iid + np.linspace(0, 3, 4000)[None, :]
    assert split_rhat(trend) > 1.05
    # vectorized over trailing axes
    stacked = np.stack([iid, shifted], axis=-1)
    np.testing.assert_allclose(split_rhat(stacked), [split_rhat(iid), split_rhat(shifted)])


def test_diagnostics_flag_a_chain_that_is_too_short():
    """Chains started from the prior and stopped before the loss has relaxed (no burn-in) are
    flagged by split-R̂ (the trend inside each chain) and by the ESS; the same problem run long
    enough passes (R̂ < 1.05, ESS ≥ 100)."""
    arch = kren.Architecture("fc", input_shape=4)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(10, 4))
    y = np.sign(X[:, 0] + X[:, 1])
    Xt = rng.normal(size=(5, 4))
    common = dict(X_test=Xt, y_test=np.sign(Xt[:, 0] + Xt[:, 1]), dtype=torch.float64, seed=5,
                  X_kernel=None)
    short = sample_posterior(arch, 8, X, y, 0.2, 0.05, steps=40, burn_in=0, thin=1, chains=4,
                             **common)
    d = short.diagnostics()
    assert not d.ok
    assert any("R̂" in w for w in d.warnings) and any("effective sample size" in w
                                                      for w in d.warnings)
    long = sample_posterior(arch, 8, X, y, 0.2, 0.1, steps=3000, burn_in=400, thin=5, chains=8,
                            **common)
    d = long.diagnostics()
    assert d.ok, d.warnings
    assert d.rhat_max < 1.05


def test_diagnose_rejects_bad_draws():
    with pytest.raises(ValueError, match="NaN"):
        diagnose(np.full((2, 10, 3), np.nan), np.zeros((2, 10)))
    with pytest.raises(ValueError, match="draws"):
        split_rhat(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="shape"):
        split_rhat(np.zeros(10))
    # constant chains: R̂ = 1 when all agree, infinite when each is stuck elsewhere
    assert split_rhat(np.ones((3, 10))) == 1.0
    assert split_rhat(np.arange(3)[:, None] * np.ones((3, 10))) == np.inf
