"""Reading a saved fit and checking every field before it is trusted (see :mod:`.persistence`).

:func:`read_fit_file` parses a ``.json`` or ``.npz`` file into its header and arrays; any file
that cannot be parsed (truncated, garbage, a missing array) raises
:class:`kren.exceptions.FitFileError` naming the file and the field, never a raw
``BadZipFile``/``JSONDecodeError``/``KeyError``. :func:`restore` checks the fields in order
(format, estimator, parameters, data, fingerprint, order parameters, diagnostics, saddle-point
equations) and builds the fitted estimator.
"""
from __future__ import annotations

import json
import math
import re
import zipfile
import zlib
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from sklearn.utils._param_validation import InvalidParameterError as _SkInvalidParameterError
from sklearn.utils._param_validation import validate_parameter_constraints

from ..exceptions import FitFileError
from ..linalg import NotPositiveDefiniteError
from ..prepared import fingerprint
from ..tensors.storage import plan_storage, solver_tensor
from ..validation import InvalidDataError, InvalidParameterError, check_targets
from ..renormalized_multi import multi_identity
from .multi import check_multi_targets, multi_storage_plan
from .solve import SolverResult
from .state import RESOURCE_PARAMS, Fit, scalar_eigenbasis
from .verify import load_tolerance, saddle_residual

__all__ = ["RawFit", "read_fit_file", "restore", "SUPPORTED_VERSIONS"]

#: Versions this code reads (1: files written before the version was recorded, same layout).
SUPPORTED_VERSIONS = (1, 2)

_ARRAYS = ("X_train", "y_train", "Q", "Qbar")
_RESULT_TYPES = {"converged": bool, "n_iter": int, "grad_norm": float, "rel_grad_norm": float,
                 "action": float, "message": str, "n_eval": int, "seconds": float,
                 "method": str, "history": list}
_HEADER = ("estimator", "params", "Q", "Qbar", "result", "data_fingerprint")


@dataclass
class RawFit:
    """A parsed file: the JSON header ``d`` and the arrays (from the header for .json)."""

    d: dict
    X: object
    y: object
    Q: object
    Qbar: object


# ----------------------------------------------------------------------------- reading
def _load_json_text(path: Path, text, field: str):
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text)
    except UnicodeDecodeError as exc:
        raise FitFileError(path, field, f"not UTF-8 text ({exc.reason} at byte {exc.start}); "
                           "the file is corrupt or not a kren fit") from None
    except json.JSONDecodeError as exc:
        raise FitFileError(path, field, f"not valid JSON ({exc.msg} at line {exc.lineno} "
                           f"column {exc.colno}): the file is truncated or corrupt") from None
    except RecursionError:
        raise FitFileError(path, field, "JSON nested too deeply: not a kren fit") from None


def read_fit_file(path) -> RawFit:
    """Parse ``path`` (.json or .npz) without trusting it (module docstring)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FitFileError(path, "(file)", f"cannot be read ({exc.strerror or exc})") from None
    if path.suffix == ".json":
        d = _load_json_text(path, raw, "(file)")
        _need_object(path, d)
        for name in ("X_train", "y_train"):
            if name not in d:
                raise FitFileError(path, name, "missing")
        return RawFit(d, d.get("X_train"), d.get("y_train"), d.get("Q"), d.get("Qbar"))
    return _read_npz(path)


def _read_npz(path: Path) -> RawFit:
    corrupt = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError)
    try:
        archive = np.load(path, allow_pickle=False)
    except corrupt as exc:
        raise FitFileError(path, "(file)", f"not a readable .npz archive ({_why(exc)}): the file "
                           "is truncated or corrupt") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise FitFileError(path, "(file)", "not an .npz archive (a single .npy array)")
    with archive as f:
        arrays = {}
        for name in ("meta",) + _ARRAYS:
            if name not in f.files:
                raise FitFileError(path, name, f"missing from the archive (it holds "
                                   f"{sorted(f.files)})")
            try:
                arrays[name] = f[name]
            except (*corrupt, KeyError) as exc:
                raise FitFileError(path, name, f"cannot be read ({_why(exc)}): the archive is "
                                   "truncated or corrupt") from None
    meta = arrays["meta"]
    if meta.shape != () or meta.dtype.kind not in "US":
        raise FitFileError(path, "meta", f"expected a JSON string, got an array of dtype "
                           f"{meta.dtype} and shape {meta.shape}")
    d = _load_json_text(path, str(meta), "meta")
    _need_object(path, d)
    for name in ("Q", "Qbar"):
        if name in d and not _same_numbers(d[name], arrays[name]):
            raise FitFileError(path, name, "the array and the header's copy differ: the file was "
                               "modified or is corrupt")
    return RawFit(d, arrays["X_train"], arrays["y_train"], arrays["Q"], arrays["Qbar"])


def _why(exc) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _same_numbers(a, b) -> bool:
    try:
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    except (TypeError, ValueError):
        return False
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def _need_object(path, d):
    if not isinstance(d, dict):
        raise FitFileError(path, "(file)", f"expected a JSON object (a kren fit), got "
                           f"{type(d).__name__}")


# ----------------------------------------------------------------------------- checks
def _number(v):
    """float for numbers and the strings 'inf', 'nan' (how saves write non-finite floats)."""
    if isinstance(v, bool):
        raise TypeError
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and v.strip().lower() in ("inf", "+inf", "-inf", "nan", "infinity"):
        return float(v)
    raise TypeError


def _check_format(path, d) -> int:
    fmt = d.get("format", None)
    if fmt is None and "format_version" not in d:
        return 1                                      # written before versions were recorded
    if fmt != "kren-fit":
        raise FitFileError(path, "format", f"expected 'kren-fit', got {fmt!r}: not a kren fit")
    v = d.get("format_version")
    if isinstance(v, bool) or not isinstance(v, int):
        raise FitFileError(path, "format_version", f"expected an integer, got {v!r}")
    if v not in SUPPORTED_VERSIONS:
        raise FitFileError(path, "format_version",
                           f"version {v} is not supported by this kren (reads "
                           f"{', '.join(map(str, SUPPORTED_VERSIONS))}); "
                           + ("upgrade kren to load it" if v > max(SUPPORTED_VERSIONS) else
                              "the file is corrupt"))
    return v


def _estimator_class(path, d):
    from . import CNN, FC, LCN, DeepFC
    classes = {"FC": FC, "LCN": LCN, "CNN": CNN, "DeepFC": DeepFC}
    name = d.get("estimator")
    if name not in classes:
        raise FitFileError(path, "estimator", f"expected one of {sorted(classes)}, got {name!r}")
    return classes[name]


def _params(path, d, cls, activation):
    """The constructor parameters, each type-checked against the class's constraints."""
    import inspect
    params = d.get("params")
    if not isinstance(params, dict):
        raise FitFileError(path, "params", f"expected an object, got {type(params).__name__}")
    names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise FitFileError(path, f"params.{unknown[0]}",
                           f"not a parameter of {cls.__name__} (parameters: {names})")
    out = {}
    for k in names:
        if k in RESOURCE_PARAMS and k != "memory_budget":
            continue
        if k not in params:
            raise FitFileError(path, f"params.{k}", "missing")
        v = params[k]
        if k == "N":
            try:           # one width, or (DeepFC) one width per layer
                v = tuple(_number(u) for u in v) if isinstance(v, list) else _number(v)
            except TypeError:
                raise FitFileError(path, "params.N", f"expected a number, got {v!r}") from None
        elif isinstance(v, list):
            v = tuple(v)
        if k in ("input_shape", "mask", "stride") and isinstance(v, tuple) and not all(
                isinstance(u, int) and not isinstance(u, bool) for u in v):
            raise FitFileError(path, f"params.{k}", f"expected integers, got {params[k]!r}")
        constraint = cls._parameter_constraints.get(k)
        if constraint is not None and constraint != "no_validation":
            try:
                validate_parameter_constraints({k: constraint}, {k: v},
                                               caller_name=cls.__name__)
            except _SkInvalidParameterError as exc:
                raise FitFileError(path, f"params.{k}", str(exc)) from None
        out[k] = v
    stored = out.get("activation")
    if activation is not None:
        from .persistence import activation_key
        if activation_key(activation) != stored:
            raise FitFileError(path, "params.activation",
                               f"the file was fitted with activation {stored!r}, not "
                               f"{activation_key(activation)!r}")
        out["activation"] = activation
    elif not isinstance(stored, str):
        raise FitFileError(path, "params.activation", f"expected a name, got {stored!r}")
    return out


def _construct(path, cls, params):
    try:
        est = cls(**params)
        arch = est._check_params()
    except InvalidParameterError as exc:
        msg = str(exc)
        act = params.get("activation")
        if isinstance(act, str) and ":" in act and "activation" in msg:
            raise FitFileError(
                path, "params.activation",
                f"the fit used the user-defined activation {act!r}, which cannot be restored by "
                "name: register the same σ first (kren.activations.register("
                "Activation.from_function(sigma, name))) or pass it: "
                "kren.estimators.load(path, activation=...)") from None
        m = re.search(r"'(\w+)' parameter", msg) or re.match(r"(?:\w+: )?(\w+)\b", msg)
        name = m.group(1) if m and m.group(1) in params else None
        raise FitFileError(path, f"params.{name}" if name else "params", msg) from None
    return est, arch


def _array(path, field, v, ndim=None):
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise FitFileError(path, field, "expected numbers") from None
    if ndim is not None and a.ndim != ndim:
        raise FitFileError(path, field, f"expected a {ndim}-dimensional array, got shape "
                           f"{a.shape}")
    if not np.all(np.isfinite(a)):
        raise FitFileError(path, field, "contains NaN or inf")
    return a


def _order_parameters(path, arch, Q, Qbar):
    """Q, Q̄ in the estimator's form after the shape, symmetry and definiteness checks."""
    from ..renormalized import _check_order_parameters
    for name, M in (("Q", Q), ("Qbar", Qbar)):
        try:
            a = np.asarray(M, dtype=np.float64)
        except (TypeError, ValueError):
            raise FitFileError(path, name, "expected numbers") from None
        if not np.all(np.isfinite(a)):
            raise FitFileError(path, name, "contains NaN or inf")
    try:
        _check_order_parameters(arch, Q, Qbar)
    except InvalidParameterError as exc:
        name = "Qbar" if str(exc).startswith("Qbar") else "Q"
        raise FitFileError(path, name, str(exc)) from None
    if arch.structure == "scalar":
        Q, Qbar = float(np.asarray(Q, float).reshape(-1)[0]), float(np.asarray(Qbar, float)
                                                                    .reshape(-1)[0])
        Qm, Qbm = np.array([[Q]]), np.array([[Qbar]])
    else:
        Q, Qbar = np.asarray(Q, dtype=float), np.asarray(Qbar, dtype=float)
        Qm, Qbm = Q, Qbar
    if np.linalg.eigvalsh(Qm)[0] <= 0:
        raise FitFileError(path, "Q", "not positive definite (an order parameter Q must be)")
    one_plus = np.eye(Qbm.shape[0]) + Qbm
    if np.linalg.eigvalsh(0.5 * (one_plus + one_plus.T))[0] <= 0:
        raise FitFileError(path, "Qbar", "1 + Qbar is not positive definite")
    return Q, Qbar


def _check_eliminated_Qbar(path, arch, Q, Qbar):
    """Zero-mean units: ∂S/∂Q̄ = 0 eliminates Q̄ = Q⁻¹ − 𝟙 (THEORY §3), which the solver
    computes from Q; a stored Q̄ off it by more than round-off (1e-8 relative) was modified."""
    if not arch.zero_mean:
        return
    Qm, Qbm = np.atleast_2d(np.asarray(Q, float)), np.atleast_2d(np.asarray(Qbar, float))
    inv = np.linalg.inv(Qm)
    err = float(np.linalg.norm(Qbm - (inv - np.eye(Qm.shape[0]))))
    if err > 1e-8 * (1.0 + float(np.linalg.norm(inv))):
        raise FitFileError(path, "Qbar", f"differs from Q⁻¹ − 1 by {err:.1e} (zero-mean units: "
                           f"Qbar = Q⁻¹ − 1, THEORY §3)")


def _result(path, d):
    r = d.get("result")
    if not isinstance(r, dict):
        raise FitFileError(path, "result", f"expected an object, got {type(r).__name__}")
    allowed = {f.name for f in fields(SolverResult)}
    for k in r:
        if k not in allowed:
            raise FitFileError(path, f"result.{k}", f"not a solver diagnostic ({sorted(allowed)})")
    out = {}
    for k, typ in _RESULT_TYPES.items():
        if k not in allowed:
            continue
        if k not in r:
            raise FitFileError(path, f"result.{k}", "missing")
        v = r[k]
        try:
            if typ is float:
                v = _number(v)
            elif typ is int:
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise TypeError
            elif typ is list:
                v = [_number(u) for u in v] if isinstance(v, list) else None
                if v is None:
                    raise TypeError
            elif not isinstance(v, typ):
                raise TypeError
        except TypeError:
            raise FitFileError(path, f"result.{k}", f"expected {typ.__name__}, got "
                               f"{r[k]!r:.80}") from None
        out[k] = v
    if not (out["rel_grad_norm"] >= 0) or not (out["grad_norm"] >= 0):
        raise FitFileError(path, "result.rel_grad_norm", "gradient norms must be >= 0, got "
                           f"{out['rel_grad_norm']!r}")
    return SolverResult(**out)


def _training_data(path, raw, d, arch):
    """(prepared X_train, the architecture with its input, y_train) after the shape, value and
    fingerprint checks."""
    X = _array(path, "X_train", raw.X, ndim=2)
    y = _array(path, "y_train", raw.y)
    if y.ndim not in (1, 2):
        raise FitFileError(path, "y_train", f"expected a 1- or 2-dimensional array, got shape "
                           f"{y.shape}")
    D = int(y.shape[1]) if y.ndim == 2 else None      # D outputs (THEORY §3c)
    P = d.get("P", X.shape[0])
    if isinstance(P, bool) or not isinstance(P, int) or P != X.shape[0]:
        raise FitFileError(path, "P", f"expected the number of training inputs {X.shape[0]}, "
                           f"got {P!r}")
    try:
        train = arch.prepare(X, "X_train")
        arch = train.arch
        y = (check_targets(y, train.P, "y_train") if D is None
             else check_multi_targets(y, train.P, D, "y_train"))
    except InvalidDataError as exc:
        field = "y_train" if str(exc).startswith("y_train") else "X_train"
        raise FitFileError(path, field, str(exc)) from None
    fp = d["data_fingerprint"]
    if not isinstance(fp, str) or fingerprint(train.X, y) != fp:
        raise FitFileError(path, "data_fingerprint", "the training data do not match the stored "
                           "fingerprint: X_train or y_train was modified")
    return train, arch, y


def check_converged_flag(path, result, tol):
    """The stored ``converged`` must agree with rel_grad_norm ≤ tol."""
    if result.converged != bool(result.rel_grad_norm <= tol):
        raise FitFileError(path, "result.converged",
                           f"converged = {result.converged} contradicts rel_grad_norm = "
                           f"{result.rel_grad_norm:.3e} and tol = {tol:.0e}")


def check_alpha(path, d, P, N):
    """A stored α must be P/N (0 at N = ∞)."""
    alpha = d.get("alpha")
    try:
        alpha_ok = alpha is None or math.isclose(_number(alpha), P / N if math.isfinite(N)
                                                 else 0.0, rel_tol=1e-12, abs_tol=0.0)
    except TypeError:
        alpha_ok = False
    if not alpha_ok:
        raise FitFileError(path, "alpha", f"α = P/N should be {P / N:g} for P = {P}, "
                           f"N = {N:g}; got {alpha!r}")


def _multi_order_parameters(path, arch, Q, Qbar, D):
    """D outputs (THEORY §3c): (nD)×(nD) Q, Q̄ (FC: D×D) after the checks of
    :func:`kren.renormalized_multi.check_multi_order_parameters` and positive definiteness."""
    from ..renormalized_multi import check_multi_order_parameters
    try:
        Qm, _ = check_multi_order_parameters(arch, Q, Qbar, D)
        Qbm = np.asarray(Qbar, dtype=float).reshape(Qm.shape)
    except (InvalidParameterError, ValueError) as exc:
        raise FitFileError(path, "Q", str(exc)) from None
    if not np.all(np.isfinite(Qbm)):
        raise FitFileError(path, "Qbar", "contains NaN or inf")
    if np.linalg.eigvalsh(Qm)[0] <= 0:
        raise FitFileError(path, "Q", "not positive definite (an order parameter Q must be)")
    one_plus = np.eye(Qbm.shape[0]) + Qbm
    if np.linalg.eigvalsh(0.5 * (one_plus + one_plus.T))[0] <= 0:
        raise FitFileError(path, "Qbar", "1 + Qbar is not positive definite")
    return Qm, Qbm


def _classes(path, d, D):
    """The class labels of a one-hot D-output fit (sorted distinct integers, D of them) or None."""
    c = d.get("classes")
    if c is None:
        return None
    if D is None or not isinstance(c, list) or len(c) != D or not all(
            isinstance(u, int) and not isinstance(u, bool) for u in c) or sorted(set(c)) != c:
        raise FitFileError(path, "classes", f"expected {D} sorted distinct integer labels, got "
                           f"{c!r:.80}")
    return np.asarray(c, dtype=np.int64)


# ----------------------------------------------------------------------------- restore
def restore(raw: RawFit, path, activation=None):
    """Check every field of a parsed file (module docstring) and return the fitted estimator."""
    path = Path(path)
    d = raw.d
    _check_format(path, d)
    for k in _HEADER:
        if k not in d:
            raise FitFileError(path, k, "missing")
    cls = _estimator_class(path, d)
    params = _params(path, d, cls, activation)
    est, arch = _construct(path, cls, params)
    train, train_arch, y = _training_data(path, raw, d, arch)
    if cls.__name__ == "DeepFC":                 # one Q_l per layer: kren.estimators.fitfile_deep
        from .fitfile_deep import restore_deep
        return restore_deep(path, raw, d, est, arch.with_input(train), train, y)
    arch = train_arch
    # ---- order parameters and diagnostics
    D = int(y.shape[1]) if y.ndim == 2 else None      # D outputs (THEORY §3c)
    Q, Qbar = (_order_parameters(path, arch, raw.Q, raw.Qbar) if D is None
               else _multi_order_parameters(path, arch, raw.Q, raw.Qbar, D))
    classes = _classes(path, d, D)
    result = _result(path, d)
    T, N, tol = float(est.T), float(est.N), float(est.tol)
    check_converged_flag(path, result, tol)
    dtype = np.dtype(est.dtype)
    # the kernels the fit solved on: the same storage plan and solver tensor as fit()
    if D is None:
        plan = plan_storage(arch, train.P, getattr(est, "storage", "auto"), dtype,
                            est.memory_budget, getattr(est, "device", None))
        tensor = solver_tensor(arch, train, plan)
    else:
        plan = multi_storage_plan(arch, train.P, getattr(est, "storage", "auto"),
                                  getattr(est, "device", None), dtype, D=D,
                                  memory_budget=est.memory_budget)
        tensor = arch.train_tensor(train, dtype=plan.dtype, memory_budget=est.memory_budget)
    cho = z = None
    if math.isinf(N):
        Q0, Qb0 = arch.identity_order_parameters() if D is None else multi_identity(arch, D)
        if not (np.array_equal(np.asarray(Q), np.asarray(Q0))
                and np.array_equal(np.asarray(Qbar), np.asarray(Qb0))):
            raise FitFileError(path, "Q", "at N = inf the order parameters are Q = 1, Qbar = 0 "
                               "exactly (THEORY §5.2)")
    else:
        try:
            rel, kappa, cho, z = saddle_residual(arch, tensor, y, Q, Qbar, T, N)
        except NotPositiveDefiniteError as exc:
            raise FitFileError(path, "Q", f"A = T·1 + K_R at the stored Q is not positive "
                               f"definite ({exc})") from None
        eps = float(np.finfo(plan.dtype).eps)
        limit = load_tolerance(tol, result.rel_grad_norm, kappa, eps)
        if not (rel <= limit):
            raise FitFileError(
                path, "Q",
                f"the stored Q does not satisfy the saddle-point equations of the stored data "
                f"and parameters (N = {N:g}, T = {T:g}, λ1 = {arch.lambda1:g}): relative "
                f"gradient {rel:.2e} > {limit:.1e} (tol = {tol:.0e}, stored "
                f"{result.rel_grad_norm:.1e}); Q or a parameter was modified")
    _check_eliminated_Qbar(path, arch, Q, Qbar)
    check_alpha(path, d, train.P, N)
    try:
        # the eigenbasis where fit() uses one (scalar order parameter, one output, finite N
        # or a cache): the same predictor formulas as the fit that was saved
        eig, eig_key = scalar_eigenbasis(arch, train, tensor, plan, est.cache, D is None, N)
        est.fit_ = Fit.build(cls.__name__, est.get_params(deep=False), arch, train, y, tensor,
                             Q, Qbar, T, N, dtype, result, cho, z, storage=plan.describe(),
                             classes=classes, eig=eig, eig_key=eig_key)
    except NotPositiveDefiniteError as exc:
        raise FitFileError(path, "Q", f"A = T·1 + K_R is not positive definite ({exc})") from None
    return est
