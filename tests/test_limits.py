"""The limits and consistency relations of THEORY §5, on real digits data.

Independent quantities come from tests/nngp_reference.py (brute-force kernels that share no code
with kren) and plain np.linalg, never from kren's generated functions.
"""
import math

import numpy as np
import pytest

import kren
from kren.data import load_digits

from nngp_reference import local_kernels, nngp, nngp_fc

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits():
    return load_digits(classes=(0, 1), n_train=80, n_test=40, seed=1)


@pytest.fixture(scope="module")
def evenodd():
    return load_digits(classes="even-odd", n_train=120, n_test=60, seed=2)


def _gp(K, k0, k00, y, T):
    """GP regression with kernel K and noise T (plain np.linalg): mean, variance."""
    A = K + T * np.eye(len(y))
    mean = k0 @ np.linalg.solve(A, y)
    var = k00 - np.einsum("ab,ba->a", k0, np.linalg.solve(A, k0.T))
    return mean, var


def _G_independent(Q, Kfull, y, T, N, lambda1):
    """G_ij(Q) = Tr(A⁻¹K_ij) − zᵀK_ij z with A = T + (1/(λ1 n))Σ Q_ij K_ij (THEORY §3), by loops."""
    n, P = Kfull.shape[0], len(y)
    KR = sum(Q[i, j] * Kfull[i, j] for i in range(n) for j in range(n)) / (lambda1 * n)
    Ainv = np.linalg.inv(T * np.eye(P) + KR)
    z = Ainv @ y
    return np.array([[np.trace(Ainv @ Kfull[i, j]) - z @ Kfull[i, j] @ z for j in range(n)]
                     for i in range(n)])


# --------------------------------------------------------------------------- §5.1
@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_whole_input_mask_cnn_lcn_fc_agree(digits, activation):
    """n = 1, M = N0: CNN, LCN and FC have the same action, Q and predictions.

    Tolerance 1e-10: the three solve the same scalar problem to a relative gradient 1e-12, so Q
    agrees to ~1e-11 (condition of the 1-D problem is O(1)); predictions inherit that.
    """
    ds = digits
    kw = dict(N=20, T=0.1, activation=activation, tol=1e-12)
    loc = dict(input_shape=SHAPE, mask=8, stride=8)
    fc = kren.FC(**kw).fit(ds.X_train, ds.y_train)
    lcn = kren.LCN(**kw, **loc).fit(ds.X_train, ds.y_train)
    cnn = kren.CNN(**kw, **loc).fit(ds.X_train, ds.y_train)
    assert cnn.Q_.shape == (1, 1) and lcn.Q_.shape == (1, 1)
    assert abs(cnn.Q_[0, 0] - fc.Q_) < 1e-10 * fc.Q_
    assert abs(lcn.Q_[0, 0] - fc.Q_) < 1e-10 * fc.Q_
    assert abs(cnn.Qbar_[0, 0] - fc.Qbar_) < 1e-10 * max(1, abs(fc.Qbar_))
    m_fc, v_fc = fc.predict(ds.X_test, return_var=True)
    for other in (lcn, cnn):
        m, v = other.predict(ds.X_test, return_var=True)
        np.testing.assert_allclose(m, m_fc, atol=1e-10, rtol=0)
        np.testing.assert_allclose(v, v_fc, atol=1e-10, rtol=0)
    assert fc.Q_ != pytest.approx(1.0, abs=1e-3)   # a genuinely renormalized case


# --------------------------------------------------------------------------- §5.2
@pytest.mark.parametrize("activation", ["erf", "relu"])
@pytest.mark.parametrize("kind", ["CNN", "LCN", "FC"])
def test_infinite_width_is_gp_regression_with_nngp_kernel(digits, kind, activation):
    """N = inf: mean and variance equal GP regression with the NNGP kernel (brute force), 1e-10.

    Both sides are exact linear algebra on O(1) kernels with P = 80 (condition of A ≲ 1e3 at
    T = 0.1), so round-off is ~1e-13."""
    ds = digits
    kw = dict(N=float("inf"), T=0.1, activation=activation)
    if kind == "FC":
        m = kren.FC(**kw)
        ref = lambda A, B: nngp_fc(A, B, activation)
    else:
        m = getattr(kren, kind)(**kw, input_shape=SHAPE, mask=2, stride=2)
        ref = lambda A, B: nngp(A, B, SHAPE, 2, 2, activation=activation)
    m.fit(ds.X_train, ds.y_train)
    K = ref(ds.X_train, ds.X_train)
    k0 = ref(ds.X_test, ds.X_train)
    k00 = np.array([ref(x[None], x[None])[0, 0] for x in ds.X_test])
    mean_ref, var_ref = _gp(K, k0, k00, ds.y_train, 0.1)
    mean, var = m.predict(ds.X_test, return_var=True)
    np.testing.assert_allclose(mean, mean_ref, atol=1e-10, rtol=0)
    np.testing.assert_allclose(var, var_ref, atol=1e-10, rtol=0)
    np.testing.assert_allclose(m.renormalized_kernel(ds.X_train), K, atol=1e-12, rtol=0)


def test_large_N_approaches_infinite_width(digits):
    """N = 1e8 against N = inf: Q − 𝟙 = O(α) with α = 8e-7, predictions differ by O(α)."""
    ds = digits
    loc = dict(input_shape=SHAPE, mask=2, stride=2, T=0.1)
    big = kren.CNN(N=1e8, **loc).fit(ds.X_train, ds.y_train)
    inf = kren.CNN(N=float("inf"), **loc).fit(ds.X_train, ds.y_train)
    assert np.max(np.abs(big.Q_ - np.eye(16))) < 1e-5
    np.testing.assert_allclose(big.predict(ds.X_test), inf.predict(ds.X_test), atol=1e-5)
    lcn = kren.LCN(N=float("inf"), **loc).fit(ds.X_train, ds.y_train)
    m1, v1 = lcn.predict(ds.X_test, return_var=True)
    m2, v2 = inf.predict(ds.X_test, return_var=True)
    np.testing.assert_allclose(m1, m2, atol=1e-12)    # CNN and LCN coincide at N = ∞
    np.testing.assert_allclose(v1, v2, atol=1e-12)


# --------------------------------------------------------------------------- §5.3
def test_small_alpha_series(digits):
    """Q = 𝟙 − G(𝟙)/(Nλ1n) + O(α²): the remainder shrinks 4× when N doubles.

    G(𝟙) from the brute-force kernels and np.linalg; the ratio of remainders at N and 2N is
    4 + O(α); at α = 80/2e4 = 4e-3 we allow 4 ± 0.2."""
    ds = digits
    X, y, T = ds.X_train, ds.y_train, 0.1
    Kfull = local_kernels(X, X, SHAPE, 2, 2)
    G1 = _G_independent(np.eye(16), Kfull, y, T, 1.0, 1.0)
    rem = []
    for N in (2e4, 4e4):
        m = kren.CNN(N=N, T=T, input_shape=SHAPE, mask=2, stride=2, tol=1e-13).fit(X, y)
        first = np.eye(16) - G1 / (N * 16)
        rem.append(np.linalg.norm(m.Q_ - first))
        assert rem[-1] < 1e-2 * np.linalg.norm(G1 / (N * 16))   # first order dominates
    assert rem[0] / rem[1] == pytest.approx(4.0, abs=0.2)


# --------------------------------------------------------------------------- §5.4
def test_linear_fc_zero_temperature_closed_form(digits):
    """Linear FC, T → 0, P ≤ rank K: Q = [(1−α) + √((1−α)² + 4λ1 yᵀK⁻¹y/N)]/2.

    The solver's Q at T > 0 differs from the T = 0 root by a term linear in T, weighted by the
    inverse eigenvalues of K (smallest ≈ 5e-5 here): measured 0.8–1.6e-6 relative at T = 1e-9 and
    ten times that at T = 1e-8. A relative tolerance of 1e-5 leaves a 6× margin and still fails
    for any error in the α or λ1 dependence (which enter at O(1))."""
    # unstandardized: train-set centering would make the P rows linearly dependent (rank P − 1)
    ds = load_digits(classes=(0, 1), n_train=40, n_test=10, seed=3, standardize=False)
    X, y = ds.X_train, ds.y_train
    K = X @ X.T / X.shape[1]                 # C = x·x'/(λ0 N0), λ0 = 1
    assert np.linalg.matrix_rank(K) == 40
    lambda1 = 1.3
    for N in (20.0, 40.0, 200.0):
        alpha = 40 / N
        yKy = y @ np.linalg.solve(K, y)
        closed = ((1 - alpha) + math.sqrt((1 - alpha) ** 2 + 4 * lambda1 * yKy / N)) / 2
        m = kren.FC(N=N, T=1e-9, activation="linear", lambda1=lambda1, tol=1e-12).fit(X, y)
        assert m.Q_ == pytest.approx(closed, rel=1e-5)


# --------------------------------------------------------------------------- §5.5
def test_fc_only_rescales_the_kernel(evenodd):
    """FC at finite N predicts exactly as the infinite-width FC with readout prior λ1/Q* (1e-10)."""
    ds = evenodd
    m = kren.FC(N=10, T=0.05).fit(ds.X_train, ds.y_train)
    assert abs(m.Q_ - 1) > 0.05
    eq = kren.FC(N=float("inf"), T=0.05, lambda1=m.equivalent_prior_).fit(ds.X_train, ds.y_train)
    for a, b in zip(m.predict(ds.X_test, return_var=True), eq.predict(ds.X_test, return_var=True)):
        np.testing.assert_allclose(a, b, atol=1e-10, rtol=0)
    np.testing.assert_allclose(m.renormalized_kernel(ds.X_train),
                               m.Q_ * nngp_fc(ds.X_train, ds.X_train), atol=1e-12)


def test_cnn_renormalizes_locally(evenodd):
    """A CNN's Q switches on cross-patch blocks and reweights patches; an LCN's Q is diagonal."""
    ds = evenodd
    loc = dict(input_shape=SHAPE, mask=2, stride=2, N=10, T=0.05)
    cnn = kren.CNN(**loc).fit(ds.X_train, ds.y_train)
    lcn = kren.LCN(**loc).fit(ds.X_train, ds.y_train)
    off = cnn.Q_ - np.diag(np.diag(cnn.Q_))
    assert np.max(np.abs(off)) > 0.05                      # cross-patch blocks switched on
    assert np.ptp(np.diag(cnn.Q_)) > 0.1                   # patches reweighted non-uniformly
    assert np.all(lcn.Q_ == np.diag(np.diag(lcn.Q_)))
    assert np.ptp(np.diag(lcn.Q_)) > 0.1


# --------------------------------------------------------------------------- §5.6
@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_cnn_with_diagonal_Q_is_lcn(evenodd, activation):
    """At the LCN saddle point, the CNN action restricted to diagonal matrices equals the LCN
    action, and the diagonal of the CNN gradient vanishes there (1e-9 relative: the solver's
    tolerance)."""
    from kren.generated import cnn as gcnn, lcn as glcn
    ds = evenodd
    loc = dict(input_shape=SHAPE, mask=2, stride=2, N=10, T=0.1, activation=activation)
    lcn = kren.LCN(**loc).fit(ds.X_train, ds.y_train)
    cnn = kren.CNN(**loc)
    arch = cnn._architecture()
    kt = arch.kernels(ds.X_train)
    q, qb = np.diag(lcn.Q_), np.diag(lcn.Qbar_)
    d = kt.pairs[:, 0] == kt.pairs[:, 1]
    args = (ds.y_train, 0.1, 10.0, 1.0)
    S_c, gQ, gQb, *_ = gcnn.action_gradient(np.diag(q), np.diag(qb), kt.blocks, kt.pairs, kt.mu, *args)
    S_l, gq, gqb, *_ = glcn.action_gradient(q, qb, kt.blocks[d], kt.pairs[d], kt.mu, *args)
    assert S_c == pytest.approx(S_l, rel=1e-12)
    np.testing.assert_allclose(np.diag(gQ), gq, atol=1e-12)
    assert np.max(np.abs(np.diag(gQ))) < 1e-8 * (1 + np.max(np.abs(np.diag(np.linalg.inv(np.diag(q))))))


# --------------------------------------------------------------------------- issue checks
def test_cnn_saddle_point_satisfies_independent_equation():
    """Digits 0 vs 1, P = 200, CNN 2×2/2, erf, N = 50, T = 0.1: the fitted Q solves
    Q = (𝟙 + G(Q)/(Nλ1n))⁻¹ with G evaluated by brute force (residual ≤ 1e-7 relative: the
    solver stops at relative gradient 1e-9, amplified by the O(10) condition of the map)."""
    ds = load_digits(classes=(0, 1), n_train=200, n_test=100, seed=0)
    m = kren.CNN(N=50, T=0.1, input_shape=SHAPE, mask=2, stride=2).fit(ds.X_train, ds.y_train)
    Kfull = local_kernels(ds.X_train, ds.X_train, SHAPE, 2, 2)
    G = _G_independent(m.Q_, Kfull, ds.y_train, 0.1, 50.0, 1.0)
    rhs = np.linalg.inv(np.eye(16) + G / (50 * 16))
    assert np.linalg.norm(m.Q_ - rhs) < 1e-7 * np.linalg.norm(m.Q_)
    assert np.all(np.linalg.eigvalsh(m.Q_) > 0)
