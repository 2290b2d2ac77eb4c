"""RenormalizedKernel (issue 8 item 3) against an independent computation of THEORY §3–4.

K_R(x, x') = (1/(λ1 n)) Σ_ij [Q_ij (K_ij − μ_i μ_jᵀ) + ((𝟙 + Q̄)⁻¹)_ij μ_i μ_jᵀ] is summed here by
explicit loops over the brute-force local kernels of tests/nngp_reference.py (no kren code);
both sides are exact sums of O(1) terms, so they agree to round-off (asserted 1e-12).
"""
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor

import kren
from kren.data import load_digits

from nngp_reference import local_covariances, local_kernels, mean_relu, nngp

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def ds():
    return load_digits(classes="even-odd", n_train=50, n_test=30, seed=11)


def _reference(X1, X2, kind, Q, Qbar, activation, lambda1=0.7):
    """K_R by loops over patch pairs from the reference kernels and means."""
    mask, stride = (8, 8) if kind == "fc" else (2, 2)
    K = local_kernels(X1, X2, SHAPE, mask, stride, activation=activation)       # (n, n, P1, P2)
    n = K.shape[0]
    Q = np.atleast_2d(Q)
    if activation == "relu":
        _, v1, _ = local_covariances(X1, X1[:1], SHAPE, mask, stride)
        _, v2, _ = local_covariances(X2, X2[:1], SHAPE, mask, stride)
        m1, m2 = mean_relu(v1), mean_relu(v2)
        R = np.linalg.inv(np.eye(n) + np.atleast_2d(Qbar))
    else:
        m1 = np.zeros((n, len(X1)))
        m2 = np.zeros((n, len(X2)))
        R = np.zeros((n, n))
    out = np.zeros(K.shape[2:])
    for i in range(n):
        for j in range(n):
            mm = np.outer(m1[i], m2[j])
            out += Q[i, j] * (K[i, j] - mm) + R[i, j] * mm
    return out / (lambda1 * n)


def _order_parameters(kind, rng):
    if kind == "fc":
        return 1.37, 0.41
    A = rng.standard_normal((16, 16))
    Q = np.eye(16) + 0.1 * (A + A.T)
    B = rng.standard_normal((16, 16))
    Qbar = 0.2 * (B @ B.T) / 16
    if kind == "lcn":
        return np.diag(np.diag(Q)), np.diag(np.diag(Qbar))
    return Q, Qbar


@pytest.mark.parametrize("activation", ["erf", "relu"])
@pytest.mark.parametrize("kind", ["fc", "lcn", "cnn"])
def test_kernel_matches_independent_sum(ds, kind, activation):
    rng = np.random.default_rng(3)
    Q, Qbar = _order_parameters(kind, rng)
    loc = {} if kind == "fc" else dict(mask=2, stride=2)
    arch = kren.Architecture(kind, SHAPE, activation=activation, lambda1=0.7, **loc)
    K_R = kren.RenormalizedKernel(arch, Q, Qbar)
    X1, X2 = ds.X_test, ds.X_train
    expect = _reference(X1, X2, kind, Q, Qbar, activation)
    np.testing.assert_allclose(K_R(X1, X2), expect, rtol=0, atol=1e-12)
    same = _reference(X1, X1, kind, Q, Qbar, activation)
    np.testing.assert_allclose(K_R(X1), same, rtol=0, atol=1e-12)
    np.testing.assert_allclose(K_R.diag(X1), np.diag(same), rtol=0, atol=1e-12)
    # chunked inside: a memory budget that forces one row per chunk gives the same numbers
    small = kren.RenormalizedKernel(arch, Q, Qbar, memory_budget=4 * arch.cross_blocks * 50 * 8)
    assert small.chunk_rows(arch, 50) == 1
    np.testing.assert_allclose(small(X1, X2), expect, rtol=0, atol=1e-12)
    np.testing.assert_allclose(small.diag(X1), np.diag(same), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["lcn", "cnn"])
def test_identity_is_the_nngp_kernel(ds, kind):
    """Q = 𝟙, Q̄ = 0 (N = ∞) gives the NNGP kernel (1/(λ1 n)) Σ_i K_ii of the reference."""
    arch = kren.Architecture(kind, SHAPE, mask=2, stride=2, activation="relu", lambda1=0.7)
    K_R = kren.RenormalizedKernel(arch, np.eye(16), np.zeros((16, 16)))
    expect = nngp(ds.X_test, ds.X_train, SHAPE, 2, 2, activation="relu", lambda1=0.7)
    np.testing.assert_allclose(K_R(ds.X_test, ds.X_train), expect, rtol=0, atol=1e-12)


def test_estimator_kernel_object_and_sklearn_gp(ds):
    """The fit's K_R as an object: the matrix method is K_R(X1, X2), and scikit-learn's own GP
    regression with it (its own Cholesky, noise alpha = T) reproduces predict to 1e-10 (both are
    exact linear algebra on A = T𝟙 + K_R with cond(A) ≲ 1e3 at T = 0.1)."""
    m = kren.CNN(N=10, T=0.1, input_shape=SHAPE, mask=2, stride=2).fit(ds.X_train, ds.y_train)
    K_R = m.renormalized_kernel()
    assert isinstance(K_R, kren.RenormalizedKernel) and isinstance(m.kernel_, kren.RenormalizedKernel)
    np.testing.assert_array_equal(K_R(ds.X_test, ds.X_train),
                                  m.renormalized_kernel(ds.X_test, ds.X_train))
    np.testing.assert_allclose(K_R(ds.X_train), m.K_R_, rtol=0, atol=1e-12)
    gp = GaussianProcessRegressor(kernel=K_R, alpha=0.1, optimizer=None).fit(ds.X_train, ds.y_train)
    mean_gp, std_gp = gp.predict(ds.X_test, return_std=True)
    mean, var = m.predict(ds.X_test, return_var=True)
    np.testing.assert_allclose(mean, mean_gp, rtol=0, atol=1e-10)
    np.testing.assert_allclose(var, std_gp ** 2, rtol=0, atol=1e-10)
    K2 = clone(K_R)                                          # scikit-learn's kernel protocol
    assert K2 is not K_R and K2 == K_R and K_R.theta.size == 0 and not K_R.is_stationary()


def test_bad_order_parameters_are_named():
    arch = kren.Architecture("cnn", SHAPE, mask=2, stride=2, activation="relu")
    with pytest.raises(kren.InvalidParameterError, match="Qbar is required"):
        kren.RenormalizedKernel(arch, np.eye(16))(np.ones((2, 64)))
    with pytest.raises(kren.InvalidParameterError, match="Q must be 16×16"):
        kren.RenormalizedKernel(arch, np.eye(4), np.zeros((4, 4)))(np.ones((2, 64)))
    lcn = kren.Architecture("lcn", SHAPE, mask=2, stride=2)
    with pytest.raises(kren.InvalidParameterError, match="diagonal"):
        kren.RenormalizedKernel(lcn, np.ones((16, 16)) + np.eye(16))(np.ones((2, 64)))
    fc = kren.Architecture("fc")
    with pytest.raises(kren.InvalidParameterError, match="number"):
        kren.RenormalizedKernel(fc, np.eye(2))(np.ones((2, 64)))
    # FC without an input shape takes it from the data; the LCN accepts its diagonal as a vector
    np.testing.assert_allclose(kren.RenormalizedKernel(fc, 2.0)(np.ones((2, 5))),
                               2.0 * fc.nngp_kernel(np.ones((2, 5))), rtol=1e-15)
    q = np.linspace(0.5, 1.5, 16)
    X = np.random.default_rng(0).standard_normal((3, 64))
    np.testing.assert_array_equal(kren.RenormalizedKernel(lcn, q)(X),
                                  kren.RenormalizedKernel(lcn, np.diag(q))(X))
