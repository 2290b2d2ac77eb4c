"""Time and memory of the pooled-readout train block K_pool = (1/n²) Σ_ij K_ij (THEORY §3b).

Two ways to the same P×P block, on P standardized sklearn digits (8×8), CNN with a 2×2 mask and
stride 2 (n = 16 patches, 136 blocks i ≤ j), erf, float64:

- "accumulated": kren.pooling.pooled_train_kernel, a few blocks at a time into one accumulator
  (memory O(P²));
- "via tensor": kren.kernels.train_kernels (all n(n+1)/2 blocks held) followed by
  kren.generated.pool.pooled_kernel.

Prints the wall and process CPU times of each (one untimed warm-up, then ``--repeats``), the
largest difference between the two blocks, and the bytes each needs (the tensor's size against
the accumulator's). On a shared machine the wall time depends on the load; the CPU time
divided by the number of cores is the load-independent figure.

    python benchmarks/bench_pooled.py [--P 1000] [--repeats 3] [--mask 2] [--stride 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from sklearn.datasets import load_digits

from kren import Architecture
from kren.generated import pool as gpool
from kren.kernels import train_kernels
from kren.pooling import pooled_train_kernel


def standardized_digits(P: int) -> np.ndarray:
    X = load_digits().data[:P].astype(np.float64)
    if X.shape[0] < P:
        raise ValueError(f"sklearn digits has only {X.shape[0]} samples, asked for P = {P}")
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _time(fn, repeats):
    fn()
    walls, cpus = [], []
    out = None
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return out, walls, cpus


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--P", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mask", type=int, default=2)
    ap.add_argument("--stride", type=int, default=2)
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    X = standardized_digits(args.P)
    arch = Architecture("cnn", input_shape=(1, 8, 8), mask=args.mask, stride=args.stride,
                        readout="pool")
    n, P = arch.n, args.P
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    print(f"pooled train block, P = {P}, n = {n} patches ({n * (n + 1) // 2} blocks), "
          f"{cores} cores, load {os.getloadavg()[0]:.2f}")
    acc, w_acc, c_acc = _time(lambda: pooled_train_kernel(arch, X).blocks[0], args.repeats)

    def via_tensor():
        kt = train_kernels(arch, X)
        return gpool.pooled_kernel(kt.blocks, kt.pairs, kt.n)
    ten, w_ten, c_ten = _time(via_tensor, args.repeats)
    res = {"P": P, "n": n,
           "accumulated_wall_s": statistics.median(w_acc), "accumulated_cpu_s": min(c_acc),
           "tensor_wall_s": statistics.median(w_ten), "tensor_cpu_s": min(c_ten),
           "max_abs_diff": float(np.abs(acc - ten).max()),
           "tensor_bytes": n * (n + 1) // 2 * P * P * 8, "accumulator_bytes": P * P * 8}
    print(f"accumulated : wall {[round(w, 3) for w in w_acc]} s (median "
          f"{res['accumulated_wall_s']:.3f}), cpu {res['accumulated_cpu_s']:.3f} s")
    print(f"via tensor  : wall {[round(w, 3) for w in w_ten]} s (median "
          f"{res['tensor_wall_s']:.3f}), cpu {res['tensor_cpu_s']:.3f} s")
    print(f"max |difference| {res['max_abs_diff']:.2e}; tensor {res['tensor_bytes'] / 2**20:.0f} "
          f"MiB against an accumulator of {res['accumulator_bytes'] / 2**20:.1f} MiB")
    return res


if __name__ == "__main__":
    main()
