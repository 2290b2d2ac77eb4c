"""The sweep's table: one tidy row per point, from the point files, as Parquet and CSV.

Columns (a cell is empty where it does not apply, e.g. mask for FC, the standard error for a
theory point):

- identity: ``point`` (id), ``index`` (plan order), ``kind`` ("theory" or "sampled"), ``arch``,
  ``label``; every grid parameter (``dataset``, ``P``, ``seed``, ``readout``, ``activation``,
  ``mask``, ``stride`` (as "2x2"), ``padding``, ``patches``, ``N`` (inf: N = ∞), ``T``,
  ``lambda0``, ``lambda1``, and any registered estimator's own), ``n`` (patches), ``alpha``
  (P/N), ``n_test``;
- outcome: ``status`` ("ok" or "failed") and ``error`` (the message of a failed point);
- errors (THEORY §4): ``test_error`` = ``bias2`` + ``variance``, ``train_error``; sampled
  points also ``test_error_se`` (Monte-Carlo), ``ess``, ``rhat``, ``acceptance``, and beside
  the theory point with the same parameters ``theory_test_error``, ``rel_diff`` and
  ``verdict`` (:func:`kren.compare.verdict`: |Δ| ≤ max(2 SE, 10 %) and R̂ < 1.05);
- Q (THEORY §6): ``Q_trace``, ``Q_mean_diag``, ``Q_eig_min``, ``Q_eig_max``, ``Qbar_trace``,
  ``Q_eigenvalues`` and ``patch_importance`` (lists; JSON text in the CSV);
- solver: ``converged``, ``n_iter``, ``n_eval``, ``grad_norm``, ``rel_grad_norm``, ``action``,
  ``method``, ``solver_message``, ``warm_start``;
- run (:data:`RUN_COLUMNS`, differ between runs of one config): ``seconds``, ``seconds_kernel``,
  ``kernel_built``, ``seconds_solve``, ``seconds_predict``, ``seconds_sampling``, ``worker``.

The Q and Q̄ matrices are in ``Q.npz`` (arrays ``<point>_Q``, ``<point>_Qbar``).
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np

from .plan import _short, _size_str
from .registry import get_estimator
from .store import atomic_write_bytes

__all__ = ["assemble", "write_table", "read_table", "RUN_COLUMNS", "LIST_COLUMNS"]

RUN_COLUMNS = ("seconds", "seconds_kernel", "kernel_built", "seconds_solve", "seconds_predict",
               "seconds_sampling", "worker")
LIST_COLUMNS = ("Q_eigenvalues", "patch_importance")
RESULT_COLUMNS = (
    "status", "error", "test_error", "bias2", "variance", "train_error", "test_error_se",
    "theory_test_error", "rel_diff", "verdict", "ess", "rhat", "acceptance",
    "Q_trace", "Q_mean_diag", "Q_eig_min", "Q_eig_max", "Qbar_trace", "Q_eigenvalues",
    "patch_importance", "converged", "n_iter", "n_eval", "grad_norm", "rel_grad_norm", "action",
    "method", "solver_message", "warm_start") + RUN_COLUMNS
_SIZES = ("mask", "stride", "patches")


def _theory_id(point) -> str:
    params = {**point.params, "N": float(point.params["N"])}
    return _short({"kind": "theory", "params": params, "data": point.data})


def assemble(plan, store):
    """(DataFrame in plan order of the recorded points, {point: (Q, Q̄)})."""
    import pandas as pd

    from ..compare import verdict
    done = store.done()
    rows, mats = [], {}
    for p in plan.points:
        if p.id not in done:
            continue
        rec, arrays = store.read(p.id)
        row = {"point": p.id, "index": p.index, "kind": p.kind, "arch": p.arch,
               "label": get_estimator(p.arch).label}
        for k, v in p.params.items():
            row[k] = _size_str(v) if k in _SIZES else v
        row["N"] = float(p.params["N"])
        row["n"] = p.n
        row["alpha"] = 0.0 if math.isinf(row["N"]) else p.params["P"] / row["N"]
        row["n_test"] = plan.config.data["n_test"]
        for k in RESULT_COLUMNS:
            row[k] = rec.get(k)
        rows.append(row)
        if "Q" in arrays:
            mats[p.id] = (arrays["Q"], arrays["Qbar"])
    by_id = {r["point"]: r for r in rows}
    for p, r in zip((q for q in plan.points if q.id in done), rows):
        if p.kind != "sampled" or r["status"] != "ok":
            continue
        th = by_id.get(_theory_id(p))
        if th is None or th["status"] != "ok":
            continue
        r["theory_test_error"] = th["test_error"]
        r["rel_diff"] = (r["test_error"] - th["test_error"]) / th["test_error"]
        r["verdict"] = verdict(th["test_error"], r["test_error"], r["test_error_se"], r["rhat"])
    df = pd.DataFrame(rows)
    if len(df):
        df = df.set_index(pd.RangeIndex(len(df)))
        for col in ("converged", "warm_start", "kernel_built"):
            if col in df:
                df[col] = df[col].astype("boolean")
        for col in ("P", "seed", "n", "n_iter", "n_eval", "index", "n_test"):
            if col in df:
                df[col] = df[col].astype("Int64")
    return df, mats


def _csv_frame(df):
    out = df.copy()
    for col in LIST_COLUMNS:
        if col in out:
            out[col] = [None if v is None or (isinstance(v, float) and math.isnan(v))
                        else json.dumps([float(u) for u in v]) for v in out[col]]
    return out


def write_table(df, mats, folder) -> dict:
    """Write table.parquet, table.csv and Q.npz into ``folder``, each atomically."""
    folder = Path(folder)
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    paths = {"parquet": atomic_write_bytes(folder / "table.parquet", buf.getvalue())}
    paths["csv"] = atomic_write_bytes(folder / "table.csv",
                                      _csv_frame(df).to_csv(index=False).encode())
    buf = io.BytesIO()
    arrays = {}
    for pid, (Q, Qbar) in mats.items():
        arrays[f"{pid}_Q"] = np.asarray(Q, float)
        arrays[f"{pid}_Qbar"] = np.asarray(Qbar, float)
    np.savez_compressed(buf, **arrays)
    paths["Q"] = atomic_write_bytes(folder / "Q.npz", buf.getvalue())
    return paths


def read_table(folder):
    """The table of a sweep folder (table.parquet), list columns as lists."""
    import pandas as pd
    path = Path(folder) / "table.parquet"
    if not path.exists():
        raise FileNotFoundError(f"no sweep table in {folder} (expected {path.name}; run "
                                "kren sweep CONFIG --out FOLDER first)")
    df = pd.read_parquet(path)
    for col in LIST_COLUMNS:
        if col in df:
            df[col] = [None if v is None else [float(u) for u in v] for v in df[col]]
    return df
