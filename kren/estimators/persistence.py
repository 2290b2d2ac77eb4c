"""Saving and loading fits (``.json`` or ``.npz``): parameters, Q, Q̄, diagnostics, training data.

A save writes the parameters the fit was made with (``Fit.params``), never the estimator's
current ones. A load rebuilds the kernels and the factor of A = T𝟙 + K_R from the stored
training data after checking the stored data fingerprint.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..activations import Activation
from ..prepared import fingerprint
from .solve import SolverResult
from .state import RESOURCE_PARAMS, Fit

__all__ = ["fit_to_dict", "save_fit", "load"]


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else str(v)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.dtype, type)):
        return np.dtype(obj).name
    if isinstance(obj, Activation):
        return obj.key                  # load() resolves it through the activation registry
    return obj


def fit_to_dict(fit: Fit) -> dict:
    """Parameters, solution, diagnostics and data fingerprint (JSON-serialisable)."""
    params = {k: v for k, v in fit.params.items() if k != "cache"}
    return {
        "estimator": fit.estimator,
        "kren_version": __import__("kren").__version__,
        "params": _jsonable(params),
        "architecture": fit.arch.describe(),
        "Q": np.asarray(fit.Q).tolist(),
        "Qbar": np.asarray(fit.Qbar).tolist(),
        "result": _jsonable(fit.result.to_dict()),
        "alpha": fit.alpha if math.isfinite(fit.N) else _jsonable(fit.P / fit.N),
        "data_fingerprint": fit.data_fingerprint,
        "P": int(fit.P),
    }


def save_fit(fit: Fit, path) -> Path:
    """Write ``fit`` to ``path`` (.json: everything as JSON; .npz: arrays and a JSON header)."""
    path = Path(path)
    d = fit_to_dict(fit)
    X, y = fit.train.X, fit.y
    if path.suffix == ".json":
        d["X_train"] = X.tolist()
        d["y_train"] = y.tolist()
        path.write_text(json.dumps(d, indent=1))
    elif path.suffix == ".npz":
        np.savez_compressed(path, meta=json.dumps(d), X_train=X, y_train=y,
                            Q=np.asarray(fit.Q), Qbar=np.asarray(fit.Qbar))
    else:
        raise ValueError(f"save path must end in .json or .npz, got {path.name!r}")
    return path


def load(path):
    """Load a fit written by ``save`` and restore it so it can predict.

    The kernels and the Cholesky factor of A are rebuilt from the stored training data; the
    stored data fingerprint is checked.
    """
    from . import CNN, FC, LCN, DeepFC
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved fit at {path}")
    if path.suffix == ".json":
        d = json.loads(path.read_text())
        X, y = np.asarray(d["X_train"], float), np.asarray(d["y_train"], float)
        Q, Qbar = d["Q"], d["Qbar"]
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            d = json.loads(str(f["meta"]))
            X, y, Q, Qbar = f["X_train"], f["y_train"], f["Q"], f["Qbar"]
    else:
        raise ValueError(f"expected a .json or .npz file, got {path.name!r}")
    if fingerprint(X, y) != d["data_fingerprint"]:
        raise ValueError(f"{path}: training data do not match the stored fingerprint")
    cls = {"FC": FC, "LCN": LCN, "CNN": CNN, "DeepFC": DeepFC}[d["estimator"]]
    params = {k: (float(v) if k == "N" and isinstance(v, str) else v)
              for k, v in d["params"].items() if k not in RESOURCE_PARAMS or k == "memory_budget"}
    for k in ("input_shape", "mask", "stride"):
        if isinstance(params.get(k), list):
            params[k] = tuple(params[k])
    est = cls(**params)
    r = d["result"]
    numeric = {"grad_norm", "rel_grad_norm", "action", "seconds"}
    result = SolverResult(**{k: (float(v) if k in numeric else v) for k, v in r.items()})
    if hasattr(est, "_restore"):            # estimators with their own fitted state (DeepFC)
        return est._restore(X, y, np.asarray(Q, float), result)
    arch = est._check_params()
    train = arch.prepare(X, "X_train")
    arch = train.arch
    dtype = np.dtype(est.dtype)
    tensor = arch.train_tensor(train, dtype=dtype, memory_budget=est.memory_budget)
    if arch.structure == "scalar":
        Q, Qbar = float(np.asarray(Q)), float(np.asarray(Qbar))
    else:
        Q, Qbar = np.asarray(Q, float), np.asarray(Qbar, float)
    est.fit_ = Fit.build(cls.__name__, est.get_params(deep=False), arch, train, y, tensor, Q,
                         Qbar, float(est.T), float(est.N), dtype, result)
    return est
