"""MALA acceptance at width 800 after the run: float64-accumulated log α (kren.sampling.langevin.
mala_log_ratio, committed after benchmarks/deep_vs_sampled.py ran) against the float32 totals the
run used. Even/odd digits, P = 200, L = 2 and 3, erf, T = 0.1, 2 chains from the prior (seed 0),
60 steps from the prior draw at η = 3/h_max and at the η the run's pilot ended with.

    python benchmarks/results/deep_vs_sampled/acceptance_check.py
"""
import json
import time

import torch

import kren
from kren.data import load_digits
from kren.sampling import LangevinSampler, suggest_step_size

torch.set_num_threads(1)
d = load_digits(classes="even-odd", n_train=200, n_test=160, seed=0)
out = []
for L, eta_run in ((2, 0.0319), (3, 0.0073)):
    arch = kren.DeepArchitecture(L, 64, activation="erf")
    eta0 = suggest_step_size(arch, 800, d.X_train, 0.1, fraction=3.0, seed=0, chains=2)
    for eta in (eta0, eta_run):
        s = LangevinSampler(arch, 800, 0.1, eta, chains=2, dtype=torch.float32, seed=0,
                            metropolis=True, readout="integrated")
        t = time.perf_counter()
        r = s.run(d.X_train, d.y_train, steps=60, burn_in=0, thin=60)
        row = {"L": L, "N": 800, "eta": eta, "acceptance": float(r.acceptance.mean()),
               "seconds": time.perf_counter() - t}
        print(row, flush=True)
        out.append(row)
json.dump(out, open(__file__.replace(".py", ".json"), "w"), indent=1)
