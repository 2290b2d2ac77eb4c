"""The CNN with a pooled readout (readout="pool", THEORY §1, §2, §3b, §5.8): kernels against the
independent brute-force reference (tests/nngp_reference.py), the generated pooling maps
(kren.generated.pool), and the finite networks (NumPy and torch) against hand-written loops,
autograd, the prior average and, at large width, GP regression with the pooled NNGP kernel.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import kren
import nngp_reference as ref
from kren import forward as npforward
from kren import pooling
from kren.generated import pool as gpool
from kren.kernels import MemoryBudgetError, cross_kernels, test_diagonal, train_kernels

# 1D and 2D inputs, several input channels, valid and circular padding, overlapping and
# non-overlapping patches, non-default priors.
GEOMETRIES = [
    dict(input_shape=(2, 9), mask=3, stride=2, padding="valid", lambda0=1.3, lambda1=0.7),
    dict(input_shape=(1, 7), mask=3, stride=2, padding="circular"),
    dict(input_shape=(2, 6, 5), mask=(2, 3), stride=(1, 2), padding="circular", lambda0=0.8,
         lambda1=1.3),
    dict(input_shape=(1, 6, 6), mask=3, stride=3, padding="valid"),
    dict(input_shape=(3, 5, 5), mask=(3, 2), stride=(2, 1), padding="valid", lambda1=2.0),
]
GIDS = [f"{len(g['input_shape']) - 1}d-{g['padding']}-m{g['mask']}s{g['stride']}"
        for g in GEOMETRIES]


def _pool(g, activation="erf"):
    return kren.Architecture("cnn", activation=activation, readout="pool", **g)


def _ref_args(arch):
    return dict(input_shape=arch.input_shape, mask=arch.geometry.mask, stride=arch.geometry.stride,
                padding=arch.padding)


def _data(arch, P, seed):
    return np.random.default_rng(seed).standard_normal((P, arch.N0))


# ---------------------------------------------------------------- architecture
def test_readout_validation_and_describe():
    a = kren.Architecture("cnn", input_shape=(1, 6), mask=2, readout="pool")
    assert a.readout == "pool" and a.describe()["readout"] == "pool"
    assert kren.Architecture("cnn", input_shape=(1, 6), mask=2).readout == "local"
    assert kren.Architecture("fc", input_shape=4).describe()["readout"] == "local"
    for kind, kw in (("fc", {}), ("lcn", dict(input_shape=(1, 6), mask=2))):
        with pytest.raises(ValueError, match="readout='pool'.*kind='cnn'"):
            kren.Architecture(kind, readout="pool", **kw)
    with pytest.raises(ValueError, match="readout must be one of"):
        kren.Architecture("cnn", input_shape=(1, 6), mask=2, readout="mean")
    # different readouts are different architectures (kernels are cached by describe())
    assert a != kren.Architecture("cnn", input_shape=(1, 6), mask=2)


# ---------------------------------------------------------------- kernels vs the reference
@pytest.mark.parametrize("activation", ["erf", "relu"])
@pytest.mark.parametrize("g", GEOMETRIES, ids=GIDS)
def test_pooled_kernels_match_bruteforce_reference(g, activation):
    """NNGP (1/(λ1 n²)) Σ_ij K_ij, the accumulated train block, the cross block, the test
    diagonal and the pooled means, all against the brute-force loop over patch pairs, to 1e-12
    (float64 round-off of O(1) kernels summed over ≤ 100 pairs)."""
    arch = _pool(g, activation)
    X, X0 = _data(arch, 9, 1), _data(arch, 5, 2)
    ra = dict(_ref_args(arch), activation=activation, lambda0=arch.lambda0)
    want = ref.nngp_pooled(X, X, lambda1=arch.lambda1, **ra)
    np.testing.assert_allclose(arch.nngp_kernel(X), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(arch.nngp_kernel(X0, X), ref.nngp_pooled(X0, X, lambda1=arch.lambda1,
                                                                       **ra), rtol=0, atol=1e-12)
    kt = pooling.pooled_train_kernel(arch, X)
    assert kt.blocks.shape == (1, 9, 9) and kt.n == 1 and kt.mu.shape == (1, 9)
    np.testing.assert_allclose(kt.blocks[0], want * arch.lambda1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(kt.mu[0], ref.pooled_unit_mean(X, **ra), rtol=0, atol=1e-13)
    np.testing.assert_allclose(pooling.pooled_cross_kernel(arch, X0, X),
                               ref.nngp_pooled(X0, X, **ra), rtol=0, atol=1e-12)
    np.testing.assert_allclose(pooling.pooled_test_diagonal(arch, X0),
                               np.diag(ref.nngp_pooled(X0, X0, **ra)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(pooling.pooled_unit_means(arch, X0)[0],
                               ref.pooled_unit_mean(X0, **ra), rtol=0, atol=1e-13)
    # the pooled kernel is not the local readout's NNGP (1/(λ1 n)) Σ_i K_ii (n ≥ 2 here)
    local = ref.nngp(X, X, lambda1=arch.lambda1, **ra)
    assert np.abs(want - local).max() > 1e-3


@pytest.mark.parametrize("activation", ["erf", "relu", "linear"])
def test_generated_pooling_of_stored_tensors(activation):
    """kren.generated.pool on the local tensors (i ≤ j train blocks, full cross tensor, test
    diagonal) = the accumulated kernels = the reference; partial sums over disjoint groups of
    pairs add up to K_pool."""
    arch = _pool(GEOMETRIES[2], activation)
    X, X0 = _data(arch, 7, 3), _data(arch, 4, 4)
    kt = train_kernels(arch, X)
    Kp = gpool.pooled_kernel(kt.blocks, kt.pairs, kt.n)
    np.testing.assert_allclose(Kp, pooling.pooled_train_kernel(arch, X).blocks[0], rtol=0,
                               atol=1e-13)
    ra = dict(_ref_args(arch), activation=activation, lambda0=arch.lambda0)
    np.testing.assert_allclose(Kp, ref.nngp_pooled(X, X, **ra), rtol=0, atol=1e-12)
    np.testing.assert_allclose(gpool.pooled_means(kt.mu)[0], ref.pooled_unit_mean(X, **ra),
                               rtol=0, atol=1e-13)
    parts = sum(gpool.pooled_kernel_partial(kt.blocks[s], kt.pairs[s], kt.n)
                for s in (slice(0, 5), slice(5, 6), slice(6, None)))
    np.testing.assert_allclose(parts, Kp, rtol=0, atol=1e-14)
    np.testing.assert_allclose(gpool.pooled_cross_kernel(cross_kernels(arch, X0, X)),
                               ref.nngp_pooled(X0, X, **ra), rtol=0, atol=1e-12)
    np.testing.assert_allclose(gpool.pooled_test_diagonal(test_diagonal(arch, X0)),
                               np.diag(ref.nngp_pooled(X0, X0, **ra)), rtol=0, atol=1e-12)


def test_generated_pooling_rejects_bad_input():
    arch = _pool(GEOMETRIES[1])
    kt = train_kernels(arch, _data(arch, 5, 0))
    with pytest.raises(ValueError, match="every patch pair"):
        gpool.pooled_kernel(kt.blocks[:-1], kt.pairs[:-1], kt.n)
    with pytest.raises(ValueError, match="distinct patch pairs"):
        gpool.pooled_kernel_partial(kt.blocks[[0, 0]], kt.pairs[[0, 0]], kt.n)
    with pytest.raises(ValueError, match="distinct patch pairs"):
        gpool.pooled_kernel_partial(kt.blocks[:1], np.array([[1, 0]]), kt.n)
    with pytest.raises(ValueError, match="positive integer"):
        gpool.pooled_kernel(kt.blocks, kt.pairs, 2.0)
    with pytest.raises(ValueError, match="outside"):
        gpool.pooled_kernel(kt.blocks, kt.pairs, kt.n - 1)
    with pytest.raises(ValueError, match=r"\(n, n, P1, P2\)"):
        gpool.pooled_cross_kernel(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"\(n, n, P0\)"):
        gpool.pooled_test_diagonal(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\(n, P\)"):
        gpool.pooled_means(np.zeros(4))
    with pytest.raises(ValueError, match="readout='pool'"):
        pooling.pooled_train_kernel(kren.Architecture("cnn", input_shape=(1, 7), mask=3),
                                    _data(arch, 3, 0))


def test_pooled_accumulation_within_a_small_memory_budget():
    """A budget that fits one block per pass gives the same kernels; one that cannot hold the
    accumulator raises before allocating, naming the size."""
    arch = _pool(GEOMETRIES[3], "relu")
    X, X0 = _data(arch, 12, 5), _data(arch, 6, 6)
    big = pooling.pooled_train_kernel(arch, X).blocks[0]
    P, n, M = 12, arch.n, arch.M
    one_block = 3 * P * P * 8 + 2 * P * n * M * 8 + 2 * P * P * 8 + P * P * 8
    small = pooling.pooled_train_kernel(arch, X, memory_budget=one_block).blocks[0]
    np.testing.assert_allclose(small, big, rtol=0, atol=1e-14)
    np.testing.assert_allclose(pooling.pooled_cross_kernel(arch, X0, X, memory_budget=20000),
                               pooling.pooled_cross_kernel(arch, X0, X), rtol=0, atol=1e-14)
    with pytest.raises(MemoryBudgetError, match="pooled train kernel.*over the memory budget"):
        pooling.pooled_train_kernel(arch, X, memory_budget=1000)
    with pytest.raises(MemoryBudgetError, match="pooled cross kernel"):
        arch.nngp_kernel(X0, X, memory_budget=500)
    # float32 blocks (float64 accumulator): single-precision round-off
    np.testing.assert_allclose(pooling.pooled_train_kernel(arch, X, dtype=np.float32).blocks[0],
                               big, rtol=0, atol=1e-6)


@pytest.mark.parametrize("activation", ["erf", "relu", "linear"])
def test_one_patch_pooled_equals_fc(activation):
    """THEORY §5.8: a mask covering the input (n = 1) gives the FC kernel and means."""
    X, X0 = _data(kren.Architecture("fc", input_shape=24), 6, 7), _data(
        kren.Architecture("fc", input_shape=24), 3, 8)
    pool = kren.Architecture("cnn", input_shape=(2, 3, 4), mask=(3, 4), activation=activation,
                             readout="pool", lambda0=0.7, lambda1=1.4)
    fc = kren.Architecture("fc", input_shape=24, activation=activation, lambda0=0.7, lambda1=1.4)
    assert pool.n == 1
    np.testing.assert_allclose(pool.nngp_kernel(X), fc.nngp_kernel(X), rtol=0, atol=1e-14)
    np.testing.assert_allclose(pool.nngp_kernel(X0, X), fc.nngp_kernel(X0, X), rtol=0, atol=1e-14)
    kt, kf = pooling.pooled_train_kernel(pool, X), fc.kernels(X)
    np.testing.assert_allclose(kt.blocks, kf.blocks, rtol=0, atol=1e-14)
    np.testing.assert_allclose(kt.mu, kf.mu, rtol=0, atol=1e-15)


def test_pooled_action_is_the_fc_action_on_the_pooled_block():
    """THEORY §5.8 numerically: the generated FC action and gradient on (K_pool, μ̄) equal the
    pooled saddle-point quantities written in the CNN blocks with plain NumPy:
    S = −QQ̄ + log(1+Q̄) + (log det A + yᵀA⁻¹y)/N, A = T + (1/(λ1n²)) Σ_ij [Q(K_ij − μ_iμ_jᵀ) +
    μ_iμ_jᵀ/(1+Q̄)], dS/dQ = −Q̄ + (1/(Nλ1n²)) Σ_ij ⟨K_ij − μ_iμ_jᵀ, B⟩, B = A⁻¹ − zzᵀ."""
    from kren.generated import fc
    arch = _pool(GEOMETRIES[0], "relu")
    X = _data(arch, 8, 9)
    y = np.sign(X[:, 0])
    kt = train_kernels(arch, X)
    n, l1, T_, N_, Q, Qb = kt.n, arch.lambda1, 0.3, 11.0, 1.2, 0.4
    blocks = {}
    for (i, j), b in zip(kt.pairs, kt.blocks):
        blocks[(i, j)], blocks[(j, i)] = b, b.T
    KR = sum(Q * (blocks[(i, j)] - np.outer(kt.mu[i], kt.mu[j]))
             + np.outer(kt.mu[i], kt.mu[j]) / (1 + Qb) for i in range(n) for j in range(n))
    A = T_ * np.eye(8) + KR / (l1 * n * n)
    Ai = np.linalg.inv(A)
    z = Ai @ y
    S = -Q * Qb + np.log(1 + Qb) + (np.linalg.slogdet(A)[1] + y @ z) / N_
    B = Ai - np.outer(z, z)
    dQ = -Qb + sum(np.sum((blocks[(i, j)] - np.outer(kt.mu[i], kt.mu[j])) * B)
                   for i in range(n) for j in range(n)) / (N_ * l1 * n * n)
    pt = pooling.pooled_train_kernel(arch, X)
    got = fc.action_gradient(Q, Qb, pt.blocks, pt.pairs, pt.mu, y, T_, N_, l1)
    assert got[0] == pytest.approx(S, rel=1e-12)
    assert got[1] == pytest.approx(dQ, rel=1e-10, abs=1e-13)


# ---------------------------------------------------------------- finite networks (NumPy)
@pytest.mark.parametrize("activation", ["erf", "relu", "linear"])
def test_pooled_forward_equals_hand_written_loop(activation):
    from scipy.special import erf
    arch = kren.Architecture("cnn", input_shape=(2, 9), mask=3, stride=2, activation=activation,
                             readout="pool")
    n, M = arch.n, arch.M
    X = _data(arch, 4, 2)
    params = npforward.init_weights(arch, 3, 5)
    W, v = params["W"], params["v"]
    assert W.shape == (3, M) and v.shape == (3,)
    sig = {"erf": erf, "relu": lambda h: max(h, 0.0), "linear": lambda h: h}[activation]
    img = X.reshape(4, 2, 9)
    expected = np.zeros(4)
    for mu in range(4):
        s = 0.0
        for a in range(3):
            pooled = 0.0
            for i in range(n):
                patch = [img[mu, c, 2 * i + k] for c in range(2) for k in range(3)]
                pooled += sig(sum(W[a, m] * patch[m] for m in range(M)) / np.sqrt(M)) / n
            s += v[a] * pooled
        expected[mu] = s / np.sqrt(3)
    np.testing.assert_allclose(npforward.forward(arch, X, params), expected, rtol=1e-12,
                               atol=1e-14)
    np.testing.assert_allclose(npforward.forward(arch, X, {"W": W, "v": v[:, None]}), expected,
                               rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match=r"\(3,\) or \(3, 1\)"):
        npforward.forward(arch, X, {"W": W, "v": np.zeros((3, n))})
    # K̂ = (1/(λ1 N)) Σ_a φ̄_a φ̄_aᵀ
    phibar = npforward.features(arch, X, W).mean(axis=2)
    np.testing.assert_allclose(npforward.empirical_kernel(arch, X, W),
                               phibar @ phibar.T / (arch.lambda1 * 3), rtol=1e-13, atol=1e-15)


def test_pooled_is_local_readout_with_tied_weights_and_fc_at_one_patch():
    """f_pool(v) = f_local(v_{a,i} = v_a/√n): N^{-1/2} v_a (1/n) = (Nn)^{-1/2} v_a/√n. With one
    patch the pooled CNN is the FC network."""
    g = GEOMETRIES[2]
    pool = _pool(g, "relu")
    local = kren.Architecture("cnn", activation="relu", **g)
    X = _data(pool, 5, 3)
    p = npforward.init_weights(pool, 4, 1)
    v_local = np.repeat(p["v"][:, None], pool.n, axis=1) / np.sqrt(pool.n)
    np.testing.assert_allclose(npforward.forward(pool, X, p),
                               npforward.forward(local, X, {"W": p["W"], "v": v_local}),
                               rtol=1e-13, atol=1e-15)
    shape = (2, 4, 5)
    one = kren.Architecture("cnn", input_shape=shape, mask=(4, 5), readout="pool")
    fc = kren.Architecture("fc", input_shape=shape)
    Xf = _data(fc, 6, 4)
    pf = npforward.init_weights(fc, 7, 2)
    np.testing.assert_allclose(npforward.forward(one, Xf, pf), npforward.forward(fc, Xf, pf),
                               rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------- finite networks (torch)
torch = pytest.importorskip("torch")
from kren.sampling import LangevinSampler, build_network, sample_posterior  # noqa: E402
from kren.sampling import suggest_step_size  # noqa: E402


@pytest.mark.parametrize("activation", ["erf", "relu", "linear"])
@pytest.mark.parametrize("g", GEOMETRIES[:3], ids=GIDS[:3])
def test_pooled_network_matches_numpy_forward(g, activation):
    """Same weights → same f(x), features and K̂ in torch and NumPy (float64: round-off only)."""
    torch.set_num_threads(1)
    arch = _pool(g, activation)
    X, X2 = _data(arch, 6, 1), _data(arch, 3, 2)
    params = npforward.init_weights(arch, 4, 7)
    net = arch.network(4, dtype=torch.float64).set_weights(params["W"], params["v"])
    assert tuple(net.v.shape) == (1, 4, 1) and net.scale == pytest.approx(0.5)
    np.testing.assert_allclose(net(X).detach().numpy(), npforward.forward(arch, X, params),
                               rtol=0, atol=1e-13)
    np.testing.assert_allclose(net.features(X).numpy(), npforward.features(arch, X, params["W"]),
                               rtol=0, atol=1e-13)
    np.testing.assert_allclose(net.empirical_kernel(X, X2).numpy(),
                               npforward.empirical_kernel(arch, X, params["W"], X2),
                               rtol=0, atol=1e-13)
    np.testing.assert_allclose(net.empirical_kernel(X).numpy(),
                               npforward.empirical_kernel(arch, X, params["W"]), rtol=0, atol=1e-13)
    # the fast internal path (used by the sampler) agrees with the autograd forward
    f_int = net._f(net.act.sigma_torch(net._pre(net.prepare(X))))
    np.testing.assert_allclose(f_int[0].numpy(), net(X).detach().numpy(), rtol=0, atol=1e-13)


@pytest.mark.parametrize("activation", ["erf", "relu", "linear"])
def test_pooled_closed_form_gradient_matches_autograd(activation):
    """loss_and_grad (closed form, used by the sampler) = autograd of ½Σ(f − y)², per chain."""
    torch.set_num_threads(1)
    arch = _pool(GEOMETRIES[2], activation)
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
    assert gv.shape == net.v.shape == (2, 3, 1)
    np.testing.assert_allclose(gW.numpy(), net.W.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(gv.numpy(), net.v.grad.numpy(), rtol=0, atol=1e-12)


def test_pooled_step_size_curvature_matches_autograd_jacobian():
    """suggest_step_size for the pooled readout: its tangent matrix JJᵀ = autograd's."""
    torch.set_num_threads(1)
    arch = _pool(GEOMETRIES[0], "erf")
    X = np.random.default_rng(4).normal(size=(7, arch.N0))
    T = 0.3
    eta = suggest_step_size(arch, 3, X, T, fraction=1.0, seed=2, chains=2)
    net = build_network(arch, 3, seed=2, chains=2)
    h_max = 0.0
    for c in range(2):
        single = arch.network(3).set_weights(net.W.data[c], net.v.data[c])
        J = torch.autograd.functional.jacobian(
            lambda W, v: _pooled_f(single, X, W, v), (single.W.detach(), single.v.detach()))
        Jm = torch.cat([J[0].reshape(7, -1), J[1].reshape(7, -1)], dim=1)
        h_max = max(h_max, float(torch.linalg.eigvalsh(Jm @ Jm.T)[-1]))
    assert eta == pytest.approx(1.0 / (h_max + T * max(arch.lambda0, arch.lambda1)), rel=1e-10)


def _pooled_f(net, X, W, v):
    """f(X) = N^{-1/2} Σ_a v_a (1/n) Σ_i erf(w_a·x_i/√M), an explicit function of (W, v)."""
    x = net.patches(X)
    h = torch.einsum("pim,cam->cpai", x, W) / math.sqrt(net.M)
    return (torch.einsum("cpa,ca->cp", torch.erf(h).mean(dim=3), v[..., 0]) / math.sqrt(net.N))[0]


def test_pooled_prior_empirical_kernel_is_the_pooled_nngp_kernel():
    """THEORY §2: E_W K̂ = (1/(λ1 n²)) Σ_ij K_ij at any width. (a) 400 independent prior draws
    (chains) of a width-10 network: the mean of K̂ within 5 standard errors (the chain means are
    independent, their spread gives the SE), while the local readout's NNGP kernel is resolved
    as different; (b) MALA sampling of the prior (no data) through the sampler's own K̂
    accumulation (chains of width 200, autocorrelated draws: the SE is from the spread of the
    32 independent chain means), as the local-readout test does."""
    torch.set_num_threads(1)
    arch = kren.Architecture("cnn", input_shape=(2, 6), mask=3, stride=2, padding="circular",
                             lambda0=2.0, lambda1=0.5, activation="relu", readout="pool")
    Xk = np.random.default_rng(6).normal(size=(5, arch.N0))
    K = arch.nngp_kernel(Xk)
    net = build_network(arch, 10, dtype=torch.float64, seed=1, chains=400)
    Kh = net.empirical_kernel(Xk).numpy()
    se = Kh.std(axis=0, ddof=1) / math.sqrt(400)
    assert np.all(np.abs(Kh.mean(axis=0) - K) < 5 * se), np.max(np.abs(Kh.mean(0) - K) / se)
    ra = dict(_ref_args(arch), activation="relu", lambda0=2.0, lambda1=0.5)
    local = ref.nngp(Xk, Xk, **ra)
    assert np.max(np.abs(local - K) / se) > 20
    s = LangevinSampler(arch, 200, 1.0, 0.3, chains=32, dtype=torch.float64, seed=4,
                        metropolis=True)
    r = s.run(None, None, steps=400, burn_in=0, thin=2, X_kernel=Xk)
    se = r.kernel_chains.std(axis=0, ddof=1) / math.sqrt(32)
    assert np.all(np.abs(r.kernel - K) < 5 * se + 1e-12), np.max(np.abs(r.kernel - K) / se)
    # not toothless: a 20 % error in either prior (relu: K ∝ 1/λ0 and ∝ 1/λ1) is resolved
    assert np.all(0.2 * np.diag(K) > 5 * np.diag(se))
    assert np.max(np.abs(local - K) / se) > 20
    assert s.network.v.shape == (32, 200, 1)


def test_large_width_pooled_network_is_gp_regression_with_the_pooled_nngp_kernel():
    """THEORY §5.2 with §3b: N → ∞ at fixed P, the posterior of the pooled CNN is GP regression
    with the pooled NNGP kernel and noise T. N = 500, P = 6 (α = 0.012: the finite-width shift,
    Q − 1 = O(α), is far below the Monte-Carlo error). Means within 4 SE, variances within 5 SE,
    the averaged K̂ within 1.5 % of the pooled NNGP kernel; the local readout's NNGP kernel
    (1/(λ1 n)) Σ_i K_ii would predict means many SE away."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(3)
    arch = kren.Architecture("cnn", input_shape=(1, 6), mask=3, stride=2, padding="circular",
                             readout="pool")
    X, Xt = rng.normal(size=(6, 6)), rng.normal(size=(4, 6))
    y = np.sign(X[:, 0] + X[:, 3])
    T = 0.1

    def gp(K, k, k00):
        A = K + T * np.eye(6)
        return k @ np.linalg.solve(A, y), k00 - np.einsum("ij,ji->i", k, np.linalg.solve(A, k.T))

    K = arch.nngp_kernel(X)
    gp_mean, gp_var = gp(K, arch.nngp_kernel(Xt, X), np.diag(arch.nngp_kernel(Xt)))
    r = sample_posterior(arch, 500, X, y, T, step_size=0.05, steps=2000, burn_in=400, thin=5,
                         chains=8, X_test=Xt, dtype=torch.float32, metropolis=True, seed=0)
    mean, se = r.predictive_mean()
    assert np.all(np.abs(mean - gp_mean) < 4 * se), (mean, gp_mean, se)
    var, var_se = r.predictive_var(return_se=True)
    assert np.all(np.abs(var - gp_var) < 5 * var_se), (var, gp_var, var_se)
    np.testing.assert_allclose(r.kernel, K, rtol=0, atol=0.015 * np.abs(K).max())
    ra = dict(_ref_args(arch), activation="erf")
    loc = [ref.nngp(a, b, **ra) for a, b in ((X, X), (Xt, X), (Xt, Xt))]
    loc_mean, _ = gp(loc[0], loc[1], np.diag(loc[2]))
    assert np.max(np.abs(mean - loc_mean) / se) > 10
    assert r.diagnostics().ok
