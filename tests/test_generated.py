"""The generated actions, gradients and predictor (kren/generated) against independent NumPy.

Tolerances. Central differences with step h have truncation error O(h² S''') and round-off
O(ε |S| / h); with h = 1e-5 and the O(1) problems below both are ≤ 1e-9 relative, so a relative
tolerance of 1e-6 on the gradient leaves a wide margin while any wrong term (a missing factor 2,
a wrong sign, a missing mean term) is O(1) relative and fails. Comparisons between two exact
evaluations of the same formula (generated vs explicit NumPy) differ only by round-off
(≲ 1e-12 relative for these condition numbers); 1e-9 is used.
"""
from __future__ import annotations

import numpy as np
import pytest

from kren.generated import cnn, fc, lcn, predictor
from kren.linalg import cho_factor, diag_pairs, triu_pairs

H = 1e-5
RTOL_FD = 1e-6
RTOL_EXACT = 1e-9


# ----------------------------------------------------------------------------------------------
# Random problems
# ----------------------------------------------------------------------------------------------

def features(rng, n, P, d=7):
    """Random features φ_i(x^μ), shape (n, P, d): K_ij = φ_i φ_jᵀ/d is a valid (PSD) kernel."""
    return rng.normal(size=(n, P, d)) + 0.3


def full_tensor(Phi):
    n, P, d = Phi.shape
    return np.einsum("iad,jbd->ijab", Phi, Phi) / d                  # (n, n, P, P)


def stored(Kfull, pairs):
    return np.stack([Kfull[i, j] for i, j in pairs])


def spd(rng, n, scale=0.4, shift=0.6):
    W = rng.normal(size=(n, n))
    return shift * np.eye(n) + scale * W @ W.T / n


def sym_small(rng, n, scale=0.2):
    W = rng.normal(size=(n, n)) * scale
    return 0.5 * (W + W.T)


def problem(seed, n, P, zero_mean):
    rng = np.random.default_rng(seed)
    Phi = features(rng, n, P)
    mu = np.zeros((n, P)) if zero_mean else np.abs(rng.normal(size=(n, P))) * 0.5
    # K_ij = E[σ_i σ_jᵀ] = (centered covariance) + μ_i μ_jᵀ: K − μμᵀ is PSD as for a real kernel
    Kfull = full_tensor(Phi) + np.einsum("ia,jb->ijab", mu, mu)
    y = rng.normal(size=P)
    Q = spd(rng, n)
    Qbar = sym_small(rng, n)
    return dict(Kfull=Kfull, mu=mu, y=y, Q=Q, Qbar=Qbar, T=0.3, N=7.0, lambda1=1.3, rng=rng)


# ----------------------------------------------------------------------------------------------
# Independent NumPy evaluation of THEORY §3 (explicit inverses, full block loops)
# ----------------------------------------------------------------------------------------------

def theory_KR(Q, Qbar, Kfull, mu, lambda1):
    n, P = mu.shape
    R = np.linalg.inv(np.eye(n) + Qbar) if Qbar is not None else None
    KR = np.zeros((P, P))
    for i in range(n):
        for j in range(n):
            mm = np.outer(mu[i], mu[j])
            KR += Q[i, j] * (Kfull[i, j] - mm)
            if R is not None:
                KR += R[i, j] * mm
    return KR / (lambda1 * n)


def theory_S(Q, Qbar, Kfull, mu, y, T, N, lambda1, zero_mean=False):
    P = y.shape[0]
    A = T * np.eye(P) + theory_KR(Q, None if zero_mean else Qbar, Kfull, mu, lambda1)
    F = np.linalg.slogdet(A)[1] + y @ np.linalg.inv(A) @ y
    if zero_mean:
        return np.trace(Q) - np.linalg.slogdet(Q)[1] + F / N
    return -np.trace(Q @ Qbar) + np.linalg.slogdet(np.eye(len(Q)) + Qbar)[1] + F / N


def theory_grad(Q, Qbar, Kfull, mu, y, T, N, lambda1, zero_mean=False):
    n, P = mu.shape
    A = T * np.eye(P) + theory_KR(Q, None if zero_mean else Qbar, Kfull, mu, lambda1)
    Ainv = np.linalg.inv(A)
    z = Ainv @ y
    B = Ainv - np.outer(z, z)
    G = np.array([[np.sum(Kfull[i, j] * B) for j in range(n)] for i in range(n)])
    c = 1.0 / (N * lambda1 * n)
    if zero_mean:
        return np.eye(n) - np.linalg.inv(Q) + c * G, None
    M = mu @ B @ mu.T
    R = np.linalg.inv(np.eye(n) + Qbar)
    return -Qbar + c * (G - M), -Q + R - c * R @ M @ R


# ----------------------------------------------------------------------------------------------
# Finite differences
# ----------------------------------------------------------------------------------------------

def fd_sym(f, X):
    """∂f/∂X_ij for symmetric X with X_ij = X_ji one variable: returns D with D_ij = that
    derivative, so that D = (2 − δ_ij) ∇_ij."""
    n = X.shape[0]
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            E = np.zeros((n, n))
            E[i, j] = E[j, i] = H
            D[i, j] = D[j, i] = (f(X + E) - f(X - E)) / (2 * H)
    return D


def fd_vec(f, x):
    g = np.zeros_like(x)
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = H
        g[i] = (f(x + e) - f(x - e)) / (2 * H)
    return g


def as_sym_derivative(grad):
    """(2 − δ_ij) ∇_ij: the derivative with respect to the single variable Q_ij = Q_ji."""
    return 2 * grad - np.diag(np.diag(grad))


def close(a, b, rtol):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(np.max(np.abs(b)), 1e-300)
    assert np.max(np.abs(a - b)) <= rtol * scale, (np.max(np.abs(a - b)) / scale, a, b)


# ----------------------------------------------------------------------------------------------
# CNN
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("zero_mean", [True, False])
@pytest.mark.parametrize("n,P,seed", [(1, 6, 0), (3, 9, 1), (4, 7, 2)])
def test_cnn_gradient_finite_differences(n, P, seed, zero_mean):
    p = problem(seed, n, P, zero_mean)
    pairs = triu_pairs(n)
    blocks = stored(p["Kfull"], pairs)
    args = (blocks, pairs)
    if zero_mean:
        S, g, cho, z = cnn.action_gradient_zero_mean(p["Q"], *args, p["y"], p["T"], p["N"],
                                                      p["lambda1"])
        f = lambda Q: cnn.action_zero_mean(Q, *args, p["y"], p["T"], p["N"], p["lambda1"])  # noqa
        close(as_sym_derivative(g), fd_sym(f, p["Q"]), RTOL_FD)
        assert np.allclose(g, g.T)
    else:
        S, gQ, gQb, cho, z = cnn.action_gradient(p["Q"], p["Qbar"], *args, p["mu"], p["y"],
                                                 p["T"], p["N"], p["lambda1"])
        fQ = lambda Q: cnn.action(Q, p["Qbar"], *args, p["mu"], p["y"], p["T"], p["N"],  # noqa
                                  p["lambda1"])
        fQb = lambda Qb: cnn.action(p["Q"], Qb, *args, p["mu"], p["y"], p["T"], p["N"],  # noqa
                                    p["lambda1"])
        close(as_sym_derivative(gQ), fd_sym(fQ, p["Q"]), RTOL_FD)
        close(as_sym_derivative(gQb), fd_sym(fQb, p["Qbar"]), RTOL_FD)


@pytest.mark.parametrize("zero_mean", [True, False])
def test_cnn_against_theory_n5_P40(zero_mean):
    p = problem(11, 5, 40, zero_mean)
    n, P = 5, 40
    pairs = triu_pairs(n)
    blocks = stored(p["Kfull"], pairs)
    T, N, l1 = p["T"], p["N"], p["lambda1"]
    S_ref = theory_S(p["Q"], p["Qbar"], p["Kfull"], p["mu"], p["y"], T, N, l1, zero_mean)
    gQ_ref, gQb_ref = theory_grad(p["Q"], p["Qbar"], p["Kfull"], p["mu"], p["y"], T, N, l1,
                                  zero_mean)
    KR_ref = theory_KR(p["Q"], None if zero_mean else p["Qbar"], p["Kfull"], p["mu"], l1)
    if zero_mean:
        S, gQ, cho, z = cnn.action_gradient_zero_mean(p["Q"], blocks, pairs, p["y"], T, N, l1)
        KR = cnn.renormalized_kernel(p["Q"], None, blocks, pairs, p["mu"], l1)
        f = lambda Q: cnn.action_zero_mean(Q, blocks, pairs, p["y"], T, N, l1)  # noqa: E731
    else:
        S, gQ, gQb, cho, z = cnn.action_gradient(p["Q"], p["Qbar"], blocks, pairs, p["mu"],
                                                 p["y"], T, N, l1)
        KR = cnn.renormalized_kernel(p["Q"], p["Qbar"], blocks, pairs, p["mu"], l1)
        close(gQb, gQb_ref, RTOL_EXACT)
        f = lambda Q: cnn.action(Q, p["Qbar"], blocks, pairs, p["mu"], p["y"], T, N,  # noqa
                                 l1)
    close(KR, KR_ref, RTOL_EXACT)
    assert abs(S - S_ref) <= RTOL_EXACT * abs(S_ref)
    close(gQ, gQ_ref, RTOL_EXACT)
    close(as_sym_derivative(gQ), fd_sym(f, p["Q"]), RTOL_FD)
    A = p["T"] * np.eye(P) + KR_ref
    close(z, np.linalg.solve(A, p["y"]), RTOL_EXACT)
    L = np.tril(cho[0])
    close(L @ L.T, A, RTOL_EXACT)


def test_cnn_cross_kernel_and_test_diagonal():
    rng = np.random.default_rng(5)
    n, P1, P2, d = 3, 5, 4, 6
    Phi1, Phi2 = rng.normal(size=(n, P1, d)), rng.normal(size=(n, P2, d))
    Kx = np.einsum("iad,jbd->ijab", Phi1, Phi2) / d
    Kd = np.einsum("iad,jad->ija", Phi1, Phi1) / d
    mu1, mu2 = rng.random((n, P1)), rng.random((n, P2))
    Q, Qbar = spd(rng, n), sym_small(rng, n)
    l1 = 0.8
    R = np.linalg.inv(np.eye(n) + Qbar)
    ref = sum(Q[i, j] * (Kx[i, j] - np.outer(mu1[i], mu2[j])) + R[i, j] * np.outer(mu1[i], mu2[j])
              for i in range(n) for j in range(n)) / (l1 * n)
    close(cnn.renormalized_cross_kernel(Q, Qbar, Kx, mu1, mu2, l1), ref, RTOL_EXACT)
    ref_d = sum(Q[i, j] * (Kd[i, j] - mu1[i] * mu1[j]) + R[i, j] * mu1[i] * mu1[j]
                for i in range(n) for j in range(n)) / (l1 * n)
    close(cnn.renormalized_test_diagonal(Q, Qbar, Kd, mu1, l1), ref_d, RTOL_EXACT)
    # the diagonal of the cross kernel of a set with itself is the test diagonal
    Kxx = np.einsum("iad,jbd->ijab", Phi1, Phi1) / d
    close(np.diag(cnn.renormalized_cross_kernel(Q, Qbar, Kxx, mu1, mu1, l1)),
          cnn.renormalized_test_diagonal(Q, Qbar, Kd, mu1, l1), RTOL_EXACT)
    # zero-mean branch
    close(cnn.renormalized_cross_kernel(Q, None, Kx, 0 * mu1, 0 * mu2, l1),
          sum(Q[i, j] * Kx[i, j] for i in range(n) for j in range(n)) / (l1 * n), RTOL_EXACT)
    with pytest.raises(ValueError, match="Qbar is required"):
        cnn.renormalized_cross_kernel(Q, None, Kx, mu1, mu2, l1)


# ----------------------------------------------------------------------------------------------
# LCN
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("zero_mean", [True, False])
def test_lcn_equals_cnn_with_diagonal_Q_and_finite_differences(zero_mean):
    n, P = 4, 8
    p = problem(3, n, P, zero_mean)
    rng = p["rng"]
    q = 0.5 + rng.random(n)
    qbar = 0.3 * rng.normal(size=n)
    T, N, l1 = p["T"], p["N"], p["lambda1"]
    tri, dia = triu_pairs(n), diag_pairs(n)
    bt, bd = stored(p["Kfull"], tri), stored(p["Kfull"], dia)
    if zero_mean:
        S_l, g_l, _, z_l = lcn.action_gradient_zero_mean(q, bd, dia, p["y"], T, N, l1)
        S_c, g_c, _, z_c = cnn.action_gradient_zero_mean(np.diag(q), bt, tri, p["y"], T, N, l1)
        f = lambda v: lcn.action_zero_mean(v, bd, dia, p["y"], T, N, l1)  # noqa: E731
        close(g_l, fd_vec(f, q), RTOL_FD)
    else:
        S_l, g_l, gb_l, _, z_l = lcn.action_gradient(q, qbar, bd, dia, p["mu"], p["y"], T, N, l1)
        S_c, g_c, gb_c, _, z_c = cnn.action_gradient(np.diag(q), np.diag(qbar), bt, tri, p["mu"],
                                                     p["y"], T, N, l1)
        close(gb_l, np.diag(gb_c), RTOL_EXACT)
        f = lambda v: lcn.action(v, qbar, bd, dia, p["mu"], p["y"], T, N, l1)  # noqa: E731
        fb = lambda v: lcn.action(q, v, bd, dia, p["mu"], p["y"], T, N, l1)  # noqa: E731
        close(g_l, fd_vec(f, q), RTOL_FD)
        close(gb_l, fd_vec(fb, qbar), RTOL_FD)
        close(lcn.renormalized_kernel(q, qbar, bd, dia, p["mu"], l1),
              cnn.renormalized_kernel(np.diag(q), np.diag(qbar), bt, tri, p["mu"], l1), RTOL_EXACT)
    assert abs(S_l - S_c) <= RTOL_EXACT * abs(S_c)
    close(g_l, np.diag(g_c), RTOL_EXACT)
    close(z_l, z_c, RTOL_EXACT)


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_lcn_cross_kernel_and_test_diagonal_from_diagonal_tensors(activation):
    """The LCN cross kernel / test diagonal from the diagonal tensors K_ii of kren.kernels
    (shapes (n, P1, P2) and (n, P0)) equal the CNN functions with Q = diag(q), Q̄ = diag(q̄) on
    the full tensors (n, n, P1, P2) and (n, n, P0): the off-diagonal blocks carry weight exactly
    0, so the two differ only by summation order, ~1e-16 relative for these O(1) sums of n = 9
    terms; 1e-12 leaves a wide margin while any wrong weight or mean term is O(1) relative.
    relu has non-zero unit means (mean terms exercised); erf is odd, μ = 0 (zero-mean branch)."""
    from kren import kernels
    from kren.architecture import Architecture
    arch = Architecture("lcn", input_shape=(1, 6, 6), mask=(2, 2), stride=(2, 2),
                        activation=activation, lambda0=1.0, lambda1=0.8)
    n = arch.n
    rng = np.random.default_rng(31)
    X1, X2 = rng.normal(size=(5, 36)), rng.normal(size=(4, 36))
    Kx_d = kernels.cross_kernels(arch, X1, X2, diagonal=True)
    Kx_f = kernels.cross_kernels(arch, X1, X2)
    Kd_d = kernels.test_diagonal(arch, X1, diagonal=True)
    Kd_f = kernels.test_diagonal(arch, X1)
    assert Kx_d.shape == (n, 5, 4) and Kx_f.shape == (n, n, 5, 4)
    assert Kd_d.shape == (n, 5) and Kd_f.shape == (n, n, 5)
    mu1, mu2 = kernels.unit_means(arch, X1), kernels.unit_means(arch, X2)
    assert (np.max(np.abs(mu1)) > 0.1) == (activation == "relu")
    q = 0.5 + rng.random(n)
    qbar = 0.3 * rng.normal(size=n)
    l1 = arch.lambda1
    tol = 1e-12
    kR = lcn.renormalized_cross_kernel(q, qbar, Kx_d, mu1, mu2, l1)
    kR00 = lcn.renormalized_test_diagonal(q, qbar, Kd_d, mu1, l1)
    assert kR.shape == (5, 4) and kR00.shape == (5,)
    close(kR, cnn.renormalized_cross_kernel(np.diag(q), np.diag(qbar), Kx_f, mu1, mu2, l1), tol)
    close(kR00, cnn.renormalized_test_diagonal(np.diag(q), np.diag(qbar), Kd_f, mu1, l1), tol)
    # the formula as stated, written out with explicit loops over the patches
    ref = sum(q[i] * (Kx_d[i] - np.outer(mu1[i], mu2[i])) + np.outer(mu1[i], mu2[i]) / (1 + qbar[i])
              for i in range(n)) / (l1 * n)
    close(kR, ref, tol)
    ref00 = sum(q[i] * (Kd_d[i] - mu1[i] ** 2) + mu1[i] ** 2 / (1 + qbar[i])
                for i in range(n)) / (l1 * n)
    close(kR00, ref00, tol)
    # K_R(x, x) on the diagonal of the cross kernel of X1 with itself is the test diagonal
    Kxx = kernels.cross_kernels(arch, X1, X1, diagonal=True)
    close(np.diag(lcn.renormalized_cross_kernel(q, qbar, Kxx, mu1, mu1, l1)), kR00, tol)
    if activation == "erf":
        # zero-mean branch (qbar=None) equals the general one at μ = 0
        close(lcn.renormalized_cross_kernel(q, None, Kx_d, mu1, mu2, l1), kR, tol)
        close(lcn.renormalized_test_diagonal(q, None, Kd_d, mu1, l1), kR00, tol)
    else:
        with pytest.raises(ValueError, match="qbar is required"):
            lcn.renormalized_cross_kernel(q, None, Kx_d, mu1, mu2, l1)
    # the full tensors (or a wrong patch count) are refused, naming the expected shape
    with pytest.raises(ValueError, match=rf"Kx must hold .*shape \({n}, P1, P2\).*diagonal=True"):
        lcn.renormalized_cross_kernel(q, qbar, Kx_f, mu1, mu2, l1)
    with pytest.raises(ValueError, match=rf"Kx must hold .*shape \({n}, P1, P2\)"):
        lcn.renormalized_cross_kernel(q, qbar, Kx_d[:-1], mu1, mu2, l1)
    with pytest.raises(ValueError, match=rf"Kd must hold .*shape \({n}, P0\).*diagonal=True"):
        lcn.renormalized_test_diagonal(q, qbar, Kd_f, mu1, l1)
    with pytest.raises(ValueError, match="mu1 must have shape"):
        lcn.renormalized_cross_kernel(q, qbar, Kx_d, mu1[:, :-1], mu2, l1)


def test_diag_combine():
    """kren.linalg.diag_combine(q, blocks) = Σ_i q_i blocks[i] (explicit loop; round-off only)."""
    from kren.linalg import diag_combine
    rng = np.random.default_rng(2)
    q, blocks = rng.normal(size=4), rng.normal(size=(4, 3, 5))
    close(diag_combine(q, blocks), sum(q[i] * blocks[i] for i in range(4)), 1e-14)
    with pytest.raises(ValueError, match="same n"):
        diag_combine(q[:3], blocks)


# ----------------------------------------------------------------------------------------------
# FC
# ----------------------------------------------------------------------------------------------

def fc_problem(seed, P, zero_mean):
    p = problem(seed, 1, P, zero_mean)
    pairs = triu_pairs(1)
    blocks = stored(p["Kfull"], pairs)
    return p, blocks, pairs


@pytest.mark.parametrize("zero_mean", [True, False])
def test_fc_equals_cnn_with_n1_and_finite_differences(zero_mean):
    P = 10
    p, blocks, pairs = fc_problem(4, P, zero_mean)
    Q, Qb = 1.3, 0.4
    T, N, l1 = p["T"], p["N"], p["lambda1"]
    if zero_mean:
        S, g, _, z = fc.action_gradient_zero_mean(Q, blocks, pairs, p["y"], T, N, l1)
        S_c, g_c, _, z_c = cnn.action_gradient_zero_mean(np.array([[Q]]), blocks, pairs, p["y"],
                                                         T, N, l1)
        f = lambda v: fc.action_zero_mean(v, blocks, pairs, p["y"], T, N, l1)  # noqa: E731
        close(g, (f(Q + H) - f(Q - H)) / (2 * H), RTOL_FD)
    else:
        S, g, gb, _, z = fc.action_gradient(Q, Qb, blocks, pairs, p["mu"], p["y"], T, N, l1)
        S_c, g_c, gb_c, _, z_c = cnn.action_gradient(np.array([[Q]]), np.array([[Qb]]), blocks,
                                                     pairs, p["mu"], p["y"], T, N, l1)
        close(gb, gb_c[0, 0], RTOL_EXACT)
        f = lambda v: fc.action(v, Qb, blocks, pairs, p["mu"], p["y"], T, N, l1)  # noqa: E731
        fb = lambda v: fc.action(Q, v, blocks, pairs, p["mu"], p["y"], T, N, l1)  # noqa: E731
        close(g, (f(Q + H) - f(Q - H)) / (2 * H), RTOL_FD)
        close(gb, (fb(Qb + H) - fb(Qb - H)) / (2 * H), RTOL_FD)
    assert abs(S - S_c) <= RTOL_EXACT * abs(S_c)
    close(g, g_c[0, 0], RTOL_EXACT)
    close(z, z_c, RTOL_EXACT)


def test_fc_eigen_zero_mean_matches_matrix_form_and_derivatives():
    P = 12
    p, blocks, pairs = fc_problem(6, P, True)
    T, N, l1 = p["T"], p["N"], p["lambda1"]
    k, U = np.linalg.eigh(blocks[0])
    yt = U.T @ p["y"]
    for Q in (0.4, 1.0, 2.7):
        S, dS, d2S = fc.action_eig_zero_mean(Q, k, yt, T, N, l1)
        assert abs(S - fc.action_zero_mean(Q, blocks, pairs, p["y"], T, N, l1)) <= 1e-9 * abs(S)
        g = fc.action_gradient_zero_mean(Q, blocks, pairs, p["y"], T, N, l1)[1]
        close(dS, g, RTOL_EXACT * 10)
        f = lambda v: fc.action_eig_zero_mean(v, k, yt, T, N, l1)  # noqa: E731
        close(dS, (f(Q + H)[0] - f(Q - H)[0]) / (2 * H), RTOL_FD)
        close(d2S, (f(Q + H)[1] - f(Q - H)[1]) / (2 * H), RTOL_FD)


def test_fc_eigen_relu_matches_matrix_form_and_derivatives():
    P = 12
    p, blocks, pairs = fc_problem(8, P, False)
    T, N, l1 = p["T"], p["N"], p["lambda1"]
    m0 = p["mu"][0]
    k, U = np.linalg.eigh(blocks[0] - np.outer(m0, m0))       # centered kernel (PSD)
    yt, m = U.T @ p["y"], U.T @ m0
    for Q, Qb in ((0.7, 0.2), (1.4, -0.3)):
        S, grad, hess = fc.action_eig(Q, Qb, k, yt, m, T, N, l1)
        S_m, gQ, gQb, _, _ = fc.action_gradient(Q, Qb, blocks, pairs, p["mu"], p["y"], T, N, l1)
        assert abs(S - S_m) <= 1e-9 * abs(S_m)
        close(grad, [gQ, gQb], 1e-8)
        f = lambda a, b: fc.action_eig(a, b, k, yt, m, T, N, l1)  # noqa: E731
        fd_g = [(f(Q + H, Qb)[0] - f(Q - H, Qb)[0]) / (2 * H),
                (f(Q, Qb + H)[0] - f(Q, Qb - H)[0]) / (2 * H)]
        close(grad, fd_g, RTOL_FD)
        fd_h = np.array([(f(Q + H, Qb)[1] - f(Q - H, Qb)[1]) / (2 * H),
                         (f(Q, Qb + H)[1] - f(Q, Qb - H)[1]) / (2 * H)])
        close(hess, fd_h, RTOL_FD)
        assert np.array_equal(hess, hess.T)


def test_fc_cross_kernel():
    rng = np.random.default_rng(9)
    P1, P2 = 4, 3
    Kx = rng.normal(size=(1, 1, P1, P2))
    mu1, mu2 = rng.random((1, P1)), rng.random((1, P2))
    Q, Qb, l1 = 1.2, 0.3, 0.9
    ref = (Q * (Kx[0, 0] - np.outer(mu1[0], mu2[0])) + np.outer(mu1[0], mu2[0]) / (1 + Qb)) / l1
    close(fc.renormalized_cross_kernel(Q, Qb, Kx, mu1, mu2, l1), ref, RTOL_EXACT)
    close(cnn.renormalized_cross_kernel(np.array([[Q]]), np.array([[Qb]]), Kx, mu1, mu2, l1),
          ref, RTOL_EXACT)
    Kd = rng.random((1, 1, P1))
    ref_d = (Q * (Kd[0, 0] - mu1[0] ** 2) + mu1[0] ** 2 / (1 + Qb)) / l1
    close(fc.renormalized_test_diagonal(Q, Qb, Kd, mu1, l1), ref_d, RTOL_EXACT)


# ----------------------------------------------------------------------------------------------
# Predictor
# ----------------------------------------------------------------------------------------------

def test_predictor_moments_and_train_error():
    rng = np.random.default_rng(12)
    P, P0, d = 15, 6, 30
    X = rng.normal(size=(P + P0, d))
    Kall = X @ X.T / d + 0.1
    K_R, kR, kR00 = Kall[:P, :P], Kall[P:, :P], np.diag(Kall[P:, P:]).copy()
    y, T = rng.normal(size=P), 0.2
    A = T * np.eye(P) + K_R
    cho = cho_factor(A)
    Ainv = np.linalg.inv(A)
    z = Ainv @ y
    mean, var = predictor.predictor_moments(kR, kR00, cho, z)
    close(mean, kR @ Ainv @ y, RTOL_EXACT)
    close(var, kR00 - np.einsum("ap,pq,aq->a", kR, Ainv, kR), 1e-8)
    err = predictor.train_error(K_R, cho, y, T)
    ref = (T**2 * y @ Ainv @ Ainv @ y + T * np.trace(K_R @ Ainv)) / P
    assert abs(err - ref) <= RTOL_EXACT * abs(ref)
    # the training error is the mean squared residual of the GP posterior on the training set
    # plus its variance: (1/P) Σ [(y − K_R A⁻¹ y)² + (K_R − K_R A⁻¹ K_R)_μμ]
    res = y - K_R @ z
    post = np.diag(K_R - K_R @ Ainv @ K_R)
    assert abs(err - np.mean(res**2 + post)) <= 1e-8 * abs(err)


def test_bad_input_raises():
    n, P = 2, 5
    p = problem(0, n, P, False)
    pairs = triu_pairs(n)
    blocks = stored(p["Kfull"], pairs)
    with pytest.raises(ValueError, match="Q must be a square"):
        cnn.action(np.ones(3), p["Qbar"], blocks, pairs, p["mu"], p["y"], 0.1, 5, 1)
    with pytest.raises(ValueError, match="y must be a vector"):
        cnn.action(p["Q"], p["Qbar"], blocks, pairs, p["mu"], p["y"][:-1], 0.1, 5, 1)
    with pytest.raises(ValueError, match="mu must have shape"):
        cnn.action(p["Q"], p["Qbar"], blocks, pairs, p["mu"][:, :-1], p["y"], 0.1, 5, 1)
    from kren.linalg import NotPositiveDefiniteError
    with pytest.raises(NotPositiveDefiniteError, match="Q is not positive definite"):
        cnn.action_zero_mean(-np.eye(n), blocks, pairs, p["y"], 0.1, 5, 1)
    with pytest.raises(NotPositiveDefiniteError, match="1 \\+ Qbar"):
        cnn.action(p["Q"], -2 * np.eye(n), blocks, pairs, p["mu"], p["y"], 0.1, 5, 1)
    with pytest.raises(ValueError, match="Q must be positive"):
        fc.action_eig_zero_mean(-1.0, np.ones(3), np.ones(3), 0.1, 5, 1)


@pytest.mark.parametrize("kind", ["cnn", "lcn"])
def test_hessian_zero_mean_matches_finite_differences_of_gradient(kind):
    """H[p, q] = ∂g_p/∂x_q with g_p = ∂S/∂x_p, x_p = Q_ij (i ≤ j) or q_i, by central differences
    of the generated gradient (same 1e-6 relative tolerance as above)."""
    n, P = 3, 8
    p = problem(21, n, P, True)
    T, N, l1 = p["T"], p["N"], p["lambda1"]
    gen = cnn if kind == "cnn" else lcn
    pairs = triu_pairs(n) if kind == "cnn" else diag_pairs(n)
    blocks = stored(p["Kfull"], pairs)
    Q = p["Q"] if kind == "cnn" else np.diag(np.diag(p["Q"]))

    def arg(Q):
        return Q if kind == "cnn" else np.diag(Q).copy()

    def packed_grad(Q):
        g = gen.action_gradient_zero_mean(arg(Q), blocks, pairs, p["y"], T, N, l1)[1]
        if kind == "lcn":
            return g
        return as_sym_derivative(g)[pairs[:, 0], pairs[:, 1]]

    _, _, cho, z = gen.action_gradient_zero_mean(arg(Q), blocks, pairs, p["y"], T, N, l1)
    Hgen = gen.hessian_zero_mean(arg(Q), blocks, pairs, p["y"], T, N, l1, cho, z)
    Hfd = np.zeros_like(Hgen)
    for c, (k, l) in enumerate(pairs):
        E = np.zeros((n, n))
        E[k, l] = E[l, k] = H
        Hfd[:, c] = (packed_grad(Q + E) - packed_grad(Q - E)) / (2 * H)
    close(Hgen, Hfd, RTOL_FD)
    assert np.allclose(Hgen, Hgen.T, rtol=0, atol=1e-12 * np.max(np.abs(Hgen)))
