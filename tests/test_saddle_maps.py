"""The printed physics of the saddle point (kren/generated): fixed-point maps, the zero-mean
elimination of Q̄, the Hessian of the action with unit means, and their numeric kernels.

Independent references are plain NumPy with explicit inverses and loops over the blocks (the
formulas of THEORY §3), never the generated code. Tolerances: two exact evaluations of the same
formula differ by round-off only (≲ 1e-13 relative for these O(1) problems), so 1e-10 is used;
finite differences with h = 1e-5 are accurate to ~1e-9 relative, so 1e-6 is used (a wrong term
is O(1) relative and fails either).
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from derivations import action as ac
from kren.checks import packed_sandwich, packed_sandwich2
from kren.generated import cnn, fc, lcn
from kren.linalg import NotPositiveDefiniteError, diag_pairs, pair_hessian_terms, triu_pairs

EXACT = 1e-10
FD = 1e-6
H = 1e-5


def close(a, b, rtol):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(float(np.max(np.abs(b))), 1e-300)
    assert np.max(np.abs(a - b)) <= rtol * scale, (np.max(np.abs(a - b)) / scale, a, b)


def random_problem(seed, n, P, zero_mean):
    """Kernels K_ij = Φ_iΦ_jᵀ/d + μ_iμ_jᵀ (so K − μμᵀ is PSD, as for a real kernel), targets,
    and a positive-definite Q with a small symmetric Q̄."""
    rng = np.random.default_rng(seed)
    Phi = rng.normal(size=(n, P, 6)) + 0.3
    mu = np.zeros((n, P)) if zero_mean else 0.5 * np.abs(rng.normal(size=(n, P)))
    Kfull = np.einsum("iad,jbd->ijab", Phi, Phi) / 6 + np.einsum("ia,jb->ijab", mu, mu)
    W = rng.normal(size=(n, n))
    Q = 0.6 * np.eye(n) + 0.4 * W @ W.T / n
    Qb = rng.normal(size=(n, n)) * 0.2
    return dict(Kfull=Kfull, mu=mu, y=rng.normal(size=P), Q=Q, Qbar=0.5 * (Qb + Qb.T),
                T=0.3, N=7.0, lambda1=1.3)


def stored(Kfull, pairs):
    return np.stack([Kfull[i, j] for i, j in pairs])


def independent(p, Q, Qbar, zero_mean):
    """THEORY §3 by loops and np.linalg: G, μBμᵀ, R and the gradients at (Q, Q̄)."""
    Kfull, mu, y = p["Kfull"], p["mu"], p["y"]
    n, P = mu.shape
    R = None if zero_mean else np.linalg.inv(np.eye(n) + Qbar)
    KR = np.zeros((P, P))
    for i in range(n):
        for j in range(n):
            m = np.outer(mu[i], mu[j])
            KR += Q[i, j] * (Kfull[i, j] - m) + (0.0 if zero_mean else R[i, j] * m)
    KR /= p["lambda1"] * n
    Ainv = np.linalg.inv(p["T"] * np.eye(P) + KR)
    z = Ainv @ y
    B = Ainv - np.outer(z, z)
    G = np.array([[np.sum(Kfull[i, j] * B) for j in range(n)] for i in range(n)])
    c = 1.0 / (p["N"] * p["lambda1"] * n)
    M = mu @ B @ mu.T
    if zero_mean:
        return dict(G=G, c=c, gQ=np.eye(n) - np.linalg.inv(Q) + c * G)
    return dict(G=G, c=c, M=M, R=R, gQ=-Qbar + c * (G - M), gQb=-Q + R - c * R @ M @ R)


# ----------------------------------------------------------------------------------------------
# Fixed-point maps
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_cnn_zero_mean_map_is_theory_map(seed):
    """Q_new = (∇S + Q⁻¹)⁻¹ equals THEORY's (𝟙 + G/(Nλ1n))⁻¹ with G by loops, and Q_new⁻¹ − Q⁻¹
    equals the gradient (so Q_new = Q exactly when ∇S = 0)."""
    n, P = 3, 9
    p = random_problem(seed, n, P, True)
    pairs = triu_pairs(n)
    args = (stored(p["Kfull"], pairs), pairs, p["y"], p["T"], p["N"], p["lambda1"])
    _, gQ, _, _ = cnn.action_gradient_zero_mean(p["Q"], *args)
    Qn = cnn.fixed_point_zero_mean(p["Q"], gQ)
    ref = independent(p, p["Q"], None, True)
    close(Qn, np.linalg.inv(np.eye(n) + ref["c"] * ref["G"]), EXACT)
    close(np.linalg.inv(Qn) - np.linalg.inv(p["Q"]), ref["gQ"], EXACT)
    assert np.max(np.abs(Qn - p["Q"])) > 1e-2                       # not a fixed point here


@pytest.mark.parametrize("seed", [0, 1])
def test_cnn_general_map_is_theory_map(seed):
    """Qbar_new = (G − μBμᵀ)/(Nλ1n) and Q_new = R' − R' (μBμᵀ/(Nλ1n)) R', R' = (𝟙 + Qbar_new)⁻¹,
    against loops; with ∇_Q S = 0 passed, Q_new − Q equals ∇_Q̄ S (the Q̄ equation)."""
    n, P = 3, 9
    p = random_problem(seed + 10, n, P, False)
    pairs = triu_pairs(n)
    args = (stored(p["Kfull"], pairs), pairs, p["mu"], p["y"], p["T"], p["N"], p["lambda1"])
    _, gQ, gQb, _, _ = cnn.action_gradient(p["Q"], p["Qbar"], *args)
    Qn, Qbn = cnn.fixed_point(p["Q"], p["Qbar"], gQ, gQb)
    ref = independent(p, p["Q"], p["Qbar"], False)
    close(Qbn, ref["c"] * (ref["G"] - ref["M"]), EXACT)
    Rn = np.linalg.inv(np.eye(n) + Qbn)
    close(Qn, Rn - Rn @ (ref["c"] * ref["M"]) @ Rn, EXACT)
    Q0, Qb0 = cnn.fixed_point(p["Q"], p["Qbar"], 0 * gQ, gQb)
    close(Qb0, p["Qbar"], 1e-15)
    close(Q0 - p["Q"], ref["gQb"], EXACT)


def test_lcn_and_fc_maps_are_the_diagonal_and_scalar_cases():
    """LCN maps = diagonals of the CNN maps at diagonal Q, Q̄ (THEORY §5.6); FC maps = the CNN
    maps at n = 1, on the same gradients."""
    n, P = 4, 8
    for zero_mean in (True, False):
        p = random_problem(3, n, P, zero_mean)
        q, qb = np.diag(p["Q"]).copy(), np.diag(p["Qbar"]).copy()
        g, gb = 0.3 * np.arange(1, n + 1) / n, -0.2 * np.arange(n) / n
        if zero_mean:
            close(lcn.fixed_point_zero_mean(q, g),
                  np.diag(cnn.fixed_point_zero_mean(np.diag(q), np.diag(g))), EXACT)
            close(fc.fixed_point_zero_mean(q[0], g[0]),
                  cnn.fixed_point_zero_mean(np.diag(q[:1]), np.diag(g[:1]))[0, 0], EXACT)
        else:
            ql, qbl = lcn.fixed_point(q, qb, g, gb)
            Qc, Qbc = cnn.fixed_point(np.diag(q), np.diag(qb), np.diag(g), np.diag(gb))
            close(ql, np.diag(Qc), EXACT)
            close(qbl, np.diag(Qbc), EXACT)
            Qf, Qbf = fc.fixed_point(q[0], qb[0], g[0], gb[0])
            Q1, Qb1 = cnn.fixed_point(q[:1, None], qb[:1, None], g[:1, None], gb[:1, None])
            close([Qf, Qbf], [Q1[0, 0], Qb1[0, 0]], EXACT)


def test_map_without_image_raises():
    """Where 𝟙 + G/(Nλ1n) is not positive definite the zero-mean map has no image."""
    Q = np.eye(2)
    with pytest.raises(NotPositiveDefiniteError, match="1 \\+ G"):
        cnn.fixed_point_zero_mean(Q, -2.0 * np.eye(2))       # ∇S + Q⁻¹ = −𝟙
    with pytest.raises(NotPositiveDefiniteError, match="1 \\+ Qbar_new"):
        cnn.fixed_point(Q, np.zeros((2, 2)), -2.0 * np.eye(2), np.zeros((2, 2)))


def test_eliminated_Qbar():
    """Q̄ = Q⁻¹ − 𝟙 (CNN), q̄ = 1/q − 1 (LCN), Q̄ = 1/Q − 1 (FC)."""
    p = random_problem(5, 4, 5, True)
    close(cnn.eliminated_Qbar(p["Q"]), np.linalg.inv(p["Q"]) - np.eye(4), EXACT)
    q = np.array([0.5, 1.0, 2.0])
    close(lcn.eliminated_Qbar(q), 1 / q - 1, EXACT)
    assert fc.eliminated_Qbar(0.8) == pytest.approx(0.25, rel=1e-15)


# ----------------------------------------------------------------------------------------------
# Hessian of the action with unit means
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["cnn", "lcn"])
def test_general_hessian_matches_finite_differences_of_gradient(kind):
    """H[a, b] = ∂g_a/∂x_b over x = (Q_ij, then Q̄_ij) or (q, q̄), by central differences of the
    generated gradient; symmetric; and indefinite at a saddle-like point (S is not a minimum)."""
    n, P = 3, 8
    p = random_problem(21, n, P, False)
    gen = cnn if kind == "cnn" else lcn
    pairs = triu_pairs(n) if kind == "cnn" else diag_pairs(n)
    args = (stored(p["Kfull"], pairs), pairs, p["mu"], p["y"], p["T"], p["N"], p["lambda1"])
    Q, Qb = p["Q"], p["Qbar"]
    if kind == "lcn":
        Q, Qb = np.diag(np.diag(Q)), np.diag(np.diag(Qb))
    arg = (lambda M: M) if kind == "cnn" else (lambda M: np.diag(M).copy())
    mult = np.where(pairs[:, 0] == pairs[:, 1], 1.0, 2.0)

    def packed(Q, Qb):
        _, g, gb, _, _ = gen.action_gradient(arg(Q), arg(Qb), *args)
        if kind == "lcn":
            return np.concatenate([g, gb])
        return np.concatenate([mult * g[pairs[:, 0], pairs[:, 1]],
                               mult * gb[pairs[:, 0], pairs[:, 1]]])

    _, _, _, cho, z = gen.action_gradient(arg(Q), arg(Qb), *args)
    Hgen = gen.hessian(arg(Q), arg(Qb), *args, cho, z)
    m = len(pairs)
    Hfd = np.zeros((2 * m, 2 * m))
    for c, (k, l) in enumerate(pairs):
        E = np.zeros((n, n))
        E[k, l] = E[l, k] = H
        Hfd[:, c] = (packed(Q + E, Qb) - packed(Q - E, Qb)) / (2 * H)
        Hfd[:, m + c] = (packed(Q, Qb + E) - packed(Q, Qb - E)) / (2 * H)
    close(Hgen, Hfd, FD)
    assert np.allclose(Hgen, Hgen.T, rtol=0, atol=1e-13 * np.max(np.abs(Hgen)))
    w = np.linalg.eigvalsh(Hgen)
    assert w[0] < 0 < w[-1]


def test_pair_hessian_terms_with_means_and_low_rank_directions():
    """T1[a, b] = Tr(A⁻¹D_aA⁻¹D_b), T2[a, b] = zᵀD_aA⁻¹D_b z over the dense directions
    D_p = K̃_p − μᵀE_pμ and D_{n_p+q} = s V E_q Vᵀ, by explicit matrices and np.linalg."""
    from kren.linalg import cho_factor
    rng = np.random.default_rng(4)
    n, P = 3, 7
    p = random_problem(4, n, P, False)
    pairs = triu_pairs(n)
    blocks = stored(p["Kfull"], pairs)
    X = rng.normal(size=(P, P))
    A = X @ X.T / P + 0.5 * np.eye(P)
    z = rng.normal(size=P)
    V = rng.normal(size=(P, n))
    s = -1.0

    def E(k, l):
        M = np.zeros((n, n))
        M[k, l] = M[l, k] = 1.0
        return M

    mu = p["mu"]
    D = [p["Kfull"][i, j] + (p["Kfull"][i, j].T if i != j else 0) - mu.T @ E(i, j) @ mu
         for i, j in pairs] + [s * V @ E(k, l) @ V.T for k, l in pairs]
    Ai = np.linalg.inv(A)
    T1 = np.array([[np.trace(Ai @ a @ Ai @ b) for b in D] for a in D])
    T2 = np.array([[z @ a @ Ai @ b @ z for b in D] for a in D])
    t1, t2 = pair_hessian_terms(blocks, pairs, cho_factor(A), z, mu=mu, V=V, sign=s)
    close(t1, T1, EXACT)
    close(t2, T2, EXACT)
    t1, t2 = pair_hessian_terms(blocks, pairs, cho_factor(A), z)         # the zero-mean case
    Dk = [p["Kfull"][i, j] + (p["Kfull"][i, j].T if i != j else 0) for i, j in pairs]
    close(t1, [[np.trace(Ai @ a @ Ai @ b) for b in Dk] for a in Dk], EXACT)


def test_packed_sandwich2():
    """Tr(X E_p Y E_q) by explicit basis matrices; packed_sandwich(W) is the case X = Y = W."""
    rng = np.random.default_rng(7)
    n = 4
    X, Y = rng.normal(size=(n, n)), rng.normal(size=(n, n))
    W = X + X.T
    for pairs in (triu_pairs(n), diag_pairs(n)):
        basis = []
        for i, j in pairs:
            M = np.zeros((n, n))
            M[i, j] = M[j, i] = 1.0
            basis.append(M)
        ref = np.array([[np.trace(X @ a @ Y @ b) for b in basis] for a in basis])
        close(packed_sandwich2(X, Y, pairs), ref, 1e-14)
        close(packed_sandwich(W, pairs), packed_sandwich2(W, W, pairs), 1e-14)


# ----------------------------------------------------------------------------------------------
# The derivation
# ----------------------------------------------------------------------------------------------

def test_fixed_point_derivation_reads_the_maps_off_the_gradients():
    """∇S + Q⁻¹ = 𝟙 + G/(Nλ1n); Q̄ + ∇_Q S = (G − μBμᵀ)/(Nλ1n); H = μBμᵀ/(Nλ1n)."""
    n, P = ac.n, ac.P
    G, B = sp.MatrixSymbol("G", n, n), sp.MatrixSymbol("B", P, P)
    mu = sp.MatrixSymbol("mu", n, P)
    c = 1 / (ac.N * ac.lambda1 * n)
    assert ac.fixed_point_program(True).derived["F"] == (sp.Identity(n) + c * G).doit()
    d = ac.fixed_point_program(False).derived
    assert d["Qbar_star"] == (c * G - c * mu * B * mu.T).doit()
    assert d["H"] == (c * mu * B * mu.T).doit()
    m0 = sp.MatrixSymbol("m0", P, 1)
    s = ac.fixed_point_program(False, scalar=True).derived
    assert sp.simplify(s["H"] - sp.Trace(m0.T * B * m0) / (ac.N * ac.lambda1)) == 0
    el = ac.eliminated_Qbar_program()
    Q = sp.MatrixSymbol("Q", n, n)
    assert el["Qbar"] == sp.Inverse(Q) - sp.Identity(n)
