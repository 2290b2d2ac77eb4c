"""A sweep's configuration: a TOML file (or the same as a dict), validated before anything runs.

Schema (version 1). Every section but ``[grid]`` is optional; every key has the type shown and
an unknown key anywhere is an error naming it (``grid.widht``), as is a value of the wrong type
(``P = 50.7``: P is an integer) or out of its domain (``T = -1``)::

    [sweep]
    name = "digits FC vs LCN vs CNN"  # label of the figures (not part of the config's identity)

    [grid]                    # each key: one value, or a list of values (an axis of the grid)
    arch = ["fc", "lcn", "cnn"]   # estimator names (kren.sweeps.register_estimator); required
    N = [inf, 1000, 100, 10]  # widths, > 0 (int or float; inf: the infinite-width limit); required
    P = 500                   # training set size, int ≥ 1; required
    T = 0.1                   # temperature, > 0                      (default 0.1)
    lambda0 = 1.0             # first-layer prior, > 0                (default 1)
    lambda1 = 1.0             # readout prior, > 0                    (default 1)
    activation = "erf"        # "erf", "relu", "linear"               (default "erf")
    readout = "local"         # "local" or "pool" (CNN)               (default "local")
    mask = "2x2"              # int, "AxB" or [[a, b], ...]; LCN, CNN
    stride = "2x2"            # as mask; default: the mask (no overlap)
    padding = "valid"         # "valid" or "circular"                 (default "valid")
    patches = "4x4"           # instead of mask/stride: tile the input into 4×4 patches
                              # (mask = stride = input size / 4; the same n on every data set)
    dataset = "digits"        # "digits", "mnist", "fashion-mnist", "cifar10" (default "digits")
    seed = 0                  # seed of the train/test draw, int ≥ 0  (default 0)

    [data]
    classes = "even-odd"      # "even-odd", [a, b], [[0, 2], [1, 3]] or "none" (regression)
    n_test = 500              # test set size, int ≥ 1                (default 500)
    standardize = true        # z-score with the training statistics  (default true)
    grayscale = false         # CIFAR-10 in one luminance channel     (default false)
    paths = { mnist = "/data/mnist", cifar10 = "/data/cifar-10-batches-py" }

    [solver]
    tol = 1e-9                # saddle-point tolerance                (default 1e-9)
    max_iter = 1000           #                                       (default 1000)
    dtype = "float64"         # kernel tensors in "float64" or "float32"
    warm_start = true         # start each solve from the larger Ns' Q (default true)

    [sampling]                # optional: Langevin-sampled finite networks (kren.sampling)
    N = [10, 30, 100]         # widths (ints) sampled, for every grid point's other parameters
    arch = ["fc", "lcn", "cnn"]   # which estimators are sampled (default: all in the grid)
    steps = 10000             # Langevin steps per chain                 (default 10000)
                              # steps, burn_in, thin, chains, step_size: one value, or one
                              # per estimator: steps = { fc = 30000, lcn = 6000, cnn = 6000 }
    burn_in = 2000            # discarded steps                          (default steps // 4)
    thin = 10                 # keep every thin-th state                 (default 10)
    chains = 4                # independent chains                       (default 4)
    step_size = 0.02          # Langevin step η                          (default 0.02)
    metropolis = true         # MALA (exact) rather than ULA             (default true)
    dtype = "float32"         #                                          (default "float32")
    seed = 0                  # sampler seed                             (default 0)

    [run]                     # how, not what (not part of the config's identity)
    workers = 1               # local worker processes (1: in this process)
    scheduler = ""            # address of a running Dask scheduler ("tcp://host:8786")
    threads = 1               # BLAS / torch threads per worker
    cache_bytes = 0           # kernel cache per worker in bytes (0: sized by the planner)

``[grid]`` may also be an array of tables (``[[grid]]``): the sweep is the union of their grids,
so a list of explicit points is a ``[[grid]]`` per point. A list in the grid is always an axis:
a per-axis mask is written ``"2x2"`` (or ``[[2, 2]]``), and ``mask = [2, 2]`` is refused as a
repeated value. Grid keys beyond those above are the constructor parameters of the registered
estimators (``kren.sweeps.registry``); they are checked by the estimator when the plan is made.

The config's identity (:attr:`SweepConfig.hash`) is the sha256 of its canonical form without
``[sweep]`` and ``[run]``: a sweep folder remembers it and refuses a different config.
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from numbers import Integral, Real
from pathlib import Path

from .datasets import DATASETS
from .errors import SweepConfigError
from .registry import RESERVED_PARAMS, estimator_names, get_estimator

__all__ = ["SweepConfig", "load_config", "SCHEMA_VERSION", "GRID_DEFAULTS"]

SCHEMA_VERSION = 1

SECTIONS = ("sweep", "grid", "data", "solver", "sampling", "run")
GRID_REQUIRED = ("arch", "N", "P")
GRID_DEFAULTS = {"T": 0.1, "lambda0": 1.0, "lambda1": 1.0, "activation": "erf",
                 "readout": "local", "padding": "valid", "dataset": "digits", "seed": 0}
DATA_DEFAULTS = {"classes": "even-odd", "n_test": 500, "standardize": True, "grayscale": False,
                 "paths": {}}
SOLVER_DEFAULTS = {"tol": 1e-9, "max_iter": 1000, "dtype": "float64", "warm_start": True}
SAMPLING_DEFAULTS = {"arch": None, "steps": 10000, "burn_in": None, "thin": 10, "chains": 4,
                     "step_size": 0.02, "metropolis": True, "dtype": "float32", "seed": 0}
RUN_DEFAULTS = {"workers": 1, "scheduler": "", "threads": 1, "cache_bytes": 0}
SWEEP_DEFAULTS = {"name": ""}


# ============================================================================ value checks
def _where(section, key):
    return f"{section}.{key}"


def _fail(where, msg):
    raise SweepConfigError(f"{where}: {msg}")


def _is_int(v):
    return isinstance(v, Integral) and not isinstance(v, bool)


def _is_real(v):
    return isinstance(v, Real) and not isinstance(v, bool)


def _int(where, v, minimum=None):
    if not _is_int(v):
        _fail(where, f"must be an integer, got {v!r} ({type(v).__name__})")
    if minimum is not None and v < minimum:
        _fail(where, f"must be ≥ {minimum}, got {v}")
    return int(v)


def _positive(where, v, allow_inf=False):
    if isinstance(v, str) and allow_inf and v.strip().lower() in ("inf", "infinity", "∞"):
        return math.inf
    if not _is_real(v):
        kind = "a positive number" + (" or inf" if allow_inf else "")
        _fail(where, f"must be {kind}, got {v!r} ({type(v).__name__})")
    v = float(v)
    if math.isnan(v) or v <= 0 or (math.isinf(v) and not allow_inf):
        _fail(where, f"must be {'> 0 (inf allowed)' if allow_inf else 'finite and > 0'}, got {v}")
    return v


def _str(where, v, choices=None):
    if not isinstance(v, str):
        _fail(where, f"must be a string, got {v!r} ({type(v).__name__})")
    if choices is not None and v not in choices:
        _fail(where, f"must be one of {list(choices)}, got {v!r}")
    return v


def _bool(where, v):
    if not isinstance(v, bool):
        _fail(where, f"must be true or false, got {v!r} ({type(v).__name__})")
    return v


_SIZES = re.compile(r"^\s*\d+(\s*[x×,]\s*\d+)*\s*$")


def _geometry(where, v):
    """An int ≥ 1, a string "AxB" or a list of ints ≥ 1 (one per spatial axis) -> int or tuple."""
    if _is_int(v):
        return _int(where, v, 1)
    if isinstance(v, str):
        if not _SIZES.match(v):
            _fail(where, f"must be an int, \"AxB\" or a list of ints, got {v!r}")
        vals = tuple(int(s) for s in re.split(r"[x×,]", v.replace(" ", "")))
    elif isinstance(v, (list, tuple)):
        vals = tuple(_int(where, u, 1) for u in v)
        if not vals:
            _fail(where, "an empty list is not a size")
    else:
        _fail(where, f"must be an int, \"AxB\" or a list of ints, got {v!r} ({type(v).__name__})")
    if any(u < 1 for u in vals):
        _fail(where, f"sizes must be ≥ 1, got {v!r}")
    return vals[0] if len(vals) == 1 else vals


def _activation(where, v):
    from .. import activations
    _str(where, v)
    try:
        activations.check_activation(v)
    except (ValueError, KeyError) as exc:
        _fail(where, str(exc))
    return v


def _passthrough(where, v):
    if isinstance(v, (bool, str)) or _is_real(v):
        return v
    if isinstance(v, (list, tuple)) and all(isinstance(u, (bool, str)) or _is_real(u) for u in v):
        return tuple(v)
    _fail(where, f"must be a number, a string, a boolean or a list of them, got {v!r}")


GRID_TYPES = {
    "arch": lambda w, v: get_estimator(_str(w, v)).name,
    "N": lambda w, v: _positive(w, v, allow_inf=True),
    "P": lambda w, v: _int(w, v, 1),
    "T": _positive,
    "lambda0": _positive,
    "lambda1": _positive,
    "activation": _activation,
    "readout": lambda w, v: _str(w, v, ("local", "pool")),
    "mask": _geometry,
    "stride": _geometry,
    "patches": _geometry,
    "padding": lambda w, v: _str(w, v, ("valid", "circular")),
    "dataset": lambda w, v: _str(w, v, tuple(DATASETS)),
    "seed": lambda w, v: _int(w, v, 0),
}
#: Grid keys that are not estimator parameters (data and geometry shorthands).
DATA_GRID_KEYS = ("P", "dataset", "seed", "patches")


def grid_keys() -> set:
    """Every key a grid may hold: the typed keys and the registered estimators' parameters."""
    from .registry import _REGISTRY
    keys = set(GRID_TYPES)
    for entry in _REGISTRY.values():
        keys |= entry.params
    return keys


def _unknown(where, key, known):
    near = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise SweepConfigError(f"{where}: unknown key {key!r}{hint}; known keys: "
                           f"{', '.join(sorted(known))}")


def _axis(where, raw, check):
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        _fail(where, "an empty list gives no points")
    out = []
    for k, v in enumerate(values):
        out.append(check(f"{where}[{k}]" if isinstance(raw, list) else where, v))
    seen = []
    for v in out:
        if v in seen:
            hint = (" (a per-axis size is written \"2x2\" or [[2, 2]]: a list is an axis of the "
                    "grid)") if where.split(".")[-1] in ("mask", "stride", "patches") else ""
            _fail(where, f"repeats the value {v!r}{hint}")
        seen.append(v)
    return tuple(out)


def _check_grid(where, grid: dict) -> dict:
    if not isinstance(grid, dict):
        _fail(where, f"must be a table of keys, got {type(grid).__name__}")
    known = grid_keys()
    out = {}
    for key, raw in grid.items():
        if key in RESERVED_PARAMS:
            section = "data" if key == "input_shape" else "solver" if key != "cache" else "run"
            _fail(_where(where, key), f"is set by the sweep itself (see [{section}]), not the grid")
        if key not in known:
            _unknown(where, key, known)
        check = GRID_TYPES.get(key, _passthrough)
        out[key] = _axis(_where(where, key), raw, check)
    for key in GRID_REQUIRED:
        if key not in out:
            _fail(where, f"needs the key {key!r} "
                  + ("(estimators: " + ", ".join(estimator_names()) + ")" if key == "arch" else ""))
    if "patches" in out and ("mask" in out or "stride" in out):
        _fail(where, "give either patches or mask/stride, not both")
    for key, v in GRID_DEFAULTS.items():
        out.setdefault(key, (v,))
    return out


def _check_section(name, raw, defaults, checks) -> dict:
    if raw is None:
        return dict(defaults)
    if not isinstance(raw, dict):
        _fail(name, f"must be a table, got {type(raw).__name__}")
    out = dict(defaults)
    for key, v in raw.items():
        if key not in checks:
            _unknown(name, key, checks)
        out[key] = checks[key](_where(name, key), v)
    return out


def _classes(where, v):
    from .. import data as _data
    if isinstance(v, str):
        if v not in ("even-odd", "none"):
            _fail(where, "must be \"even-odd\", \"none\", [a, b] or [[a, ...], [b, ...]], "
                  f"got {v!r}")
        return v
    if not isinstance(v, (list, tuple)):
        _fail(where, f"must be \"even-odd\", \"none\", [a, b] or [[a, ...], [b, ...]], got {v!r}")
    try:
        groups = _data._parse_classes(v)
    except ValueError as exc:
        _fail(where, str(exc))
    return [list(g) if len(g) > 1 or isinstance(v[k], (list, tuple)) else g[0]
            for k, g in enumerate(groups)]


def _paths(where, v):
    if not isinstance(v, dict):
        _fail(where, f"must be a table {{dataset = \"path\"}}, got {v!r}")
    for k, p in v.items():
        if k not in DATASETS or not DATASETS[k][1]:
            _fail(f"{where}.{k}", "is not a data set read from files; known: "
                  + ", ".join(n for n, (_, need) in DATASETS.items() if need))
        _str(f"{where}.{k}", p)
    return dict(v)


DATA_CHECKS = {"classes": _classes, "n_test": lambda w, v: _int(w, v, 1),
               "standardize": _bool, "grayscale": _bool, "paths": _paths}
SOLVER_CHECKS = {"tol": _positive, "max_iter": lambda w, v: _int(w, v, 1),
                 "dtype": lambda w, v: _str(w, v, ("float64", "float32")),
                 "warm_start": _bool}
def _per_arch(check):
    """A sampling value: one for every estimator, or a table {arch = value}."""
    def run(where, v):
        """Check one value, or a table {arch = value} of them, at ``where``."""
        if isinstance(v, dict):
            if not v:
                _fail(where, "an empty table gives no value")
            return {get_estimator(_str(f"{where} key", a)).name: check(f"{where}.{a}", u)
                    for a, u in v.items()}
        return check(where, v)
    return run


#: sampling keys that may differ between estimators ({fc = 30000, cnn = 6000})
PER_ARCH = ("steps", "burn_in", "thin", "chains", "step_size")
SAMPLING_CHECKS = {
    "N": lambda w, v: _axis(w, v, lambda ww, u: _int(ww, u, 1)),
    "arch": lambda w, v: _axis(w, v, lambda ww, u: get_estimator(_str(ww, u)).name),
    "steps": _per_arch(lambda w, v: _int(w, v, 1)),
    "burn_in": _per_arch(lambda w, v: _int(w, v, 0)),
    "thin": _per_arch(lambda w, v: _int(w, v, 1)),
    "chains": _per_arch(lambda w, v: _int(w, v, 1)),
    "step_size": _per_arch(_positive), "metropolis": _bool,
    "dtype": lambda w, v: _str(w, v, ("float32", "float64")), "seed": lambda w, v: _int(w, v, 0)}
RUN_CHECKS = {"workers": lambda w, v: _int(w, v, 1), "scheduler": _str,
              "threads": lambda w, v: _int(w, v, 1), "cache_bytes": lambda w, v: _int(w, v, 0)}
SWEEP_CHECKS = {"name": _str}


# ============================================================================ the config
def _canonical(obj):
    """JSON-ready canonical form: tuples as lists, inf as "inf", keys sorted by json.dumps."""
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep configuration (module docstring). Build with :func:`load_config`.

    ``grids``: one dict per grid table, every value a tuple (the axis); ``data``, ``solver``,
    ``sampling`` (None without sampled points), ``run``, ``name``; ``source``: the file it was
    read from and ``text`` its content (None for a dict).
    """

    grids: tuple
    data: dict
    solver: dict
    sampling: dict | None
    run: dict
    name: str = ""
    source: str | None = None
    text: str | None = field(default=None, repr=False)

    def identity(self) -> dict:
        """What the results depend on: everything but [sweep] and [run], in canonical form."""
        return _canonical({"schema": SCHEMA_VERSION, "grids": list(self.grids),
                           "data": self.data, "solver": self.solver,
                           "sampling": self.sampling})

    @property
    def hash(self) -> str:
        """sha256 of :meth:`identity` (hex): the config's identity recorded in a sweep folder."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def sampling_for(self, arch: str) -> dict | None:
        """The sampler settings of ``arch`` (per-estimator tables resolved; burn-in default
        steps // 4), or None without [sampling]."""
        if self.sampling is None:
            return None
        return _sampling_for(self.sampling, arch)

    # ------------------------------------------------------------------ overrides
    def with_run(self, **kw) -> "SweepConfig":
        """The same config with [run] keys replaced (None values ignored), checked."""
        run = dict(self.run)
        for k, v in kw.items():
            if v is None:
                continue
            if k not in RUN_CHECKS:
                _unknown("run", k, RUN_CHECKS)
            run[k] = RUN_CHECKS[k](_where("run", k), v)
        return replace(self, run=run)

    def with_dataset(self, dataset: str, path=None) -> "SweepConfig":
        """Every grid on ``dataset`` (its files at ``path``): ``kren paper --data PATH``."""
        _str("data.dataset", dataset, tuple(DATASETS))
        grids = tuple({**g, "dataset": (dataset,)} for g in self.grids)
        data = copy.deepcopy(self.data)
        if path is not None:
            data["paths"] = {**data["paths"], dataset: str(Path(path).resolve())}
        return replace(self, grids=grids, data=data)


def _sampling_for(sampling: dict, arch: str) -> dict:
    out = {k: (v.get(arch) if isinstance(v, dict) else v) for k, v in sampling.items()
           if k not in ("N", "arch")}
    if out["burn_in"] is None:
        out["burn_in"] = out["steps"] // 4
    return out


def load_config(config) -> SweepConfig:
    """A :class:`SweepConfig` from a path (.toml or .json), a dict in the same schema, or a
    SweepConfig (returned as it is). Raises :class:`SweepConfigError` naming the first bad key."""
    if isinstance(config, SweepConfig):
        return config
    source = text = None
    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"sweep config not found: {path}")
        text = path.read_text()
        source = str(path)
        if path.suffix == ".json":
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                raise SweepConfigError(f"{path}: not valid JSON: {exc}") from None
        else:
            import tomllib
            try:
                raw = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise SweepConfigError(f"{path}: not valid TOML: {exc}") from None
    elif isinstance(config, dict):
        raw = copy.deepcopy(config)
    else:
        raise SweepConfigError(f"config must be a path, a dict or a SweepConfig, got "
                               f"{type(config).__name__}")
    return _from_dict(raw, source, text)


def _from_dict(raw: dict, source, text) -> SweepConfig:
    for key in raw:
        if key not in SECTIONS:
            _unknown("config", key, SECTIONS)
    if "grid" not in raw:
        raise SweepConfigError("config: needs a [grid] table (or [[grid]] tables) with at least "
                               "arch, N and P")
    grid = raw["grid"]
    if isinstance(grid, list):
        if not grid:
            raise SweepConfigError("grid: an empty list of grids gives no points")
        grids = tuple(_check_grid(f"grid[{k}]", g) for k, g in enumerate(grid))
    else:
        grids = (_check_grid("grid", grid),)
    data = _check_section("data", raw.get("data"), DATA_DEFAULTS, DATA_CHECKS)
    solver = _check_section("solver", raw.get("solver"), SOLVER_DEFAULTS, SOLVER_CHECKS)
    sampling = None
    if raw.get("sampling") is not None:
        sampling = _check_section("sampling", raw["sampling"], SAMPLING_DEFAULTS, SAMPLING_CHECKS)
        if "N" not in raw["sampling"]:
            raise SweepConfigError("sampling: needs the key 'N' (the sampled widths, integers)")
        in_grid = {a for g in grids for a in g["arch"]}
        if sampling["arch"] is None:
            sampling["arch"] = tuple(a for a in estimator_names() if a in in_grid)
        for a in sampling["arch"]:
            if a not in in_grid:
                _fail("sampling.arch", f"{a!r} is not in any grid's arch ({sorted(in_grid)})")
            if not get_estimator(a).sampled:
                _fail("sampling.arch", f"{a!r} has no sampled finite network")
        for key in PER_ARCH:
            v = sampling[key]
            if isinstance(v, dict):
                for a in sampling["arch"]:
                    if a not in v:
                        _fail(f"sampling.{key}", f"has no value for the sampled {a!r}")
                for a in v:
                    if a not in sampling["arch"]:
                        _fail(f"sampling.{key}.{a}", f"{a!r} is not sampled "
                              f"(sampling.arch = {list(sampling['arch'])})")
        for a in sampling["arch"]:
            s = _sampling_for(sampling, a)
            where = f"sampling (for {a})" if any(isinstance(sampling[k], dict)
                                                 for k in PER_ARCH) else "sampling"
            if s["burn_in"] >= s["steps"]:
                _fail(f"{where}.burn_in", f"must be < steps ({s['steps']}), got {s['burn_in']}")
            if (s["steps"] - s["burn_in"]) // s["thin"] < 4:
                _fail(f"{where}.thin", "keeps fewer than 4 draws per chain: (steps − burn_in) "
                      f"// thin = {(s['steps'] - s['burn_in']) // s['thin']}")
    run = _check_section("run", raw.get("run"), RUN_DEFAULTS, RUN_CHECKS)
    sweep = _check_section("sweep", raw.get("sweep"), SWEEP_DEFAULTS, SWEEP_CHECKS)
    for g in grids:
        for ds in g["dataset"]:
            if DATASETS[ds][1] and ds not in data["paths"]:
                raise SweepConfigError(f"grid.dataset: {ds!r} is read from files: give its folder "
                                       f"as [data.paths] {ds} = \"/path\"")
    return SweepConfig(grids=grids, data=data, solver=solver, sampling=sampling, run=run,
                       name=sweep["name"], source=source, text=text)
