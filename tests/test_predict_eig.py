"""The predictor of a scalar fit (FC, pooled CNN) in the eigenbasis of its training kernel
(kren.renormalized.posterior_moments_eig, the generated predictor_eig* / train_error_eig*)
against GP regression through the Cholesky factor of A = T𝟙 + K_R (posterior_moments, the
generated predictor_moments / train_error): the same numbers, at N = ∞ and finite N down to
N = 2, and the projections K(x0, X) U built once per kernel cache for every N (issue 12).

Tolerance 10·κ(A)·eps (relative to the largest value), κ(A) computed for each fit: both are
backward-stable evaluations of the same formulas of THEORY §4, so they differ by about
κ(A)·eps. κ(A) runs from 57 (erf, N = ∞) to 1.4e4 (relu, N = 2), where the variances differ
by 1.1e-12 = 0.35·κ·eps with OpenBLAS's AVX-512 kernels (≤ 1e-12 on AVX2)."""
import math

import numpy as np
import pytest

import kren
from kren.data import load_digits
from kren.generated import predictor
from kren.renormalized import posterior_moments

NS = (math.inf, 1000.0, 50.0, 2.0)
MODELS = {
    "fc-erf": lambda N, cache: kren.FC(N=N, T=0.1, cache=cache),
    "fc-relu": lambda N, cache: kren.FC(N=N, T=0.1, activation="relu", cache=cache),
    "cnn-pool-erf": lambda N, cache: kren.CNN(N=N, T=0.1, input_shape=(1, 8, 8), mask=4,
                                              stride=4, readout="pool", cache=cache),
    "cnn-pool-relu": lambda N, cache: kren.CNN(N=N, T=0.1, input_shape=(1, 8, 8), mask=4,
                                               stride=4, readout="pool", activation="relu",
                                               cache=cache),
}


@pytest.fixture(scope="module")
def ds():
    return load_digits(classes="even-odd", n_train=240, n_test=40, seed=3)


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_eigenbasis_predictor_equals_cholesky_predictor(ds, name):
    cache = kren.KernelCache()
    for N in NS:
        m = MODELS[name](N, cache).fit(ds.X_train, ds.y_train)
        fit = m.fit_
        assert fit.eig is not None and fit.cho is None        # no factor of A was made
        mean, var = m.predict(ds.X_test, return_var=True)
        cho, z = fit.factor()                                 # A = T·1 + K_R, factorized now
        ref_mean, ref_var = posterior_moments(fit.kernel(), ds.X_test, fit.train, cho, z)
        tol = 10 * np.linalg.cond(fit.K_R + fit.T * np.eye(fit.P)) * np.finfo(float).eps
        assert _rel(mean, ref_mean) <= tol, (N, _rel(mean, ref_mean), tol)
        assert _rel(var, ref_var) <= tol, (N, _rel(var, ref_var), tol)
        assert np.all(var > 0)
        ref_train = predictor.train_error(fit.K_R, cho, fit.y, fit.T)
        assert m.train_error() == pytest.approx(ref_train, rel=1e-12, abs=0), N
        # cho_, z_ of such a fit: made on first access, and they solve A z = y
        A = fit.K_R + fit.T * np.eye(fit.P)
        L = np.tril(m.cho_[0])
        assert m.cho_[1] is True
        np.testing.assert_allclose(L @ L.T, A, rtol=0, atol=1e-12 * A.max())
        np.testing.assert_allclose(A @ m.z_, fit.y, rtol=0, atol=1e-10)
    # the projections K(x0, X) U depend on neither N nor T: made once, for the first N
    assert cache.misses_by["cross-eig"] == 1
    assert cache.misses_by["train-eigenbasis"] == 1


def test_cached_and_uncached_fits_predict_alike(ds):
    """At finite N a fit without a cache predicts in the same eigenbasis (identical numbers);
    at N = ∞ without a cache it factorizes A instead (the same numbers to 1e-12)."""
    cache = kren.KernelCache()
    for N in (20.0, math.inf):
        a = kren.FC(N=N, T=0.5, cache=cache).fit(ds.X_train, ds.y_train)
        b = kren.FC(N=N, T=0.5).fit(ds.X_train, ds.y_train)
        assert a.fit_.eig is not None and (b.fit_.eig is None) == math.isinf(N)
        for u, v in zip(a.predict(ds.X_test, return_var=True),
                        b.predict(ds.X_test, return_var=True)):
            if math.isinf(N):
                assert _rel(u, v) <= 1e-12
            else:
                np.testing.assert_array_equal(u, v)
        assert a.train_error() == pytest.approx(b.train_error(), rel=1e-12 if math.isinf(N)
                                                else 0, abs=0)


def test_generated_eigen_forms_on_a_random_kernel():
    """predictor_eig / train_error_eig of kren.generated.fc on a random PSD kernel with unit
    means against the Cholesky forms of kren.generated.predictor, K_R built explicitly."""
    from kren.generated import fc
    from kren.linalg import cho_factor, cho_solve
    rng = np.random.default_rng(0)
    P, P0, lam, T, Q, Qbar = 30, 7, 1.3, 0.2, 1.7, -0.35
    F = rng.standard_normal((P + P0, 50))
    G = F @ F.T / 50                                        # PSD Gram of train + test
    mu_all = 0.3 + 0.1 * rng.standard_normal(P + P0)
    K, Kx, Kd = G[:P, :P], G[P:, :P], np.diag(G)[P:]
    mu, mu0 = mu_all[:P], mu_all[P:]
    y = rng.standard_normal(P)
    k, U = np.linalg.eigh(K - np.outer(mu, mu))
    r = 1 / (1 + Qbar)
    K_R = (Q * (K - np.outer(mu, mu)) + r * np.outer(mu, mu)) / lam
    kR = (Q * (Kx - np.outer(mu0, mu)) + r * np.outer(mu0, mu)) / lam
    kR00 = (Q * (Kd - mu0**2) + r * mu0**2) / lam
    cho = cho_factor(K_R + T * np.eye(P), "A")
    ref = predictor.predictor_moments(kR, kR00, cho, cho_solve(cho, y))
    got = fc.predictor_eig(Q, Qbar, Kx @ U, Kd, mu0, k, U.T @ y, U.T @ mu, T, lam)
    for g, e in zip(got, ref):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-13 * np.max(np.abs(e)))
    assert fc.train_error_eig(Q, Qbar, k, U.T @ y, U.T @ mu, T, lam) == pytest.approx(
        predictor.train_error(K_R, cho, y, T), rel=1e-12)
    # zero-mean units: μ = 0, the uncentered kernel
    k0, U0 = np.linalg.eigh(K)
    cho0 = cho_factor(Q * K / lam + T * np.eye(P), "A")
    ref0 = predictor.predictor_moments(Q * Kx / lam, Q * Kd / lam, cho0, cho_solve(cho0, y))
    got0 = fc.predictor_eig_zero_mean(Q, Kx @ U0, Kd, k0, U0.T @ y, T, lam)
    for g, e in zip(got0, ref0):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-13 * np.max(np.abs(e)))
    assert fc.train_error_eig_zero_mean(Q, k0, U0.T @ y, T, lam) == pytest.approx(
        predictor.train_error(Q * K / lam, cho0, y, T), rel=1e-12)
