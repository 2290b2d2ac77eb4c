"""The exact Hessian's P-contractions on every core (kren.sym_hessian, kren.nogil_lapack)."""
from __future__ import annotations

import numpy as np
import pytest

import kren
from kren import nogil_lapack, sym_hessian
from kren.data import load_digits
from kren.linalg import cho_factor, cho_solve, hessian_precision, pair_combine, pair_hessian_terms
from kren.tensors import PackedBlocks

SHAPE = dict(input_shape=(1, 8, 8), mask=(2, 2), stride=(2, 2))
EPS32 = float(np.finfo(np.float32).eps)


def _spd(P, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(P, P))
    return X @ X.T / P + 0.2 * np.eye(P)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("without_ctypes", [False, True])
def test_sygst_is_the_two_sided_triangular_solve(dtype, without_ctypes, monkeypatch):
    """sygst(a, L) leaves L⁻¹ a L⁻ᵀ in the lower triangle of a (explicit inverse, float64):
    to 1e-13 relative in float64 and to 50 ε32 κ(L) relative in float32 (a backward-stable
    triangular solve in float32 errs by O(P ε32) times the condition of L, here κ(L) < 10);
    the same with SciPy's Python wrapper (no ctypes pointers)."""
    if without_ctypes:
        monkeypatch.setattr(nogil_lapack, "_FUNCS", {})
    P = 40
    L = np.linalg.cholesky(_spd(P, 0))
    rng = np.random.default_rng(1)
    D = rng.normal(size=(P, P))
    D = D + D.T
    Li = np.linalg.inv(L)
    want = np.tril(Li @ D @ Li.T)
    a = np.asfortranarray(D.astype(dtype))
    nogil_lapack.sygst(a, np.asfortranarray(L.astype(dtype)))
    kappa = np.linalg.cond(L)
    tol = 1e-13 if dtype == np.float64 else 50 * EPS32 * kappa
    assert kappa < 10
    assert np.abs(np.tril(a) - want).max() <= tol * np.abs(want).max()
    with pytest.raises(ValueError):
        nogil_lapack.sygst(np.ascontiguousarray(D[:, :P - 1]).astype(dtype), L.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("without_ctypes", [False, True])
def test_syrk_is_the_gram_matrix(dtype, without_ctypes, monkeypatch):
    """syrk(F) = F Fᵀ to the round-off of a sum of m products in F's precision
    (√m · 4ε relative to the largest entry), also on a column slice of F."""
    if without_ctypes:
        monkeypatch.setattr(nogil_lapack, "_FUNCS", {})
    F = np.random.default_rng(2).normal(size=(9, 300)).astype(dtype)
    eps = float(np.finfo(dtype).eps)
    for G in (F, F[:, 37:201]):
        G64 = G.astype(np.float64)
        want = G64 @ G64.T
        got = nogil_lapack.syrk(G)
        assert got.dtype == dtype and np.array_equal(got, got.T)
        assert np.abs(got - want).max() <= 4 * eps * G.shape[1] ** 0.5 * np.abs(want).max()


@pytest.fixture(scope="module")
def tensors():
    ds = load_digits(classes="even-odd", n_train=70, n_test=5, seed=0)
    out = {}
    for act in ("erf", "relu"):
        arch = kren.Architecture("cnn", SHAPE["input_shape"], mask=2, stride=2, activation=act)
        prep = arch.prepare(ds.X_train)
        kt = arch.kernels(prep)
        K = pair_combine(np.eye(arch.n), kt.blocks, kt.pairs) / arch.n
        cho = cho_factor(K + 0.1 * np.eye(prep.P))
        out[act] = (arch, prep, kt, cho, cho_solve(cho, ds.y_train))
    return out


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("act", ["erf", "relu"])
def test_kept_blocks_give_the_same_hessian_terms(tensors, act, threads, monkeypatch):
    """A packed source's first Hessian reads its blocks directly, the second fills the kept
    stack, the third uses it (kren.sym_hessian.cached_stack): the same arithmetic on the same
    values, so T1, T2 (and, with means, the V blocks) agree to round-off (1e-13 relative) with
    each other, with a cache too small to keep anything, and with the stacked blocks; on one
    worker thread or two (the Gram product then summed from two column slices)."""
    monkeypatch.setattr(sym_hessian, "_threads", lambda n_p, P: threads)
    arch, prep, kt, cho, z = tensors[act]
    mu = prep.mu if act == "relu" else None
    V = np.random.default_rng(3).normal(size=(prep.P, arch.n)) if act == "relu" else None
    ref = pair_hessian_terms(kt.blocks, kt.pairs, cho, z, mu=mu, V=V, sign=-1.0)
    src = PackedBlocks.build(prep, kt.pairs)
    sym_hessian.clear_stack_cache()
    runs = [pair_hessian_terms(src, kt.pairs, cho, z, mu=mu, V=V, sign=-1.0) for _ in range(3)]
    stack, filled = sym_hessian.cached_stack(src, len(kt.pairs), prep.P)
    assert filled and stack.shape == (len(kt.pairs), prep.P, prep.P)
    monkeypatch.setattr(sym_hessian, "STACK_CACHE_BYTES", 0)
    sym_hessian.clear_stack_cache()
    runs.append(pair_hessian_terms(src, kt.pairs, cho, z, mu=mu, V=V, sign=-1.0))
    assert sym_hessian.cached_stack(src, len(kt.pairs), prep.P) == (None, False)
    for got in runs:
        for g, w in zip(got, ref):
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-13 * np.abs(w).max())


def test_threads_do_not_change_the_round_off(tensors, monkeypatch):
    """The directions are independent and the Gram product is summed from the same
    GRAM_SLICES column slices on any number of threads: one thread and two give the same bits
    (a precision-limited solve then takes the same path on a busy machine and a quiet one)."""
    arch, prep, kt, cho, z = tensors["erf"]
    src = PackedBlocks.build(prep, kt.pairs)
    out = []
    for threads in (1, 2):
        monkeypatch.setattr(sym_hessian, "_threads", lambda n_p, P, t=threads: t)
        out.append(pair_hessian_terms(src, kt.pairs, cho, z))
    for a, b in zip(*out):
        assert np.array_equal(a, b)


def test_worker_threads_follow_the_load(monkeypatch):
    """Every core for P ≥ 64 on a quiet machine; one when other processes hold the cores
    (the BLAS policy's test) or P < 64."""
    import kren.kernels
    import kren.linalg as la
    monkeypatch.setattr(kren.kernels, "_threads", lambda: 2)
    monkeypatch.setattr(la, "_busy_cores", lambda: 0.3)
    assert sym_hessian._threads(136, 300) == 2 and sym_hessian._threads(136, 63) == 1
    monkeypatch.setattr(la, "_busy_cores", lambda: 0.6)
    assert sym_hessian._threads(136, 300) == 1


def test_float32_products_are_float32_accurate(tensors):
    """hessian_precision(float32): only the sygst products are float32, so T1 differs from the
    float64 one by float32 round-off amplified by κ(A) at most (≤ 10 P ε32 κ(A) relative) and
    T2 (float64 u_a = D_a z and solves) by float64 round-off."""
    arch, prep, kt, cho, z = tensors["erf"]
    src = PackedBlocks.build(prep, kt.pairs)
    T1, T2 = pair_hessian_terms(src, kt.pairs, cho, z)
    with hessian_precision(np.float32):
        S1, S2 = pair_hessian_terms(src, kt.pairs, cho, z)
    kappa = (np.diagonal(cho[0]).max() / np.diagonal(cho[0]).min()) ** 2
    err = np.abs(S1 - T1).max() / np.abs(T1).max()
    assert 0 < err <= 10 * prep.P * EPS32 * kappa
    np.testing.assert_allclose(S2, T2, rtol=0, atol=1e-12 * np.abs(T2).max())
