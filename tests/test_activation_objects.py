"""Activation objects (kren.activations): registry, identity, user-supplied σ, the quadrature path.

The generic path (Gauss–Hermite coefficients + Mehler's formula, kren.quadrature) is checked
against numbers fixed independently of it: the erf closed form (Williams), the exact moments of
σ(h) = h² (E[h²h'²] = ab + 2c², E h² = a, Isserlis), autograd, and the zero-mean/(Q, Q̄) choice
of the estimators.
"""
import copy
import json
import math
import pickle

import numpy as np
import pytest
from scipy.special import erf

import kren
from kren import activations as A
from kren.activations import Activation
from kren.quadrature import QuadratureWarning


@pytest.fixture
def registry():
    """Restore the activation registry after a test that registers something."""
    saved = dict(A._REGISTRY)
    yield A
    A._REGISTRY.clear()
    A._REGISTRY.update(saved)


def _grid(variances, rhos):
    c, a, b = zip(*[(r * math.sqrt(x * y), x, y) for x, y in variances for r in rhos])
    return np.array(c), np.array(a), np.array(b)


VARS = [(0.0, 1.0), (1e-8, 2.0), (0.05, 0.05), (1.0, 1.0), (2.5, 0.3), (0.3, 4.0), (6.0, 6.0),
        (20.0, 0.7), (16.0, 16.0)]
RHOS = [-1.0, -1.0 + 1e-6, -0.9, -0.5, 0.0, 0.3, 0.9, 1.0 - 1e-6, 1.0]


@pytest.fixture(scope="module")
def erf_q():
    return Activation.from_function(erf, "erf_q", sigma_torch=lambda h: h.erf())


@pytest.fixture(scope="module")
def square():
    return Activation.from_function(lambda h: h * h, "square", sigma_torch=lambda h: h * h,
                                    sympy=lambda h: h**2)


# ----------------------------------------------------------------------------- registry
def test_registry_resolves_names_and_objects():
    for name in ("erf", "relu", "linear"):
        act = A.get(name)
        assert isinstance(act, Activation) and act.name == name and A.get(act) is act
        assert name in A.names()
    assert A.get("erf").zero_mean and A.get("linear").zero_mean and not A.get("relu").zero_mean
    with pytest.raises(ValueError, match=r"activation must be one of \(.*'erf'.*'relu'"):
        A.get("softsign")
    with pytest.raises(TypeError, match="Activation.from_function"):
        A.get(np.tanh)
    with pytest.raises(ValueError, match="already registered"):
        A.register(Activation.from_function(np.sin, "relu"))


def test_registry_views_follow_registrations(registry, square):
    assert "square" not in A.ACTIVATIONS
    A.register(square)
    assert A.ACTIVATIONS[-1] == "square" and A.ZERO_MEAN["square"] is False
    assert A.get("square") is square and A.get(square.key) is square
    # the CLI choices come from the registry
    from kren.cli import build_parser
    args = build_parser().parse_args(["solve", "--activation", "square"])
    assert args.activation == "square"
    # a key with another fingerprint is a different σ
    with pytest.raises(ValueError, match="its σ differs"):
        A.get("square:0000000000000000")
    # re-registering the same σ is harmless; another σ under the name needs replace=True
    A.register(Activation.from_function(lambda h: h * h, "square"))
    other = Activation.from_function(lambda h: 2 * h * h, "square")
    with pytest.raises(ValueError, match="replace=True"):
        A.register(other)
    assert A.register(other, replace=True) is A.get("square")


def test_identity_equality_and_copies():
    t1 = Activation.from_function(np.tanh, "t")
    t2 = Activation.from_function(lambda h: np.tanh(h), "t")
    t3 = Activation.from_function(lambda h: np.tanh(1.0001 * h), "t")
    assert t1 == t2 and hash(t1) == hash(t2) and t1.key == t2.key      # same σ, same key
    assert t1 != t3 and t1.key != t3.key                                # changed σ, new key
    assert t1.key.startswith("t:") and A.get("erf").key == "erf"
    assert copy.deepcopy(t1) is t1 and copy.copy(A.get("relu")) is A.get("relu")
    assert pickle.loads(pickle.dumps(A.get("erf"))) is A.get("erf")
    # architectures: a name and the registered object are the same; user σ by key
    kw = dict(input_shape=(1, 8), mask=4, stride=2)
    assert kren.Architecture("cnn", activation="relu", **kw) == \
        kren.Architecture("cnn", activation=A.get("relu"), **kw)
    a1 = kren.Architecture("cnn", activation=t1, **kw)
    assert a1 == kren.Architecture("cnn", activation=t2, **kw)
    assert a1 != kren.Architecture("cnn", activation=t3, **kw)
    assert a1.act is t1 and a1.describe()["activation"] == t1.key
    json.dumps(a1.describe())
    json.dumps(t1.describe())
    assert kren.Architecture("fc", activation="erf").describe()["activation"] == "erf"


# ----------------------------------------------------------------------------- quadrature path
def test_generic_path_reproduces_the_erf_closed_form(erf_q):
    # variances 0 … 20 (a = 0 exactly, and 1e-8), |ρ| = 1 and within 1e-6 of it; the generic
    # path targets 1e-11 relative to √(E σ²(a) E σ²(b)) ≤ 1, asserted 1e-10 absolute
    c, a, b = _grid(VARS, RHOS)
    exact = A.get("erf").kernel(c, a, b)
    assert np.max(np.abs(erf_q.kernel(c, a, b) - exact)) <= 1e-10
    rng = np.random.default_rng(0)
    ra, rb = rng.uniform(0, 6, 40), rng.uniform(0, 6, 30)
    ra[0], rb[0] = 0.0, 0.0
    rho = rng.uniform(-1, 1, (40, 30))
    rho[1, 1], rho[2, 2] = 1.0, -1.0
    blk = rho * np.sqrt(np.outer(ra, rb))
    exact = A.get("erf").kernel(blk, ra[:, None], rb[None, :])
    out = erf_q.kernel_inplace(blk, ra, rb)
    assert out is blk and np.max(np.abs(blk - exact)) <= 1e-10
    b32 = (rho * np.sqrt(np.outer(ra, rb))).astype(np.float32)
    erf_q.kernel_inplace(b32, ra.astype(np.float32), rb.astype(np.float32))
    assert b32.dtype == np.float32 and np.max(np.abs(b32 - exact)) <= 1e-6
    # odd σ: zero mean decided automatically, mean identically zero
    assert erf_q.zero_mean and np.array_equal(erf_q.mean(ra), np.zeros_like(ra))


def test_square_has_exact_moments(square):
    """σ(h) = h²: E[h² h'²] = ab + 2c² (Isserlis), E h² = a; the expansion stops at k = 2."""
    c, a, b = _grid(VARS, RHOS)
    exact = a * b + 2 * c * c
    assert np.max(np.abs(square.kernel(c, a, b) - exact) / (1 + exact)) <= 1e-13
    assert not square.zero_mean
    np.testing.assert_allclose(square.mean(a), a, rtol=1e-13, atol=1e-15)
    rng = np.random.default_rng(1)
    ra, rb = rng.uniform(0, 5, 7), rng.uniform(0, 5, 9)
    blk = rng.uniform(-1, 1, (7, 9)) * np.sqrt(np.outer(ra, rb))
    exact = np.outer(ra, rb) + 2 * blk**2
    square.kernel_inplace(blk, ra, rb)
    np.testing.assert_allclose(blk, exact, rtol=1e-13)
    # the derivation sees the same mean: ∫_0^∞ (h² + h²) φ_a = a, no closed form declared
    from derivations import steps
    import sympy as sp
    res, expected = steps.unit_mean_symbolic(square)
    assert expected is None and sp.simplify(res - sp.Symbol("a", positive=True)) == 0


def test_nonzero_mean_selects_the_Q_Qbar_path(square, erf_q):
    """A user σ with a mean goes through (Q, Q̄); a zero-mean one through Q alone, and then the
    generic erf gives the closed-form erf fit."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 6))
    y = np.sign(X[:, 0])
    m = kren.FC(N=20, T=0.1, activation=square, tol=1e-10).fit(X, y)
    assert not m.arch_.zero_mean and m.equivalent_prior_ is None
    assert abs(m.Qbar_ - (1.0 / m.Q_ - 1.0)) > 1e-3          # Q̄ not eliminated
    e1 = kren.FC(N=20, T=0.1, activation=erf_q, tol=1e-12).fit(X, y)
    e2 = kren.FC(N=20, T=0.1, activation="erf", tol=1e-12).fit(X, y)
    assert e1.arch_.zero_mean and e1.Qbar_ == pytest.approx(1.0 / e1.Q_ - 1.0, rel=1e-14)
    # kernels agree to ~1e-11, the saddle point is a smooth function of them
    assert e1.Q_ == pytest.approx(e2.Q_, rel=1e-8)
    np.testing.assert_allclose(e1.predict(X[:5]), e2.predict(X[:5]), rtol=0, atol=1e-8)


def test_zero_mean_declared_and_decided():
    odd = Activation.from_function(np.sin, "sine")
    assert odd.zero_mean
    assert not Activation.from_function(np.sin, "sine", zero_mean=False).zero_mean
    assert not Activation.from_function(np.cos, "cosine").zero_mean
    with pytest.raises(ValueError, match="declared zero_mean=True"):
        Activation.from_function(np.cos, "cosine", zero_mean=True)
    # cos: E cos(h) = exp(−a/2) exactly (characteristic function)
    a = np.array([0.0, 0.3, 2.0, 7.0])
    np.testing.assert_allclose(Activation.from_function(np.cos, "cosine").mean(a),
                               np.exp(-a / 2), rtol=1e-13, atol=1e-15)


def test_non_smooth_sigma_warns_with_an_honest_error():
    """relu through the generic path converges only algebraically (kink at 0): the expansion
    warns, and its error is far above the smooth-σ tolerance but small."""
    r = Activation.from_function(lambda h: np.maximum(h, 0.0), "relu_q", max_nodes=512)
    with pytest.warns(QuadratureWarning, match="did not reach the tolerance"):
        k = r.kernel(np.array([0.5, 1.0]), 1.0, 1.0)
    exact = A.get("relu").kernel(np.array([0.5, 1.0]), 1.0, 1.0)
    assert np.all(np.abs(k - exact) < 1e-2)
    assert not r.expansion.levels()[0][2]                      # octave (0.5, 1]: not converged


# ----------------------------------------------------------------------------- bad input
def test_bad_user_sigma_raises_clear_errors():
    with pytest.raises(TypeError, match="sigma must be a callable"):
        Activation.from_function(3.0, "three")
    with pytest.raises(ValueError, match="not finite"):
        Activation.from_function(lambda h: np.where(h > 5, np.inf, h), "inf")
    with pytest.raises(ValueError, match="elementwise"):
        Activation.from_function(lambda h: np.sum(h), "total")
    with pytest.raises(ValueError, match="elementwise"):
        Activation.from_function(lambda h: h[:3], "head")
    with pytest.raises(TypeError, match="real numbers"):
        Activation.from_function(lambda h: h.astype(complex), "cplx")
    with pytest.raises(ValueError, match="name"):
        Activation.from_function(np.tanh, "a:b")
    with pytest.raises(ValueError, match="name"):
        Activation.from_function(np.tanh, "")
    with pytest.raises(TypeError, match="sigma_torch must be callable"):
        Activation.from_function(np.tanh, "t", sigma_torch="tanh")
    with pytest.raises(TypeError, match="zero_mean"):
        Activation.from_function(np.tanh, "t", zero_mean="yes")
    with pytest.raises(ValueError, match="tol"):
        Activation.from_function(np.tanh, "t", tol=0.5)
    # a σ that is finite on the probe grid but not where the quadrature needs it
    blowup = Activation.from_function(lambda h: np.where(np.abs(h) > 100, np.nan, h * h), "wild")
    with pytest.raises(ValueError, match="not finite"):
        blowup.kernel(1.0, 400.0, 400.0)
    with pytest.raises((ValueError, TypeError), match="activation"):
        kren.Architecture("fc", activation="softsign")


# ----------------------------------------------------------------------------- sampler
def test_user_sigma_in_the_sampler():
    torch = pytest.importorskip("torch")
    from kren.sampling import build_network
    arch = kren.Architecture("cnn", input_shape=(1, 7), mask=3, stride=2,
                             activation=Activation.from_function(np.sin, "sine"))
    with pytest.raises(ValueError, match="no PyTorch form"):
        build_network(arch, 3)
    # σ′ by autograd (no sigma_prime_torch given) = cos; the closed-form gradient of the loss,
    # which uses the in-place σ′, equals autograd of the loss
    sine = Activation.from_function(np.sin, "sine", sigma_torch=lambda h: h.sin())
    h = torch.linspace(-4, 4, 17, dtype=torch.float64)
    assert torch.allclose(sine.sigma_prime_torch(h), h.cos(), rtol=0, atol=1e-15)
    arch = kren.Architecture("lcn", input_shape=(1, 7), mask=3, stride=2, activation=sine)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(5, arch.N0))
    y = torch.as_tensor(rng.normal(size=5))
    net = build_network(arch, 3, dtype=torch.float64, seed=3, chains=2)
    L, f, gW, gv = net.loss_and_grad(net.prepare(X), y)
    out = net(X)
    (0.5 * ((out - y) ** 2).sum()).backward()
    np.testing.assert_allclose(gW.numpy(), net.W.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(gv.numpy(), net.v.grad.numpy(), rtol=0, atol=1e-12)
    # a σ′ that is not the derivative of σ, or a torch σ that is not σ, is refused when used
    bad = Activation.from_function(np.sin, "sine", sigma_torch=lambda h: h.sin(),
                                   sigma_prime_torch=lambda h: h.sin())
    with pytest.raises(ValueError, match="sigma_prime_torch differs"):
        build_network(kren.Architecture("fc", input_shape=3, activation=bad), 2)
    bad = Activation.from_function(np.tanh, "t2", sigma_torch=lambda h: h.sin())
    with pytest.raises(ValueError, match="sigma_torch differs from sigma"):
        bad.sigma_torch(torch.zeros(3))


def test_fit_with_registered_user_sigma_saves_and_loads(registry, square, tmp_path):
    from kren.estimators import load
    A.register(square)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(20, 4))
    y = np.sign(X[:, 0])
    m = kren.FC(N=30, T=0.2, activation=square).fit(X, y)
    path = m.save(tmp_path / "fit.json")
    assert json.loads(path.read_text())["params"]["activation"] == square.key
    back = load(path)
    assert back.arch_.act is square
    np.testing.assert_allclose(back.predict(X[:4]), m.predict(X[:4]), rtol=1e-12)
