"""Sampled deep FC networks (kren.sampling.deep, kren.sampling.integrated; THEORY §1).

Each check against a number fixed independently: the one-hidden-layer network (L = 1, same seed:
bitwise the same weights, gradients and Langevin trajectory), autograd (closed-form
backpropagation, the tangent kernel, the integrated readout's gradient), the deep NNGP kernel
(prior sampling, within standard errors estimated from independent chains), exact GP regression
(integrated readout with frozen hidden weights), and the jointly sampled posterior (integrated
readout against sampling the readout, within standard errors).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kren  # noqa: E402
from kren.sampling import LangevinSampler, sample_posterior, suggest_step_size  # noqa: E402
from kren.sampling.integrated import IntegratedReadout  # noqa: E402

torch.set_num_threads(1)   # tiny tensors: threading only adds overhead on a shared machine


def _data(P=12, N0=6, seed=0, P0=5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, N0))
    return X, np.sign(X[:, 0] + 0.3 * X[:, 1]), rng.standard_normal((P0, N0))


def test_one_layer_is_the_one_hidden_layer_network():
    """L = 1 with λ_1 = λ1: the same seed draws the same W and v, the closed-form loss and
    gradients are bitwise equal, the autograd forward agrees to round-off, and a Langevin run
    (ULA and MALA) follows the same trajectory bitwise (same flat θ, same noise)."""
    X, y, Xt = _data()
    fc = kren.Architecture("fc", input_shape=6, lambda0=1.3, lambda1=0.8)
    deep = kren.DeepArchitecture(1, 6, lambda0=1.3, lambdas=0.8)
    a = fc.network(7, seed=3, chains=2)
    b = deep.network(7, seed=3, chains=2)
    assert torch.equal(a.W, b.Ws[0]) and torch.equal(a.v, b.v)
    yt = torch.as_tensor(y)
    for u, w in zip(a.loss_and_grad(a.prepare(X), yt), b.loss_and_grad(b.prepare(X), yt)):
        assert torch.equal(u, w)
    assert torch.equal(a._predict(a.prepare(Xt)), b._predict(b.prepare(Xt)))
    assert float((a(X) - b(X)).detach().abs().max()) < 1e-14
    assert torch.equal(a.empirical_kernel(X), b.empirical_kernels(X)[0])
    for metropolis in (False, True):
        kw = dict(steps=40, burn_in=10, thin=5, X_test=Xt, y_test=np.sign(Xt[:, 0]))
        ra = LangevinSampler(fc, 7, 0.3, 0.02, chains=2, dtype=torch.float64, seed=5,
                             metropolis=metropolis).run(X, y, **kw)
        rb = LangevinSampler(deep, 7, 0.3, 0.02, chains=2, dtype=torch.float64, seed=5,
                             metropolis=metropolis).run(X, y, **kw)
        np.testing.assert_array_equal(ra.loss_trace, rb.loss_trace)
        np.testing.assert_array_equal(ra.test_predictions, rb.test_predictions)
        np.testing.assert_array_equal(ra.kernel, rb.kernel)
        np.testing.assert_array_equal(rb.layer_kernels[0], rb.kernel)


@pytest.mark.parametrize("activation", ["erf", "tanh", "relu"])
@pytest.mark.parametrize("L", [2, 3])
def test_backpropagation_and_tangent_kernel_match_autograd(L, activation):
    """loss_and_grad (closed-form backpropagation, σ′ from the activation object) equals
    autograd's gradient of ½Σ(f − y)² through the differentiable forward pass; the tangent
    kernel Θ = JJᵀ equals the Gram matrix of autograd's per-input Jacobian (relative 1e-12)."""
    X, y, _ = _data(P=7, N0=5, seed=L)
    arch = kren.DeepArchitecture(L, 5, activation=activation, lambda0=1.3,
                                 lambdas=[0.7, 1.2, 0.9][:L])
    net = arch.network((5, 6, 4)[:L], seed=1, chains=2)
    yt = torch.as_tensor(y)
    out = net.loss_and_grad(net.prepare(X), yt)
    params = list(net.Ws) + [net.v]
    f = net(X)
    loss = 0.5 * ((f - yt) ** 2).sum()
    grads = torch.autograd.grad(loss, params)
    assert float((out[1] - f.detach()).abs().max()) < 1e-14
    assert float((out[0].sum() - loss.detach()).abs()) < 1e-12
    for mine, ref in zip(out[2:], grads):
        assert float((mine - ref).abs().max() / ref.abs().max()) < 1e-12
    J = torch.stack([torch.stack([torch.cat([g[c].reshape(-1) for g in torch.autograd.grad(
        net(X[mu:mu + 1])[c, 0], params)]) for c in range(2)]) for mu in range(len(X))], dim=1)
    theta = net.tangent_kernel(X)
    assert float((theta - J @ J.transpose(1, 2)).abs().max() / theta.abs().max()) < 1e-12
    assert 0 < suggest_step_size(arch, (5, 6, 4)[:L], X, 0.1) < 1.0


def test_integrated_readout_gradient_matches_autograd():
    """U = (T/2)[log det(T𝟙 + K̂_L) + yᵀ(T𝟙 + K̂_L)⁻¹y] (kren.sampling.integrated): its closed-
    form gradient in every hidden layer equals autograd's (relative 1e-10), and its conditional
    mean over the training set is K̂_L A⁻¹y."""
    X, y, _ = _data(P=9, N0=5, seed=7)
    arch = kren.DeepArchitecture(3, 5, lambda0=0.9, lambdas=[1.1, 0.8, 1.4])
    net = arch.network((6, 4, 5), seed=2, chains=2)
    T = 0.3
    wrap = IntegratedReadout(net, T)
    out = wrap.loss_and_grad(wrap.prepare(X), torch.as_tensor(y))
    a = torch.as_tensor(X).expand(2, -1, -1)
    for W in net.Ws:
        a = torch.erf(torch.einsum("cpm,cam->cpa", a, W) / math.sqrt(W.shape[2]))
    K = a @ a.transpose(1, 2) / (1.4 * 5) + T * torch.eye(9, dtype=torch.float64)
    yt = torch.as_tensor(y)
    U = 0.5 * T * (torch.logdet(K) + (yt * torch.linalg.solve(K, yt.expand(2, -1))).sum(1))
    grads = torch.autograd.grad(U.sum(), list(net.Ws))
    assert float((out[0] - U.detach()).abs().max()) < 1e-12
    for mine, ref in zip(out[2:], grads):
        assert float((mine - ref).abs().max() / ref.abs().max()) < 1e-10
    Kh = (K - T * torch.eye(9, dtype=torch.float64)).detach()
    cond = (Kh @ torch.linalg.solve(K.detach(), yt.expand(2, -1)[..., None]))[..., 0]
    assert float((out[1] - cond).abs().max()) < 1e-12


def test_integrated_readout_with_frozen_features_is_exact_gp_regression():
    """L = 1, hidden weights frozen (train_first_layer=False): nothing moves, and every draw's
    (m, s²) is GP regression with the network's own kernel K̂ and noise T, so the sampled
    predictive mean and variance are exactly those (1e-10)."""
    X, y, Xt = _data(P=10, N0=6, seed=4)
    arch = kren.DeepArchitecture(1, 6, lambda0=1.1, lambdas=0.7)
    s = LangevinSampler(arch, 9, 0.2, 0.05, chains=2, dtype=torch.float64, seed=3,
                        train_first_layer=False, readout="integrated")
    r = s.run(X, y, steps=30, burn_in=10, thin=5, X_test=Xt)
    net = s.network.net
    phi = net.features(np.concatenate([X, Xt]))[-1]                      # (C, P + P0, N)
    for c in range(2):
        F = phi[c].numpy()
        K = F @ F.T / (0.7 * 9)
        A = K[:10, :10] + 0.2 * np.eye(10)
        mean = K[10:, :10] @ np.linalg.solve(A, y)
        var = np.diag(K[10:, 10:]) - np.einsum("ij,ji->i", K[10:, :10],
                                               np.linalg.solve(A, K[:10, 10:]))
        np.testing.assert_allclose(r.test_predictions[c], np.broadcast_to(mean, (4, 5)),
                                   rtol=0, atol=1e-10)
        np.testing.assert_allclose(r.test_conditional_var[c], np.broadcast_to(var, (4, 5)),
                                   rtol=0, atol=1e-10)
    assert np.allclose(r.predictive_var(), r.test_predictions.reshape(-1, 5).var(0)
                       + r.test_conditional_var.reshape(-1, 5).mean(0), rtol=0, atol=1e-15)


def test_integrated_readout_samples_the_joint_posterior():
    """The same deep network (L = 2, N = (6, 5), T = 0.5) sampled two ways — (W, v) jointly by
    MALA, and the hidden weights of the marginal posterior by MALA with the readout integrated
    out — gives the same posterior predictive mean and variance at every test input within
    5 standard errors (SE from 16 independent chains per method, both added in quadrature), and
    the same test error; the marginal-posterior chains need no readout mixing."""
    X, y, Xt = _data(P=10, N0=4, seed=11, P0=4)
    yt = np.sign(Xt[:, 0])
    arch = kren.DeepArchitecture(2, 4, lambda0=1.0, lambdas=[1.0, 1.5])
    out = {}
    for readout in ("sampled", "integrated"):
        r = sample_posterior(arch, (6, 5), X, y, 0.5, 0.04, steps=800, burn_in=200, thin=10,
                             chains=16, X_test=Xt, y_test=yt, dtype=torch.float64, seed=21,
                             metropolis=True, readout=readout)
        m = r.test_predictions.mean(axis=1)                                 # (C, P0) per chain
        F, cv = r.test_predictions, r.test_conditional_var
        second = (F ** 2 + (0.0 if cv is None else cv)).mean(axis=1)        # E[f²] per chain
        out[readout] = (m, second - m ** 2, r)
        assert r.acceptance.mean() > 0.5
    (m1, v1, r1), (m2, v2, r2) = out["sampled"], out["integrated"]
    C = m1.shape[0]
    for a, b in ((m1, m2), (v1, v2)):
        se = np.sqrt(a.var(axis=0, ddof=1) / C + b.var(axis=0, ddof=1) / C)
        z = (a.mean(axis=0) - b.mean(axis=0)) / se
        assert np.abs(z).max() < 5.0, z
    e1, e2 = r1.test_error(), r2.test_error()
    assert abs(e1.total - e2.total) < 5 * math.hypot(e1.se, e2.se)


@pytest.mark.parametrize("activation", ["erf", "linear"])
def test_prior_sampling_reproduces_the_deep_nngp_kernels(activation):
    """Sampling the prior (no data, MALA, T = 1; chains start from independent prior draws): the
    average of every layer's K̂_l over draws and 48 independent chains equals K^{(l)}/λ_l
    (DeepArchitecture.layer_kernels) within 5 standard errors (from the spread of the chain
    means); the finite-width bias of the nonlinear layers is O(1/N) = 0.01 relative, below that
    SE (~2 %). ⟨θ²⟩ = 1/λ per parameter group. The check has teeth: a 15 % (erf) or 25 %
    (linear, whose deep kernels fluctuate more: products of L random matrices) error in any prior
    would shift a diagonal entry by more than 5 SE."""
    rng = np.random.default_rng(6)
    Xk = rng.standard_normal((5, 6))
    lams = [1.4, 0.8, 1.2]
    arch = kren.DeepArchitecture(3, 6, activation=activation, lambda0=2.0, lambdas=lams)
    s = LangevinSampler(arch, 100, 1.0, 0.2, chains=48, dtype=torch.float64, seed=4,
                        metropolis=True)
    r = s.run(None, None, steps=60, burn_in=0, thin=2, X_kernel=Xk)
    assert np.array_equal(r.layer_kernels[-1], r.kernel)
    for l, ref in enumerate(arch.layer_kernels(Xk)):
        chains = r.layer_kernel_chains[l]                                   # (48, 5, 5)
        se = chains.std(axis=0, ddof=1) / math.sqrt(48)
        z = (r.layer_kernels[l] - ref) / se
        assert np.abs(z).max() < 5.0, (l, np.abs(z).max())
        assert np.all((0.15 if activation == "erf" else 0.25) * np.diag(ref) > 5 * np.diag(se))
    for p, lam in s.network.prior_pairs():
        x = p.detach().numpy().reshape(48, -1)
        m2 = (x ** 2).mean(axis=1) * lam
        assert abs(m2.mean() - 1.0) < 5 * m2.std(ddof=1) / math.sqrt(48)


def test_bad_input_raises():
    arch = kren.DeepArchitecture(2, 6)
    with pytest.raises(kren.InvalidParameterError, match="L = 2 widths"):
        arch.network((3, 4, 5))
    with pytest.raises(kren.InvalidParameterError, match="integer widths"):
        arch.network(3.5)
    with pytest.raises(ValueError, match="readout must be"):
        LangevinSampler(arch, 4, 0.1, 0.01, readout="gibbs")
    with pytest.raises(TypeError, match="deep FC network"):
        LangevinSampler(kren.Architecture("fc", input_shape=6), 4, 0.1, 0.01,
                        readout="integrated")
    net = arch.network(4)
    with pytest.raises(ValueError, match="expected"):
        net.set_weights([np.zeros((4, 6)), np.zeros((3, 4))], np.zeros(4))


def test_mala_log_ratio_is_accurate_in_float32_at_a_million_parameters():
    """The MALA log acceptance ratio of float32 states with n = 1.3·10⁶ parameters (a width-800,
    three-layer network has about as many) under the prior alone (L = 0, ∇U = Tλθ: log α is
    O(√(n η³T³)) ~ 0.1, not 0 or −∞) against the textbook formula −(U' − U)/T − (|θ − θ' + η∇U'|²
    − |θ' − θ + η∇U|²)/(4ηT) summed exactly (math.fsum of the float32 values in float64).
    Tolerance: the factored terms t_i are each rounded a few times in float32 (≤ 8 ε32 |t_i|)
    and summed in float64; independent roundings add up to ≲ 8 ε32 (Σ t_i²)^½ times a small
    factor (probabilistic rounding-error analysis, Higham & Mary 2019); 10× that is ~5e-4 here.
    The float32 sums of the ~n/2-sized totals this replaced were off by O(1) (measured 2.4 on
    such data), which is what made MALA reject nearly every step at width 800."""
    from kren.sampling.langevin import mala_log_ratio
    n, T, eta = 1_300_000, 0.1, 0.02
    gen = torch.Generator().manual_seed(5)
    lam = torch.ones(n)
    theta0 = torch.randn((1, n), generator=gen)
    g0 = T * theta0
    theta1 = theta0 - eta * g0 + math.sqrt(2 * eta * T) * torch.randn((1, n), generator=gen)
    g1 = T * theta1
    zero = torch.zeros(1)
    got = float(mala_log_ratio(zero, zero, theta0, theta1, g0, g1, lam, eta, T)[0])
    t0, t1, a, b = (v[0].double().numpy() for v in (theta0, theta1, g0, g1))
    fwd = math.fsum((t1 - t0 + eta * a) ** 2)
    bwd = math.fsum((t0 - t1 + eta * b) ** 2)
    want = -0.5 * (math.fsum(t1 * t1) - math.fsum(t0 * t0)) - (bwd - fwd) / (4 * eta * T)
    d = t1 - t0
    terms = np.concatenate([0.5 * d * (2 * t0 + d), (a + b) * (eta * (b - a) - 2 * d) / (4 * T)])
    tol = 10 * 8 * np.finfo(np.float32).eps * math.sqrt(float(np.sum(terms ** 2)))
    assert abs(want) < 5 and tol < 1e-3
    assert abs(got - want) <= tol, (got, want, tol)
