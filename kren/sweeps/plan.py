"""The plan of a sweep: its points, the kernel tensor each one needs, warm-start chains, memory.

:func:`make_plan` expands every grid of a :class:`~kren.sweeps.config.SweepConfig` into points
(their Cartesian product, the union over ``[[grid]]`` tables, repeated points once) and, with
``[sampling]``, adds a sampled point for every theory point's parameters at each sampled width.

- **Kernel groups.** Points that share the data (dataset, classes, P, n_test, seed, ...) and the
  kernel-relevant architecture (``arch.kernel_key``: kind, readout, activation, λ0, geometry; not
  λ1) and the dtype share one train×train tensor and one set of test×train blocks: the local
  kernels K_ij depend on neither N, T nor λ1 (THEORY §2). A group is the unit of kernel reuse.
- **Warm-start chains.** Inside a group, theory points that differ only in N form a chain, run
  from the largest N (N = ∞ first) down; each solve starts from the secant extrapolation in 1/N
  of the last two converged points of its chain (continuation in α = P/N,
  :func:`kren.sweeps.run.warm_start`). A chain runs in order on one worker at a time; distinct
  chains run in parallel.
- **Order.** Sampled points (long) are dispatched first, then the groups in plan order, so each
  worker's :class:`kren.cache.KernelCache` builds each tensor once.
- **Memory.** Per group: the train tensor (blocks × P² values), the cached test×train blocks
  (cross blocks × n_test × P) and the solver's working set (an exact Hessian needs 3× the
  tensor; A, K_R and its factor a few P²). Per worker: a kernel cache for two groups plus one
  solve; the plan prints it, and the total for all workers, before anything runs.

A point whose parameters the estimator or the architecture refuses (a mask larger than the
input, patches that do not tile it) is kept in the plan with its message (``invalid``) and is
recorded as a failed point without being computed.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field

import numpy as np

from .config import DATA_GRID_KEYS, SweepConfig, _canonical
from .datasets import data_key, input_shape
from .registry import get_estimator

__all__ = ["Point", "Group", "Plan", "make_plan", "format_bytes"]

#: Grid keys shown as table columns in this order (estimator-specific extras follow).
PARAM_ORDER = ("dataset", "P", "seed", "arch", "readout", "activation", "mask", "stride",
               "padding", "patches", "N", "T", "lambda0", "lambda1")


def format_bytes(n) -> str:
    """A byte count in KiB, MiB or GiB (powers of 1024)."""
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _short(obj) -> str:
    text = json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _size_str(v):
    if v is None:
        return None
    if isinstance(v, (tuple, list)):
        return "x".join(str(int(u)) for u in v)
    return str(int(v))


@dataclass(frozen=True)
class Point:
    """One point of the sweep (module docstring).

    ``params``: every grid key, resolved (mask/stride as per-axis tuples; None where the
    estimator does not take the key); ``kwargs``: what the estimator's constructor gets;
    ``data``: the data key (:func:`kren.sweeps.datasets.data_key`); ``group``: the kernel group
    id; ``chain``: the warm-start chain id (theory points); ``invalid``: why the parameters were
    refused, or None; ``n``: patches; ``kind``: "theory" or "sampled".
    """

    id: str
    index: int
    kind: str
    arch: str
    params: dict
    kwargs: dict
    data: tuple
    group: str
    chain: str
    invalid: str | None = None
    n: int | None = None

    @property
    def N(self) -> float:
        """The width N of the point (``inf`` for N = ∞)."""
        return float(self.params["N"])

    @property
    def label(self) -> str:
        """The estimator's label (FC, LCN, CNN, ...)."""
        return get_estimator(self.arch).label


@dataclass
class Group:
    """Points sharing one kernel tensor (module docstring); bytes of its tensors."""

    id: str
    description: str
    points: list = field(default_factory=list)
    train_bytes: int | None = 0
    cross_bytes: int | None = 0
    work_bytes: int | None = 0

    @property
    def kernel_bytes(self):
        """Bytes of the group's cached tensors: train plus test×train (None when unknown)."""
        if self.train_bytes is None or self.cross_bytes is None:
            return None
        return self.train_bytes + self.cross_bytes


@dataclass
class Plan:
    """The points of a sweep in table order, grouped and chained (module docstring)."""

    config: SweepConfig
    points: list
    groups: dict
    chains: dict            # chain id -> [Point] in run order
    workers: int = 1

    def __len__(self) -> int:
        return len(self.points)

    @property
    def by_id(self) -> dict:
        """The plan's points by id."""
        return {p.id: p for p in self.points}

    def dispatch_order(self) -> list:
        """Chains in the order they are started: sampled points first, the costliest first
        (:meth:`sampling_cost`; the longest jobs start early, so no worker ends alone on one),
        then the theory groups in plan order."""
        sampled = [c for c, pts in self.chains.items() if pts[0].kind == "sampled"]
        sampled.sort(key=lambda c: -self.sampling_cost(self.chains[c][0]))
        theory = [c for c, pts in self.chains.items() if pts[0].kind != "sampled"]
        return sampled + theory

    def sampling_cost(self, point) -> float:
        """Relative cost of a sampled point: chains × steps × P × N × n (one forward and
        backward pass touches every hidden unit of every patch of every training input)."""
        s = self.config.sampling_for(point.arch)
        return float(s["chains"] * s["steps"] * point.params["P"] * point.params["N"]
                     * (point.n or 1))

    # ------------------------------------------------------------------ memory
    def cache_bytes(self) -> int:
        """Per-worker kernel cache bound: ``[run] cache_bytes``, else room for the two largest
        groups' tensors (at least 64 MiB)."""
        set_ = int(self.config.run.get("cache_bytes") or 0)
        if set_:
            return set_
        sizes = sorted((g.kernel_bytes or 0 for g in self.groups.values()), reverse=True)
        return max(64 * 2**20, int(sum(sizes[:2]) * 1.05))

    def memory(self) -> dict:
        """Bytes: per-worker kernel cache, the largest solve, per worker and for all workers."""
        cache = self.cache_bytes()
        work = max((g.work_bytes or 0 for g in self.groups.values()), default=0)
        per = cache + work
        return {"cache": cache, "work": work, "per_worker": per,
                "total": per * self.workers, "workers": self.workers}

    # ------------------------------------------------------------------ text
    def describe(self, done: set | None = None) -> str:
        """The plan as text: counts, groups with their tensor sizes, memory (``--dry-run``)."""
        done = done or set()
        cfg = self.config
        n_theory = sum(p.kind == "theory" for p in self.points)
        n_sampled = len(self.points) - n_theory
        invalid = [p for p in self.points if p.invalid]
        name = f" \"{cfg.name}\"" if cfg.name else ""
        n_groups = sum(1 for g in self.groups.values() if g.points[0].kind == "theory")
        lines = [f"sweep{name}: {len(self.points)} points ({n_theory} theory, {n_sampled} "
                 f"sampled) in {n_groups} kernel groups; config {cfg.hash[:12]}",
                 f"done: {len(done & set(self.by_id))}, to compute: "
                 f"{sum(p.id not in done and not p.invalid for p in self.points)}, "
                 f"invalid (recorded as failed): {len(invalid)}"]
        lines.append("kernel groups (one tensor each, built once per worker):")
        for g in self.groups.values():
            if g.points[0].kind != "theory":
                continue
            n_chains = len({p.chain for p in g.points})
            lines.append(f"  {g.description}: {len(g.points)} points, {n_chains} chain(s); "
                         f"train {format_bytes(g.train_bytes)}, test×train "
                         f"{format_bytes(g.cross_bytes)}, solve {format_bytes(g.work_bytes)}")
        if n_sampled:
            lines.append(f"sampled: {n_sampled} points, widths {list(cfg.sampling['N'])}")
            for a in cfg.sampling["arch"]:
                s = cfg.sampling_for(a)
                lines.append(f"  {get_estimator(a).label}: {s['chains']} chains × {s['steps']} "
                             f"steps (burn-in {s['burn_in']}, thin {s['thin']}), η = "
                             f"{s['step_size']}, {'MALA' if s['metropolis'] else 'ULA'}, "
                             f"{s['dtype']}")
        for p in invalid[:10]:
            lines.append(f"  invalid {p.arch} {_brief(p.params)}: {p.invalid}")
        if len(invalid) > 10:
            lines.append(f"  ... and {len(invalid) - 10} more invalid points")
        m = self.memory()
        from ..kernels import available_memory
        lines.append(f"memory: per worker {format_bytes(m['per_worker'])} (kernel cache "
                     f"{format_bytes(m['cache'])} + largest solve {format_bytes(m['work'])}); "
                     f"{m['workers']} worker(s): {format_bytes(m['total'])}; available now "
                     f"{format_bytes(available_memory())}")
        return "\n".join(lines)


def _brief(params) -> str:
    return " ".join(f"{k}={_size_str(v) if k in ('mask', 'stride', 'patches') else v}"
                    for k, v in params.items() if v is not None and k != "arch")


# ============================================================================ expansion
def _combinations(grid: dict):
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, values))


def _geometry_kwargs(combo, entry, shape):
    """mask/stride for the estimator: given, from ``patches`` (tile the input), or absent."""
    if "mask" not in entry.params:
        return {}
    kw = {}
    if combo.get("patches") is not None:
        spatial = shape[1:]
        tiles = combo["patches"]
        tiles = (tiles,) * len(spatial) if isinstance(tiles, int) else tuple(tiles)
        if len(tiles) != len(spatial) or any(s % t for s, t in zip(spatial, tiles)):
            raise ValueError(f"patches={_size_str(combo['patches'])} does not tile the input "
                             f"{'x'.join(map(str, spatial))} into equal patches")
        mask = tuple(s // t for s, t in zip(spatial, tiles))
        kw["mask"] = mask
        kw["stride"] = mask
    else:
        for k in ("mask", "stride"):
            if combo.get(k) is not None:
                kw[k] = combo[k]
    return kw


def _tensor_bytes(arch, P, n_test, itemsize):
    """(train, cross, work) bytes of a group (module docstring); None when unknown."""
    spec = getattr(arch, "spec", None)
    if spec is None:
        return None, None, None
    n = arch.n
    blocks = {"diagonal": n, "triangle": n * (n + 1) // 2, "pooled": 1}[spec.train_pairs]
    cross = {"full": n * n, "diagonal": n, "pooled": 1}[spec.cross]
    train = blocks * P * P * itemsize + 2 * n * P * 8
    if spec.structure == "scalar":
        train += P * P * 8 + P * 8                    # the cached eigenbasis (k, U), float64
    cross_b = cross * n_test * P * itemsize
    work = 6 * P * P * 8
    if spec.structure != "scalar" and arch.zero_mean:
        work += 3 * blocks * P * P * 8                # exact Hessian (Newton)
    return train, cross_b, work


def make_plan(config: SweepConfig, workers: int | None = None) -> Plan:
    """Expand, resolve, group and chain the points of ``config`` (module docstring)."""
    cfg = config
    solver, data, sampling = cfg.solver, cfg.data, cfg.sampling
    itemsize = np.dtype(solver["dtype"]).itemsize
    points: dict[str, Point] = {}
    groups: dict[str, Group] = {}
    theory_sources = []
    memo: dict = {}
    for grid in cfg.grids:
        for combo in _combinations(grid):
            pt, grp = _resolve(combo, "theory", cfg, itemsize, memo)
            if pt.id in points:
                continue
            points[pt.id] = pt
            theory_sources.append((combo, pt))
            _add(groups, grp, pt)
    if sampling is not None:
        for combo, src in theory_sources:
            if src.arch not in sampling["arch"]:
                continue
            for N in sampling["N"]:
                pt, grp = _resolve({**combo, "N": int(N)}, "sampled", cfg, itemsize, memo)
                if pt.id in points:
                    continue
                points[pt.id] = pt
                _add(groups, grp, pt)
    # table order: theory points in grid order, then sampled; indices follow it
    ordered = [p for p in points.values() if p.kind == "theory"] + \
              [p for p in points.values() if p.kind == "sampled"]
    ordered = [_with_index(p, k) for k, p in enumerate(ordered)]
    by_id = {p.id: p for p in ordered}
    for g in groups.values():
        g.points = [by_id[p.id] for p in g.points]
    chains: dict[str, list] = {}
    for g in groups.values():
        for p in g.points:
            chains.setdefault(p.chain, []).append(p)
    for c, pts in chains.items():
        pts.sort(key=lambda p: (-p.N, p.index))
    workers = int(workers if workers is not None else cfg.run.get("workers", 1))
    return Plan(cfg, ordered, groups, chains, workers)


def _with_index(p: Point, k: int) -> Point:
    from dataclasses import replace
    return replace(p, index=k)


def _add(groups, grp, pt):
    gid, desc, sizes = grp
    if gid not in groups:
        train, cross, work = sizes
        groups[gid] = Group(gid, desc, [], train, cross, work)
    groups[gid].points.append(pt)


#: Parameters checked by the config itself (positive numbers; N may be inf): the architecture
#: of a point is validated once for all values of them (see _architecture).
_CHECKED = ("N", "T", "lambda1")


def _architecture(memo, cls, kwargs: tuple, shape, tol, max_iter, dtype):
    """The estimator's validated architecture (``_check_params``), which raises for a refused
    parameter. Remembered in ``memo`` (one plan's) over everything but N, T and λ1 (validated
    by the config; λ1 is not part of ``kernel_key``), so a grid of many widths validates each
    geometry once."""
    rest = tuple((k, v) for k, v in kwargs if k not in _CHECKED)
    key = (cls, rest, shape, tol, max_iter, dtype)
    if key not in memo:
        try:
            est = cls(**dict(kwargs), input_shape=shape, tol=tol, max_iter=max_iter, dtype=dtype)
            memo[key] = (est._check_params(), None)
        except (ValueError, TypeError, KeyError) as exc:
            memo[key] = (None, exc)
    arch, exc = memo[key]
    if exc is not None:
        raise exc
    return arch


def _resolve(combo: dict, kind: str, cfg: SweepConfig, itemsize: int, memo: dict):
    """One grid combination -> (Point, (group id, description, tensor bytes))."""
    entry = get_estimator(combo["arch"])
    data, solver = cfg.data, cfg.solver
    dataset = combo["dataset"]
    shape = input_shape(dataset, data["grayscale"])
    dkey = data_key(dataset, combo["P"], combo["seed"], data)
    params = {k: None for k in PARAM_ORDER}
    params.update({k: combo.get(k) for k in DATA_GRID_KEYS if k != "patches"})
    params["arch"] = entry.name
    kwargs = {k: v for k, v in combo.items() if k in entry.params}
    invalid = arch = None
    try:
        kwargs.update(_geometry_kwargs(combo, entry, shape))
        if "mask" in entry.params:
            params["patches"] = combo.get("patches")
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()}
        arch = _architecture(memo, entry.cls, tuple(sorted(kwargs.items())), shape,
                             solver["tol"], solver["max_iter"], solver["dtype"])
    except (ValueError, TypeError, KeyError) as exc:
        invalid = f"{type(exc).__name__}: {exc}"
    for k, v in kwargs.items():
        params[k] = v
    geom = getattr(arch, "geometry", None) if arch is not None else None
    if geom is not None and "mask" in entry.params:
        params["mask"], params["stride"] = tuple(geom.mask), tuple(geom.stride)
    if kind == "sampled":
        params["N"] = int(combo["N"])
    n = getattr(arch, "n", None) if arch is not None else None
    identity = {"kind": kind, "params": params, "data": dkey}
    pid = _short(identity)
    data_desc = (f"{dataset} P={combo['P']} seed={combo['seed']}")
    if kind == "sampled":
        gid = "s-" + pid
        desc = f"{data_desc} | sampled {entry.label} N={params['N']}"
        sizes = (0, 0, 0)
        chain = gid
    elif invalid is not None or not hasattr(arch, "kernel_key"):
        gid = "x-" + pid
        desc = f"{data_desc} | {entry.label} (own kernels)"
        sizes = (None, None, None) if invalid is None else (0, 0, 0)
        chain = gid
    else:
        gid = _short({"data": dkey, "kernel": arch.kernel_key, "dtype": solver["dtype"],
                      "estimator": entry.name})
        geo = (f" mask {_size_str(params['mask'])} stride {_size_str(params['stride'])} "
               f"{params['padding']} (n={n})" if params.get("mask") is not None else "")
        desc = (f"{data_desc} | {entry.label} {params['activation']} λ0={params['lambda0']}"
                f"{geo}")
        sizes = _tensor_bytes(arch, combo["P"], data["n_test"], itemsize)
        if cfg.solver["warm_start"]:
            rest = {k: v for k, v in params.items() if k != "N"}
            chain = gid + "-" + _short(rest)
        else:
            chain = gid + "-" + pid
    pt = Point(id=pid, index=-1, kind=kind, arch=entry.name, params=params, kwargs=kwargs,
               data=dkey, group=gid, chain=chain, invalid=invalid, n=n)
    return pt, (gid, desc, sizes)


def alpha(P, N) -> float:
    """α = P/N (0 at N = ∞)."""
    return 0.0 if math.isinf(N) else P / N
