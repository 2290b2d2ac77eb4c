"""Sweeps: grids of saddle points and sampled networks, kernels reused, resumable, on Dask.

    import kren
    res = kren.sweep("grid.toml", out="runs/grid")       # or a dict in the same schema
    res.table                                            # pandas: one row per point
    kren.sweeps.plot("runs/grid")                        # the standard figures

    kren sweep grid.toml --out runs/grid [--workers 4 | --scheduler tcp://host:8786] [--dry-run]
    kren plot runs/grid
    kren paper

Modules, one idea each: :mod:`.config` (the TOML schema, validated), :mod:`.registry` (which
estimator ``arch = "cnn"`` runs), :mod:`.datasets` (where the data come from), :mod:`.plan`
(points, kernel groups, warm-start chains, memory), :mod:`.worker` (one point on one worker),
:mod:`.store` (the folder: atomic point files, the config's identity), :mod:`.run` (this
process, local processes or a Dask cluster), :mod:`.table` (the tidy table), :mod:`.figures`
(``kren plot``), :mod:`.paper` (``kren paper``), :mod:`.cli`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import SweepConfig, load_config
from .errors import SweepConfigError, SweepFolderError
from .plan import Plan, make_plan
from .registry import get_estimator, register_estimator

__all__ = ["sweep", "SweepResult", "SweepConfig", "load_config", "make_plan", "Plan",
           "register_estimator", "get_estimator", "SweepConfigError", "SweepFolderError",
           "plot"]


@dataclass
class SweepResult:
    """A finished (or resumed) sweep: the ``table`` (pandas), the Q matrices (``Q``: point id
    -> (Q, Q̄)), the ``plan``, this run's ``summary`` (points computed, failed, lost, seconds),
    the ``folder``, the ``paths`` written and whether every point is recorded (``complete``)."""

    table: object
    Q: dict
    plan: Plan
    summary: dict
    folder: str = ""
    paths: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when every point of the plan is recorded (ok or failed)."""
        return len(self.table) == len(self.plan)


def sweep(config, out=None, *, workers=None, scheduler=None, threads=None, progress=True,
          dry_run=False, log=print):
    """Run the sweep of ``config`` (a TOML/JSON path, a dict or a :class:`SweepConfig`; schema
    in :mod:`kren.sweeps.config`) into the folder ``out``.

    Points already recorded in ``out`` are not computed again (a killed sweep resumes); a folder
    holding another config's sweep is refused. ``workers``: local worker processes (default:
    the config's ``[run] workers``, else 1 = this process); ``scheduler``: the address of a
    running Dask scheduler; ``threads``: BLAS/torch threads per worker (default 1).
    ``dry_run``: print the plan (points, kernel groups, memory) and return it without running.
    Returns a :class:`SweepResult` (``dry_run``: the :class:`Plan`).
    """
    cfg = load_config(config).with_run(workers=workers, scheduler=scheduler, threads=threads)
    plan = make_plan(cfg, workers=1 if cfg.run["scheduler"] else cfg.run["workers"])
    from .store import SweepStore
    if out is None:
        stem = Path(cfg.source).stem if cfg.source else "sweep"
        out = Path("kren-sweeps") / stem
    store = SweepStore(out)
    if dry_run:
        done = store.done() if store.check(cfg) else set()
        log(plan.describe(done))
        return plan
    from .run import execute
    from .table import assemble, write_table
    store.open(cfg, len(plan))
    try:
        done = store.done()
        if log is not None and progress:
            log(plan.describe(done))
        summary = execute(plan, store, workers=cfg.run["workers"],
                          scheduler=cfg.run["scheduler"] or None, threads=cfg.run["threads"],
                          progress=progress)
        table, mats = assemble(plan, store)
        paths = write_table(table, mats, store.path)
    finally:
        store.close()
    paths = {k: str(v) for k, v in paths.items()}
    return SweepResult(table=table, Q=mats, plan=plan, summary=dict(summary),
                       folder=str(store.path), paths=paths)


def plot(folder, x="N", formats=("png", "pdf")):
    """Draw the standard figures of a sweep folder (:func:`kren.sweeps.figures.plot_sweep`)."""
    from .figures import plot_sweep
    return plot_sweep(folder, x=x, formats=formats)
