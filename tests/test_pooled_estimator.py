"""kren.CNN(readout="pool") through the one estimator path (THEORY §3b, §5.8).

The pooled CNN is the FC action on K_pool = (1/n²) Σ_ij K_ij: its Q must solve the FC saddle
equation Q = 1/(1 + (Tr(A⁻¹K_pool) − zᵀK_pool z)/(Nλ1)) (THEORY §3, zero mean) with K_pool from
the brute-force reference kernels, and it must predict GP regression with Q K_pool/λ1.
"""
import numpy as np
import pytest

import kren
from kren.data import load_digits

from nngp_reference import local_kernels

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def ds():
    return load_digits(classes="even-odd", n_train=70, n_test=25, seed=12)


def test_pooled_cnn_is_the_fc_action_on_the_pooled_kernel(ds):
    """Residual of the FC saddle equation ≤ 1e-8 relative (the solver stops at relative
    gradient 1e-9 on an O(1)-conditioned scalar problem); predictions equal GP regression with
    Q K_pool/λ1 to 1e-10 (exact linear algebra, cond(A) ≲ 1e3)."""
    N, T, lam = 10.0, 0.1, 1.3
    m = kren.CNN(N=N, T=T, lambda1=lam, readout="pool", input_shape=SHAPE, mask=2, stride=2)
    m.fit(ds.X_train, ds.y_train)
    Q = m.Q_
    assert isinstance(Q, float) and m.arch_.structure == "scalar" and abs(Q - 1) > 0.05
    K = local_kernels(ds.X_train, ds.X_train, SHAPE, 2, 2).mean(axis=(0, 1))
    k0 = local_kernels(ds.X_test, ds.X_train, SHAPE, 2, 2).mean(axis=(0, 1))
    k00 = np.array([local_kernels(x[None], x[None], SHAPE, 2, 2).mean() for x in ds.X_test])
    A = Q * K / lam + T * np.eye(len(K))
    Ainv = np.linalg.inv(A)
    z = Ainv @ ds.y_train
    rhs = 1.0 / (1.0 + (np.trace(Ainv @ K) - z @ K @ z) / (N * lam))
    assert abs(Q - rhs) <= 1e-8 * Q
    mean, var = m.predict(ds.X_test, return_var=True)
    np.testing.assert_allclose(mean, Q * k0 / lam @ z, rtol=0, atol=1e-10)
    np.testing.assert_allclose(var, Q * k00 / lam - np.einsum("ab,ba->a", Q * k0 / lam,
                                                              Ainv @ (Q * k0.T / lam)),
                               rtol=0, atol=1e-10)
    with pytest.raises(kren.InvalidParameterError, match="readout='pool'"):
        m.patch_importance()
    with pytest.raises(kren.InvalidParameterError, match="'readout' parameter"):
        kren.CNN(N=N, T=T, readout="max", input_shape=SHAPE, mask=2, stride=2)


def test_pooled_with_one_patch_is_the_fc(ds):
    """n = 1 (mask covering the input): the pooled CNN and the FC are the same problem (1e-10)."""
    for act in ("erf", "relu"):
        fc = kren.FC(N=10, T=0.1, activation=act, tol=1e-12).fit(ds.X_train, ds.y_train)
        pool = kren.CNN(N=10, T=0.1, activation=act, tol=1e-12, readout="pool", input_shape=SHAPE,
                        mask=8, stride=8).fit(ds.X_train, ds.y_train)
        assert abs(pool.Q_ - fc.Q_) <= 1e-10 * fc.Q_
        for a, b in zip(pool.predict(ds.X_test, return_var=True),
                        fc.predict(ds.X_test, return_var=True)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
