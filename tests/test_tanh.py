"""tanh (kren.activations.TANH): kernels, means, CNN NNGP kernels and sampled networks.

tanh has no closed-form kernel; kren computes it from Gauss–Hermite coefficients and Mehler's
formula (kren.quadrature). The reference (tests/nngp_reference.py, which imports nothing from
kren) integrates the textbook double integral E[tanh(h) tanh(h')] with a composite
Gauss–Legendre rule in the eigenbasis of the covariance: another rule in other coordinates.
Both are asserted to agree to 1e-10 (kren targets 1e-11 relative to √(E tanh²(h) E tanh²(h')),
which is < 1; the reference is converged to ~1e-16, checked below against its own finer rule
and against the erf closed form).
"""
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import erf

import kren
from kren import activations as A
from kren import kernels as kk

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nngp_reference as ref  # noqa: E402
from test_kernels import CONFIGS, DATA  # noqa: E402

TANH = A.get("tanh")
TOL = 1e-10
# variances 0 … 16 (a = 0, a tiny, unequal pairs) and correlations up to |ρ| = 1
VARIANCES = [(0.0, 1.0), (1e-8, 2.0), (0.05, 0.05), (1.0, 1.0), (2.5, 0.3), (0.3, 4.0),
             (6.0, 6.0), (16.0, 0.7), (12.0, 16.0)]
RHOS = [-1.0, -1.0 + 1e-6, -0.9, -0.5, 0.0, 0.3, 0.9, 1.0 - 1e-6, 1.0]


def grid():
    pts = [(r * math.sqrt(a * b), a, b) for a, b in VARIANCES for r in RHOS]
    return (np.array(v) for v in zip(*pts))


def test_reference_quadrature_is_converged():
    # the reference against itself with 16 instead of 12 nodes per panel, and against the erf
    # closed form through the same composite rule
    for c, a, b in zip(*grid()):
        k12 = ref.gaussian_double_integral(np.tanh, c, a, b)
        assert abs(k12 - ref.gaussian_double_integral(np.tanh, c, a, b, 16)) <= 1e-14
        assert abs(ref.gaussian_double_integral(erf, c, a, b) - ref.kernel_erf(c, a, b)) <= 1e-14


def test_kernel_and_mean_vs_reference():
    c, a, b = grid()
    expect = ref.kernel_tanh(c, a, b)
    assert np.max(np.abs(TANH.kernel(c, a, b) - expect)) <= TOL
    # in place on a block: rows a_p, columns b_q
    ra = np.array([0.0, 0.05, 1.0, 2.5, 7.0])
    rb = np.array([0.3, 1.0, 4.0, 16.0])
    rho = np.linspace(-1, 1, 20).reshape(5, 4)
    blk = rho * np.sqrt(np.outer(ra, rb))
    expect = ref.kernel_tanh(blk, ra[:, None], rb[None, :])
    assert TANH.kernel_inplace(blk, ra, rb) is blk
    assert np.max(np.abs(blk - expect)) <= TOL
    # K(c, a, b) = K(c, b, a); odd σ: μ = 0 exactly and K(−c) = −K(c)
    np.testing.assert_allclose(TANH.kernel(c, b, a), TANH.kernel(c, a, b), rtol=0, atol=1e-15)
    np.testing.assert_allclose(TANH.kernel(-c, a, b), -TANH.kernel(c, a, b), rtol=0, atol=1e-15)
    assert TANH.zero_mean and np.array_equal(TANH.mean(ra), np.zeros_like(ra))


def test_tanh_is_a_first_class_activation():
    assert "tanh" in A.names() and A.ZERO_MEAN["tanh"] is True
    arch = kren.Architecture("cnn", input_shape=(1, 8), mask=4, stride=2, activation="tanh")
    assert arch.act is TANH and arch.zero_mean and arch.describe()["activation"] == "tanh"
    h = np.linspace(-3, 3, 13)
    np.testing.assert_array_equal(A.sigma("tanh", h), np.tanh(h))
    from derivations import steps
    res, expected = steps.unit_mean_symbolic("tanh")        # odd: zero by symmetry
    assert res == 0 and expected == 0
    with pytest.raises(ValueError, match="already registered"):
        A.register(A.Activation.from_function(lambda x: np.tanh(2 * x), "tanh"), replace=True)


# ----------------------------------------------------------------------------- CNN on digits
@pytest.mark.parametrize("name, P", [("2x2-s2", 5), ("4x4-s4", 8), ("3ch-3x3-s2-circular", 4)])
def test_cnn_nngp_kernel_on_digits_vs_reference(name, P):
    data, mask, stride, padding, l0, l1 = CONFIGS[name]
    shape, loader = DATA[data]
    X = loader()[:P]
    arch = kren.Architecture("cnn", input_shape=shape, mask=mask, stride=stride,
                             padding=padding, activation="tanh", lambda0=l0, lambda1=l1)
    expect = ref.nngp(X, X, shape, mask, stride, padding, "tanh", l0, l1)
    assert np.max(np.abs(arch.nngp_kernel(X) - expect)) <= TOL
    expect_x = ref.nngp(X[:2], X[2:], shape, mask, stride, padding, "tanh", l0, l1)
    assert np.max(np.abs(arch.nngp_kernel(X[:2], X[2:]) - expect_x)) <= TOL
    # off-diagonal blocks K_ij (i ≠ j) of the train tensor and the same-input kernels K_ij(x, x)
    C, v1, v2 = ref.local_covariances(X, X, shape, mask, stride, padding, l0)
    pairs = [(0, arch.n - 1), (1, 2)]
    kt = kk.train_kernels(arch, X, pairs=pairs)
    for p, (i, j) in enumerate(pairs):
        blk = ref.kernel_tanh(C[i, j], v1[i][:, None], v2[j][None, :])
        assert np.max(np.abs(kt.blocks[p] - blk)) <= TOL
    assert np.array_equal(kt.mu, np.zeros_like(kt.mu))
    D = kk.test_diagonal(arch, X[:1])
    assert np.max(np.abs(D - ref.same_input_kernels(X[:1], shape, mask, stride, padding,
                                                    "tanh", l0))) <= TOL


def test_pooled_cnn_nngp_kernel_on_digits_vs_reference():
    """Global average pooling (THEORY §3b): (1/(λ1 n²)) Σ_ij K_ij, every block, with tanh."""
    data, mask, stride, padding, l0, l1 = CONFIGS["4x4-s4"]
    shape, loader = DATA[data]
    X = loader()[:5]
    arch = kren.Architecture("cnn", input_shape=shape, mask=mask, stride=stride,
                             padding=padding, activation="tanh", lambda0=l0, lambda1=l1,
                             readout="pool")
    expect = ref.nngp_pooled(X, X, shape, mask, stride, padding, "tanh", l0, l1)
    assert np.max(np.abs(arch.nngp_kernel(X) - expect)) <= TOL
    expect_x = ref.nngp_pooled(X[:2], X[2:], shape, mask, stride, padding, "tanh", l0, l1)
    assert np.max(np.abs(arch.nngp_kernel(X[:2], X[2:]) - expect_x)) <= TOL


# ----------------------------------------------------------------------------- sampled networks
@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: threads only add overhead on a shared machine (as in test_sampling.py)."""
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_sampler_gradient_with_tanh_matches_autograd():
    torch = pytest.importorskip("torch")
    from kren.sampling import build_network
    h = torch.linspace(-5, 5, 21, dtype=torch.float64)
    assert torch.allclose(TANH.sigma_prime_torch(h), 1 / torch.cosh(h) ** 2, rtol=0, atol=1e-15)
    for spec in (dict(kind="cnn", input_shape=(2, 6, 5), mask=(2, 3), stride=(1, 2),
                      padding="circular"),
                 dict(kind="lcn", input_shape=(3, 7), mask=3, stride=2),
                 dict(kind="fc", input_shape=(2, 5))):
        arch = kren.Architecture(activation="tanh", **spec)
        rng = np.random.default_rng(2)
        X = rng.normal(size=(5, arch.N0))
        y = torch.as_tensor(rng.normal(size=5))
        net = build_network(arch, 3, dtype=torch.float64, seed=3, chains=2)
        L, f, gW, gv = net.loss_and_grad(net.prepare(X), y)
        out = net(X)
        (0.5 * ((out - y) ** 2).sum()).backward()
        np.testing.assert_allclose(f.numpy(), out.detach().numpy(), rtol=0, atol=1e-13)
        np.testing.assert_allclose(gW.numpy(), net.W.grad.numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(gv.numpy(), net.v.grad.numpy(), rtol=0, atol=1e-12)


def test_prior_sampled_tanh_cnn_has_the_nngp_kernel():
    """As tests/test_sampling.py does for erf: MALA on the prior, ⟨K̂⟩ over 32 independent
    chains equals the NNGP kernel (1/(λ1 n)) Σ_i K_ii within 5 standard errors of the mean."""
    torch = pytest.importorskip("torch")
    from kren.sampling import LangevinSampler
    arch = kren.Architecture("cnn", input_shape=(2, 6), mask=3, stride=2, padding="circular",
                             activation="tanh", lambda0=0.5, lambda1=0.5)
    Xk = np.random.default_rng(6).normal(size=(5, arch.N0))
    s = LangevinSampler(arch, 40, 1.0, 0.3, chains=32, dtype=torch.float64, seed=4,
                        metropolis=True)
    r = s.run(None, None, steps=400, burn_in=0, thin=2, X_kernel=Xk)
    K = arch.nngp_kernel(Xk)
    se = r.kernel_chains.std(axis=0, ddof=1) / math.sqrt(32)
    assert np.all(np.abs(r.kernel - K) < 5 * se + 1e-12), np.max(np.abs(r.kernel - K) / se)
    assert np.all(0.1 * np.diag(K) > 5 * np.diag(se))          # resolves a 10 % error


def test_large_width_tanh_network_is_gp_regression_with_the_nngp_kernel():
    """THEORY §5.2 with tanh, as tests/test_sampling.py checks it for erf: FC, N = 500, P = 6;
    posterior means within 4 SE and variances within 5 SE of GP regression with the NNGP kernel,
    the averaged empirical kernel within 1.5 % of it."""
    torch = pytest.importorskip("torch")
    from kren.sampling import sample_posterior
    rng = np.random.default_rng(3)
    arch = kren.Architecture("fc", input_shape=3, activation="tanh", lambda0=0.5)
    X, Xt = rng.normal(size=(6, 3)), rng.normal(size=(4, 3))
    y = np.sign(X[:, 0])
    T = 0.5
    K, k, k00 = arch.nngp_kernel(X), arch.nngp_kernel(Xt, X), np.diag(arch.nngp_kernel(Xt))
    Amat = K + T * np.eye(6)
    gp_mean = k @ np.linalg.solve(Amat, y)
    gp_var = k00 - np.einsum("ij,ji->i", k, np.linalg.solve(Amat, k.T))
    r = sample_posterior(arch, 500, X, y, T, step_size=0.1, steps=2000, burn_in=400, thin=5,
                         chains=8, X_test=Xt, dtype=torch.float32, metropolis=True, seed=0)
    mean, se = r.predictive_mean()
    assert np.all(np.abs(mean - gp_mean) < 4 * se), (mean, gp_mean, se)
    var, var_se = r.predictive_var(return_se=True)
    assert np.all(np.abs(var - gp_var) < 5 * var_se), (var, gp_var, var_se)
    np.testing.assert_allclose(r.kernel, K, rtol=0, atol=0.015 * np.abs(K).max())
