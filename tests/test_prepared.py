"""Prepared inputs (issue 8 item 2): validated once, patches/variances/means once, lazy fingerprint.

The once-only property is asserted with counting wrappers around PatchGeometry.check_data and
PatchGeometry.patches (not with timings), with the test set cut into several chunks.
"""
from collections import Counter
from unittest import mock

import numpy as np
import pytest

import kren
import kren.generated.cnn as gen_cnn
import kren.prepared
import kren.renormalized
from kren import kernels as kk
from kren.data import load_digits
from kren.geometry import PatchGeometry
from kren.prepared import Prepared

from nngp_reference import extract_patches, local_covariances, mean_relu

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def ds():
    return load_digits(classes="even-odd", n_train=60, n_test=45, seed=7)


def _counting():
    counts = {"validated": Counter(), "patched": Counter(), "hashed": Counter(), "cho": Counter()}
    check, patches = PatchGeometry.check_data, PatchGeometry.patches
    fp, cho = kren.prepared.fingerprint, gen_cnn.cho_factor

    def c_check(self, X, name="X"):
        counts["validated"][name] += 1
        return check(self, X, name)

    def c_patches(self, X):
        counts["patched"][len(X)] += 1
        return patches(self, X)

    def c_fp(*a):
        counts["hashed"][len(a[0])] += 1
        return fp(*a)

    def c_cho(A, what="matrix"):
        counts["cho"][what] += 1
        return cho(A, what)

    patchers = [mock.patch.object(PatchGeometry, "check_data", c_check),
                mock.patch.object(PatchGeometry, "patches", c_patches),
                mock.patch.object(kren.prepared, "fingerprint", c_fp),
                mock.patch.object(gen_cnn, "cho_factor", c_cho)]
    return counts, patchers


@pytest.mark.parametrize("activation,readout", [("erf", "local"), ("relu", "local"),
                                                ("erf", "pool")])
def test_predict_validates_and_patches_each_input_once(ds, monkeypatch, activation, readout):
    """One predict on 45 test points cut into 6 chunks: X validated once and patched once, the
    training set neither validated, patched nor hashed again; for erf no Cholesky at all
    (Q̄ does not enter K_R), for relu only the n×n factorizations of 𝟙 + Q̄ (two per chunk)."""
    m = kren.CNN(N=20, T=0.1, activation=activation, readout=readout, input_shape=SHAPE,
                 mask=2, stride=2)
    m.fit(ds.X_train, ds.y_train)
    rows = 8
    monkeypatch.setattr(kren.renormalized, "CHUNK_BYTES",
                        rows * m.arch_.cross_blocks * 60 * 8)
    counts, patchers = _counting()
    for p in patchers:
        p.start()
    try:
        mean, var = m.predict(ds.X_test, return_var=True)
    finally:
        for p in reversed(patchers):
            p.stop()
    n_chunks = -(-45 // rows)
    assert n_chunks == 6
    assert counts["validated"] == Counter({"X": 1})
    assert counts["patched"] == Counter({45: 1})
    assert counts["hashed"] == Counter()                    # no cache: nothing hashed
    if activation == "erf" or readout == "pool":
        assert counts["cho"] == Counter()
    else:
        assert counts["cho"] == Counter({"1 + Qbar": 2 * n_chunks})
    # the chunked result is the one-chunk result (same numbers, other operation grouping)
    monkeypatch.setattr(kren.renormalized, "CHUNK_BYTES", 2**30)
    mean1, var1 = m.predict(ds.X_test, return_var=True)
    np.testing.assert_allclose(mean, mean1, rtol=0, atol=1e-13)
    np.testing.assert_allclose(var, var1, rtol=0, atol=1e-13)


def test_with_cache_each_input_is_hashed_once(ds, monkeypatch):
    """With a KernelCache the test set is hashed once per predict (chunks derive their keys from
    it) and the training set once per fit, not per chunk."""
    cache = kren.KernelCache(max_bytes=2**28)
    m = kren.CNN(N=20, T=0.1, input_shape=SHAPE, mask=2, stride=2, cache=cache)
    counts, patchers = _counting()
    monkeypatch.setattr(kren.renormalized, "CHUNK_BYTES", 8 * 16 ** 2 * 60 * 8)
    for p in patchers:
        p.start()
    try:
        m.fit(ds.X_train, ds.y_train)
        m.predict(ds.X_test)
        m.predict(ds.X_test)
    finally:
        for p in reversed(patchers):
            p.stop()
    assert counts["hashed"] == Counter({60: 1, 45: 2})
    assert counts["validated"] == Counter({"X": 3}) and counts["patched"] == Counter({60: 1, 45: 2})
    assert cache.hits == 6 and cache.misses == 1 + 6          # second predict: all chunks hit


def test_prepared_arrays_match_independent_patches(ds):
    """patches (n, P, M), C_ii and μ_i against the brute-force reference (exact gather; the
    variances and means to 1e-13)."""
    for act in ("erf", "relu"):
        arch = kren.Architecture("cnn", SHAPE, mask=3, stride=2, padding="circular",
                                 activation=act, lambda0=1.7)
        p = arch.prepare(ds.X_train)
        ref = extract_patches(ds.X_train, SHAPE, 3, 2, "circular")          # (P, n, M)
        np.testing.assert_array_equal(p.patches, ref.transpose(1, 0, 2))
        _, v, _ = local_covariances(ds.X_train, ds.X_train[:1], SHAPE, 3, 2, "circular", 1.7)
        np.testing.assert_allclose(p.var, v, rtol=1e-13, atol=0)
        expect = mean_relu(v) if act == "relu" else np.zeros_like(v)
        np.testing.assert_allclose(p.mu, expect, rtol=1e-13, atol=0)
        assert (p.P, p.n, p.M) == (60, arch.n, 9)


def test_prepared_is_immutable_owned_and_reused(ds):
    arch = kren.Architecture("cnn", SHAPE, mask=2, stride=2)
    X = ds.X_train.copy()
    p = arch.prepare(X, "X_train")
    assert p.name == "X_train" and isinstance(p, Prepared)
    for a in (p.X, p.patches, p.var, p.mu):
        assert not a.flags.writeable
    fp = p.fingerprint
    X[0, 0] += 1.0                                  # the caller's array is not the prepared one
    assert p.X[0, 0] == ds.X_train[0, 0] and p.fingerprint == fp
    assert fp == kren.prepared.fingerprint(ds.X_train)
    assert arch.prepare(p) is p                     # prepared inputs pass through
    lcn = kren.Architecture("lcn", SHAPE, mask=2, stride=2)
    assert lcn.prepare(p) is p                      # same geometry, λ0, activation
    with pytest.raises(kren.InvalidDataError, match="prepared for a different architecture"):
        kren.Architecture("cnn", SHAPE, mask=4, stride=4).prepare(p)
    part = p.rows(10, 20)
    np.testing.assert_array_equal(part.patches, p.patches[:, 10:20])
    assert part.fingerprint != fp and part.fingerprint == p.rows(10, 20).fingerprint
    # every kernel function gives the same numbers from prepared and raw inputs
    X0 = ds.X_train
    eq = np.testing.assert_array_equal
    eq(kk.train_kernels(arch, p).blocks, kk.train_kernels(arch, X0).blocks)
    eq(kk.cross_kernels(arch, part, p), kk.cross_kernels(arch, X0[10:20], X0))
    eq(kk.test_diagonal(arch, part), kk.test_diagonal(arch, X0[10:20]))
    eq(arch.nngp_kernel(part, p), arch.nngp_kernel(X0[10:20], X0))


def test_sampled_network_takes_prepared_inputs(ds):
    pytest.importorskip("torch")
    arch = kren.Architecture("cnn", SHAPE, mask=2, stride=2)
    net = arch.network(7, seed=3)
    p = arch.prepare(ds.X_test)
    np.testing.assert_array_equal(net.forward(p).detach().numpy(),
                                  net.forward(ds.X_test).detach().numpy())
