"""The D-output passes over a stored kernel tensor (kren.multi_linalg) against independent
NumPy computations, and the float32 working-precision stage of the D-output solver
(kren.saddle.float32_stage) against the float64 solve (THEORY §3c)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from kren.linalg import cho_factor, cho_solve
from kren.multi_linalg import (float32_work, inverse_blocks, multi_pair_combine,
                               multi_pair_contract, multi_pair_contract_inverse)
from kren.saddle.driver import solve
from kren.saddle.multi import MultiMatrixProblem

EPS32 = float(np.finfo(np.float32).eps)


def _tensor(n, P, seed):
    """A PSD patch-kernel tensor: K_ij = F_i F_jᵀ/m for random features F_i (P, m); blocks of
    every pair i ≤ j (K_ij not symmetric for i ≠ j)."""
    rng = np.random.default_rng(seed)
    m = 3 * P
    F = rng.standard_normal((n, P, m))
    pairs = np.array([(i, j) for i in range(n) for j in range(i, n)])
    blocks = np.stack([F[i] @ F[j].T / m for i, j in pairs])
    return blocks, pairs, F


def _sym(k, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((k, k))
    return X @ X.T / k + shift * np.eye(k)


def _explicit_combine(W, blocks, pairs, n, D):
    """Σ_ij W_{(i,d),(j,e)} K_ij block by block, K_ji = K_ijᵀ (THEORY §3c written out)."""
    P = blocks.shape[1]
    K = {}
    for p, (i, j) in enumerate(pairs.tolist()):
        K[i, j], K[j, i] = blocks[p], blocks[p].T
    W4 = W.reshape(n, D, n, D)
    out = np.zeros((D * P, D * P))
    for d in range(D):
        for e in range(D):
            out[d * P:(d + 1) * P, e * P:(e + 1) * P] = sum(
                W4[i, d, j, e] * K[i, j] for i in range(n) for j in range(n))
    return out


def test_combine_equals_the_explicit_sum():
    n, D, P = 3, 4, 7
    blocks, pairs, _ = _tensor(n, P, 0)
    W = _sym(n * D, 1)
    want = _explicit_combine(W, blocks, pairs, n, D)
    got = multi_pair_combine(W, blocks, pairs, D)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13 * np.max(np.abs(want)))


def test_inverse_blocks_reads_only_the_lower_triangle():
    D, P = 3, 5
    M = _sym(D * P, 2)
    L = M.copy()
    L[np.triu_indices(D * P, 1)] = np.nan            # potri leaves the upper triangle undefined
    got = inverse_blocks(L, D)
    want = M.reshape(D, P, D, P).transpose(0, 2, 1, 3)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("D", [1, 3])
def test_contract_inverse_equals_the_explicit_contraction(D):
    """⟨K_ij, (A⁻¹ − zzᵀ)_de⟩ from the factor equals multi_pair_contract of the explicit
    inverse; κ(A) ≤ 1e3 here, so round-off stays below 1e-11 of the largest entry."""
    n, P, T = 3, 6, 0.5
    blocks, pairs, _ = _tensor(n, P, 3)
    A = multi_pair_combine(_sym(n * D, 4, 0.5), blocks, pairs, D) + T * np.eye(D * P)
    y = np.random.default_rng(5).standard_normal(D * P)
    cho = cho_factor(A)
    z = cho_solve(cho, y)
    B = np.linalg.inv(A) - np.outer(z, z)
    want = multi_pair_contract(blocks, B, pairs, D)
    got = multi_pair_contract_inverse(blocks, cho, z, pairs, D)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-11 * np.max(np.abs(want)))
    np.testing.assert_allclose(got, got.T, rtol=0, atol=1e-13 * np.max(np.abs(want)))


def test_float32_work_changes_only_the_working_precision():
    """Inside float32_work float32 blocks give a float32 A (its entries are sums of 2·n² terms
    rounded in float32: relative error ≤ 2n²·ε₃₂ of the largest), and the contraction from its
    float32 factor agrees with float64's within κ(A)·DP·ε₃₂ of the largest entry (the
    forward error of a Cholesky-based inverse); outside the context float32 storage still gives
    float64 arithmetic."""
    n, D, P, T = 3, 2, 8, 0.5
    blocks, pairs, _ = _tensor(n, P, 6)
    W = _sym(n * D, 7, 0.5)
    b32 = blocks.astype(np.float32)
    assert multi_pair_combine(W, b32, pairs, D).dtype == np.float64
    A64 = multi_pair_combine(W, blocks, pairs, D) + T * np.eye(D * P)
    with float32_work():
        K32 = multi_pair_combine(W, b32, pairs, D)
        assert K32.dtype == np.float32
        A32 = K32 + np.float32(T) * np.eye(D * P, dtype=np.float32)
        np.testing.assert_allclose(A32, A64, rtol=0, atol=2 * n * n * EPS32 * np.max(np.abs(A64)))
        y = np.random.default_rng(8).standard_normal(D * P)
        cho32 = cho_factor(A32)
        assert cho32[0].dtype == np.float32
        G32 = multi_pair_contract_inverse(b32, cho32, cho_solve(cho32, y), pairs, D)
    cho64 = cho_factor(A64)
    G64 = multi_pair_contract_inverse(blocks, cho64, cho_solve(cho64, y), pairs, D)
    kappa = np.linalg.cond(A64)
    assert G32.dtype == np.float64
    np.testing.assert_allclose(G32, G64, rtol=0, atol=kappa * D * P * EPS32 * np.max(np.abs(G64)))


def _problem(f32):
    n, D, P = 3, 3, 12
    blocks, pairs, _ = _tensor(n, P, 9)
    Y = np.where(np.random.default_rng(10).random((P, D)) < 0.5, -1.0, 1.0)
    t = SimpleNamespace(blocks=blocks, pairs=pairs, mu=np.zeros((n, P)), n=n)
    return MultiMatrixProblem(t, Y, 0.1, 4.0, 1.0, True, False, float32_stage=f32)


def test_float32_stage_reaches_the_float64_saddle_point():
    """The float32 stage only changes the path: the solve converges on float64 evaluations to
    the same Q as the float64-only solve (both at rel. gradient ≤ 1e-12, so within 1e-9); the
    float32 stage ran and is named in the result."""
    p32, p64 = _problem(True), _problem(False)
    assert p32.float32_stage and not p64.float32_stage
    s32 = solve(p32, tol=1e-12, max_iter=500, method="anderson")
    s64 = solve(p64, tol=1e-12, max_iter=500, method="anderson")
    assert s32.result.converged and s64.result.converged
    assert s32.result.method.startswith("anderson fixed point in float32, then")
    assert "float32" not in s64.result.method
    assert s32.cho[0].dtype == np.float64                  # the converged evaluation is float64
    np.testing.assert_allclose(s32.Q, s64.Q, rtol=0, atol=1e-9)


def test_float32_stage_is_automatic_only_for_large_A():
    p = _problem(None)
    assert not p.float32_stage                             # DP = 36 < FLOAT32_MIN
    with p.working_precision("float32"):
        ev = p.evaluate(p.start())
    assert ev.extra["precision"] == "float32" and p.precision == np.float64
    with pytest.raises(ValueError, match="float32 or float64"):
        p.working_precision(np.float16)


def test_float32_stage_that_uses_up_max_iter_reports_not_converged():
    """max_iter counts the float32 stage's iterations too: when they use it up the solve
    returns the best point, evaluated in float64, as not converged (it crashed before)."""
    p = _problem(True)
    s = solve(p, tol=1e-12, max_iter=2, method="anderson")
    assert not s.result.converged
    assert s.result.n_iter == 2 and "max_iter" in str(s.result.message)
    assert s.cho[0].dtype == np.float64
