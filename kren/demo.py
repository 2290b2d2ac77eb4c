"""``kren demo``: FC, LCN and CNN on the embedded digits across widths (the main job).

Even vs odd handwritten digits (scikit-learn's 8×8 set), P = 500 training images, all three
architectures (CNN and LCN with a 2×2 mask, stride 2: n = 16 patches) from α = P/N ≫ 1 to the
infinite-width limit N = ∞. For each (architecture, N): the saddle point, the test error and its
bias²/variance split (THEORY §4). Widths are swept downward from N = ∞ and each solve starts
from the Q of the previous width (continuation). One :class:`kren.cache.KernelCache`, owned by
the run, shares each architecture's train×train and test×train kernels across the widths.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from . import data as _data
from .cache import KernelCache
from .estimators import CNN, FC, LCN

DEFAULT_NS = (float("inf"), 1000, 100, 30, 10, 5)


def run_demo(out="kren-output", P=500, n_test=500, Ns=DEFAULT_NS, T=0.1, lambda0=1.0,
             lambda1=1.0, activation="erf", seed=0, quiet=False, plots=True):
    """Run the sweep; returns a dict with the table rows and the paths written."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = _data.load_digits(classes="even-odd", n_train=P, n_test=n_test, seed=seed)
    cache = KernelCache()                 # the kernels do not depend on N: built once per arch
    common = dict(T=T, lambda0=lambda0, lambda1=lambda1, activation=activation, cache=cache)
    local = dict(input_shape=ds.input_shape, mask=(2, 2), stride=(2, 2))
    makers = {"FC": lambda N: FC(N=N, **common),
              "LCN": lambda N: LCN(N=N, **common, **local),
              "CNN": lambda N: CNN(N=N, **common, **local)}
    Ns = sorted(Ns, key=lambda N: -N)
    rows, fits = [], {}
    bar = tqdm(total=len(Ns) * len(makers), disable=quiet, desc="kren demo", unit="fit")
    for arch, make in makers.items():
        Q_prev = None
        for N in Ns:
            bar.set_postfix_str(f"{arch} N={N:g}")
            m = make(N).fit(ds.X_train, ds.y_train, Q0=Q_prev)
            err = m.test_error(ds.X_test, ds.y_test)
            Q_prev = m.Q_                 # continuation: warm start for the next, smaller N
            rows.append({"arch": arch, "N": N, "alpha": P / N, "test_error": err.total,
                         "bias2": err.bias2, "variance": err.variance,
                         "train_error": m.train_error(), "converged": m.result_.converged,
                         "n_iter": m.result_.n_iter,
                         "Q_summary": float(np.mean(np.diag(np.atleast_2d(m.Q_))))})
            fits[(arch, N)] = m
            bar.update(1)
    bar.close()
    paths = {}
    if plots:
        from .plotting import plot_Q, plot_test_error
        paths["test_error"] = str(plot_test_error(
            rows, out / "test_error_vs_N.png", P=P,
            title=f"digits even vs odd, P = {P}, T = {T}, {activation}; 2×2 mask, stride 2"))
        N_show = min(N for N in Ns if math.isfinite(N) and P / N >= 5) if any(
            math.isfinite(N) and P / N >= 5 for N in Ns) else min(Ns)
        cnn = fits[("CNN", N_show)]
        paths["Q"] = str(plot_Q(cnn.Q_, cnn.patch_importance(), out / "cnn_Q.png",
                                title=f"CNN order parameter at N = {N_show:g} (α = {P / N_show:g})"))
    result = {"task": "digits even vs odd", "P": P, "n_test": n_test, "T": T,
              "lambda0": lambda0, "lambda1": lambda1, "activation": activation, "seed": seed,
              "mask": [2, 2], "stride": [2, 2], "rows": rows,
              "data_fingerprint": ds.fingerprint(), "seconds": time.perf_counter() - t0}
    paths["json"] = str(out / "demo.json")
    Path(paths["json"]).write_text(json.dumps(result, indent=1, default=str))
    result["paths"] = paths
    return result


def format_table(rows) -> str:
    """The demo's table: N, α and test error, bias², variance per architecture."""
    archs = [a for a in ("FC", "LCN", "CNN") if any(r["arch"] == a for r in rows)]
    Ns = sorted({r["N"] for r in rows}, key=lambda N: -N)
    head = f"{'N':>6} {'alpha':>7} | " + " | ".join(f"{a:^26}" for a in archs)
    sub = f"{'':>6} {'':>7} | " + " | ".join(f"{'error':>8} {'bias2':>8} {'var':>8}" for _ in archs)
    lines = [head, sub, "-" * len(head)]
    for N in Ns:
        cells = []
        for a in archs:
            r = next(r for r in rows if r["arch"] == a and r["N"] == N)
            flag = "" if r["converged"] else "!"
            cells.append(f"{r['test_error']:8.4f} {r['bias2']:8.4f} {r['variance']:8.4f}{flag}")
        alpha = next(r["alpha"] for r in rows if r["N"] == N)
        label = "inf" if not math.isfinite(N) else f"{N:g}"
        lines.append(f"{label:>6} {alpha:7.2f} | " + " | ".join(cells))
    return "\n".join(lines)
