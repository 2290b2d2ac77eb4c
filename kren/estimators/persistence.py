"""Saving and loading fits (``.json`` or ``.npz``): parameters, Q, Q̄, diagnostics, training data.

A save writes the parameters the fit was made with (``Fit.params``), never the estimator's
current ones, to a temporary file in the destination's folder that is renamed over it
(:mod:`kren.atomic`): a save that fails part-way (a full disk) leaves the previous file intact.

A load trusts nothing in the file (:mod:`.fitfile` reads and checks every field, naming the file
and the field in a :class:`kren.exceptions.FitFileError`): the format version, the estimator,
every parameter (validated as ``fit`` validates them), the training data and their fingerprint,
the shapes, finiteness and definiteness of Q and Q̄, the solver diagnostics, and finally that
the stored Q satisfies the saddle-point equations of the stored data and parameters
(:mod:`.verify`: one evaluation of the generated action gradient). The factor of
A = T𝟙 + K_R from that evaluation is the one the loaded fit predicts with.

File format (``format_version`` 2): a JSON object ``{"format": "kren-fit", "format_version": 2,
"estimator", "kren_version", "params", "architecture", "Q", "Qbar", "result", "alpha",
"data_fingerprint", "P"}`` plus ``X_train``, ``y_train`` (``.json``), or that object as the
string array ``meta`` beside the arrays ``X_train``, ``y_train``, ``Q``, ``Qbar`` (``.npz``).
Files written before versions were recorded (no ``format`` key) are read as version 1, the same
layout.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..activations import Activation
from ..atomic import atomic_write
from ..exceptions import FitFileError
from ..guard import guarded
from ..validation import InvalidParameterError
from .state import Fit

__all__ = ["fit_to_dict", "save_fit", "load", "FORMAT", "FORMAT_VERSION", "SUFFIXES"]

FORMAT = "kren-fit"
FORMAT_VERSION = 2
SUFFIXES = (".json", ".npz")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else str(v)
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.dtype, type)):
        return np.dtype(obj).name
    if isinstance(obj, Activation):
        return obj.key                  # load() resolves it through the activation registry
    return obj


def activation_key(activation) -> str:
    """The name (built-in or registered activation) or ``name:fingerprint`` key (a user σ) that
    identifies ``activation`` in a saved file."""
    if isinstance(activation, str):
        return activation
    if not isinstance(activation, Activation):
        raise InvalidParameterError(f"activation must be a name or a kren.activations.Activation, "
                                    f"got {type(activation).__name__}")
    return activation.key


def fit_to_dict(fit: Fit) -> dict:
    """Format header, parameters, solution, diagnostics and data fingerprint (JSON-serialisable)."""
    params = {k: v for k, v in fit.params.items() if k != "cache"}
    if "activation" in params:
        params["activation"] = activation_key(params["activation"])
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "estimator": fit.estimator,
        "kren_version": __import__("kren").__version__,
        "params": _jsonable(params),
        "architecture": _jsonable(fit.arch.describe()),
        "Q": np.asarray(fit.Q).tolist(),
        "Qbar": np.asarray(fit.Qbar).tolist(),
        "result": _jsonable(fit.result.to_dict()),
        "alpha": _jsonable(fit.alpha),
        "data_fingerprint": fit.data_fingerprint,
        "P": int(fit.P),
        **_outputs(fit),
    }


def _outputs(fit) -> dict:
    """D outputs (THEORY §3c): their number and, for one-hot fits, the class labels."""
    if fit.outputs is None:
        return {}
    out = {"outputs": int(fit.outputs)}
    if fit.classes is not None:
        out["classes"] = np.asarray(fit.classes).tolist()
    return out


def save_fit(fit: Fit, path) -> Path:
    """Write ``fit`` to ``path`` atomically (.json: everything as JSON; .npz: arrays and a JSON
    header ``meta``). Returns the path."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise InvalidParameterError(f"save path must end in .json or .npz, got {path.name!r}")
    d = fit_to_dict(fit)
    X, y = fit.train.X, fit.y
    if path.suffix == ".json":
        d["X_train"] = X.tolist()
        d["y_train"] = y.tolist()
        text = json.dumps(d, indent=1).encode("utf-8")
        return atomic_write(path, lambda fh: fh.write(text))
    meta = json.dumps(d)
    return atomic_write(path, lambda fh: np.savez_compressed(
        fh, meta=np.array(meta), X_train=X, y_train=y, Q=np.asarray(fit.Q),
        Qbar=np.asarray(fit.Qbar)))


@guarded("load")
def load(path, activation=None):
    """Load a fit written by ``save``, check it (module docstring) and restore it so that it can
    predict. Returns the estimator.

    ``activation``: the activation object of a fit made with a user-defined σ (a file stores
    only its key ``name:fingerprint``, which resolves by itself once the same σ is registered
    with :func:`kren.activations.register`); its key must match the stored one.

    Raises :class:`FileNotFoundError` for a missing file and :class:`kren.exceptions.FitFileError`
    (naming the file and the field) for anything unreadable or inconsistent.
    """
    from .fitfile import read_fit_file, restore
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved fit at {path}")
    if path.suffix not in SUFFIXES:
        raise FitFileError(path, "(file)", f"expected a .json or .npz file, got {path.name!r}")
    return restore(read_fit_file(path), path, activation=activation)
