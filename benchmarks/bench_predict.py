"""Predict against its floor (issue 8). Run: python benchmarks/bench_predict.py

Digits even vs odd, P = 500 training and 500 test images, CNN 2×2 mask stride 2 (n = 16), erf,
N = 50, T = 0.1. In one run:

1. predict on the 500 test points with mean and variance (median and spread of --repeat runs);
2. the floor: the test×train kernel tensor K_ij(x0, x) alone (n² = 256 blocks of 500×500,
   ``arch.cross_tensor`` on inputs prepared beforehand), median of --repeat runs, built at once
   and built in the chunks predict uses (everything else predict does is the difference);
3. the ratio predict / floor (target ≤ 1.3×);
4. how often each input set is validated (``PatchGeometry.check_data``), cut into patches
   (``PatchGeometry.patches``) and hashed (``kren.prepared.fingerprint``) during one predict,
   and how many Cholesky factorizations the generated code makes (target: validated and cut
   once, the training set never re-hashed, no factorization of 𝟙 + Q̄ for erf).

``--chunk-sweep`` also times predict for several chunk sizes (kren.renormalized.CHUNK_BYTES).
Timings on a shared machine are noisy: compare ratios measured in the same run.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from unittest import mock

import numpy as np

import kren
import kren.generated.cnn as gen_cnn
import kren.prepared
import kren.renormalized
from kren.data import load_digits
from kren.geometry import PatchGeometry


def timed(fn, repeat):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return ts


def count_calls(fn):
    """Run fn() with counting wrappers; returns {what: Counter(name of the input set)}."""
    counts = {"validated": Counter(), "patched": Counter(), "hashed": Counter(),
              "cholesky (generated)": Counter()}
    orig_check, orig_patches = PatchGeometry.check_data, PatchGeometry.patches
    orig_fp, orig_cho = kren.prepared.fingerprint, gen_cnn.cho_factor

    def check_data(self, X, name="X"):
        counts["validated"][f"{name} ({np.shape(X)[0]} rows)"] += 1
        return orig_check(self, X, name)

    def patches(self, X):
        counts["patched"][f"{np.shape(X)[0]} rows"] += 1
        return orig_patches(self, X)

    def fp(*arrays):
        counts["hashed"][f"{np.shape(arrays[0])[0]} rows"] += 1
        return orig_fp(*arrays)

    def cho(A, what="matrix"):
        counts["cholesky (generated)"][what] += 1
        return orig_cho(A, what)

    with mock.patch.object(PatchGeometry, "check_data", check_data), \
            mock.patch.object(PatchGeometry, "patches", patches), \
            mock.patch.object(kren.prepared, "fingerprint", fp), \
            mock.patch.object(gen_cnn, "cho_factor", cho):
        fn()
    return counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--chunk-sweep", action="store_true")
    args = ap.parse_args(argv)

    ds = load_digits(classes="even-odd", n_train=500, n_test=500, seed=0)
    m = kren.CNN(N=50, T=0.1, input_shape=(1, 8, 8), mask=(2, 2), stride=(2, 2))
    m.fit(ds.X_train, ds.y_train)
    fit = m.fit_
    print(f"CNN 2×2/2 (n = {fit.arch.n}), erf, N = 50, T = 0.1, digits even/odd: "
          f"P = {fit.P} train, {len(ds.X_test)} test; fit converged: {fit.result.converged}")

    predict = lambda: m.predict(ds.X_test, return_var=True)          # noqa: E731
    predict()                                                          # warm-up
    tp = timed(predict, args.repeat)
    prep_test = fit.arch.prepare(ds.X_test, "X_test")
    prep_test.patches                                                  # noqa: B018 - cut now
    floor = lambda: fit.arch.cross_tensor(prep_test, fit.train)       # noqa: E731
    floor()
    tf = timed(floor, args.repeat)
    rows = fit.kernel().chunk_rows(fit.arch, fit.P)

    def floor_chunked():                  # the same tensor, built in predict's chunks
        for _, part in prep_test.chunks(rows):
            fit.arch.cross_tensor(part, fit.train)

    tc = timed(floor_chunked, args.repeat)
    mp, mf, mc = statistics.median(tp), statistics.median(tf), statistics.median(tc)
    print(f"[1] predict (mean and variance, 500 test points): median {mp * 1e3:.1f} ms, "
          f"mean {statistics.mean(tp) * 1e3:.1f} ± {statistics.pstdev(tp) * 1e3:.1f} ms "
          f"(runs: {', '.join(f'{t * 1e3:.0f}' for t in tp)})")
    print(f"[2] floor, test×train tensor alone ({fit.arch.n ** 2} blocks of 500×500, "
          f"{fit.arch.n ** 2 * 500 * 500 * 8 / 2 ** 20:.0f} MiB): median {mf * 1e3:.1f} ms "
          f"(runs: {', '.join(f'{t * 1e3:.0f}' for t in tf)})")
    print(f"    the same tensor built in predict's chunks of {rows} rows: median "
          f"{mc * 1e3:.1f} ms (runs: {', '.join(f'{t * 1e3:.0f}' for t in tc)})")
    print(f"[3] predict / floor = {mp / mf:.2f}×  (target ≤ 1.3×); predict / chunked floor = "
          f"{mp / mc:.2f}×  (chunks of {kren.renormalized.CHUNK_BYTES / 2 ** 20:.0f} MiB)")

    counts = count_calls(predict)
    print("[4] during one predict (target: X validated and patched once, training set not "
          "re-hashed, no Cholesky of 1 + Qbar for erf):")
    for what, c in counts.items():
        print(f"    {what:22s} {dict(c) if c else 'never'}")

    if args.chunk_sweep:
        print("[5] chunk size sweep (median predict / median floor of this run):")
        saved = kren.renormalized.CHUNK_BYTES
        try:
            for mib in (4, 8, 16, 32, 64, 128, 512):
                kren.renormalized.CHUNK_BYTES = mib * 2 ** 20
                predict()
                t = statistics.median(timed(predict, args.repeat))
                print(f"    {mib:4d} MiB: {t * 1e3:7.1f} ms  {t / mf:.2f}×")
        finally:
            kren.renormalized.CHUNK_BYTES = saved


if __name__ == "__main__":
    main()
