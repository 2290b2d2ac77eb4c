"""Explicit kernel caching (issue 8 item 6): no module-level caches; a KernelCache object that
the user owns, bounded in bytes, keyed by what the kernels depend on."""
import copy
import gc
import pickle
import tracemalloc
import weakref

import numpy as np
import pytest
from sklearn.base import clone

import kren
from kren.data import load_digits

SHAPE = (1, 8, 8)
LOC = dict(input_shape=SHAPE, mask=2, stride=2)


@pytest.fixture(scope="module")
def ds():
    return load_digits(classes="even-odd", n_train=60, n_test=40, seed=5)


def test_without_cache_nothing_outlives_the_call(ds):
    """predict builds 256 test×train blocks of 40×60 (4.9 MB); after it returns, less than
    0.5 MB more is allocated than before (nothing kept), and the train tensor dies with the
    estimator."""
    m = kren.CNN(N=10, T=0.1, **LOC).fit(ds.X_train, ds.y_train)
    m.predict(ds.X_test)                           # warm up lazy imports
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        m.predict(ds.X_test, return_var=True)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - before > 4_000_000               # the blocks were built ...
    assert after - before < 500_000                # ... and not kept
    ref = weakref.ref(m.kernels_)
    del m
    gc.collect()
    assert ref() is None


def test_fc_eigenbasis_is_shared_across_N_T_and_lambda1(ds):
    """FC's saddle point lives in the eigenbasis of K − μμᵀ, which depends on neither N, T nor
    λ1: with a cache it is computed once and the fits are the same numbers as without."""
    cache = kren.KernelCache(max_bytes=2**28)
    a = kren.FC(N=10, T=0.1, cache=cache, input_shape=SHAPE).fit(ds.X_train, ds.y_train)
    b = kren.FC(N=100, T=0.05, lambda1=2.0, cache=cache, input_shape=SHAPE).fit(ds.X_train,
                                                                                ds.y_train)
    assert cache.misses_by == {"train": 1, "train-eigenbasis": 1} and cache.hits == 2
    P = ds.X_train.shape[0]
    assert cache.nbytes >= (P * P + P) * 8 * 2         # the tensor and (k, U), both counted
    for m, kw in ((a, dict(N=10, T=0.1)), (b, dict(N=100, T=0.05, lambda1=2.0))):
        plain = kren.FC(input_shape=SHAPE, **kw).fit(ds.X_train, ds.y_train)
        assert m.Q_ == plain.Q_ and m.n_iter_ == plain.n_iter_
        np.testing.assert_array_equal(m.predict(ds.X_test), plain.predict(ds.X_test))


def test_cache_shares_kernels_across_N_T_and_lambda1(ds):
    cache = kren.KernelCache(max_bytes=2**28)
    a = kren.CNN(N=10, T=0.1, cache=cache, **LOC).fit(ds.X_train, ds.y_train)
    b = kren.CNN(N=100, T=0.05, lambda1=2.0, cache=cache, **LOC).fit(ds.X_train, ds.y_train)
    assert b.kernels_ is a.kernels_ and cache.hits == 1 and cache.misses == 1
    assert not a.kernels_.blocks.flags.writeable               # stored arrays are read-only
    c = kren.CNN(N=10, T=0.1, lambda0=2.0, cache=cache, **LOC).fit(ds.X_train, ds.y_train)
    assert c.kernels_ is not a.kernels_ and cache.misses == 2  # λ0 changes the kernels
    d = kren.LCN(N=10, T=0.1, cache=cache, **LOC).fit(ds.X_train, ds.y_train)
    assert d.kernels_.blocks.shape[0] == 16 and cache.misses == 3
    # predictions are the same numbers with and without the cache
    plain = kren.CNN(N=100, T=0.05, lambda1=2.0, **LOC).fit(ds.X_train, ds.y_train)
    for _ in range(2):
        np.testing.assert_array_equal(b.predict(ds.X_test, return_var=True),
                                      plain.predict(ds.X_test, return_var=True))
    hits = cache.hits
    a.predict(ds.X_test)                                       # same test×train blocks as b
    assert cache.hits == hits + 1


def test_cache_is_bounded_lru():
    cache = kren.KernelCache(max_bytes=3 * 800)
    build = lambda v: (lambda: np.full(100, float(v)))          # noqa: E731  800 bytes each
    for k in range(3):
        cache.get(("k", k), build(k))
    assert len(cache) == 3 and cache.nbytes == 2400
    cache.get(("k", 0), build(99))                              # hit: 0 becomes most recent
    assert cache.get(("k", 0), build(99))[0] == 0.0
    cache.get(("k", 3), build(3))                               # evicts 1, the least recent
    assert ("k", 1) not in cache and ("k", 0) in cache and cache.nbytes <= 2400
    big = cache.get(("big",), lambda: np.zeros(1000))           # larger than the bound: not kept
    assert big.shape == (1000,) and ("big",) not in cache
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0
    with pytest.raises(kren.InvalidParameterError, match="max_bytes"):
        kren.KernelCache(max_bytes=0)


def test_cache_is_shared_by_clones_never_copied(ds):
    cache = kren.KernelCache(max_bytes=2**26)
    m = kren.CNN(N=10, T=0.1, cache=cache, **LOC)
    assert clone(m).cache is cache
    assert copy.deepcopy(m).cache is cache and copy.copy(cache) is cache
    m.fit(ds.X_train, ds.y_train)
    assert len(cache) == 1
    restored = pickle.loads(pickle.dumps(cache))                # a worker process: empty
    assert len(restored) == 0 and restored.max_bytes == cache.max_bytes
