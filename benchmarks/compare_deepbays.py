"""Nested-form saddle points against deepbays' ``FC_deep`` (when deepbays is installed).

    pip install deepbays==0.1.11        # not a kren dependency
    python benchmarks/compare_deepbays.py

Digits 0 vs 1 and even/odd (P = 200, kren.data.load_digits), erf, T = 0.1, L = 2 and 3,
N = 50, 200, 800, every prior 1. kren's nested action is solved by kren.DeepFC(form="nested")
(the kren.saddle driver) at deepbays' effective temperature float32(T) (see "Reproducing
deepbays" in derivations.deep); the table gives both solutions, their largest difference and
deepbays' own gradient at kren's solution, with the product form's Q for comparison. deepbays 0.1.11 imports cupy in ``deepbays.kernels`` and optional packages in its
``__init__``; only ``deepbays.rkgp.theory_deep_FC`` is loaded here, with an empty stand-in for
cupy when it is missing (its CUDA kernels are not used).
"""
from __future__ import annotations

import importlib.util
import sys
import time
import types
from pathlib import Path

import numpy as np



def load_fc_deep():
    spec = importlib.util.find_spec("deepbays")
    if spec is None:
        raise SystemExit("deepbays is not installed (pip install deepbays==0.1.11)")
    base = Path(spec.submodule_search_locations[0])
    for name, path in (("deepbays", base), ("deepbays.rkgp", base / "rkgp")):
        mod = types.ModuleType(name)
        mod.__path__ = [str(path)]
        sys.modules[name] = mod
    if importlib.util.find_spec("cupy") is None:
        sys.modules["cupy"] = types.ModuleType("cupy")
    from deepbays.rkgp.theory_deep_FC import FC_deep
    return FC_deep


def main():
    import torch

    import kren
    from kren.data import load_digits
    FC_deep = load_fc_deep()
    T = 0.1
    T32 = float(np.float32(T))
    print(f"{'task':9} {'L':>2} {'N':>4}  {'deepbays optQ':38} {'kren nested Q':38} "
          f"{'max|dQ|':>8} {'|grad_db|':>9}  {'product Q':>9}  t_db   t_kren")
    for task, classes in (("0 vs 1", (0, 1)), ("even/odd", ((0, 2, 4, 6, 8), (1, 3, 5, 7, 9)))):
        d = load_digits(classes=classes, n_train=200, seed=0)
        X, y = d.X_train, d.y_train
        for L in (2, 3):
            priors = [1.0] * (L + 1)
            for N in (50, 200, 800):
                m = FC_deep(L, N, T, priors=priors, act="erf")
                m.preprocess(X, torch.tensor(y))
                t0 = time.perf_counter()
                m.optimize()
                t_db = time.perf_counter() - t0
                t0 = time.perf_counter()
                kw = dict(L=L, N=N, T=T32, lambda0=priors[0], lambdas=priors[1:], tol=1e-12)
                Q = kren.DeepFC(form="nested", **kw).fit(X, y).Q_
                t_k = time.perf_counter() - t0
                Qp = kren.DeepFC(form="product", **kw).fit(X, y).Q_
                gdb = np.abs(m.computeActionGrad(Q)).max()
                print(f"{task:9} {L:>2} {N:>4}  {np.array2string(m.optQ, precision=8):38} "
                      f"{np.array2string(Q, precision=8):38} {np.abs(Q - m.optQ).max():8.1e} "
                      f"{gdb:9.1e}  {Qp[0]:9.6f}  {t_db:5.2f}  {t_k:5.2f}")


if __name__ == "__main__":
    main()
