"""Solver speed (issue: solvers and predictor, item 5). Run: python benchmarks/bench_solver.py

1. CNN fit on digits even vs odd, P = 1000, 2×2 mask stride 2 (n = 16), erf, N = 50, T = 0.1,
   kernels included (target: < 5 s on two cores);
2. each solver iteration against the floor: one Cholesky of the P×P matrix A plus one pass over
   the kernel tensor (K_R = Σ_ij Q_ij K_ij), timed in the same run (target: within 3×);
3. the hard case: even vs odd, P = 300, T = 0.01, N = 5, FC / LCN / CNN (target: < 5 s);
4. issue 9: relu CNN, even vs odd, P = 200, N = 20, T = 1e-3 (Anderson alone diverges; Newton
   with the Hessian of the (Q, Q̄) saddle converges), and 50 digits each twice at T = 1e-10
   (LCN: float64 cannot reach tol; evaluations and seconds until the solver stops and says so).
Medians over --repeat runs (no kernel cache: every fit builds its kernels).
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

import kren
from kren.data import load_digits
from kren.linalg import cho_factor, pair_combine


def timed(fn, repeat):
    ts, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), ts, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    shape = dict(input_shape=(1, 8, 8), mask=(2, 2), stride=(2, 2))

    ds = load_digits(classes="even-odd", n_train=1000, n_test=10, seed=0)

    def fit():
        return kren.CNN(N=50, T=0.1, **shape).fit(ds.X_train, ds.y_train)

    med, ts, m = timed(fit, args.repeat)
    r = m.result_
    print("[1] CNN fit, P = 1000, n = 16, erf, N = 50, T = 0.1 (kernels included)")
    print(f"    median {med:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in ts)})  target < 5 s")
    print(f"    solver: {r.method}, {r.n_iter} iterations, {r.n_eval} evaluations, "
          f"rel. gradient {r.rel_grad_norm:.1e}, solve {r.seconds:.2f} s")

    kt = m.kernels_
    A = m.K_R_ + 0.1 * np.eye(1000)
    chol, _, _ = timed(lambda: cho_factor(A), args.repeat)
    npass, _, _ = timed(lambda: pair_combine(m.Q_, kt.blocks, kt.pairs), args.repeat)
    floor = chol + npass
    per_iter = r.seconds / max(r.n_eval, 1)
    print(f"[2] floor: Cholesky {chol * 1e3:.1f} ms + one pass over the tensor "
          f"({kt.nbytes / 2**20:.0f} MiB) {npass * 1e3:.1f} ms = {floor * 1e3:.1f} ms")
    print(f"    solver iteration (last fit): {per_iter * 1e3:.1f} ms = {per_iter / floor:.2f}× the "
          f"floor  target ≤ 3×")

    hard = load_digits(classes="even-odd", n_train=300, n_test=10, seed=0)
    print("[3] hard case: even vs odd, P = 300, T = 0.01, N = 5 (kernels included)")
    for cls in (kren.FC, kren.LCN, kren.CNN):
        kw = {} if cls is kren.FC else shape

        def fit_hard():
            return cls(N=5, T=0.01, **kw).fit(hard.X_train, hard.y_train)

        med, ts, mh = timed(fit_hard, args.repeat)
        r = mh.result_
        print(f"    {cls.__name__:4s} median {med:.2f} s (runs: {', '.join(f'{t:.2f}' for t in ts)})"
              f"  converged={r.converged} iterations={r.n_iter} ({r.method})  target < 5 s")

    print("[4] issue 9 (kernels included)")
    relu = load_digits(classes="even-odd", n_train=200, n_test=10, seed=0)
    pair = load_digits(classes=(0, 1), n_train=50, n_test=10, seed=0)
    dup_X = np.concatenate([pair.X_train, pair.X_train])
    dup_y = np.concatenate([pair.y_train, pair.y_train])
    cases = [("relu CNN, P = 200, N = 20, T = 1e-3", relu.X_train, relu.y_train,
              lambda: kren.CNN(N=20, T=1e-3, activation="relu", **shape)),
             ("LCN, duplicated points, T = 1e-10", dup_X, dup_y,
              lambda: kren.LCN(N=10, T=1e-10, **shape))]
    for name, X, y, make in cases:
        def fit_case():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", kren.ConvergenceWarning)
                return make().fit(X, y)

        med, ts, mc = timed(fit_case, args.repeat)
        r = mc.result_
        print(f"    {name}: median {med:.2f} s (runs: {', '.join(f'{t:.2f}' for t in ts)}) "
              f"converged={r.converged} iterations={r.n_iter} evaluations={r.n_eval} "
              f"({r.method})")
        if not r.converged:
            print(f"      {r.message}")


if __name__ == "__main__":
    main()
