"""Local kernel tensors (THEORY §2) against the independent brute-force implementation.

tests/nngp_reference.py shares no code with kren: its own patch walk, covariances from the raw
pixels, arcsin/θ closed forms, explicit loops over patch pairs.  Both sides compute the same
numbers in double precision with different operation orders; the kernels are O(1) (erf) or
O(patch variance) (relu) and their closed forms are well conditioned on standardized data, so
agreement is asserted to 1e-12 (absolute plus relative: |Δ| ≤ 1e-12 (1 + |K|)).

Data: sklearn digits, 60 samples, standardized per pixel (constant pixels left at 0).
"""
import functools
import re
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from kren import Architecture, MemoryBudgetError, set_memory_budget
from kren import kernels as kk            # module import: kk.test_diagonal is not a pytest test

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nngp_reference as ref  # noqa: E402

TOL = 1e-12
P_SAMPLES = 60


def close(x, y, tol=TOL):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    assert x.shape == y.shape, (x.shape, y.shape)
    err = np.max(np.abs(x - y) / (1.0 + np.abs(y))) if x.size else 0.0
    assert err <= tol, f"max scaled deviation {err:.3e} > {tol:.1e}"


@functools.lru_cache(maxsize=None)
def digits_1ch() -> np.ndarray:
    X = load_digits().data[:P_SAMPLES].astype(np.float64)
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)          # (60, 64)


@functools.lru_cache(maxsize=None)
def digits_3ch() -> np.ndarray:
    """Three channels from each digit: itself, a shifted half-scale copy, a shifted affine copy."""
    img = digits_1ch().reshape(-1, 8, 8)
    chans = [img, 0.5 * np.roll(img, 1, axis=2), -1.3 * np.roll(img, 2, axis=1) + 0.2]
    return np.stack(chans, axis=1).reshape(len(img), -1)            # (60, 192) channels-first


DATA = {"1ch": ((1, 8, 8), digits_1ch), "3ch": ((3, 8, 8), digits_3ch),
        "1d": ((2, 32), digits_1ch)}                                  # 1D: 64 pixels as (2, 32)

# name: (data, mask, stride, padding, lambda0, lambda1)
CONFIGS = {
    "2x2-s2": ("1ch", 2, 2, "valid", 1.0, 1.0),
    "4x4-s4": ("1ch", 4, 4, "valid", 2.5, 0.7),
    "3x3-s1-valid": ("1ch", 3, 1, "valid", 1.0, 1.0),
    "3x3-s1-circular": ("1ch", 3, 1, "circular", 0.8, 1.9),
    "3ch-3x3-s2-circular": ("3ch", 3, 2, "circular", 1.0, 1.0),
    "3ch-2x3-s(1,2)-valid": ("3ch", (2, 3), (1, 2), "valid", 1.7, 1.0),
    "1d-m4-s4": ("1d", 4, 4, "valid", 1.0, 1.0),
    "1d-m5-s2-valid": ("1d", 5, 2, "valid", 1.0, 3.0),
    "1d-m5-s2-circular": ("1d", 5, 2, "circular", 0.5, 1.0),
}
ACTS = ["erf", "relu"]


def setup(name, activation, kind="cnn"):
    data, mask, stride, padding, l0, l1 = CONFIGS[name]
    shape, loader = DATA[data]
    arch = Architecture(kind, input_shape=shape, mask=mask, stride=stride, padding=padding,
                        activation=activation, lambda0=l0, lambda1=l1)
    return arch, loader()


@functools.lru_cache(maxsize=None)
def reference(name, activation, split=None):
    """Reference full tensor K_ij(x1, x2) (n, n, P1, P2); split=k uses X[:k] vs X[k:]."""
    arch, X = setup(name, activation)
    data, mask, stride, padding, l0, l1 = CONFIGS[name]
    X1, X2 = (X, X) if split is None else (X[:split], X[split:])
    return ref.local_kernels(X1, X2, arch.input_shape, mask, stride, padding, activation, l0)


PARAMS = [(c, a) for c in CONFIGS for a in ACTS]
IDS = [f"{c}-{a}" for c, a in PARAMS]


# ------------------------------------------------------------------------------ NNGP kernel
@pytest.mark.parametrize("name, activation", PARAMS, ids=IDS)
def test_nngp_kernel_vs_reference(name, activation):
    arch, X = setup(name, activation)
    data, mask, stride, padding, l0, l1 = CONFIGS[name]
    expect = ref.nngp(X, X, arch.input_shape, mask, stride, padding, activation, l0, l1)
    close(arch.nngp_kernel(X), expect)
    # the same number from the stored diagonal blocks of the train tensor
    kt = kk.train_kernels(arch, X)
    diag = [p for p, (i, j) in enumerate(kt.pairs) if i == j]
    assert len(diag) == arch.n
    close(kt.blocks[diag].sum(axis=0) / (arch.lambda1 * arch.n), expect)
    # LCN has the same infinite-width kernel (THEORY §2)
    lcn = Architecture("lcn", input_shape=arch.input_shape, mask=mask, stride=stride,
                       padding=padding, activation=activation, lambda0=l0, lambda1=l1)
    close(lcn.nngp_kernel(X), expect)
    # test × train: X1 = X[:20], X2 = X[20:]
    expect_x = ref.nngp(X[:20], X[20:], arch.input_shape, mask, stride, padding, activation, l0, l1)
    close(arch.nngp_kernel(X[:20], X[20:]), expect_x)


# ------------------------------------------------------------------------------ all blocks
@pytest.mark.parametrize("name, activation", PARAMS, ids=IDS)
def test_train_blocks_vs_reference(name, activation):
    arch, X = setup(name, activation)
    K = reference(name, activation)
    kt = arch.kernels(X)
    n = arch.n
    assert kt.n == n and kt.P == P_SAMPLES
    assert kt.blocks.shape == (n * (n + 1) // 2, P_SAMPLES, P_SAMPLES)
    assert sorted(map(tuple, kt.pairs.tolist())) == [(i, j) for i in range(n) for j in range(i, n)]
    for p, (i, j) in enumerate(kt.pairs):
        close(kt.blocks[p], K[i, j])
    # K_ji = K_ijᵀ over the training set, through block() and in the reference
    for i, j in [(0, n - 1), (n // 2, 1), (n - 1, 0)]:
        assert np.array_equal(kt.block(j, i), kt.block(i, j).T)
        close(K[j, i], K[i, j].T, 1e-14)
    # variances C_ii(x, x) and unit means μ_i(x)
    data, mask, stride, padding, l0, _ = CONFIGS[name]
    C, v, _ = ref.local_covariances(X, X[:1], arch.input_shape, mask, stride, padding, l0)
    close(kt.var, v)
    mu = ref.mean_relu(v) if activation == "relu" else np.zeros_like(v)
    close(kt.mu, mu)
    close(kk.unit_means(arch, X), mu)


@pytest.mark.parametrize("name, activation", PARAMS, ids=IDS)
def test_cross_and_diagonal_vs_reference(name, activation):
    arch, X = setup(name, activation)
    data, mask, stride, padding, l0, l1 = CONFIGS[name]
    Kx = kk.cross_kernels(arch, X[:20], X[20:])
    expect = reference(name, activation, 20)
    assert Kx.shape == expect.shape == (arch.n, arch.n, 20, 40)
    close(Kx, expect)
    # diagonal=True: only the blocks K_ii (all an LCN needs), shape (n, P1, P2)
    Kd = kk.cross_kernels(arch, X[:20], X[20:], diagonal=True)
    ii = np.arange(arch.n)
    assert Kd.shape == (arch.n, 20, 40)
    close(Kd, expect[ii, ii])
    # K_ji(x, x') = K_ij(x', x): on one set of inputs, block (j, i) is the transpose of (i, j)
    Ks = kk.cross_kernels(arch, X[:20], X[:20])
    close(Ks.transpose(1, 0, 3, 2), Ks, 1e-14)
    # K_ij(x0, x0): every test input against itself, all patch pairs
    D = kk.test_diagonal(arch, X[:25])
    close(D, ref.same_input_kernels(X[:25], arch.input_shape, mask, stride, padding,
                                    activation, l0))
    # the diagonal of the full train tensor is the same thing
    K = reference(name, activation)
    idx = np.arange(25)
    close(D, K[:, :, idx, idx])
    # diagonal=True: K_ii(x0, x0) only, shape (n, P0); with covariance=True the variances C_ii
    close(kk.test_diagonal(arch, X[:25], diagonal=True), D[ii, ii])
    _, v, _ = ref.local_covariances(X[:25], X[:1], arch.input_shape, mask, stride, padding, l0)
    close(kk.test_diagonal(arch, X[:25], diagonal=True, covariance=True), v)
    # cross_combine with a non-symmetric W: Σ_ij W_ij K_ij(x1, x2)
    W = np.random.default_rng(5).standard_normal((arch.n, arch.n))
    close(kk.cross_combine(arch, W, X[:20], X[20:]), np.einsum("ij,ijab->ab", W, expect))


# ------------------------------------------------------------------------------ combine/contract
@pytest.mark.parametrize("name", ["3x3-s1-circular", "3ch-2x3-s(1,2)-valid", "1d-m5-s2-valid"])
def test_combine_and_contract(name):
    arch, X = setup(name, "relu")
    K = reference(name, "relu")
    n = arch.n
    rng = np.random.default_rng(11)
    W = rng.standard_normal((n, n))
    W = W + W.T
    B = rng.standard_normal((P_SAMPLES, P_SAMPLES))
    B = B + B.T
    explicit_combine = np.zeros((P_SAMPLES, P_SAMPLES))
    G = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            explicit_combine += W[i, j] * K[i, j]
            G[i, j] = np.sum(K[i, j] * B)
    kt = arch.kernels(X)
    # both sides sum the same n² terms W_ij K_ij in different orders: rounding differences grow
    # at most like n² ulps of the largest term (typically n ulps); allowed: 1e-12·n relative to
    # the largest entry of the result (n ≤ 64 here, so ≤ 6.4e-11; measured ≤ 4.4e-15)
    scale = np.abs(explicit_combine).max()
    assert np.abs(kt.combine(W) - explicit_combine).max() <= 1e-12 * scale * n
    Gk = kt.contract(B)
    assert np.abs(Gk - G).max() <= 1e-12 * np.abs(G).max() * n
    assert np.array_equal(Gk, Gk.T)
    # LCN: only diagonal blocks stored, combine = Σ_i W_ii K_ii, contract is diagonal
    lcn, _ = setup(name, "relu", kind="lcn")
    kl = lcn.kernels(X)
    assert np.array_equal(kl.pairs, np.stack([np.arange(n)] * 2, axis=1))
    explicit_diag = sum(W[i, i] * K[i, i] for i in range(n))
    assert np.abs(kl.combine(W) - explicit_diag).max() <= 1e-12 * np.abs(explicit_diag).max() * n
    Gl = kl.contract(B)
    assert np.array_equal(Gl, np.diag(np.diag(Gl)))
    assert np.abs(np.diag(Gl) - np.diag(G)).max() <= 1e-12 * np.abs(G).max() * n
    with pytest.raises(KeyError, match="not stored"):
        kl.block(0, 1)
    # an explicit subset of pairs gives exactly those blocks
    sub = kk.train_kernels(arch, X, pairs=[(0, 3), (2, 2)])
    close(sub.blocks[0], K[0, 3])
    close(sub.blocks[1], K[2, 2])


# ------------------------------------------------------------------------------ FC
@pytest.mark.parametrize("activation", ["erf", "relu", "linear"])
@pytest.mark.parametrize("data", ["1ch", "3ch", "1d"])
def test_fc_equals_whole_input_mask(data, activation):
    shape, loader = DATA[data]
    X = loader()
    kw = dict(activation=activation, lambda0=1.3, lambda1=0.6)
    fc = Architecture("fc", input_shape=shape, **kw)
    fc_free = Architecture("fc", **kw)                         # N0 taken from the data
    cnn = Architecture("cnn", input_shape=shape, mask=shape[1:], **kw)
    lcn = Architecture("lcn", input_shape=shape, mask=shape[1:], padding="circular", **kw)
    expect = ref.nngp_fc(X, X, activation, 1.3, 0.6)
    for arch in (fc, fc_free, cnn, lcn):
        assert arch.with_input(X).n == 1 and arch.with_input(X).M == X.shape[1]
        close(arch.nngp_kernel(X), expect)
        kt = kk.train_kernels(arch, X)
        assert kt.pairs.tolist() == [[0, 0]]
        close(kt.blocks[0] / 0.6, expect)
        close(kk.cross_kernels(arch, X[:10], X[10:])[0, 0] / 0.6, expect[:10, 10:])
        close(kk.test_diagonal(arch, X)[0, 0] / 0.6, np.diag(expect))
    assert np.array_equal(fc.nngp_kernel(X), cnn.nngp_kernel(X))


# ------------------------------------------------------------------------------ dtypes, covariance
@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_float32(activation):
    arch, X = setup("3x3-s1-valid", activation)
    k64 = arch.kernels(X)
    k32 = arch.kernels(X, dtype=np.float32)
    assert k32.blocks.dtype == np.float32 and k32.var.dtype == np.float32
    assert k32.mu.dtype == np.float32
    # float32 (eps 6e-8) through a 9-term dot product and the closed form: a few eps, measured
    # 1.5e-7; asserted 1e-6 (the precision float32 promises for O(1) kernels)
    dev = np.max(np.abs(k32.blocks - k64.blocks) / (1 + np.abs(k64.blocks)))
    assert dev <= 1e-6, dev
    x32 = kk.cross_kernels(arch, X[:10], X[10:], dtype=np.float32)
    assert x32.dtype == np.float32
    x64 = kk.cross_kernels(arch, X[:10], X[10:])
    assert np.max(np.abs(x32 - x64) / (1 + np.abs(x64))) <= 1e-6
    with pytest.raises(ValueError, match="float32 or float64"):
        arch.kernels(X, dtype=np.float16)


def test_covariance_mode():
    for name in ["3x3-s1-circular", "3ch-2x3-s(1,2)-valid", "1d-m5-s2-circular"]:
        arch, X = setup(name, "relu")
        data, mask, stride, padding, l0, _ = CONFIGS[name]
        C, v, _ = ref.local_covariances(X, X, arch.input_shape, mask, stride, padding, l0)
        kt = arch.kernels(X, covariance=True)
        for p, (i, j) in enumerate(kt.pairs):
            close(kt.blocks[p], C[i, j])
        assert np.array_equal(kt.mu, np.zeros_like(kt.mu))       # covariance carries no mean
        close(kt.var, v)
        Cx, _, _ = ref.local_covariances(X[:7], X[7:], arch.input_shape, mask, stride, padding, l0)
        close(kk.cross_kernels(arch, X[:7], X[7:], covariance=True), Cx)
        idx = np.arange(12)
        close(kk.test_diagonal(arch, X[:12], covariance=True), C[:, :, idx, idx])
        # the linear activation is the covariance itself
        lin = Architecture("cnn", input_shape=arch.input_shape, mask=mask, stride=stride,
                           padding=padding, activation="linear", lambda0=l0)
        kl = lin.kernels(X)
        for p, (i, j) in enumerate(kl.pairs):
            close(kl.blocks[p], C[i, j])


def test_lambda_scalings():
    X = digits_1ch()
    base = dict(input_shape=(1, 8, 8), mask=3, stride=1, padding="circular")
    # λ1 divides the NNGP kernel; λ0 divides covariances (exact for linear) and equals rescaling
    # the input by 1/√λ0 for any activation.  Pure rescalings: agreement to a few ulps.
    for act in ("erf", "relu", "linear"):
        k1 = Architecture("cnn", activation=act, **base).nngp_kernel(X)
        k3 = Architecture("cnn", activation=act, lambda1=3.0, **base).nngp_kernel(X)
        close(k3, k1 / 3.0, 1e-15)
        kl0 = Architecture("cnn", activation=act, lambda0=4.0, **base).nngp_kernel(X)
        close(kl0, Architecture("cnn", activation=act, **base).nngp_kernel(X / 2.0), 1e-14)
    base = dict(input_shape=(1, 8, 8), mask=2, stride=2)
    lin1 = Architecture("cnn", activation="linear", **base).kernels(X).blocks
    lin4 = Architecture("cnn", activation="linear", lambda0=4.0, **base).kernels(X).blocks
    close(lin4, lin1 / 4.0, 1e-15)


# ------------------------------------------------------------------------------ memory budget
def test_memory_budget():
    arch, X = setup("3x3-s1-circular", "erf")
    n, P = arch.n, P_SAMPLES
    tensor_bytes = n * (n + 1) // 2 * P * P * 8                   # 2080 blocks of 60×60: 60 MB
    tracemalloc.start()
    try:
        with pytest.raises(MemoryBudgetError) as info:
            kk.train_kernels(arch, X, memory_budget=4096)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    msg = str(info.value)
    assert "bytes" in msg and "memory budget" in msg and "2080 blocks of 60×60" in msg
    stated = int(re.search(r"\((\d+) bytes\)", msg).group(1))     # "... needs X MiB (N bytes)"
    assert stated >= tensor_bytes
    assert isinstance(info.value, MemoryError)
    assert peak < 200_000, peak                                   # nothing of tensor size allocated
    with pytest.raises(MemoryBudgetError, match="cross kernel tensor"):
        kk.cross_kernels(arch, X, X, memory_budget=4096)
    with pytest.raises(MemoryBudgetError, match="NNGP kernel"):
        kk.nngp_kernel(arch, X, memory_budget=4096)
    # the global budget applies when none is passed, and is restored
    set_memory_budget(8192)
    try:
        with pytest.raises(MemoryBudgetError):
            arch.kernels(X)
    finally:
        set_memory_budget(None)
    assert arch.kernels(X[:5]).blocks.shape == (n * (n + 1) // 2, 5, 5)
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="memory budget must be a positive"):
            set_memory_budget(bad)


def test_bad_data_rejected():
    arch, X = setup("2x2-s2", "erf")
    Xb = X.copy()
    Xb[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        arch.kernels(Xb)
    with pytest.raises(ValueError, match="NaN or inf"):
        kk.cross_kernels(arch, X, Xb)
    with pytest.raises(ValueError, match=r"expected \(P, 64\)"):
        arch.nngp_kernel(X[:, :60])
    with pytest.raises(ValueError, match="X2 has shape"):
        arch.nngp_kernel(X, X[:, :60])
