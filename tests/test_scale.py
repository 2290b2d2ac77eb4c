"""Large P (issue 13): mixed precision, packed and streamed tensors, the PyTorch path, cheaper
Newton steps, the storage choice, progress and time budget. Small P throughout: every claim is
an identity that holds at any P (same mathematics, different bookkeeping)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import kren
from kren.data import load_digits
from kren.kernels import MemoryBudgetError
from kren.linalg import cho_factor, cho_solve, pair_combine, pair_contract, pair_hessian_terms
from kren.saddle import matrix as saddle_matrix
from kren.saddle import problem_for, solve
from kren.tensors import PackedBlocks, StreamedBlocks, packed_nbytes, plan_storage
from kren.tensors.storage import solver_tensor, storage_bytes

SHAPE = dict(input_shape=(1, 8, 8), mask=(2, 2), stride=(2, 2))


@pytest.fixture(scope="module")
def digits():
    return load_digits(classes="even-odd", n_train=60, n_test=15, seed=0)


def _arch(act="erf", kind="cnn"):
    return kren.Architecture(kind, SHAPE["input_shape"], mask=2, stride=2, activation=act)


# --------------------------------------------------------------------------- the passes
@pytest.mark.parametrize("kind,act", [("cnn", "erf"), ("cnn", "relu"), ("lcn", "erf")])
def test_packed_and_streamed_passes_equal_the_stacked_blocks(digits, kind, act):
    """combine, contract and the Hessian terms over packed (float64) and streamed tensors are
    the same sums as over the stacked blocks K_ij: equal to round-off (1e-12 relative)."""
    arch = _arch(act, kind)
    prep = arch.prepare(digits.X_train)
    kt = arch.kernels(prep)
    n, P = arch.n, prep.P
    rng = np.random.default_rng(1)
    W = rng.normal(size=(n, n))
    W = W + W.T if kind == "cnn" else np.diag(rng.normal(size=n))
    B = rng.normal(size=(P, P))
    B = B + B.T
    ref_c = pair_combine(W, kt.blocks, kt.pairs)
    ref_g = pair_contract(kt.blocks, B, kt.pairs, n)
    A = ref_c @ ref_c.T / P + np.eye(P)
    cho = cho_factor(A)
    z = cho_solve(cho, digits.y_train)
    mu = prep.mu if act == "relu" else None
    V = rng.normal(size=(P, n)) if act == "relu" else None
    ref_h = pair_hessian_terms(kt.blocks, kt.pairs, cho, z, mu=mu, V=V, sign=-1.0)
    for src in (PackedBlocks.build(prep, kt.pairs), StreamedBlocks(prep, kt.pairs, rows=7)):
        np.testing.assert_allclose(pair_combine(W, src, kt.pairs), ref_c, rtol=0,
                                   atol=1e-12 * np.abs(ref_c).max())
        np.testing.assert_allclose(pair_contract(src, B, kt.pairs, n), ref_g, rtol=0,
                                   atol=1e-12 * np.abs(ref_g).max())
        for got, want in zip(pair_hessian_terms(src, kt.pairs, cho, z, mu=mu, V=V, sign=-1.0),
                             ref_h):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


def test_hessian_terms_are_the_trace_formula(digits):
    """T1[a, b] = Tr(A⁻¹D_aA⁻¹D_b), T2[a, b] = zᵀD_aA⁻¹D_b z by explicit inverses (THEORY §3),
    D_p = K̃_p − M_p: the packed-SYRK form computes exactly these."""
    arch = _arch("relu")
    prep = arch.prepare(digits.X_train[:25])
    kt = arch.kernels(prep)
    P = prep.P
    K = pair_combine(np.eye(arch.n), kt.blocks, kt.pairs) / arch.n
    A = K + 0.3 * np.eye(P)
    y = digits.y_train[:25]
    cho = cho_factor(A)
    z = cho_solve(cho, y)
    T1, T2 = pair_hessian_terms(kt.blocks, kt.pairs, cho, z, mu=prep.mu)
    Ainv = np.linalg.inv(A)
    D = []
    for (i, j), blk in zip(kt.pairs, kt.blocks):
        M = np.outer(prep.mu[i], prep.mu[j])
        D.append(blk + blk.T - M - M.T if i != j else blk - M)
    for a in (0, 5, 17):
        for b in (0, 9, 30):
            t1 = np.trace(Ainv @ D[a] @ Ainv @ D[b])
            t2 = z @ D[a] @ Ainv @ D[b] @ z
            assert abs(T1[a, b] - t1) <= 1e-10 * max(1.0, abs(t1))
            assert abs(T2[a, b] - t2) <= 1e-10 * max(1.0, abs(t2))


def test_float32_blocks_are_accumulated_in_float64(digits):
    """pair_combine / pair_contract over float32 blocks: the float64 sums of the float32
    values (an independent float64 computation on the cast blocks agrees to 1e-14), not
    float32 sums (which differ by ~1e-7)."""
    arch = _arch()
    k32 = kren.kernels.train_kernels(arch, digits.X_train, dtype=np.float32)
    b64 = k32.blocks.astype(np.float64)
    rng = np.random.default_rng(2)
    W = rng.normal(size=(arch.n, arch.n))
    W = W + W.T
    B = rng.normal(size=(60, 60))
    B = B + B.T
    c32, c64 = pair_combine(W, k32.blocks, k32.pairs), pair_combine(W, b64, k32.pairs)
    assert c32.dtype == np.float64
    np.testing.assert_allclose(c32, c64, rtol=0, atol=1e-14 * np.abs(c64).max())
    g32, g64 = pair_contract(k32.blocks, B, k32.pairs, arch.n), pair_contract(b64, B, k32.pairs,
                                                                             arch.n)
    np.testing.assert_allclose(g32, g64, rtol=0, atol=1e-14 * np.abs(g64).max())


# --------------------------------------------------------------------------- the estimators
def test_float32_storage_converges_to_tol(digits):
    """float32 storage: the solve reaches tol (the old float32 path floored near 1e-6), equals
    the float64 solve on the same rounded values to 1e-10 (it IS that solve: every sum is
    float64), and differs from float64 kernels by float32 round-off only (≤ 1e-5)."""
    X, y = digits.X_train, digits.y_train
    m32 = kren.CNN(N=20, T=0.1, storage="float32", tol=1e-10, **SHAPE).fit(X, y)
    m64 = kren.CNN(N=20, T=0.1, storage="stored", tol=1e-10, **SHAPE).fit(X, y)
    r = m32.result_
    assert r.converged and r.rel_grad_norm <= 1e-10, r.message
    assert m32.storage_.startswith("float32") and "float32" in r.message
    src = m32.kernels_.blocks
    assert src.dtype == np.float32
    cast = PackedBlocks(src.data.astype(np.float64), src.tiles, src.pairs, src.n, src.P,
                        src.maker)
    tensor = kren.kernels.KernelTensor(cast, src.pairs, src.n, m32.kernels_.mu, m32.kernels_.var)
    same = solve(problem_for("matrix", tensor, y, 0.1, 20.0, 1.0, True), tol=1e-10)
    np.testing.assert_allclose(m32.Q_, same.Q, rtol=0, atol=1e-10)
    dev = np.abs(m32.Q_ - m64.Q_).max()
    assert 0 < dev <= 1e-5


@pytest.mark.parametrize("cls,act", [(kren.CNN, "erf"), (kren.CNN, "relu"), (kren.LCN, "erf")])
def test_streaming_equals_stored(digits, cls, act):
    """Streaming recomputes the same tiles the packed storage holds: Q, Q̄ and the predictions
    agree to 1e-10."""
    X, y = digits.X_train, digits.y_train
    kw = dict(N=20, T=0.1, activation=act, tol=1e-11, **SHAPE)
    st = cls(storage="stored", **kw).fit(X, y)
    sm = cls(storage="streaming", **kw).fit(X, y)
    assert st.result_.converged and sm.result_.converged
    assert sm.storage_.startswith("streaming") and st.storage_.startswith("stored")
    np.testing.assert_allclose(sm.Q_, st.Q_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(sm.Qbar_, st.Qbar_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(sm.predict(digits.X_test), st.predict(digits.X_test), rtol=0,
                               atol=1e-10)


@pytest.mark.parametrize("act", ["erf", "relu"])
def test_torch_cpu_path_equals_numpy(digits, act):
    """device='cpu' (PyTorch's CPU build; the code that runs on CUDA): stored and streamed,
    Q and predictions equal the NumPy fit to 1e-10 (torch float64)."""
    pytest.importorskip("torch")
    X, y = digits.X_train[:30], digits.y_train[:30]
    kw = dict(N=20, T=0.1, activation=act, tol=1e-11, **SHAPE)
    ref = kren.CNN(**kw).fit(X, y)
    for storage in ("stored", "streaming"):
        m = kren.CNN(storage=storage, device="cpu", **kw).fit(X, y)
        assert m.result_.converged and "on cpu" in m.storage_
        np.testing.assert_allclose(m.Q_, ref.Q_, rtol=0, atol=1e-10)
        np.testing.assert_allclose(m.predict(digits.X_test), ref.predict(digits.X_test), rtol=0,
                                   atol=1e-10)


def test_bad_device_is_named(digits):
    with pytest.raises(kren.validation.InvalidParameterError, match="device"):
        kren.CNN(N=20, T=0.1, device="nonsense", **SHAPE).fit(digits.X_train, digits.y_train)


@pytest.mark.parametrize("act", ["erf", "relu"])
def test_cheaper_newton_same_Q_fewer_hessians(digits, act, monkeypatch):
    """method='auto' (quasi-Newton updates between exact Hessians) reaches the Q of exact
    Newton (method='newton') to 1e-9, with fewer exact Hessians."""
    arch = _arch(act)
    prep = arch.prepare(digits.X_train)
    kt = arch.kernels(prep)
    calls = []
    orig = saddle_matrix.MatrixProblem.hessian
    monkeypatch.setattr(saddle_matrix.MatrixProblem, "hessian",
                        lambda self, ev: calls.append(1) or orig(self, ev))
    sols = {}
    counts = {}
    for method in ("newton", "auto"):
        calls.clear()
        problem = problem_for("matrix", kt, digits.y_train, 0.05, 10.0, 1.0, arch.zero_mean)
        sols[method] = solve(problem, tol=1e-12, method=method)
        counts[method] = len(calls)
        assert sols[method].result.converged, sols[method].result.message
    assert "quasi-newton" in sols["auto"].result.method
    np.testing.assert_allclose(sols["auto"].Q, sols["newton"].Q, rtol=0, atol=1e-9)
    np.testing.assert_allclose(sols["auto"].Qbar, sols["newton"].Qbar, rtol=0, atol=1e-9)
    assert counts["auto"] < counts["newton"]


# --------------------------------------------------------------------------- the choice
def test_auto_storage_under_a_memory_budget(digits):
    """'auto' stores float64 when it fits, float32 when only that fits (saying so), streams
    otherwise; a budget too small even for streaming is a named MemoryBudgetError. A fit under
    a streaming budget reports it and gives the stored Q to 1e-10."""
    arch = _arch()
    P, n_p = 60, len(arch.pairs)
    f64, f32 = packed_nbytes(n_p, P, np.float64), packed_nbytes(n_p, P, np.float32)
    assert f32 * 2 == f64 and f64 < n_p * P * P * 8           # packed: about half the blocks
    need = storage_bytes(arch, P)
    assert need["streaming"] < need["float32"] < need["float64"]
    big = plan_storage(arch, P, "auto", "float64", memory_budget=need["float64"])
    assert big.mode == "stored" and big.dtype == np.float64
    mid = plan_storage(arch, P, "auto", "float64", memory_budget=need["float64"] - 1)
    assert mid.mode == "float32" and mid.dtype == np.float32
    assert "exceeds the memory budget" in mid.reason and "float32 storage" in mid.reason
    small = plan_storage(arch, P, "auto", "float64", memory_budget=need["float32"] - 1)
    assert small.mode == "streaming" and "recomputed" in small.reason
    with pytest.raises(MemoryBudgetError, match="streaming working set"):
        plan_storage(arch, P, "auto", "float64", memory_budget=1000)
    with pytest.raises(MemoryBudgetError, match="packed blocks"):
        plan_storage(arch, P, "stored", "float64", memory_budget=f64 // 2)
    X, y = digits.X_train, digits.y_train
    ref = kren.CNN(N=20, T=0.1, tol=1e-11, **SHAPE).fit(X, y)
    m = kren.CNN(N=20, T=0.1, tol=1e-11, memory_budget=need["float32"] - 1, **SHAPE).fit(X, y)
    assert m.storage_.startswith("streaming") and "memory budget" in m.storage_
    assert isinstance(m.kernels_.blocks, StreamedBlocks)
    np.testing.assert_allclose(m.Q_, ref.Q_, rtol=0, atol=1e-10)


def test_solver_tensor_modes_hold_what_they_say(digits):
    arch = _arch()
    prep = arch.prepare(digits.X_train)
    for mode, cls, dt in (("stored", PackedBlocks, np.float64), ("float32", PackedBlocks,
                                                                  np.float32),
                          ("streaming", StreamedBlocks, np.float64)):
        kt = solver_tensor(arch, prep, plan_storage(arch, prep.P, mode))
        assert isinstance(kt.blocks, cls) and kt.blocks.dtype == dt
        assert kt.blocks.shape == (len(arch.pairs), prep.P, prep.P)


# --------------------------------------------------------------------------- long fits
def test_time_budget_stops_with_a_clear_message(digits):
    """A time budget that is used up after the first iteration stops the solve: not converged,
    a ConvergenceWarning, and a message naming the budget and how to continue."""
    X, y = digits.X_train, digits.y_train
    with pytest.warns(kren.ConvergenceWarning, match="time budget"):
        m = kren.CNN(N=20, T=0.1, time_budget=1e-9, **SHAPE).fit(X, y)
    r = m.result_
    assert not r.converged and r.n_iter == 1
    assert "stopped by the callback (time budget of 1e-09 s used up after 1 iterations" in r.message
    assert "pass the returned Q" in r.message


def test_progress_bar_reports_iterations(digits, capsys):
    X, y = digits.X_train, digits.y_train
    m = kren.CNN(N=20, T=0.1, progress=True, **SHAPE).fit(X, y)
    err = capsys.readouterr().err
    assert m.result_.converged
    assert "rel. gradient" in err and "s/it" in err


def test_progress_callback_history():
    from kren.saddle.progress import Progress

    class Ev:
        rel = 0.5

    cb = Progress(time_budget=None, display=False)
    assert cb(1, Ev()) is False and cb(2, Ev()) is False
    assert [h[0] for h in cb.history] == [1, 2] and cb.history[1][2] >= cb.history[0][2]
    with pytest.raises(ValueError, match="time_budget"):
        Progress(time_budget=-1)


def test_memory_errors_advise_the_next_cheaper_storage():
    """A requested storage over the budget names the next cheaper mode (float64 → float32 or
    streaming; float32 → streaming), not the one already asked for."""
    arch = _arch()
    P = 60
    need = storage_bytes(arch, P)
    with pytest.raises(MemoryBudgetError, match="storage='float32' or 'streaming'"):
        plan_storage(arch, P, "stored", "float64", memory_budget=need["float64"] - 1)
    with pytest.raises(MemoryBudgetError, match="storage='streaming'") as e:
        plan_storage(arch, P, "float32", "float64", memory_budget=need["float32"] - 1)
    assert "dtype=np.float32" not in str(e.value)
    with pytest.raises(MemoryBudgetError, match="more memory"):
        plan_storage(arch, P, "streaming", "float64", memory_budget=1000)


@pytest.mark.parametrize("act", ["erf", "relu"])
def test_packed_build_by_column_chunks_is_the_same_storage(digits, act, monkeypatch):
    """The packed build writes K̃_p = K_ij + K_ji from ordered blocks computed by column
    chunks (BUILD_CHUNK_BYTES): chunks of one column or one chunk per tile, one thread or two,
    give the same storage to float64 round-off (the 4-term patch products may be summed in
    another order by another BLAS kernel: ~1 ulp, times ≤ 10 through the arcsin; 1e-14
    relative), and the blocks are the stacked K_ij + K_ijᵀ (1e-12 relative)."""
    from kren.tensors import packed
    arch = _arch(act)
    prep = arch.prepare(digits.X_train)
    kt = arch.kernels(prep)
    ref = PackedBlocks.build(prep, kt.pairs, threads=1)
    monkeypatch.setattr(packed, "BUILD_CHUNK_BYTES", 1000)        # one column per chunk
    small = PackedBlocks.build(prep, kt.pairs, threads=2)
    np.testing.assert_allclose(small.data, ref.data, rtol=0, atol=1e-14 * np.abs(ref.data).max())
    for p in (0, 7, len(kt.pairs) - 1):
        i, j = kt.pairs[p]
        K = np.asarray(kt.blocks[p])
        want = K + K.T if i != j else K
        np.testing.assert_allclose(small.symmetrized(p), want, rtol=0,
                                   atol=1e-12 * np.abs(want).max())


def test_lower_weights_by_row_blocks():
    """lower_weights(B) (row blocks, no P×P temporaries) is 2·tril(B, −1) + diag(B) exactly
    (a doubling and copies: no round-off), across block edges (P = 600 > 256) and for tiles."""
    from kren.tensors.source import lower_weights, lower_weights_rows
    rng = np.random.default_rng(4)
    for P in (7, 600):
        B = rng.normal(size=(P, P))
        B = B + B.T
        want = 2.0 * np.tril(B, -1) + np.diag(np.diag(B))
        assert np.array_equal(lower_weights(B), want)
        out = np.full((P - 3, P), np.nan)
        lower_weights_rows(B, 3, P, out)
        assert np.array_equal(out, want[3:P, :P])


def test_pass_pool_is_reused_grown_and_remade_after_fork(monkeypatch):
    """kren.tensors.mixed keeps one pool of pass threads: the same pool for the next pass, a
    larger one when more workers are asked, and a new one in a forked child (which inherits
    the pool object but none of its threads: the old one would never run the work)."""
    from kren.tensors import mixed
    monkeypatch.setattr(mixed, "_POOL", {"pool": None, "workers": 0, "pid": None})
    a = mixed._pool(2)
    assert mixed._pool(2) is a and mixed._pool(1) is a
    b = mixed._pool(3)
    assert b is not a and mixed._POOL["workers"] == 3
    pid = mixed.os.getpid()
    monkeypatch.setattr(mixed.os, "getpid", lambda: pid + 1)
    c = mixed._pool(2)
    assert c is not b and mixed._POOL["pid"] == pid + 1
    assert sorted(mixed._run([lambda: 1, lambda: 2])) == [1, 2]
    for pool in (b, c):
        pool.shutdown(wait=True)


@pytest.mark.parametrize("simd", [True, False])
def test_arcsin_of_the_erf_tiles_is_chosen_by_the_machine_and_agrees(digits, simd, monkeypatch):
    """The erf tiles take NumPy's arcsin where NumPy vectorizes it (numpy_simd_arcsin) and
    PyTorch's asin elsewhere (when installed, from TORCH_MIN_P inputs): a rule of the machine,
    not of timings. Both give the same tiles to a few ulp (the asin implementations differ by
    ≤ 1 ulp, the 2/π scaling adds one: 4 eps relative to the largest entry)."""
    torch = pytest.importorskip("torch")  # noqa: F841
    from kren.tensors import tiles
    arch = _arch("erf")
    prep = arch.prepare(digits.X_train)
    monkeypatch.setattr(tiles, "TORCH_MIN_P", 1)
    monkeypatch.setattr(tiles, "numpy_simd_arcsin", lambda: simd)
    maker = tiles.TileMaker(prep, np.float64)
    assert maker.use_torch is (not simd)
    got = maker.ordered(3, [0, 3, 9], 0, prep.P, prep.P)
    monkeypatch.setattr(tiles, "numpy_simd_arcsin", lambda: not simd)
    other = tiles.TileMaker(prep, np.float64)
    assert other.use_torch is simd
    want = other.ordered(3, [0, 3, 9], 0, prep.P, prep.P)
    np.testing.assert_allclose(got, want, rtol=0,
                               atol=4 * np.finfo(float).eps * np.abs(want).max())
    monkeypatch.setenv("KREN_TORCH_KERNELS", "0")
    monkeypatch.setattr(tiles, "_TORCH", None)
    monkeypatch.setattr(tiles, "numpy_simd_arcsin", lambda: False)
    assert tiles.TileMaker(prep, np.float64).use_torch is False   # PyTorch switched off


def test_numpy_simd_arcsin_reads_numpy_cpu_features():
    from kren.tensors.tiles import numpy_simd_arcsin
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_features__ as features
    assert numpy_simd_arcsin() is bool(features.get("AVX512_SKX", False))
