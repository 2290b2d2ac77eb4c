"""Accuracy, node counts and speed of the quadrature path of kren.activations (kren.quadrature).

Four measurements, printed as tables:

1. the calibrated rule of every variance octave 2^(j−1) < a ≤ 2^j: Gauss–Hermite nodes n (and
   how many survive pruning), Hermite terms K_s, whether the tolerance was reached;
2. the error of the tanh kernel against the independent reference of tests/nngp_reference.py
   (composite Gauss–Legendre in the eigenbasis of the covariance), per octave, over correlations
   ρ ∈ [−1, 1] including ±1 and 1 − 1e-6; the generic path for σ = erf against the erf closed
   form; relu through the generic path (non-smooth: algebraic convergence);
3. for comparison, the node count per axis that the plain two-dimensional tensor Gauss–Hermite
   rule (Cholesky coordinates h = √a u, h' = √b(ρu + √(1−ρ²)v), n² evaluations of σ per kernel
   entry) needs for 1e-10 on tanh;
4. the train×train kernel tensor on digits (CNN, 2×2 mask, stride 2) for erf (closed form) and
   tanh (quadrature), wall and CPU time.

    python benchmarks/bench_activation_quadrature.py [--P 500] [--max-var 32] [--skip-2d]

On a shared machine the times are noisy (the load average is printed); the accuracy figures
and node counts are deterministic.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.special import erf, roots_hermitenorm

from kren import Architecture, activations
from kren.kernels import train_kernels
from kren.quadrature import QuadratureWarning

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import nngp_reference as ref  # noqa: E402

RHOS = [-1.0, -1.0 + 1e-6, -0.9, -0.5, 0.0, 0.3, 0.7, 0.9, 0.99, 1.0 - 1e-6, 1.0]


def octave_table(act, max_var):
    print(f"\n1. calibrated rules of {act.name!r} (tol {act.expansion.tol:.0e})")
    print(f"{'octave':>16} {'nodes n':>8} {'kept':>6} {'terms K_s':>10} {'converged':>10} "
          f"{'calibration':>12}")
    for j in range(-10, int(math.ceil(math.log2(max_var))) + 1):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QuadratureWarning)
            lv = act.expansion.level(j)
        dt = time.perf_counter() - t0
        print(f"{f'{2.0 ** (j - 1):g} < a ≤ {2.0 ** j:g}':>16} {lv.n:>8} {lv.x.size:>6} "
              f"{lv.K:>10} {str(lv.converged):>10} {dt:>11.2f}s")


def accuracy(max_var):
    tanh = activations.get("tanh")
    print("\n2. error of the quadrature path (max over ρ ∈ [−1, 1] incl. ±1; a = b and a ≠ b)")
    print(f"{'variances':>22} {'tanh vs reference':>18} {'erf (generic) vs closed form':>30}")
    erf_q = activations.Activation.from_function(erf, "erf_q")
    vs = [2.0 ** k for k in range(-6, int(math.log2(max_var)) + 1)]
    for v in vs:
        worst_t = worst_e = 0.0
        for a, b in ((v, v), (v, 0.3 * v), (v, 1.0)):
            for r in RHOS:
                c = r * math.sqrt(a * b)
                kt = float(tanh.kernel(c, a, b))
                worst_t = max(worst_t, abs(kt - ref.gaussian_double_integral(np.tanh, c, a, b)))
                worst_e = max(worst_e, abs(float(erf_q.kernel(c, a, b))
                                           - float(ref.kernel_erf(c, a, b))))
        print(f"{f'a = {v:g} (b = a, 0.3a, 1)':>22} {worst_t:>18.1e} {worst_e:>30.1e}")
    relu_q = activations.Activation.from_function(lambda h: np.maximum(h, 0.0), "relu_q")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always", QuadratureWarning)
        c = np.array(RHOS)
        err = np.max(np.abs(relu_q.kernel(c, 1.0, 1.0) - activations.get("relu").kernel(c, 1, 1)))
    print(f"relu through the generic path, a = b = 1: max error {err:.1e} "
          f"({len(w)} QuadratureWarning: {str(w[0].message)[:90] if w else ''}…)")


def gh2d(f, c, a, b, n):
    x, w = roots_hermitenorm(n)
    w = w / math.sqrt(2 * math.pi)
    keep = w >= 1e-34
    x, w = x[keep], w[keep]
    rho = c / math.sqrt(a * b) if a * b > 0 else 0.0
    s = math.sqrt(max(1.0 - rho * rho, 0.0))
    f1 = f(math.sqrt(a) * x)
    f2 = f(math.sqrt(b) * (rho * x[:, None] + s * x[None, :]))
    return float(w @ (f1[:, None] * f2) @ w)


def tensor_rule(max_var):
    print("\n3. plain 2D tensor Gauss–Hermite rule on tanh: nodes per axis for |error| ≤ 1e-10 "
          "(ρ ∈ {0.5, 0.9, 0.99, 1}, a = b)")
    seq = [32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096]
    for v in [0.25, 1.0, 4.0, 16.0]:
        if v > max_var:
            break
        need = 0
        for r in (0.5, 0.9, 0.99, 1.0):
            c = r * v
            exact = ref.gaussian_double_integral(np.tanh, c, v, v)
            n_ok = next((n for n in seq if abs(gh2d(np.tanh, c, v, v, n) - exact) <= 1e-10), None)
            need = max(need, n_ok or 10**9)
        x, w = roots_hermitenorm(need) if need < 10**9 else (None, None)
        kept = int(np.sum(w / math.sqrt(2 * math.pi) >= 1e-34)) if w is not None else 0
        lv = activations.get("tanh").expansion.level(int(math.ceil(math.log2(v))))
        print(f"  a = {v:>5g}: n = {need if need < 10**9 else '> 4096'} nodes per axis "
              f"({kept}² = {kept ** 2} σ evaluations per kernel entry after pruning); "
              f"Mehler: ≤ {lv.K} multiply-adds per entry, coefficients once per variance")


def digits(P):
    from sklearn.datasets import load_digits
    X = load_digits().data[:P].astype(np.float64)
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def timing(P):
    from sklearn.datasets import load_digits
    print(f"\n4. train×train kernel tensor, digits P = {P}, CNN 2×2 mask stride 2 (136 blocks), "
          f"float64; load average {os.getloadavg()[0]:.2f}")
    for label, X in (("pixels standardized (as bench_kernels.py)", digits(P)),
                     ("pixels / 16 (values in [0, 1])", load_digits().data[:P] / 16.0)):
        print(f"  {label}:")
        _timing(X)


def _timing(X):
    out = {}
    for name in ("erf", "tanh"):
        arch = Architecture("cnn", input_shape=(1, 8, 8), mask=2, stride=2, activation=name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QuadratureWarning)
            # calibrate the variance octaves of these data outside the timing (once per σ)
            var = np.einsum("pim,pim->ip", *(2 * [arch.geometry.patches(X)])) / arch.M
            arch.act.tabulate(var.ravel())
            t0, c0 = time.perf_counter(), time.process_time()
            kt = train_kernels(arch, X)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        out[name] = wall
        print(f"    {name:>5}: {wall:7.2f} s wall, {cpu:7.2f} s CPU (patch variances: median "
              f"{np.median(kt.var):.2f}, 99th percentile {np.percentile(kt.var, 99):.1f}, "
              f"largest {kt.var.max():.1f})")
    print(f"    tanh / erf = {out['tanh'] / out['erf']:.1f} (wall)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--P", type=int, default=500)
    ap.add_argument("--max-var", type=float, default=32.0)
    ap.add_argument("--skip-2d", action="store_true", help="skip table 3 (the slowest)")
    args = ap.parse_args(argv)
    octave_table(activations.get("tanh"), args.max_var)
    accuracy(args.max_var)
    if not args.skip_2d:
        tensor_rule(args.max_var)
    timing(args.P)


if __name__ == "__main__":
    main()
