"""Speed of the train×train local kernel tensor (kren.kernels.train_kernels, THEORY §2).

Default problem: P = 1000 sklearn digits (8×8, standardized per pixel over those samples), CNN
with a 2×2 mask and stride 2 (n = 16 patches, so n(n+1)/2 = 136 blocks K_ij, i ≤ j, of P×P),
erf, float64: a 1.09 GB tensor.  Requirement: under 5 s on two cores.

One untimed warm-up build, then ``--repeats`` timed builds; prints every wall time, the median,
the process CPU times and the tensor size.  On a shared machine the wall time depends on the
load (printed); the CPU time divided by the number of cores is the load-independent figure.  Each tensor is released before the next build, so the peak memory is one tensor
plus the work space of the builder.

    python benchmarks/bench_kernels.py [--P 1000] [--repeats 5] [--mask 2] [--stride 2]
                                       [--activation erf] [--dtype float64]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
from sklearn.datasets import load_digits

from kren import Architecture
from kren.kernels import train_kernels


def standardized_digits(P: int) -> np.ndarray:
    """First P digits, each pixel shifted to mean 0 and scaled to variance 1 (constant pixels: 0)."""
    X = load_digits().data[:P].astype(np.float64)
    if X.shape[0] < P:
        raise ValueError(f"sklearn digits has only {X.shape[0]} samples, asked for P = {P}")
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--P", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--mask", type=int, default=2)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--activation", default="erf")
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")

    X = standardized_digits(args.P)
    arch = Architecture("cnn", input_shape=(1, 8, 8), mask=args.mask, stride=args.stride,
                        activation=args.activation)
    dtype = np.dtype(args.dtype)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    print(f"kren train_kernels benchmark  ({platform.processor() or platform.machine()}, "
          f"{cores} cores available, numpy {np.__version__})")
    print(f"P = {args.P}, input (1, 8, 8), mask {args.mask}, stride {args.stride}: n = {arch.n}, "
          f"M = {arch.M}, {len(arch.pairs)} blocks, activation {args.activation}, {dtype}")

    t0 = time.perf_counter()
    kt = train_kernels(arch, X, dtype=dtype)
    warm = time.perf_counter() - t0
    shape, nbytes = kt.blocks.shape, kt.nbytes
    # sanity: the diagonal blocks average to the NNGP kernel (THEORY §2)
    diag = kt.pairs[:, 0] == kt.pairs[:, 1]
    nngp = kt.blocks[diag].sum(axis=0, dtype=np.float64) / (arch.lambda1 * arch.n)
    dev = float(np.max(np.abs(nngp - arch.nngp_kernel(X))))
    del kt, nngp

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    times, cpu = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        kt = train_kernels(arch, X, dtype=dtype)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        del kt
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    med = statistics.median(times)
    print(f"tensor: shape {shape}, {nbytes / 2**30:.3f} GiB ({nbytes} bytes)")
    print(f"warm-up build: {warm:.3f} s (not counted); NNGP check max |dev| = {dev:.1e}")
    print("times (s): " + ", ".join(f"{t:.3f}" for t in times))
    print("process CPU times (s, all threads): " + ", ".join(f"{t:.3f}" for t in cpu))
    print(f"median: {med:.3f} s   min: {min(times):.3f} s   max: {max(times):.3f} s   "
          f"(requirement < 5 s on two cores: {'met' if med < 5 else 'NOT met'})")
    print(f"median CPU time / {cores} cores = {statistics.median(cpu) / cores:.3f} s (the wall time "
          f"an otherwise idle machine would approach); 1-min load average "
          f"{load_before:.2f} before, {load_after:.2f} after the timed builds")
    return {"times": times, "cpu_times": cpu, "median": med, "nbytes": nbytes, "shape": shape,
            "warmup": warm, "load": (load_before, load_after)}


if __name__ == "__main__":
    main()
