"""Running a plan: in this process, on local worker processes, or on a Dask cluster.

- ``workers = 1`` (default): every point in this process, in plan order.
- ``workers = K > 1``: a ``distributed.LocalCluster`` of K single-threaded worker processes.
- ``scheduler = "tcp://host:8786"``: an existing Dask distributed cluster
  (``dask.distributed.Client(address)``); the data and kernel tensors are loaded and built on its
  workers (each keeps its own :class:`~kren.sweeps.worker.WorkerState`, installed by a
  ``WorkerPlugin``), never shipped from the client. Only point descriptions and warm starts
  (n×n matrices) go to the workers, and records with Q, Q̄ come back.

The client (this process) is the only writer of the sweep folder: it records each point
atomically as it completes (:class:`~kren.sweeps.store.SweepStore`) and logs it, so a killed
sweep loses at most the points in flight. A warm-start chain (points differing only in N, run
from the largest N down) is submitted one point at a time, each after its predecessor finished,
with a hint to run on the same worker; chains run in parallel. Each point starts from the
secant extrapolation in 1/N of its chain's last two converged points (:func:`warm_start`). Priorities follow the plan's
dispatch order (sampled points, then kernel groups in order), so each worker builds each group's
tensor once. A point's own failure comes back as a failed record; a lost worker leaves its point
unrecorded (computed by the next run), and the sweep goes on.

Progress: a tqdm bar with the points done, failed and the time left.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .registry import get_estimator
from .worker import Task, WorkerState, run_task

__all__ = ["execute", "RunSummary", "PLUGIN_NAME"]

PLUGIN_NAME = "kren-sweep"


class RunSummary(dict):
    """One run: points ``pending`` at the start, ``computed`` (recorded), ``failed`` (recorded
    with status failed), ``lost`` (a worker died: not recorded), ``not_computed`` (left for the
    next run, e.g. after a lost point of their chain), ``seconds``, ``executor``."""


def _converged(record, arrays):
    """(Q, Q̄) of a converged point (float64 arrays), or None."""
    if record.get("status") != "ok" or not record.get("converged") or "Q" not in arrays:
        return None
    return np.asarray(arrays["Q"], float), np.asarray(arrays["Qbar"], float)


def _pd(M) -> bool:
    try:
        np.linalg.cholesky(0.5 * (M + M.T))
        return True
    except np.linalg.LinAlgError:
        return False


def warm_start(history, N):
    """Q0 for a chain point at width ``N`` from ``history``, the chain's last two converged
    points [(N, Q, Q̄)], most recent last: the secant (linear) extrapolation in 1/N (the
    continuation variable α = P/N; N = ∞ is 1/N = 0) through the two, where it keeps Q ≻ 0
    and 𝟙 + Q̄ ≻ 0, else the most recent point's (Q, Q̄) as it is; None without history.
    A number for a 1×1 Q (FC, pooled CNN), otherwise the pair (Q, Q̄)."""
    if not history:
        return None
    N1, Q, Qbar = history[-1]
    if len(history) > 1:
        N2, Q2, Qbar2 = history[-2]
        x, x1, x2 = (0.0 if math.isinf(v) else 1.0 / v for v in (N, N1, N2))
        if x1 != x2:
            t = (x - x1) / (x1 - x2)
            Qe, Qbe = Q + t * (Q - Q2), Qbar + t * (Qbar - Qbar2)
            if _pd(Qe) and _pd(np.eye(len(Qbe)) + Qbe):
                Q, Qbar = Qe, Qbe
    if Q.shape == (1, 1):
        return float(Q[0, 0])
    return (Q, Qbar)


class _Chains:
    """The pending points of each chain, and the warm start each next point gets."""

    def __init__(self, plan, store, done: set):
        self.queue = {}
        self.history = {}
        self.warm = plan.config.solver["warm_start"]
        for cid in plan.dispatch_order():
            pts = plan.chains[cid]
            pending = [p for p in pts if p.id not in done]
            if not pending:
                continue
            self.queue[cid] = pending
            hist = []
            if self.warm:                        # the latest converged predecessors
                first = pts.index(pending[0])
                for prev in reversed(pts[:first]):
                    qq = _converged(*store.read(prev.id))
                    if qq is not None:
                        hist.insert(0, (float(prev.params["N"]), *qq))
                        if len(hist) == 2:
                            break
            self.history[cid] = hist

    def __len__(self):
        return sum(len(v) for v in self.queue.values())

    def next(self, cid):
        """The chain's next pending point, or None when the chain is done."""
        pts = self.queue.get(cid)
        if not pts:
            self.queue.pop(cid, None)
            return None
        return pts.pop(0)

    def start(self, cid, point):
        """The warm start of the chain's point (:func:`warm_start`), or None."""
        if not self.warm or point.kind == "sampled":
            return None
        return warm_start(self.history.get(cid, []), float(point.params["N"]))

    def finished(self, cid, point, record, arrays):
        """Record a chain point's result: a converged (Q, Q̄) joins the chain's history."""
        qq = _converged(record, arrays) if self.warm else None
        if qq is not None:
            self.history[cid] = (self.history.get(cid, []) + [(float(point.params["N"]),
                                                                *qq)])[-2:]


def _task(plan, point, threads) -> Task:
    cfg = plan.config
    return Task(point=point, cls=get_estimator(point.arch).cls, solver=cfg.solver,
                sampling=cfg.sampling_for(point.arch), threads=threads)


def _record(point, rec) -> dict:
    out = {"point": point.id, "index": point.index, "kind": point.kind, "arch": point.arch,
           "params": point.params}
    out.update(rec)
    return out


class _Progress:
    def __init__(self, total, initial, enabled):
        from tqdm.auto import tqdm
        self.failed = 0
        self.bar = tqdm(total=total, initial=initial, disable=not enabled, unit="pt",
                        desc="kren sweep", dynamic_ncols=True, smoothing=0.1)

    def update(self, record):
        """Count one recorded point (failed ones in the postfix)."""
        if record.get("status") != "ok":
            self.failed += 1
            self.bar.set_postfix_str(f"failed {self.failed}", refresh=False)
        self.bar.update(1)

    def close(self):
        """Close the progress bar."""
        self.bar.close()


def execute(plan, store, *, workers=1, scheduler=None, threads=1, progress=True) -> RunSummary:
    """Compute every point of ``plan`` without a file in ``store`` (module docstring)."""
    t0 = time.perf_counter()
    done = store.done()
    chains = _Chains(plan, store, done)
    summary = RunSummary(computed=0, failed=0, lost=0, pending=len(chains), not_computed=0,
                         seconds=0.0, executor="serial")
    if not len(chains):
        return summary
    bar = _Progress(len(plan), len(plan) - len(chains), progress)
    try:
        if scheduler:
            from distributed import Client
            summary["executor"] = f"dask {scheduler}"
            with Client(scheduler) as client:
                _dask(plan, store, chains, client, threads, bar, summary)
        elif workers > 1:
            from distributed import Client, LocalCluster
            summary["executor"] = f"{workers} local worker processes"
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=":0", memory_limit=0,
                              silence_logs=40) as cluster, Client(cluster) as client:
                _dask(plan, store, chains, client, threads, bar, summary)
        else:
            _serial(plan, store, chains, threads, bar, summary)
    finally:
        bar.close()
        summary["seconds"] = time.perf_counter() - t0
        summary["not_computed"] = len(chains)
    return summary


def _store_result(store, point, rec, arrays, bar, summary):
    record = _record(point, rec)
    store.write(point.id, record, arrays)
    store.log("done", point.id, status=record["status"], worker=record.get("worker"))
    summary["computed"] += 1
    summary["failed"] += record["status"] != "ok"
    bar.update(record)
    return record


# ============================================================================ in this process
def _serial(plan, store, chains, threads, bar, summary):
    state = WorkerState(plan.cache_bytes())
    for cid in list(chains.queue):
        while (point := chains.next(cid)) is not None:
            store.log("start", point.id)
            rec, arrays = run_task(_task(plan, point, threads), chains.start(cid, point), state)
            record = _store_result(store, point, rec, arrays, bar, summary)
            chains.finished(cid, point, record, arrays)


# ============================================================================ Dask
def _run_on_worker(task, Q0, token):
    """The Dask task: run one point with the worker's own state."""
    from distributed import get_worker
    worker = get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    if plugin is None or plugin.token != token or plugin.state is None:
        raise RuntimeError("the kren sweep plugin is not installed on this worker")
    rec, arrays = run_task(task, Q0, plugin.state)
    return rec, arrays, worker.address


def _dask(plan, store, chains, client, threads, bar, summary):
    from distributed import as_completed

    from .dask_plugin import SweepWorkerPlugin
    token = plan.config.hash
    client.register_plugin(SweepWorkerPlugin(plan.cache_bytes(), token), name=PLUGIN_NAME)
    order = list(chains.queue)
    priority = {cid: len(order) - k for k, cid in enumerate(order)}
    # each kernel group prefers one worker (round robin), so its tensor is usually built once;
    # an idle worker may still steal its chains (allow_other_workers) and builds it once more
    addresses = sorted(client.scheduler_info()["workers"])
    groups = list(dict.fromkeys(chains.queue[c][0].group for c in order
                                if chains.queue[c][0].kind != "sampled"))
    owner = {g: addresses[k % len(addresses)] for k, g in enumerate(groups)} if addresses else {}
    futures = as_completed()
    meta = {}

    def submit(cid, where=None):
        """Submit the chain's next point to the cluster (preferring ``where``)."""
        point = chains.next(cid)
        if point is None:
            return
        store.log("start", point.id)
        hint = {"workers": [where], "allow_other_workers": True} if where else {}
        fut = client.submit(_run_on_worker, _task(plan, point, threads), chains.start(cid, point),
                            token, key=f"kren-sweep-{point.id}-{time.time_ns()}",
                            priority=priority[cid], pure=False, **hint)
        meta[fut.key] = (cid, point)
        futures.add(fut)

    for cid in order:
        submit(cid, owner.get(chains.queue[cid][0].group))
    for fut in futures:
        cid, point = meta.pop(fut.key)
        try:
            rec, arrays, address = fut.result()
        except Exception as exc:       # noqa: BLE001 - lost worker, cancelled: not recorded
            store.log("lost", point.id, error=f"{type(exc).__name__}: {exc}")
            summary["lost"] += 1
            continue                    # its chain stops here; the next run resumes it
        record = _store_result(store, point, rec, arrays, bar, summary)
        chains.finished(cid, point, record, arrays)
        submit(cid, address)
