"""Kernel reuse in a sweep (issue 12). Run: python benchmarks/bench_sweep.py [--repeat 3]
[--arch fc] [--P 1500] [--mask 2x2]

For each architecture: a 12-point sweep over the width N (∞ down to 2) at fixed data — digits
even vs odd, P training and 200 test images, erf, T = 0.1; LCN and CNN with --mask = stride —
against one fit at N = 50 including its kernels (train×train tensor and test×train blocks built
cold, then the test and training errors). Target: the sweep costs less than 2× the one fit.
Its points share what depends on neither N, T nor λ1 (THEORY §2): the kernel tensor and the
test×train kernels, each built once; each solve starts from the secant extrapolation in 1/N of
the two previous converged points (kren.sweeps.run.warm_start).

Default: FC at P = 1500. The FC (and pooled CNN) renormalized kernel is Q K/λ1 (plus the mean
term): one eigenbasis K = U diag(k) Uᵀ (O(P³), once) serves the solve (O(P) per evaluation),
the training error (O(P)) and the predictor (O(P) per test input once the projections
K(x0, X) U are made, once per sweep), so a point after the first costs O(P·P0) and no
factorization (kren.renormalized.posterior_moments_eig). One fit makes the same eigenbasis
and projections once. For the LCN and the CNN (``--arch lcn,cnn --P 500 --mask 4x4``) one fit
is mostly its solve (quasi-Newton with exact Hessians of the n or n(n+1)/2 order parameters,
several iterations at every N), so reusing the kernels cannot bring 12 points under 2× one
fit; the printout shows the kernel, solve and predict seconds per point to make that visible.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time

import kren
from kren.data import load_digits

NS = [math.inf, 5000.0, 2000.0, 1000.0, 500.0, 200.0, 100.0, 50.0, 20.0, 10.0, 5.0, 2.0]


def timed(fn, repeat):
    """(median wall seconds, wall seconds of every run, median CPU seconds of this process,
    all threads, from time.process_time, the last result)."""
    ts, cs, out = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        ts.append(time.perf_counter() - t)
        cs.append(time.process_time() - c)
    return statistics.median(ts), ts, statistics.median(cs), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--P", type=int, default=1500)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--arch", default="fc", help="comma-separated: fc, lcn, cnn")
    ap.add_argument("--mask", default="2x2", help="LCN/CNN mask = stride, e.g. 2x2 or 4x4")
    args = ap.parse_args(argv)
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ds = load_digits(classes="even-odd", n_train=args.P, n_test=args.n_test, seed=0)
    print(f"digits even vs odd, P = {args.P}, {args.n_test} test images, erf, T = 0.1; BLAS "
          f"threads {threads}; medians of {args.repeat}")
    ok = True
    for arch in args.arch.split(","):
        ok &= bench(arch.strip(), ds, args, threads)
    return 0 if ok else 1


def bench(arch, ds, args, threads):
    a, b = (int(v) for v in args.mask.split("x"))
    cls = {"fc": kren.FC, "lcn": kren.LCN, "cnn": kren.CNN}[arch]
    shape = dict(input_shape=(1, 8, 8))
    grid = {"arch": arch, "N": NS, "P": args.P, "T": 0.1}
    if arch != "fc":
        shape.update(mask=(a, b), stride=(a, b))
        grid.update(mask=args.mask, stride=args.mask)

    def one_fit():
        m = cls(N=50, T=0.1, **shape).fit(ds.X_train, ds.y_train)
        return m.test_error(ds.X_test, ds.y_test), m.train_error(), m.result_

    config = {"grid": grid, "data": {"classes": "even-odd", "n_test": args.n_test},
              "run": {"threads": threads}}

    def sweep():
        with tempfile.TemporaryDirectory() as d:
            return kren.sweep(config, os.path.join(d, "s"), progress=False, log=None)

    t_fit, ts_fit, c_fit, (err, _, res) = timed(one_fit, args.repeat)
    t_sweep, ts_sweep, c_sweep, out = timed(sweep, args.repeat)
    t = out.table
    n = "" if arch == "fc" else f", mask {args.mask} stride {args.mask}"
    print(f"{arch.upper()}{n}:")
    print(f"  one fit at N = 50, kernels included (+ test and train error): median {t_fit:.2f} s "
          f"(runs: {', '.join(f'{v:.2f}' for v in ts_fit)}; CPU {c_fit:.2f} s); solve "
          f"{res.seconds or 0:.2f} s, {res.n_iter} iterations, ε = {err.total:.4f}")
    print(f"  12-point sweep over N = {', '.join('∞' if math.isinf(N) else f'{N:g}' for N in NS)}: "
          f"median {t_sweep:.2f} s (runs: {', '.join(f'{v:.2f}' for v in ts_sweep)}; CPU "
          f"{c_sweep:.2f} s)")
    print(f"      kernel tensors built: {int(t['kernel_built'].sum())}; per point: kernel "
          f"{t['seconds_kernel'].sum():.2f} s, solve {t['seconds_solve'].sum():.2f} s, "
          f"predict {t['seconds_predict'].sum():.2f} s in all; iterations "
          f"{int(t['n_iter'].sum())} in all; all converged: {bool(t['converged'].all())}")
    row = t[t["N"] == 50.0].iloc[0]
    print(f"      N = 50 in the sweep: ε = {row['test_error']:.4f} (warm start, "
          f"{int(row['n_iter'])} iterations); iterations per point: "
          f"{', '.join(str(int(v)) for v in t['n_iter'])}")
    ratio = t_sweep / t_fit
    print(f"  sweep / one fit = {ratio:.2f} (CPU: {c_sweep / c_fit:.2f})  target < 2  "
          f"{'OK' if ratio < 2 else 'MISSED'}", flush=True)
    return ratio < 2


if __name__ == "__main__":
    raise SystemExit(main())
