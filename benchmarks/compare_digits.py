"""Done-when run of the theory-vs-sampling comparison (``kren compare``).

Digits 0 vs 1, P = 200 training and 100 test images (8×8, standardized), 2×2 mask with stride 2
(n = 16 patches), erf, λ0 = λ1 = 1, T = 0.1. CNN and LCN at N = 10 and 50; FC at N = 10, 50
and 400 (FC at N ≤ 50 is expected to disagree: the proportional-limit theory is a large-width
result). Sampler: MALA (Metropolis-adjusted Langevin, exact), η = 0.02, 4 chains × 40 000 steps,
burn-in 5 000, thinning 20, float32, one CPU thread.

    python benchmarks/compare_digits.py [--out DIR] [extra kren-compare flags]

Writes DIR/compare.json, table.md, compare.png, similarity.png (default
benchmarks/results/compare_digits) and prints the table with the total wall time.
"""
from __future__ import annotations

import sys
from pathlib import Path

from kren.compare import main

DEFAULT = ["--arch", "cnn", "lcn", "fc", "--N", "cnn:10,50", "lcn:10,50", "fc:10,50,400",
           "--classes", "0,1", "--P", "200", "--n-test", "100", "--mask", "2,2",
           "--stride", "2,2", "--activation", "erf", "--lambda0", "1", "--lambda1", "1",
           "--T", "0.1", "--steps", "40000", "--burn-in", "5000", "--thin", "20",
           "--chains", "4", "--step", "0.02", "--dtype", "float32", "--threads", "1",
           "--seed", "0", "--out", str(Path(__file__).parent / "results" / "compare_digits")]

if __name__ == "__main__":
    sys.exit(main(DEFAULT + sys.argv[1:]))
