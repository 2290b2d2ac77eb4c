"""``kren demo``: FC, LCN and CNN on the embedded digits across widths (the main job).

Even vs odd handwritten digits (scikit-learn's 8×8 set), P = 500 training images, all three
architectures (CNN and LCN with a 2×2 mask, stride 2: n = 16 patches) from α = P/N ≫ 1 to the
infinite-width limit N = ∞, and beside them the control experiment of THEORY §3b: the same CNN
with a pooled readout ("CNN-pool"), whose weight sharing renormalizes the kernel globally by one
scalar Q, like the FC, while the local readout's n×n Q renormalizes it patch by patch. For each (architecture, N): the saddle point, the test error and its
bias²/variance split (THEORY §4). Widths are swept downward from N = ∞ and each solve starts
from the Q of the previous width (continuation). One :class:`kren.cache.KernelCache`, owned by
the run, shares each architecture's train×train and test×train kernels across the widths.
"""
from __future__ import annotations

import json
import math
import time
import warnings

import numpy as np

from . import data as _data
from .cache import KernelCache
from .estimators import CNN, FC, LCN

DEFAULT_NS = (float("inf"), 1000, 100, 30, 10, 5)
#: The demo's architectures in table order ("CNN-pool": the CNN with the pooled readout).
ARCHS = ("FC", "LCN", "CNN", "CNN-pool")
#: What ``kren demo`` runs unless ``--archs`` says otherwise.
DEFAULT_ARCHS = ("FC", "LCN", "CNN")


def run_demo(out="kren-output", P=500, n_test=500, Ns=DEFAULT_NS, T=0.1, lambda0=1.0,
             lambda1=1.0, activation="erf", seed=0, quiet=False, plots=True, max_iter=1000,
             archs=DEFAULT_ARCHS):
    """Run the sweep; returns a dict with the table rows and the paths written.

    The output folder is checked (created if needed, writable, not in use by another run)
    before anything is computed, and the outputs are written together at the end
    (:class:`kren.outputs.RunFolder`): an interrupted or failed run leaves the previous outputs
    intact and says so in ``status.json``. A fit that does not converge, or fails, is a marked
    row (``converged`` False, ``message``), never a traceback. ``archs`` picks among
    :data:`ARCHS` ("CNN-pool" adds the pooled-readout CNN beside the local one).
    """
    from tqdm.auto import tqdm

    from .outputs import RunFolder

    archs = _check_archs(archs)
    config = {"archs": list(archs), "P": P, "n_test": n_test, "T": T, "lambda0": lambda0, "lambda1": lambda1,
              "activation": str(activation), "seed": seed, "max_iter": max_iter,
              "Ns": [_json_number(N) for N in Ns]}
    with RunFolder(out, "demo", flag="--out", info={"config": config}) as run:
        t0 = time.perf_counter()
        ds = _data.load_digits(classes="even-odd", n_train=P, n_test=n_test, seed=seed)
        cache = KernelCache()             # the kernels do not depend on N: built once per arch
        common = dict(T=T, lambda0=lambda0, lambda1=lambda1, activation=activation, cache=cache,
                      max_iter=max_iter)
        local = dict(input_shape=ds.input_shape, mask=(2, 2), stride=(2, 2))
        every = {"FC": lambda N: FC(N=N, **common),
                  "LCN": lambda N: LCN(N=N, **common, **local),
                  "CNN": lambda N: CNN(N=N, **common, **local),
                  "CNN-pool": lambda N: CNN(N=N, readout="pool", **common, **local)}
        makers = {a: every[a] for a in archs}
        Ns = sorted(Ns, key=lambda N: -N)
        rows, fits = [], {}
        bar = tqdm(total=len(Ns) * len(makers), disable=quiet, desc="kren demo", unit="fit")
        for arch, make in makers.items():
            Q_prev = None
            for N in Ns:
                bar.set_postfix_str(f"{arch} N={N:g}")
                row, m = _row(arch, N, P, make, ds, Q_prev)
                rows.append(row)
                if row["converged"]:
                    Q_prev = m.Q_         # continuation: warm start for the next, smaller N
                    fits[(arch, N)] = m
                bar.update(1)
        bar.close()
        paths = {}
        if plots:
            from .plotting import plot_Q, plot_test_error
            plot_test_error(rows, run.stage("test_error_vs_N.png"), P=P,
                            title=f"digits even vs odd, P = {P}, T = {T}, {activation}; "
                                  "2×2 mask, stride 2")
            paths["test_error"] = str(run.path("test_error_vs_N.png"))
            N_show = _width_to_show([N for (a, N) in fits if a == "CNN"], P)
            if N_show is not None:
                cnn = fits[("CNN", N_show)]
                plot_Q(cnn.Q_, cnn.patch_importance(), run.stage("cnn_Q.png"),
                       title=f"CNN order parameter at N = {N_show:g} (α = {P / N_show:g})")
                paths["Q"] = str(run.path("cnn_Q.png"))
        result = {"task": "digits even vs odd", "P": P, "n_test": n_test, "T": T,
                  "lambda0": lambda0, "lambda1": lambda1, "activation": str(activation),
                  "seed": seed, "mask": [2, 2], "stride": [2, 2], "rows": rows,
                  "data_fingerprint": ds.fingerprint(), "run_id": run.run_id,
                  "seconds": time.perf_counter() - t0}
        paths["json"] = str(run.path("demo.json"))
        with open(run.stage("demo.json"), "w") as fh:
            fh.write(json.dumps(_json_rows(result), indent=1, default=str))
        run.commit()
    result["paths"] = paths
    return result


def _check_archs(archs):
    """The requested architectures, in table order; an unknown or repeated name is an error."""
    from .validation import InvalidParameterError
    archs = [archs] if isinstance(archs, str) else list(archs)
    bad = [a for a in archs if a not in ARCHS]
    if bad or not archs or len(set(archs)) != len(archs):
        raise InvalidParameterError(
            f"archs must be distinct names among {', '.join(ARCHS)}, got {archs!r}")
    return tuple(a for a in ARCHS if a in archs)


def _row(arch, N, P, make, ds, Q0):
    """One (architecture, N) of the table and its estimator (None when the fit failed)."""
    from .errorbase import KrenError
    from .exceptions import ConvergenceWarning
    from .cliutil import one_line
    row = {"arch": arch, "N": N, "alpha": P / N}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)     # marked in the row instead
            m = make(N).fit(ds.X_train, ds.y_train, Q0=Q0)
    except KrenError as exc:
        nan = float("nan")
        row.update(test_error=nan, bias2=nan, variance=nan, train_error=nan, converged=False,
                   failed=True, n_iter=0, Q_summary=nan, message=one_line(exc))
        return row, None
    res = m.result_
    err = m.test_error(ds.X_test, ds.y_test, allow_unconverged=True)
    row.update(test_error=err.total, bias2=err.bias2, variance=err.variance,
               train_error=m.train_error(allow_unconverged=True), converged=res.converged,
               failed=False, n_iter=res.n_iter,
               Q_summary=float(np.mean(np.diag(np.atleast_2d(m.Q_)))),
               message="" if res.converged else res.message)
    return row, m


def _width_to_show(Ns, P):
    """The smallest converged width with α = P/N ≥ 5, else the smallest converged one."""
    finite = [N for N in Ns if math.isfinite(N)]
    rich = [N for N in finite if P / N >= 5]
    if rich:
        return min(rich)
    return min(Ns) if Ns else None


def _json_number(v):
    return None if isinstance(v, float) and math.isnan(v) else v


def _json_rows(result):
    """NaN (a failed fit's numbers) written as null."""
    out = dict(result)
    out["rows"] = [{k: _json_number(v) for k, v in r.items()} for r in result["rows"]]
    return out


def format_table(rows) -> str:
    """The demo's table: N, α and test error, bias², variance per architecture; ``!`` marks a
    fit whose solver did not converge, ``x`` a fit that failed (messages in demo.json)."""
    archs = [a for a in ARCHS if any(r["arch"] == a for r in rows)]
    Ns = sorted({r["N"] for r in rows}, key=lambda N: -N)
    head = f"{'N':>6} {'alpha':>7} | " + " | ".join(f"{a:^26}" for a in archs)
    sub = f"{'':>6} {'':>7} | " + " | ".join(f"{'error':>8} {'bias2':>8} {'var':>8}" for _ in archs)
    lines = [head, sub, "-" * len(head)]
    for N in Ns:
        cells = []
        for a in archs:
            r = next(r for r in rows if r["arch"] == a and r["N"] == N)
            if r.get("failed"):
                cells.append(f"{'fit failed':>26}x")
                continue
            flag = "" if r["converged"] else "!"
            cells.append(f"{r['test_error']:8.4f} {r['bias2']:8.4f} {r['variance']:8.4f}{flag}")
        alpha = next(r["alpha"] for r in rows if r["N"] == N)
        label = "inf" if not math.isfinite(N) else f"{N:g}"
        lines.append(f"{label:>6} {alpha:7.2f} | " + " | ".join(cells))
    return "\n".join(lines)
