"""The saddle-point driver (kren.saddle): every structure reaches the saddle point of THEORY §3,
Newton and Anderson agree, the policy picks the documented method, and every failure stops
within a bounded number of evaluations with a message that says what to change (issue 9).

Independent references: the local kernels of tests/nngp_reference.py (brute force, no kren
code) and the gradient of THEORY §3 written with np.linalg. A solve to tol 1e-12 leaves a
relative gradient ≲ 1e-12, which the independent evaluation reproduces up to round-off
(≲ 1e-13 for these O(1) problems): 1e-10 is asserted. Two methods solving to 1e-12 agree on Q to
cond × 1e-12 ≲ 1e-11 (condition of the map O(10)): 1e-10 is asserted.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning

import kren
from kren.data import load_digits
from kren.kernels import KernelTensor
from kren.linalg import diag_pairs, triu_pairs
from kren.saddle import (ConvergenceWarning, MatrixProblem, ScalarProblem, plan, problem_for,
                         solve)
from kren.saddle import driver as saddle_driver

from nngp_reference import local_covariances, local_kernels, mean_relu

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits():
    return load_digits(classes=(0, 1), n_train=40, n_test=10, seed=3)


def tensor(X, structure, activation, mask):
    """KernelTensor from the brute-force kernels: (n, n, P, P) → stored pairs, and means."""
    K = local_kernels(X, X, SHAPE, mask, mask, activation=activation)
    _, var, _ = local_covariances(X, X, SHAPE, mask, mask)
    n = K.shape[0]
    pairs = diag_pairs(n) if structure != "matrix" else triu_pairs(n)
    mu = mean_relu(var) if activation == "relu" else np.zeros_like(var)
    return KernelTensor(np.stack([K[i, j] for i, j in pairs]), pairs, n, mu, var), K, mu


def gradient(Q, Qbar, K, mu, y, T, N, lambda1):
    """THEORY §3 with explicit inverses: relative gradient at (Q, Q̄) (Q̄ None: zero mean)."""
    n, P = mu.shape
    R = None if Qbar is None else np.linalg.inv(np.eye(n) + Qbar)
    KR = sum(Q[i, j] * (K[i, j] - np.outer(mu[i], mu[j]))
             + (0 if R is None else R[i, j] * np.outer(mu[i], mu[j]))
             for i in range(n) for j in range(n)) / (lambda1 * n)
    Ainv = np.linalg.inv(T * np.eye(P) + KR)
    z = Ainv @ y
    B = Ainv - np.outer(z, z)
    G = np.array([[np.sum(K[i, j] * B) for j in range(n)] for i in range(n)])
    c = 1.0 / (N * lambda1 * n)
    if R is None:
        g = np.eye(n) - np.linalg.inv(Q) + c * G
        return g, np.linalg.norm(g) / (np.sqrt(n) + np.linalg.norm(np.linalg.inv(Q))), z, Ainv
    M = mu @ B @ mu.T
    gQ, gQb = -Qbar + c * (G - M), -Q + R - c * R @ M @ R
    rel = np.hypot(np.linalg.norm(gQ), np.linalg.norm(gQb)) / (
        np.sqrt(n) + np.linalg.norm(Q) + np.linalg.norm(Qbar))
    return (gQ, gQb), rel, z, Ainv


def test_convergence_warning_is_sklearns():
    assert issubclass(ConvergenceWarning, SklearnConvergenceWarning)
    assert kren.ConvergenceWarning is ConvergenceWarning


# --------------------------------------------------------------------------- every structure
CASES = [("scalar", "erf", 8), ("scalar", "relu", 8), ("diagonal", "erf", 4),
         ("diagonal", "relu", 4), ("matrix", "erf", 4), ("matrix", "relu", 4)]


@pytest.mark.parametrize("structure,activation,mask", CASES)
def test_driver_reaches_the_saddle_point(digits, structure, activation, mask):
    """Digits 0/1, P = 40, N = 20, T = 0.1: Newton and Anderson converge to the same Q, Q̄,
    which solve the independent saddle-point equations; Q̄ = Q⁻¹ − 𝟙 for zero-mean units;
    cho, z are those of A at the solution."""
    X, y = digits.X_train, digits.y_train
    kt, K, mu = tensor(X, structure, activation, mask)
    T, N, l1 = 0.1, 20.0, 1.0
    zero_mean = activation != "relu"
    problem = problem_for(structure, kt, y, T, N, l1, zero_mean)
    assert isinstance(problem, ScalarProblem if structure == "scalar" else MatrixProblem)
    sols = {m: solve(problem, tol=1e-12, method=m) for m in ("newton", "anderson")}
    for m, sol in sols.items():
        assert sol.result.converged and sol.result.rel_grad_norm <= 1e-12, (m, sol.result.message)
        assert sol.result.n_eval >= sol.result.n_iter + 1
    a, b = sols["newton"], sols["anderson"]
    np.testing.assert_allclose(np.asarray(a.Q), np.asarray(b.Q), atol=1e-10, rtol=0)
    np.testing.assert_allclose(np.asarray(a.Qbar), np.asarray(b.Qbar), atol=1e-10, rtol=0)
    Q = np.atleast_2d(a.Q)
    Qbar = np.atleast_2d(a.Qbar)
    if structure == "scalar":
        assert isinstance(a.Q, float) and isinstance(a.Qbar, float) and a.cho is None
    else:
        assert Q.shape == (kt.n, kt.n)
    if structure == "diagonal":
        assert np.all(Q == np.diag(np.diag(Q))) and np.all(Qbar == np.diag(np.diag(Qbar)))
    if zero_mean:
        np.testing.assert_allclose(Qbar, np.linalg.inv(Q) - np.eye(len(Q)), atol=1e-12)
    g, rel, z, Ainv = gradient(Q, None if zero_mean else Qbar, K, mu, y, T, N, l1)
    if structure == "diagonal":          # the LCN's equations: the diagonal ones (THEORY §5.6)
        parts = g if isinstance(g, tuple) else (g,)
        assert max(np.max(np.abs(np.diag(v))) for v in parts) <= 1e-10
    else:
        assert rel <= 1e-10
    if a.cho is not None:
        L = np.tril(a.cho[0])
        np.testing.assert_allclose(L @ L.T, np.linalg.inv(Ainv), atol=1e-10)
        np.testing.assert_allclose(a.z, z, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_scalar_problem_solves_the_pooled_cnn(digits, activation):
    """THEORY §3b: the pooled CNN is the FC action on K_pool = (1/n²) Σ_ij K_ij with the pooled
    means; the scalar problem takes that one-block tensor (kren.generated.pool builds it) and
    its solution solves the FC equations on the brute-force K_pool."""
    from kren.generated import pool
    X, y = digits.X_train, digits.y_train
    kt, K, mu = tensor(X, "matrix", activation, 4)
    Kp = pool.pooled_kernel(kt.blocks, kt.pairs, kt.n)
    mup = pool.pooled_means(kt.mu)
    pooled = KernelTensor(Kp[None], np.array([[0, 0]]), 1, mup, kt.var.mean(axis=0)[None])
    zero_mean = activation != "relu"
    sol = solve(problem_for("scalar", pooled, y, 0.1, 20.0, 1.0, zero_mean), tol=1e-12)
    assert sol.result.converged, sol.result.message
    n = K.shape[0]
    Kref = K.sum(axis=(0, 1))[None, None] / n ** 2
    mref = mu.mean(axis=0)[None]
    Qb = None if zero_mean else np.array([[sol.Qbar]])
    _, rel, _, _ = gradient(np.array([[sol.Q]]), Qb, Kref, mref, y, 0.1, 20.0, 1.0)
    assert rel <= 1e-10
    assert abs(sol.Q - 1.0) > 1e-3                     # a genuinely renormalized case


def test_newton_on_hessian_vector_products_agrees(digits):
    """Without an exact Hessian in memory, Newton runs on Hessian-vector products (GMRES) and
    reaches the same saddle point (relu CNN, 2 × 2 patches, n = 16: 272 coordinates)."""
    X, y = digits.X_train[:24], digits.y_train[:24]
    kt, _, _ = tensor(X, "matrix", "relu", 4)
    problem = problem_for("matrix", kt, y, 0.1, 20.0, 1.0, False)
    exact = solve(problem, tol=1e-11, method="newton")
    krylov = solve(problem, tol=1e-11, method="newton", memory_budget=1)
    assert "GMRES" in krylov.result.method and "exact" in exact.result.method
    assert krylov.result.converged, krylov.result.message
    np.testing.assert_allclose(krylov.Q, exact.Q, atol=1e-9, rtol=0)
    np.testing.assert_allclose(krylov.Qbar, exact.Qbar, atol=1e-9, rtol=0)


def test_auto_policy(digits, monkeypatch):
    """Newton first when one exact Hessian is cheap (Anderson if it stops short), after an
    Anderson warm-up where it costs at least WARMUP_FLOPS (same Q as exact Newton to 1e-9);
    Anderson (capped) then Newton when it is expensive but fits; Anderson then Hessian-free Newton when
    it does not fit in memory. A callback returning True stops the solve."""
    kt, _, _ = tensor(digits.X_train, "matrix", "erf", 4)
    problem = problem_for("matrix", kt, digits.y_train, 0.1, 20.0, 1.0, True)
    assert plan(problem) == [("newton", True, None), ("anderson", None, None)]
    monkeypatch.setattr(saddle_driver, "NEWTON_FLOPS", 1.0)
    assert plan(problem) == [("anderson", None, 30), ("newton", True, None)]
    assert plan(problem, memory_budget=1) == [("anderson", None, None), ("newton", False, None)]
    sol = solve(problem, tol=1e-12)
    assert sol.result.converged and sol.result.method.startswith("anderson")
    with pytest.raises(ValueError, match="method"):
        plan(problem, "bfgs")
    monkeypatch.setattr(saddle_driver, "NEWTON_FLOPS", 2.5e10)
    monkeypatch.setattr(saddle_driver, "WARMUP_FLOPS", 1.0)      # the warm-up of a large CNN
    assert plan(problem) == [("anderson", None, saddle_driver.ANDERSON_WARMUP),
                             ("newton", True, None), ("anderson", None, None)]
    warm = solve(problem, tol=1e-12)
    exact = solve(problem, tol=1e-12, method="newton")
    assert warm.result.converged and warm.result.method.startswith("anderson fixed point, then")
    np.testing.assert_allclose(warm.Q, exact.Q, rtol=0, atol=1e-9)
    seen = []
    r = solve(problem, callback=lambda it, ev: seen.append(ev.rel) or len(seen) >= 2).result
    assert not r.converged and r.n_iter == 2 and "stopped by the callback" in r.message
    assert seen == r.history[1:]


# --------------------------------------------------------------------------- failures
def test_line_search_failure_is_reported(digits):
    """A problem whose every trial point is infeasible: the line search gives up after its
    bounded number of trials (no evaluation beyond the start) and the result says so."""
    kt, _, _ = tensor(digits.X_train, "matrix", "erf", 4)

    class Walled(MatrixProblem):
        def feasible(self, x):
            return bool(np.array_equal(x, self.start()))

    problem = Walled(kt, digits.y_train, 0.1, 20.0, 1.0, True, diagonal=False)
    sol = solve(problem, method="newton")
    r = sol.result
    assert not r.converged and r.n_eval == 1 and r.n_iter == 0
    assert "line search failed along the Newton direction" in r.message
    assert "outside the positive-definite cone" in r.message and "To fix:" in r.message
    np.testing.assert_array_equal(sol.Q, np.eye(kt.n))
    r = solve(problem).result                         # auto: Newton, then Anderson, both walled
    assert not r.converged and r.n_eval == 1 and r.method.count("then") == 1
    assert "line search failed along the fixed-point direction" in r.message


def test_max_iter_message(digits):
    kt, _, _ = tensor(digits.X_train, "matrix", "erf", 4)
    problem = problem_for("matrix", kt, digits.y_train, 0.1, 20.0, 1.0, True)
    r = solve(problem, max_iter=1).result
    assert not r.converged and r.n_iter == 1
    assert "not converged" in r.message and "max_iter = 1" in r.message
    assert "raise max_iter" in r.message


def _duplicates(opposite: bool):
    """Issue 9: 50 digits (0/1) each twice, with equal or opposite labels, P = 100."""
    ds = load_digits(classes=(0, 1), n_train=50, n_test=10, seed=0)
    X = np.concatenate([ds.X_train, ds.X_train])
    y = np.concatenate([ds.y_train, -ds.y_train if opposite else ds.y_train])
    return X, y


def test_issue9_duplicate_points_stop_with_precision_advice():
    """T = 1e-10 on duplicated points: A = T𝟙 + K_R has condition ≳ 1e9, so float64 cannot
    resolve the gradient to 1e-9. Before: Newton accepted steps that changed S only by
    round-off, stalling near 2e-8 for all 1000 iterations (~30 000 evaluations). Now it stops
    within a few dozen evaluations and names T and a reachable tol."""
    X, y = _duplicates(opposite=False)
    m = kren.LCN(N=10, T=1e-10, input_shape=SHAPE, mask=2, stride=2)
    with pytest.warns(ConvergenceWarning, match="raise T"):
        m.fit(X, y)
    r = m.result_
    assert not r.converged and r.n_eval <= 100
    assert 1e-9 < r.rel_grad_norm < 1e-6
    assert "raise T" in r.message and "loosen tol" in r.message
    # the same stall under Anderson is caught by the progress monitor
    problem = problem_for("diagonal", m.kernels_, y, 1e-10, 10.0, 1.0, True)
    r = solve(problem, method="anderson").result
    assert not r.converged and r.n_eval <= 100 and "stalled" in r.message
    assert "raise T" in r.message


def test_issue9_conflicting_duplicates_stop_with_advice():
    """Opposite labels on identical inputs at T = 1e-10: yᵀA⁻¹y ~ 1/T swamps S and the
    gradient; the solve stops within a bounded number of evaluations and says to raise T."""
    X, y = _duplicates(opposite=True)
    m = kren.CNN(N=50, T=1e-10, input_shape=SHAPE, mask=4, stride=4)
    with pytest.warns(ConvergenceWarning, match="raise T"):
        m.fit(X, y)
    r = m.result_
    assert not r.converged and r.n_eval <= 100 and "To fix: raise T" in r.message


def test_issue9_relu_cnn_converges_where_anderson_diverged():
    """Relu CNN, digits even/odd, P = 120, 2×2 stride 2, N = 20, T = 1e-3: Anderson alone
    diverged (relative gradient 1.2e13, advising "a larger max_iter"). Newton with the generated
    Hessian of the (Q, Q̄) saddle converges; the solution solves the independent equations.
    Anderson alone now stops on divergence within a bounded number of evaluations."""
    ds = load_digits(classes="even-odd", n_train=120, n_test=10, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        m = kren.CNN(N=20, T=1e-3, activation="relu", input_shape=SHAPE, mask=2,
                     stride=2).fit(ds.X_train, ds.y_train)
    r = m.result_
    assert r.converged and r.rel_grad_norm <= 1e-9 and r.n_eval <= 30
    K = local_kernels(ds.X_train, ds.X_train, SHAPE, 2, 2, activation="relu")
    _, var, _ = local_covariances(ds.X_train, ds.X_train, SHAPE, 2, 2)
    _, rel, _, _ = gradient(m.Q_, m.Qbar_, K, mean_relu(var), ds.y_train, 1e-3, 20.0, 1.0)
    assert rel <= 1e-8
    problem = problem_for("matrix", m.kernels_, ds.y_train, 1e-3, 20.0, 1.0, False)
    r = solve(problem, method="anderson").result
    assert not r.converged and r.n_eval <= 60
    assert "diverged" in r.message and "method='newton'" in r.message
    assert "max_iter" not in r.message


# --------------------------------------------------------------------------- bad input
def test_bad_arguments(digits):
    kt, _, _ = tensor(digits.X_train, "matrix", "erf", 4)
    y = digits.y_train
    with pytest.raises(ValueError, match="structure"):
        problem_for("full", kt, y, 0.1, 20, 1.0, True)
    with pytest.raises(ValueError, match="N"):
        problem_for("matrix", kt, y, 0.1, float("inf"), 1.0, True)
    with pytest.raises(ValueError, match="T"):
        problem_for("matrix", kt, y, 0.0, 20, 1.0, True)
    with pytest.raises(ValueError, match="y"):
        problem_for("matrix", kt, y[:-1], 0.1, 20, 1.0, True)
    relu_kt, _, _ = tensor(digits.X_train, "matrix", "relu", 4)
    with pytest.raises(ValueError, match="zero_mean"):
        problem_for("matrix", relu_kt, y, 0.1, 20, 1.0, True)
    with pytest.raises(ValueError, match="one block"):
        problem_for("scalar", kt, y, 0.1, 20, 1.0, True)
    problem = problem_for("matrix", kt, y, 0.1, 20, 1.0, True)
    with pytest.raises(ValueError, match="tol"):
        solve(problem, tol=0)
    with pytest.raises(ValueError, match="max_iter"):
        solve(problem, max_iter=0)
    with pytest.raises(ValueError, match="Q0 must be 4×4"):
        solve(problem, Q0=np.eye(3))
    with pytest.raises(ValueError, match="Q0 must be positive definite"):
        solve(problem, Q0=-np.eye(4))
    scalar = problem_for("scalar", tensor(digits.X_train, "scalar", "relu", 8)[0], y, 0.1, 20,
                         1.0, False)
    with pytest.raises(ValueError, match="Qbar0"):
        solve(scalar, Q0=1.0, Qbar0=-2.0)


def test_advised_tolerance_when_no_finite_gradient_was_reached():
    """The advice's reachable tol is 10^ceil(log10(3·best)); with no finite gradient (NaN/inf
    best, e.g. overflowing kernels) there is none to advise, and the report must not crash."""
    import math
    from kren.saddle.report import _reachable
    assert _reachable(float("nan")) == math.inf and _reachable(math.inf) == math.inf
    assert _reachable(2e-8) == pytest.approx(1e-7, rel=1e-12)
