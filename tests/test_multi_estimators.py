"""D outputs in the estimators (THEORY §3c, §4, §5.7), against computations that share nothing
with kren's solvers: the infinite-width limit against D independent GP regressions written here
in NumPy (kernels from tests/nngp_reference.py), and the FC D×D order parameter against the
independent solver of tests/multi_reference.py."""
from __future__ import annotations

import numpy as np
import pytest

import kren
from kren.data import load_digits

from multi_reference import FCMultiAction, solve_fc_multi
from nngp_reference import nngp, nngp_fc

T = 0.1
CNN_GEOM = dict(mask=(2, 2), stride=2, input_shape=(1, 8, 8))


@pytest.fixture(scope="module")
def digits():
    return load_digits(classes="all", n_train=40, n_test=20, seed=5, one_hot=True)


def _gp(K, k0, k00, Y):
    """GP regression with noise T, each output separately: mean k0ᵀ(K + T𝟙)⁻¹y_d, variance
    k00 − k0ᵀ(K + T𝟙)⁻¹k0 (the same for every output)."""
    A = K + T * np.eye(K.shape[0])
    mean = np.column_stack([k0 @ np.linalg.solve(A, Y[:, d]) for d in range(Y.shape[1])])
    var = k00 - np.einsum("ij,ji->i", k0, np.linalg.solve(A, k0.T))
    return mean, var


@pytest.mark.parametrize("kind", ["fc", "cnn", "lcn"])
def test_infinite_width_is_D_independent_GPs(digits, kind):
    """THEORY §5.7: at N = ∞ (Q = 𝟙) every output is GP regression with the NNGP kernel, the
    D×D predictive covariance is var·𝟙_D; agreement to 1e-10 (round-off of P = 40 solves)."""
    X, Y, X0 = digits.X_train, digits.y_train, digits.X_test
    if kind == "fc":
        est = kren.FC(N=np.inf, T=T)
        ker = lambda a, b: nngp_fc(a, b)                                   # noqa: E731
    else:
        est = (kren.CNN if kind == "cnn" else kren.LCN)(N=np.inf, T=T, **CNN_GEOM)
        ker = lambda a, b: nngp(a, b, (1, 8, 8), (2, 2), (2, 2))           # noqa: E731
    est.fit(X, Y)
    mean, cov = est.predict(X0, return_cov=True)
    want_mean, want_var = _gp(ker(X, X), ker(X0, X), np.diag(ker(X0, X0)), Y)
    D = Y.shape[1]
    assert mean.shape == (X0.shape[0], D) and cov.shape == (X0.shape[0], D, D)
    np.testing.assert_allclose(mean, want_mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(cov, want_var[:, None, None] * np.eye(D)[None], rtol=0, atol=1e-10)
    err = est.test_error(X0, digits.y_test)
    want = np.mean((digits.y_test - want_mean) ** 2, axis=0) + np.mean(want_var)
    np.testing.assert_allclose(err.per_output["total"], want, rtol=1e-10)
    assert abs(err.total - want.mean()) < 1e-10


def test_one_hot_labels_equal_explicit_targets(digits):
    """Integer labels with one_hot=True and label_values (1, −1) give the (P, 10) ±1 targets
    (data set digits with one_hot=True holds those): the same fit, the same predictions."""
    labels = np.argmax(digits.y_train, axis=1)
    a = kren.FC(N=np.inf, T=T, one_hot=True).fit(digits.X_train, labels)
    b = kren.FC(N=np.inf, T=T).fit(digits.X_train, digits.y_train)
    np.testing.assert_array_equal(a.predict(digits.X_test), b.predict(digits.X_test))
    assert list(a.classes_) == list(range(10))
    test_labels = np.argmax(digits.y_test, axis=1)
    acc = np.mean(np.argmax(b.predict(digits.X_test), axis=1) == test_labels)
    assert a.score(digits.X_test, test_labels) == acc


@pytest.mark.parametrize("N", [5.0, 40.0])
def test_fc_Q_agrees_with_an_independent_solver(digits, N):
    """FC, D = 10, erf: kren's D×D Q (joint eigenbasis of Q and K) = the minimizer of the action
    written in the eigenbasis of K alone (tests/multi_reference.py, BFGS + Newton) to 1e-6, and
    the independent gradient vanishes at kren's Q (1e-7: the solver tolerance 1e-9 on the
    scaled gradient, amplified by at most the Hessian's condition)."""
    X, Y = digits.X_train, digits.y_train
    est = kren.FC(N=N, T=T, tol=1e-11).fit(X, Y)
    assert est.result_.converged and est.Q_.shape == (10, 10)
    K = nngp_fc(X, X)
    Q_ref, g_ref = solve_fc_multi(K, Y, T, N)
    assert g_ref < 1e-9
    np.testing.assert_allclose(est.Q_, Q_ref, rtol=0, atol=1e-6)
    assert np.max(np.abs(FCMultiAction(K, Y, T, N).gradient(est.Q_))) < 1e-7
    # finite width renormalizes the outputs jointly: Q is not a multiple of 𝟙
    assert np.max(np.abs(est.Q_ - np.eye(10))) > 1e-3


@pytest.mark.parametrize("cls", ["CNN", "LCN"])
def test_one_patch_local_equals_fc_with_D_outputs(digits, cls):
    """THEORY §5.1 with D outputs: a mask covering the input (n = 1) gives the FC's D×D Q
    (different solvers: the (DP)×(DP) matrix problem vs the FC eigenbasis) and predictions."""
    X, Y = digits.X_train[:, :], digits.y_train[:, :3]
    fc = kren.FC(N=10.0, T=T, tol=1e-11).fit(X, Y)
    loc = getattr(kren, cls)(N=10.0, T=T, mask=(8, 8), stride=8, input_shape=(1, 8, 8),
                             tol=1e-11).fit(X, Y)
    assert loc.Q_.shape == (1, 3, 1, 3)
    np.testing.assert_allclose(loc.Q_.reshape(3, 3), fc.Q_, rtol=0, atol=1e-7)
    np.testing.assert_allclose(loc.predict(digits.X_test), fc.predict(digits.X_test),
                               rtol=0, atol=1e-7)


@pytest.mark.parametrize("cls,suffix", [("FC", ".npz"), ("CNN", ".json")])
def test_save_load_round_trip_with_D_outputs(digits, tmp_path, cls, suffix):
    """A saved D-output fit loads (its saddle point re-checked on the stored data) and predicts
    the same numbers; a one-hot fit keeps its classes."""
    from kren.estimators import load
    labels = np.argmax(digits.y_train, axis=1) % 3
    kw = CNN_GEOM if cls == "CNN" else {}
    est = getattr(kren, cls)(N=10.0, T=T, one_hot=True, **kw).fit(digits.X_train, labels)
    path = tmp_path / f"fit{suffix}"
    est.save(path)
    back = load(path)
    assert list(back.classes_) == [0, 1, 2] and back.Q_.shape == est.Q_.shape
    np.testing.assert_array_equal(back.Q_, est.Q_)
    np.testing.assert_allclose(back.predict(digits.X_test), est.predict(digits.X_test),
                               rtol=0, atol=1e-12)


def test_a_d_output_fit_whose_working_set_exceeds_the_budget_is_refused_before_it_starts(digits):
    """The CNN with D = 10 outputs at P = 40: the stacked blocks (136 of 40×40, 1.74 MB) fit a
    2 MB budget, the four (DP)×(DP) = 400×400 float64 matrices of an evaluation (5.1 MB) do not:
    a MemoryBudgetError that names both and the way out, before any kernel is computed, and no
    fitted state. With the budget raised the same fit runs."""
    from kren.estimators.multi import multi_working_bytes
    from kren.kernels import MemoryBudgetError
    X, Y = digits.X_train, digits.y_train
    blocks = 136 * 40 * 40 * 8
    assert multi_working_bytes("matrix", 40, 10) == 4 * 400 * 400 * 8
    est = kren.CNN(N=50.0, T=T, memory_budget=2_000_000, **CNN_GEOM)
    assert blocks < 2_000_000 < blocks + multi_working_bytes("matrix", 40, 10)
    with pytest.raises(MemoryBudgetError, match=r"D = 10, P = 40.*four 400×400 float64 "
                                                r"matrices.*fewer outputs"):
        est.fit(X, Y)
    assert not hasattr(est, "Q_")
    est.set_params(memory_budget=blocks + multi_working_bytes("matrix", 40, 10))
    assert est.fit(X, Y).result_.converged
