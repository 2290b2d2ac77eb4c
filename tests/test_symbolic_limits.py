"""Results derived from the effective action (derivations.limits, THEORY §3 and §5).

Symbolic identities are checked exactly; each derived limit is also checked numerically against
an independent computation (a NumPy fixed-point iteration, a bisection, the kernels of
kren.kernels) with tolerances set by the order of the neglected terms.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from derivations import limits as L
from derivations import steps as st
from kren.architecture import Architecture


def test_cayley_matrix_is_orthogonal():
    U, params = L.cayley_orthogonal(3)
    assert len(params) == 3
    pt = {p: sp.Rational(k + 2, 7) for k, p in enumerate(params)}
    Un = np.array(U.xreplace(pt).evalf(), dtype=float)
    assert np.allclose(Un.T @ Un, np.eye(3), atol=1e-14)
    assert abs(np.linalg.det(Un) - 1) < 1e-14        # a rotation


def test_fc_eigenbasis():
    step = L.fc_eigenbasis(P=2)
    assert any("derivations.action" in c for c in step.checked)
    # numerically: the eigen form equals the matrix form on a random kernel
    rng = np.random.default_rng(0)
    B = rng.standard_normal((5, 5))
    K = B @ B.T / 5
    y = rng.standard_normal(5)
    Q, T_, N_, l1 = 1.3, 0.2, 9.0, 0.8
    A = T_ * np.eye(5) + Q * K / l1
    S_mat = Q - np.log(Q) + (np.linalg.slogdet(A)[1] + y @ np.linalg.solve(A, y)) / N_
    k, U = np.linalg.eigh(K)
    D = T_ + Q * k / l1
    S_eig = Q - np.log(Q) + np.sum(np.log(D) + (U.T @ y)**2 / D) / N_
    assert abs(S_mat - S_eig) < 1e-12


def test_fc_rescaling():
    step = L.fc_rescaling(P=2)
    assert sp.cancel(sp.together(step.derived - step.expected)) == 0


@pytest.mark.parametrize("kind,n,zero_mean", [("fc", 1, True), ("fc", 1, False),
                                              ("lcn", 2, True), ("cnn", 2, True),
                                              ("cnn", 2, False), ("lcn", 2, False)])
def test_small_alpha_expansion(kind, n, zero_mean):
    step = L.small_alpha_expansion(kind, n, 2, zero_mean)
    diff = (step.derived - step.expected).applyfunc(lambda e: sp.cancel(sp.together(e)))
    assert diff == sp.zeros(step.derived.shape[0], step.derived.shape[1])


def _cnn_problem(seed=0, P=8):
    arch = Architecture("cnn", input_shape=(1, 6, 6), mask=3, stride=3, activation="erf")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, 36))
    y = np.sign(rng.standard_normal(P))
    kt = arch.kernels(X)
    n = arch.n
    K = {}
    for (i, j), blk in zip(kt.pairs, kt.blocks):
        K[(i, j)] = blk
        K[(j, i)] = blk.T
    return n, K, y


def _fixed_point_Q(n, K, y, T_, N_, l1, iters=200):
    """Q = (𝟙 + G(Q)/(N λ1 n))⁻¹ by plain iteration (a contraction at large N)."""
    Q = np.eye(n)
    for _ in range(iters):
        A = T_ * np.eye(len(y)) + sum(Q[i, j] * K[(i, j)] for (i, j) in K) / (l1 * n)
        Ai = np.linalg.inv(A)
        z = Ai @ y
        B = Ai - np.outer(z, z)
        G = np.array([[np.sum(K[(i, j)] * B) for j in range(n)] for i in range(n)])
        Q = np.linalg.inv(np.eye(n) + G / (N_ * l1 * n))
    return Q, G


def test_small_alpha_numerically_second_order():
    """|Q − (𝟙 − G(𝟙)/(Nλ1 n))| = O(1/N²): the error drops by ~4 when N doubles."""
    n, K, y = _cnn_problem()
    T_, l1 = 0.5, 1.0
    _, G1 = _fixed_point_Q(n, K, y, T_, np.inf, l1, iters=1)      # G at Q = 𝟙
    errs = []
    for N_ in (400.0, 800.0, 1600.0):
        Q, _ = _fixed_point_Q(n, K, y, T_, N_, l1)
        errs.append(np.abs(Q - (np.eye(n) - G1 / (N_ * l1 * n))).max())
    r1, r2 = errs[0] / errs[1], errs[1] / errs[2]
    # ratio 4 (1 + O(1/N)): with |G|/(N n) ≲ 0.01 here the correction is a few percent
    assert 3.6 < r1 < 4.4 and 3.8 < r2 < 4.2
    assert abs(r2 - 4) < abs(r1 - 4) + 1e-3                     # approaches 4


@pytest.mark.parametrize("kind,n,zero_mean", [("fc", 1, True), ("fc", 1, False),
                                              ("lcn", 2, True), ("lcn", 2, False),
                                              ("cnn", 2, True), ("cnn", 2, False)])
def test_infinite_width_limit(kind, n, zero_mean):
    step = L.infinite_width_limit(kind, n, 2, zero_mean)
    assert (step.derived - step.expected).applyfunc(sp.expand) == sp.zeros(2, 2)


def test_infinite_width_kernel_is_the_nngp_kernel_numerically():
    """K_R(𝟙) of a CNN (all blocks held) = kren's NNGP kernel (1/(λ1 n)) Σ_i K_ii."""
    arch = Architecture("cnn", input_shape=(1, 6, 6), mask=3, stride=3, activation="relu",
                        lambda1=1.7)
    X = np.random.default_rng(1).standard_normal((7, 36))
    kt = arch.kernels(X)
    n = arch.n
    KR = kt.combine(np.eye(n)) / (arch.lambda1 * n)
    assert np.allclose(KR, arch.nngp_kernel(X), rtol=1e-12, atol=1e-14)


def test_linear_fc_zero_temperature_symbolic():
    step = L.linear_fc_zero_temperature(P=3)
    assert sp.simplify(step.derived - step.expected) == 0


@pytest.mark.parametrize("P,N_", [(6, 20.0), (6, 4.0)])      # α = 0.3 and α = 1.5
def test_linear_fc_zero_temperature_numeric(P, N_):
    """The T → 0 closed form against the saddle point solved at small T (O(T) difference)."""
    rng = np.random.default_rng(P)
    N0 = 10                                         # P ≤ N0: the linear kernel is invertible
    X = rng.standard_normal((P, N0))
    y = rng.standard_normal(P)
    lam0, l1 = 1.0, 1.3
    K = X @ X.T / (lam0 * N0)                       # linear activation: K = C
    r = y @ np.linalg.solve(K, y)
    Q0 = L.linear_fc_closed_form(P / N_, l1, r, N_)
    for T_, tol in ((1e-6, 1e-4), (1e-9, 1e-7)):
        QT = L.linear_fc_saddle_numeric(K, y, N_, T_, l1)
        # dQ/dT is O(1/min eigenvalue of K): |Q_T − Q_0| ≲ 100 T for these K
        assert abs(QT - Q0) < tol
    # the estimator of kren agrees (its own kernels and solver)
    import kren
    m = kren.FC(N=N_, T=1e-6, lambda0=lam0, lambda1=l1, activation="linear").fit(X, y)
    assert abs(float(np.squeeze(m.Q_)) - Q0) < 1e-3


@pytest.mark.parametrize("zero_mean,mode", [(True, "symbolic"), (False, "rational")])
def test_cnn_n1_equals_fc(zero_mean, mode):
    step = L.cnn_n1_equals_fc(P=2, zero_mean=zero_mean, action_module=mode)
    assert any("derivations.action" in c for c in step.checked)


@pytest.mark.parametrize("activation", ["erf", "relu", "linear"])
def test_full_mask_kernel_is_the_fc_kernel(activation):
    """A mask covering the input: C_11 = x·x'/(λ0 M), M = N0 = FC's C, so K_11 = K_FC."""
    X = np.random.default_rng(2).standard_normal((6, 2 * 3 * 4))
    cnn = Architecture("cnn", input_shape=(2, 3, 4), mask=(3, 4), activation=activation,
                       lambda0=0.7)
    fc = Architecture("fc", input_shape=24, activation=activation, lambda0=0.7)
    assert cnn.n == 1 and cnn.M == 24
    Kc, Kf = cnn.kernels(X), fc.kernels(X)
    assert np.allclose(Kc.block(0, 0), Kf.block(0, 0), rtol=1e-13, atol=1e-15)
    assert np.allclose(Kc.mu, Kf.mu, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("n,zero_mean,mode", [(2, True, "symbolic"), (3, True, "none"),
                                              (2, False, "none")])
def test_cnn_diagonal_equals_lcn(n, zero_mean, mode):
    step = L.cnn_diagonal_equals_lcn(n, 2, zero_mean, action_module=mode)
    assert step.checked


def test_cnn_with_offdiagonal_Q_is_not_lcn():
    """The equivalence is specific to diagonal Q: an off-diagonal Q_12 brings in K_12."""
    dc = st.explicit_data("cnn", 2, 2, zero_mean=True)
    dl = st.explicit_data("lcn", 2, 2, zero_mean=True)
    sub = {dc.Q[0, 0]: dl.Q[0, 0], dc.Q[1, 1]: dl.Q[1, 1]}
    Sc = st.theory_action_zero_mean(dc).xreplace(sub)
    assert Sc.has(dc.K[(0, 1)][0, 1])
    assert not st.symbolic_equal(Sc, st.theory_action_zero_mean(dl), gens=list(dl.y))


def test_linear_fc_closed_form_rejects_bad_input():
    with pytest.raises(ValueError, match="singular"):
        L.linear_fc_closed_form(0.5, 1.0, -3.0, 10.0)
    with pytest.raises(ValueError, match="N must be"):
        L.linear_fc_closed_form(0.5, 1.0, 3.0, 0.0)
    # α = 1 exactly: Q* = √(λ1 r/N)
    assert abs(L.linear_fc_closed_form(1.0, 2.0, 8.0, 4.0) - 2.0) < 1e-15
