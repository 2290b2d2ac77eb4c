"""D outputs on 10-class digits (issue 10; THEORY §3c): P = 500 standardized sklearn digits
(``kren.data.load_digits(classes="all", one_hot=True)``, targets ±1), T = 0.1, erf.

1. FC, D = 10, N = 50: kren's solve (joint eigenbasis of Q and K), its wall time, and the
   largest entry difference of its 10×10 Q from the independent solver of
   tests/multi_reference.py (the action minimized in the eigenbasis of K alone, BFGS + Newton;
   kernel from tests/nngp_reference.py), with the independent gradient at kren's Q.
2. CNN, 2×2 mask, stride 2 (n = 16 patches), D = 10, N = 50: Q of size 160×160 on the
   (DP)×(DP) = 5000×5000 matrix A; wall time of ``CNN.fit`` (kernel tensor included) and of the
   solve alone (tensor precomputed), medians over ``--repeats``; iterations and evaluations of
   the fit (a float32 Anderson stage, then float64: kren.saddle.float32_stage).

On a shared machine the wall times depend on the load (printed with the load average); the
process CPU time of the CNN fit (all threads) is printed beside it.

    python benchmarks/bench_multi_output.py [--P 500] [--N 50] [--repeats 1] [--only fc|cnn]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import kren
from kren.data import load_digits
from kren.estimators.solve import solve_saddle

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from multi_reference import FCMultiAction, solve_fc_multi  # noqa: E402
from nngp_reference import nngp_fc  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--P", type=int, default=500)
    ap.add_argument("--N", type=float, default=50.0)
    ap.add_argument("--T", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["fc", "cnn"], default=None, help="run one part only")
    a = ap.parse_args(argv)
    ds = load_digits(classes="all", n_train=a.P, n_test=200, seed=a.seed, one_hot=True)
    X, Y = ds.X_train, ds.y_train
    print(f"10-class digits: P = {a.P}, D = {Y.shape[1]}, T = {a.T}, N = {a.N}, erf; "
          f"cpus = {os.cpu_count()}, load average = {os.getloadavg()}")

    if a.only != "cnn":
        bench_fc(a, ds)
    if a.only != "fc":
        bench_cnn(a, ds)
    print(f"load average after: {os.getloadavg()}")
    return 0


def bench_fc(a, ds):
    """Part 1 of the module docstring."""
    X, Y = ds.X_train, ds.y_train
    times = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        fc = kren.FC(N=a.N, T=a.T, tol=1e-11).fit(X, Y)
        times.append(time.perf_counter() - t)
    print(f"FC  D=10: fit {statistics.median(times):.3f} s (median of {a.repeats}), "
          f"converged = {fc.result_.converged}, iterations = {fc.result_.n_iter}")
    t = time.perf_counter()
    K = nngp_fc(X, X)
    Q_ref, g_ref = solve_fc_multi(K, Y, a.T, a.N)
    t_ref = time.perf_counter() - t
    diff = float(np.max(np.abs(fc.Q_ - Q_ref)))
    g_kren = float(np.max(np.abs(FCMultiAction(K, Y, a.T, a.N).gradient(fc.Q_))))
    print(f"    independent solver ({t_ref:.2f} s): max|Q_kren − Q_ref| = {diff:.2e} "
          f"(goal < 1e-6: {'PASS' if diff < 1e-6 else 'FAIL'}); independent max|∂S/∂Q| at "
          f"kren's Q = {g_kren:.2e}, at its own = {g_ref:.2e}")
    ev = np.linalg.eigvalsh(fc.Q_)
    print(f"    eigenvalues of Q: {np.array2string(ev, precision=4)}")
    print(f"    test error (D-averaged) = {fc.test_error(ds.X_test, ds.y_test).total:.4f}, "
          f"accuracy = {np.mean(np.argmax(fc.predict(ds.X_test), 1) == np.argmax(ds.y_test, 1)):.3f}")



def bench_cnn(a, ds):
    """Part 2 of the module docstring: CNN 2×2/2, n = 16, Q 160×160."""
    X, Y = ds.X_train, ds.y_train
    times, solve_times, cpu = [], [], []
    for _ in range(a.repeats):
        t, c = time.perf_counter(), time.process_time()
        cnn = kren.CNN(N=a.N, T=a.T, mask=(2, 2), stride=2, input_shape=(1, 8, 8)).fit(X, Y)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        t = time.perf_counter()
        sol = solve_saddle(cnn.arch_, cnn.kernels_, Y, T=a.T, N=a.N, tol=float(cnn.tol),
                           max_iter=int(cnn.max_iter), memory_budget=None)
        solve_times.append(time.perf_counter() - t)
    fit_t, solve_t = statistics.median(times), statistics.median(solve_times)
    print(f"CNN 2x2/2 n={cnn.n_} D=10: Q {cnn.n_ * 10}x{cnn.n_ * 10}, A {10 * a.P}x{10 * a.P}: "
          f"fit {fit_t:.1f} s, solve alone {solve_t:.1f} s (medians of {a.repeats}; goal fit "
          f"< 60 s on two cores: {'PASS' if fit_t < 60 else 'FAIL'}; process CPU time of the fit "
          f"{statistics.median(cpu):.1f} s), converged = "
          f"{cnn.result_.converged}, iterations = {cnn.result_.n_iter}, evaluations = "
          f"{cnn.result_.n_eval}, method = "
          f"{cnn.result_.method}; same Q twice: max diff {np.max(np.abs(np.reshape(sol.Q, cnn.Q_.shape) - cnn.Q_)):.1e}")
    print(f"    test error (D-averaged) = {cnn.test_error(ds.X_test, ds.y_test).total:.4f}, "
          f"accuracy = {np.mean(np.argmax(cnn.predict(ds.X_test), 1) == np.argmax(ds.y_test, 1)):.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
