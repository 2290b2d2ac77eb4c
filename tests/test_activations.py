"""Activation kernels and unit means of kren.activations (THEORY §2) against quadrature.

K(c, a, b) = E[σ(h)σ(h')], (h, h') ~ N(0, [[a, c], [c, b]]).  Three independent evaluations:

- two-dimensional Gauss–Hermite quadrature (erf, linear: smooth integrands, exponential
  convergence; 180 nodes per axis reach ~1e-15 for variances up to 4, see the node test below);
- mpmath (20 digits) on the one-dimensional integral left after the inner Gaussian integral is
  done analytically (erf: E[erf(μ + s z)] = erf(μ/√(1 + 2s²)); relu: E[max(μ + s z, 0)] =
  μΦ(μ/s) + sφ(μ/s)), which also covers large variances where Gauss–Hermite is slow for erf;
- Monte Carlo with a stated 5-standard-error tolerance.

h = √a z1,  h' = (c/√a) z1 + s z2,  s = √(b − c²/a),  z1, z2 ~ N(0, 1) independent.
"""
import functools
import math

import mpmath
import numpy as np
import pytest
from scipy.special import erf

from kren import activations as act

# Variances and correlations ρ = c/√(ab), including correlations within 1e-6 of ±1 and ±1 itself.
VARIANCES = [(0.05, 0.05), (1.0, 1.0), (2.5, 0.3), (0.3, 4.0), (6.0, 6.0), (20.0, 0.7)]
GH_VARIANCES = VARIANCES[:4]          # where 180-node Gauss–Hermite is converged for erf
RHOS = [-1.0, -1.0 + 1e-6, -0.9, -0.5, 0.0, 0.3, 0.9, 1.0 - 1e-6, 1.0]
# mpmath is slow: a sub-grid that still has tiny and large variances and |ρ| → 1 from inside.
MP_VARIANCES = [(0.05, 0.05), (2.5, 0.3), (6.0, 6.0), (20.0, 0.7)]
MP_RHOS = [-1.0, -1.0 + 1e-6, -0.5, 0.0, 0.9, 1.0 - 1e-6, 1.0]


def grid(variances, rhos=RHOS):
    return [(rho * math.sqrt(a * b), a, b) for a, b in variances for rho in rhos]


@functools.lru_cache(maxsize=None)
def _hermite_rule(nodes):
    x, w = np.polynomial.hermite_e.hermegauss(nodes)        # weight exp(-x²/2)
    return x, w / math.sqrt(2.0 * math.pi)


def gauss_hermite_2d(f, c, a, b, nodes=180):
    """E[f(h) f(h')] by a tensor Gauss–Hermite rule in the Cholesky coordinates (z1, z2)."""
    x, w = _hermite_rule(nodes)
    s = math.sqrt(max(b - c * c / a, 0.0))
    f1 = f(math.sqrt(a) * x)                                  # f(h) depends on z1 only
    f2 = f((c / math.sqrt(a)) * x[:, None] + s * x[None, :])  # f(h'), (z1, z2)
    return float(w @ (f1[:, None] * f2) @ w)


MP_DIGITS = 20      # working precision, set locally (mpmath's global context is left alone)


@functools.lru_cache(maxsize=None)
def mp_kernel(name, c, a, b):
    """E[σ(h)σ(h')] to ~20 digits: analytic inner integral over z2, mpmath quad over z1."""
    with mpmath.workdps(MP_DIGITS):
        return _mp_kernel(name, c, a, b)


def _mp_kernel(name, c, a, b):
    c, a, b = mpmath.mpf(c), mpmath.mpf(a), mpmath.mpf(b)
    sa = mpmath.sqrt(a)
    s2 = max(b - c * c / a, mpmath.mpf(0))
    phi = lambda z: mpmath.exp(-z * z / 2) / mpmath.sqrt(2 * mpmath.pi)  # noqa: E731
    if name == "erf":
        def f(z):
            mu = c * z / sa
            return phi(z) * mpmath.erf(sa * z) * mpmath.erf(mu / mpmath.sqrt(1 + 2 * s2))
        return mpmath.quad(f, [-mpmath.inf, -1, 0, 1, mpmath.inf])
    if name == "relu":
        s = mpmath.sqrt(s2)

        def inner(mu):                                       # E[max(mu + s z, 0)]
            if s == 0:
                return max(mu, mpmath.mpf(0))
            t = mu / s
            return mu * mpmath.ncdf(t) + s * phi(t)

        return mpmath.quad(lambda z: phi(z) * sa * z * inner(c * z / sa), [0, 1, mpmath.inf])
    raise ValueError(name)


# ----------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("name, sig", [("erf", erf), ("linear", lambda h: h)])
def test_kernel_vs_gauss_hermite(name, sig):
    # Smooth integrands: 180-node Gauss–Hermite is exact to ~1e-15 on GH_VARIANCES (checked by
    # the node-convergence test), so 1e-12 leaves three orders of margin.
    for c, a, b in grid(GH_VARIANCES):
        ref = gauss_hermite_2d(sig, c, a, b)
        assert abs(float(act.kernel(name, c, a, b)) - ref) <= 1e-12, (name, c, a, b)


def test_gauss_hermite_converged():
    # The quadrature used as a reference must itself be converged: 180 vs 240 nodes agree.
    # |ρ| = 1 is the slowest case (f(h') steepest along z1).
    for c, a, b in grid(GH_VARIANCES):
        assert abs(gauss_hermite_2d(erf, c, a, b) - gauss_hermite_2d(erf, c, a, b, 240)) < 1e-13


@pytest.mark.parametrize("name", ["erf", "relu"])
def test_kernel_vs_mpmath(name):
    # mpmath integrates to ~1e-18 at 20 digits; the closed form in double precision is accurate to a few
    # ulps of O(1) values (its arctan2 form is well conditioned up to |ρ| = 1): tolerance 1e-12,
    # relative to max(1, |K|) because relu kernels grow like √(ab).
    pts = grid(MP_VARIANCES, MP_RHOS)
    c, a, b = (np.array(v) for v in zip(*pts))
    vec = act.kernel(name, c, a, b)                         # one vectorized call over the grid
    for k, (ci, ai, bi) in enumerate(pts):
        ref = float(mp_kernel(name, ci, ai, bi))
        assert abs(vec[k] - ref) <= 1e-12 * max(1.0, abs(ref)), (name, ci, ai, bi, vec[k], ref)


def test_relu_known_values():
    # ρ = 0: E[relu h] E[relu h'] = (√a/√(2π))(√b/√(2π)) = √(ab)/(2π);
    # ρ = 1: h' = √(b/a) h, so K = √(b/a) E[relu(h)²] = √(b/a) a/2 = √(ab)/2;  ρ = −1: h' ∝ −h, K = 0.
    for a, b in VARIANCES:
        r = math.sqrt(a * b)
        assert act.kernel("relu", 0.0, a, b) == pytest.approx(r / (2 * math.pi), rel=1e-15)
        assert act.kernel("relu", r, a, b) == pytest.approx(r / 2, rel=1e-15)
        assert abs(act.kernel("relu", -r, a, b)) <= 1e-16 * r


def test_linear_is_covariance():
    c = np.array([-0.3, 0.0, 1.7])
    assert np.array_equal(act.kernel("linear", c, 1.0, 4.0), c)


# ----------------------------------------------------------------------------- unit means
def test_unit_means():
    x, w = _hermite_rule(180)
    a = np.array([0.0, 0.05, 1.0, 2.5, 20.0])
    mu_relu = act.unit_mean("relu", a)
    for ak, mk in zip(a, mu_relu):
        with mpmath.workdps(MP_DIGITS):
            ref = mpmath.quad(lambda z: math.sqrt(ak) * z * mpmath.npdf(z), [0, mpmath.inf])
        assert abs(mk - float(ref)) <= 1e-14                 # quadrature to ~1e-18
        # erf and linear are odd functions: Gauss–Hermite (symmetric nodes) gives 0 to round-off
        assert abs(np.sum(w * erf(math.sqrt(ak) * x))) <= 1e-14
        assert abs(np.sum(w * math.sqrt(ak) * x)) <= 1e-14
    assert np.array_equal(act.unit_mean("erf", a), np.zeros_like(a))
    assert np.array_equal(act.unit_mean("linear", a), np.zeros_like(a))
    assert mu_relu.shape == a.shape


# ----------------------------------------------------------------------------- Monte Carlo
@pytest.mark.parametrize("name", ["erf", "relu", "linear"])
def test_monte_carlo(name):
    # 200 000 samples per point; tolerance 5 standard errors of the sample mean (estimated from
    # the same samples): a correct kernel fails with probability ~6e-7 per point.  The seed is
    # fixed, so the test is deterministic.
    rng = np.random.default_rng(20240607)
    n = 200_000
    for c, a, b in [(0.3, 1.0, 0.5), (-1.1, 2.0, 0.8), (0.7, 0.8, 0.9)]:
        L = np.linalg.cholesky(np.array([[a, c], [c, b]]))
        h = rng.standard_normal((n, 2)) @ L.T
        prod = act.sigma(name, h[:, 0]) * act.sigma(name, h[:, 1])
        se = prod.std() / math.sqrt(n)
        assert abs(prod.mean() - act.kernel(name, c, a, b)) <= 5 * se
        m = act.sigma(name, h[:, 0])
        assert abs(m.mean() - act.unit_mean(name, a)) <= 5 * m.std() / math.sqrt(n)


def test_sigma():
    h = np.linspace(-3, 3, 13)
    assert np.allclose(act.sigma("erf", h), [math.erf(v) for v in h], rtol=1e-15, atol=1e-16)
    assert np.array_equal(act.sigma("relu", h), np.where(h > 0, h, 0.0))
    assert np.array_equal(act.sigma("linear", h), h)


# ----------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("name", ["erf", "relu"])
def test_correlation_past_one_no_nan(name):
    """Round-off can push c/√(ab) past ±1; the value must be the |ρ| = 1 limit, never NaN."""
    for a, b in MP_VARIANCES:
        r = math.sqrt(a * b)
        for sign in (1.0, -1.0):
            limit = float(mp_kernel(name, sign * r, a, b))
            for eps in (1e-15, 3e-15, 1e-14):
                c = sign * r * (1 + eps)
                k = float(act.kernel(name, c, a, b))
                assert math.isfinite(k)
                # the input moved by ≤ 1e-14 relative and K is Lipschitz in c at |ρ| = 1 in its
                # arctan2 form (relu: ∂K/∂c = (π − θ)/(2π) ≤ 1/2; erf: ∂K/∂c = (4/π)/√(D − 4c²)
                # with D − 4ab = 1 + 2a + 2b > 1, so ≤ 4/π)
                assert abs(k - limit) <= 1e-13 * max(1.0, r), (name, a, b, c, k, limit)
                blk = np.full((2, 3), c)
                act.kernel_inplace(name, blk, np.full(2, a), np.full(3, b))
                assert np.all(np.isfinite(blk)) and np.allclose(blk, k, rtol=1e-14, atol=1e-15)
    # relu limits in closed form: ρ → +1 gives √(ab)/2, ρ → −1 gives 0
    if name == "relu":
        assert act.kernel("relu", 2.0 * (1 + 1e-15), 2.0, 2.0) == pytest.approx(1.0, rel=1e-14)
        assert abs(act.kernel("relu", -2.0 * (1 + 1e-15), 2.0, 2.0)) <= 1e-15


def test_erf_huge_variance_argument_past_one():
    # For a = b = 1e16 the arcsin argument 2c/√((1+2a)(1+2b)) itself exceeds 1 when c = a(1+1e-15):
    # the naive formula gives NaN.  The exact value at ρ = 1 is (2/π) arcsin(1 − 1/(2a+1)) ≈
    # 1 − 9e-9; arcsin near 1 amplifies a relative input error δ into √(2δ) ≈ 4.5e-8, so the
    # tolerance is 1e-7 around the limit ±1.
    a = 1e16
    for sign in (1.0, -1.0):
        k = float(act.kernel("erf", sign * a * (1 + 1e-15), a, a))
        assert math.isfinite(k) and abs(k - sign) <= 1e-7


@pytest.mark.parametrize("name", ["erf", "relu", "linear"])
def test_symmetry_in_variances(name):
    # K(c, a, b) = K(c, b, a): the formulas only use the products ab and (1+2a)(1+2b).
    c, a, b = (np.array(v) for v in zip(*grid(VARIANCES)))
    assert np.allclose(act.kernel(name, c, a, b), act.kernel(name, c, b, a), rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", ["erf", "relu", "linear"])
def test_vectorization_and_inplace(name):
    rng = np.random.default_rng(3)
    a = rng.uniform(0.1, 3.0, 4)
    b = rng.uniform(0.1, 3.0, 5)
    rho = rng.uniform(-1, 1, (4, 5))
    c = rho * np.sqrt(np.outer(a, b))
    K = act.kernel(name, c, a[:, None], b[None, :])        # broadcasting
    assert K.shape == (4, 5)
    scalar = np.array([[float(act.kernel(name, c[i, j], a[i], b[j])) for j in range(5)]
                       for i in range(4)])
    assert np.allclose(K, scalar, rtol=1e-15, atol=1e-16)
    blk = c.copy()
    out = act.kernel_inplace(name, blk, a, b)
    assert out is blk                                       # really in place
    assert np.allclose(blk, K, rtol=1e-14, atol=1e-15)      # same formula, different op order
    # float32 blocks stay float32 and agree to float32 precision (eps ≈ 6e-8, a few ops)
    blk32 = c.astype(np.float32)
    act.kernel_inplace(name, blk32, a.astype(np.float32), b.astype(np.float32))
    assert blk32.dtype == np.float32
    assert np.allclose(blk32, K, rtol=0, atol=1e-6)


def test_unknown_activation():
    with pytest.raises(ValueError, match="activation must be one of"):
        act.kernel("softsign", 0.1, 1.0, 1.0)
    with pytest.raises(ValueError, match="activation must be one of"):
        act.unit_mean("softplus", 1.0)
    with pytest.raises(ValueError, match="activation must be one of"):
        act.sigma("gelu", 1.0)
    with pytest.raises(ValueError, match="activation must be one of"):
        act.kernel_inplace("softsign", np.zeros((2, 2)), np.ones(2), np.ones(2))
