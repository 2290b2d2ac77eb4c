"""kren.generated.deep_fc (printed by derivations.codegen from derivations.deep): every gradient and
Hessian against central finite differences and against SymPy's own differentiation of the
explicit small-P action; L = 1 against the one-hidden-layer FC module; linear σ: product = nested."""
from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp

from derivations import deep as dp
from kren import deep_kernels as dk
from kren.generated import deep_fc as g
from kren.generated import fc
from kren.linalg import NotPositiveDefiniteError


def _problem(seed=0, P=14, N0=10):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, N0))
    y = np.sign(rng.standard_normal(P))
    C, _, _ = dk.input_covariance(X, None, 0.9)
    return X, y, C


def _fd(f, Q, h=1e-5):
    """Central differences with relative step h in each Q_l (truncation O(h²) ~ 1e-10)."""
    out = []
    for l in range(len(Q)):
        e = np.zeros(len(Q))
        e[l] = h * Q[l]
        out.append((np.asarray(f(Q + e)) - np.asarray(f(Q - e))) / (2 * e[l]))
    return np.array(out)


def _rel(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


WIDTHS = {1: [(37.0,)], 2: [(30.0,), (25.0, 60.0)], 3: [(40.0,), (30.0, 80.0, 50.0)]}
CASES = [(L, N) for L in (1, 2, 3) for N in WIDTHS[L]]


@pytest.mark.parametrize("L,N", CASES)
@pytest.mark.parametrize("activation", ["erf", "linear"])
def test_nested_gradient_and_hessian_by_finite_differences(L, N, activation):
    X, y, C = _problem(L)
    lams = np.array([1.3, 0.8, 1.1])[:L]
    Q = np.array([0.9, 1.25, 0.7])[:L]
    N = N[0] if len(N) == 1 else np.array(N)
    args = (C, y, 0.2, N, lams, activation)
    S, grad, hess, _, _ = g.nested_action_gradient_hessian(Q, *args)
    assert S == pytest.approx(g.nested_action(Q, *args), rel=1e-14)
    assert np.allclose(grad, g.nested_action_gradient(Q, *args)[1], rtol=1e-13, atol=0)
    assert _rel(grad, _fd(lambda q: g.nested_action(q, *args), Q)) < 1e-6
    assert _rel(hess, _fd(lambda q: g.nested_action_gradient(q, *args)[1], Q)) < 1e-6
    assert np.array_equal(hess, hess.T)


@pytest.mark.parametrize("L,N", CASES)
def test_product_gradient_and_hessian_by_finite_differences(L, N):
    X, y, C = _problem(10 + L)
    lams = np.array([1.3, 0.8, 1.1])[:L]
    K = dk.deep_nngp_kernel(X, L, "erf", 0.9, lams) * lams[-1]          # K^{(L)}
    k, U = np.linalg.eigh(K)
    yt = U.T @ y
    Q = np.array([0.9, 1.25, 0.7])[:L]
    N = N[0] if len(N) == 1 else np.array(N)
    S, grad, hess = g.product_action_eig(Q, k, yt, 0.2, N, lams[-1])
    assert _rel(grad, _fd(lambda q: g.product_action_eig(q, k, yt, 0.2, N, lams[-1])[0], Q)) < 1e-6
    assert _rel(hess, _fd(lambda q: g.product_action_eig(q, k, yt, 0.2, N, lams[-1])[1], Q)) < 1e-6
    # the eigenbasis action is the matrix action with K_R = Π Q K^{(L)}/λ_L
    KR = g.product_renormalized_kernel(Q, K, lams[-1])
    A = 0.2 * np.eye(len(y)) + KR
    Ns = np.broadcast_to(np.asarray(N, dtype=float), (L,))
    S_mat = np.sum(Ns / Ns[-1] * (Q - np.log(Q))) + \
        (np.linalg.slogdet(A)[1] + y @ np.linalg.solve(A, y)) / Ns[-1]
    assert S == pytest.approx(S_mat, rel=1e-12)


def _mp(v):
    r = sp.Rational(v)
    return mpmath.mpf(r.p) / r.q


@pytest.mark.parametrize("form", ["nested", "product"])
def test_gradient_and_hessian_equal_sympy_differentiation(form):
    """Explicit P = 2, L = 2 erf action with exact rational data: ``sympy.diff`` of it (30-digit
    evaluation) against the printed functions to 1e-10 relative (float64 round-off)."""
    Cr = sp.Matrix([[sp.Rational(9, 10), sp.Rational(3, 10)],
                    [sp.Rational(3, 10), sp.Rational(7, 10)]])
    y, T_, Ns = [1, -1], sp.Rational(1, 10), [4, 7]
    lams = [sp.Rational(6, 5), sp.Rational(3, 4)]
    q = [sp.Rational(3, 2), sp.Rational(4, 5)]
    S, Q = dp.nested_explicit_action(form, "erf", Cr, y, T_, Ns, lams)
    mpmath.mp.dps = 30
    at = [_mp(v) for v in q]

    grad_sym = [sp.diff(S, Q[l]) for l in range(2)]
    exprs = [S] + grad_sym + [sp.diff(grad_sym[0], Q[0]), sp.diff(grad_sym[0], Q[1]),
                              sp.diff(grad_sym[1], Q[1])]
    vals = [float(v) for v in sp.lambdify(Q, exprs, "mpmath", cse=True)(*at)]
    want_g = np.array(vals[1:3])
    want_h = np.array([[vals[3], vals[4]], [vals[4], vals[5]]])
    Cn = np.array(Cr, dtype=float)
    Qn = np.array(q, dtype=float)
    Nn = np.array(Ns, dtype=float)
    ln = np.array(lams, dtype=float)
    if form == "nested":
        S_n, g_n, h_n, _, _ = g.nested_action_gradient_hessian(Qn, Cn, np.array(y, float), 0.1,
                                                               Nn, ln, "erf")
    else:
        K = deep_kernel_from_C(Cn, ln) * ln[-1]
        k, U = np.linalg.eigh(K)
        S_n, g_n, h_n = g.product_action_eig(Qn, k, U.T @ np.array(y, float), 0.1, Nn, ln[-1])
    assert S_n == pytest.approx(vals[0], rel=1e-12)
    assert _rel(g_n, want_g) < 1e-10
    assert _rel(h_n, want_h) < 1e-10


def deep_kernel_from_C(C, lams):
    """K^{(L)}/λ_L from an input covariance C (the recursion of kren.deep_kernels)."""
    d = np.diag(C).copy()
    for lam in lams:
        C = dk.layer_kernel("erf", C, d[:, None], d[None, :]) / lam
        d = np.diag(C).copy()
    return C


@pytest.mark.parametrize("form", ["nested", "product"])
def test_one_layer_equals_the_fc_module(form):
    """L = 1: S, ∂S/∂Q (and d²S/dQ²) equal kren.generated.fc's zero-mean FC functions."""
    X, y, C = _problem(5)
    K = dk.deep_nngp_kernel(X, 1, "erf", 0.9, 1.4) * 1.4
    S1, g1, _, _ = fc.action_gradient_zero_mean(0.83, K, None, y, 0.3, 21.0, 1.4)
    k, U = np.linalg.eigh(K)
    _, _, h1 = fc.action_eig_zero_mean(0.83, k, U.T @ y, 0.3, 21.0, 1.4)
    if form == "nested":
        S, grad, hess, _, _ = g.nested_action_gradient_hessian([0.83], C, y, 0.3, 21.0, [1.4],
                                                               "erf")
    else:
        S, grad, hess = g.product_action_eig([0.83], k, U.T @ y, 0.3, 21.0, 1.4)
    assert S == pytest.approx(S1, rel=1e-12)
    assert grad[0] == pytest.approx(g1, rel=1e-10, abs=1e-13)
    assert hess[0, 0] == pytest.approx(h1, rel=1e-10)


@pytest.mark.parametrize("L", [2, 3])
def test_linear_product_equals_nested(L):
    """Linear σ: K_R = Π_l Q_l C/(λ_1⋯λ_L) in both forms (THEORY §3d): S, gradient, Hessian."""
    X, y, C = _problem(20 + L)
    lams = np.array([1.3, 0.8, 1.1])[:L]
    Q = np.array([0.9, 1.25, 0.7])[:L]
    N = np.array([30.0, 45.0, 60.0])[:L]
    Sn, gn, hn, _, _ = g.nested_action_gradient_hessian(Q, C, y, 0.2, N, lams, "linear")
    k, U = np.linalg.eigh(C / np.prod(lams[:-1]))                      # K^{(L)} for linear σ
    Sp, gp, hp = g.product_action_eig(Q, k, U.T @ y, 0.2, N, lams[-1])
    assert Sn == pytest.approx(Sp, rel=1e-12)
    assert _rel(gn, gp) < 1e-10 and _rel(hn, hp) < 1e-10
    KRn = g.nested_renormalized_kernel(Q, C, lams, "linear")
    KRp = g.product_renormalized_kernel(Q, C / np.prod(lams[:-1]), lams[-1])
    assert _rel(KRn, KRp) < 1e-13


def test_cross_kernel_on_the_training_set_is_the_train_kernel():
    X, y, C = _problem(7)
    Q, lams = np.array([1.2, 0.8]), np.array([1.1, 0.9])
    d = np.diag(C)
    K12, d1, d2 = g.nested_cross_kernel(Q, C, d, d, lams, "erf")
    KR = g.nested_renormalized_kernel(Q, C, lams, "erf")
    assert _rel(K12, KR) < 1e-13 and _rel(d1, np.diag(KR)) < 1e-13 and np.array_equal(d1, d2)


def test_bad_arguments_raise_clear_errors():
    X, y, C = _problem(8)
    with pytest.raises(ValueError, match="zero-mean activations erf, linear"):
        g.nested_action([1.0, 1.0], C, y, 0.1, 10.0, 1.0, "relu")
    with pytest.raises(ValueError, match="positive order parameters"):
        g.nested_action([1.0, -1.0], C, y, 0.1, 10.0, 1.0, "erf")
    with pytest.raises(ValueError, match="one positive width or 2 positive widths"):
        g.nested_action([1.0, 1.0], C, y, 0.1, [10.0, 20.0, 30.0], 1.0, "erf")
    with pytest.raises(ValueError, match="lambdas must be one positive prior or 2"):
        g.nested_action([1.0, 1.0], C, y, 0.1, 10.0, [1.0, 0.0], "erf")
    with pytest.raises(ValueError, match="y must be a vector"):
        g.nested_action([1.0, 1.0], C, y[:3], 0.1, 10.0, 1.0, "erf")
    with pytest.raises(NotPositiveDefiniteError, match="A = T"):
        g.nested_action([1.0, 1.0], -C, y, -5.0, 10.0, 1.0, "linear")
    with pytest.raises(ValueError, match="positive order parameters"):
        g.product_action_eig([0.0], np.ones(3), np.ones(3), 0.1, 10.0, 1.0)
