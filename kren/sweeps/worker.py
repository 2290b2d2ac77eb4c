"""What a worker does for one point: fit the saddle point (theory) or sample the network.

A worker (this process, a local worker process or a Dask worker) holds one
:class:`WorkerState`: its own :class:`kren.cache.KernelCache` (bounded by the plan) and the data
sets it loaded, so every kernel tensor is built on the worker that uses it and, for the points
of one kernel group, once. :func:`run_task` never raises for a point's own failure (a refused
parameter, an unconverged solve, a diverged chain, a missing file): the record says
``status = "failed"`` with the message, and the sweep goes on.

Theory point (THEORY §3–4): ``fit(X, y, Q0)`` with the sweep's cache, then the test error
ε = bias² + variance on the test set and the training error; Q summaries (trace, eigenvalues,
patch importance Σ_j Q_ij, THEORY §6) and the solver's diagnostics. Sampled point (THEORY §1):
:func:`kren.sampling.sample_posterior` with the same architecture; ε with its Monte-Carlo
standard error and split-R̂ (as ``kren compare``).
"""
from __future__ import annotations

import math
import os
import socket
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..cache import KernelCache
from .datasets import load as load_dataset

__all__ = ["Task", "WorkerState", "run_task", "q_summary"]


@dataclass(frozen=True)
class Task:
    """Everything a worker needs for one point (small: no arrays but the warm start)."""

    point: object            # kren.sweeps.plan.Point
    cls: type                # the estimator class
    solver: dict
    sampling: dict | None
    threads: int = 1


class WorkerState:
    """Per-worker kernel cache and loaded data sets (the last ``max_datasets``)."""

    def __init__(self, cache_bytes: int, max_datasets: int = 2):
        self.cache = KernelCache(max_bytes=max(1, int(cache_bytes)))
        self._datasets: OrderedDict = OrderedDict()
        self.max_datasets = max_datasets
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._threadpools = None

    def threads(self, n: int):
        """A context limiting BLAS/OpenMP to ``n`` threads (the libraries are found once)."""
        if self._threadpools is None:
            from threadpoolctl import ThreadpoolController
            self._threadpools = ThreadpoolController()
        return self._threadpools.limit(limits=int(n))

    def dataset(self, key):
        """The data set of ``key``, loaded once per worker (the most recent few kept)."""
        if key in self._datasets:
            self._datasets.move_to_end(key)
            return self._datasets[key]
        ds = load_dataset(key)
        self._datasets[key] = ds
        while len(self._datasets) > self.max_datasets:
            self._datasets.popitem(last=False)
        return ds


def q_summary(Q, structure_n=None) -> dict:
    """Trace, eigenvalues (ascending) and patch importance Σ_j Q_ij of Q (THEORY §6)."""
    Q = np.atleast_2d(np.asarray(Q, dtype=float))
    ev = np.linalg.eigvalsh(0.5 * (Q + Q.T))
    return {"Q_trace": float(np.trace(Q)), "Q_mean_diag": float(np.mean(np.diag(Q))),
            "Q_eig_min": float(ev[0]), "Q_eig_max": float(ev[-1]),
            "Q_eigenvalues": [float(v) for v in ev],
            "patch_importance": [float(v) for v in Q.sum(axis=1)]}


def _error_text(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}"[:2000]


def run_task(task: Task, Q0, state: WorkerState):
    """(record, arrays) of one point (module docstring). ``Q0``: warm start or None."""
    p = task.point
    rec = {"status": "ok", "error": None, "worker": state.name}
    arrays = {}
    t0 = time.perf_counter()
    try:
        if p.invalid:
            raise _Invalid(p.invalid)
        with state.threads(task.threads):
            if p.kind == "sampled":
                _sampled(task, state, rec)
            else:
                _theory(task, Q0, state, rec, arrays)
    except _Invalid as exc:
        rec.update(status="failed", error=str(exc))
    except (Exception, MemoryError) as exc:     # noqa: BLE001 - recorded, the sweep goes on
        rec.update(status="failed", error=_error_text(exc))
    rec["seconds"] = time.perf_counter() - t0
    return rec, arrays


class _Invalid(Exception):
    pass


def _theory(task, Q0, state, rec, arrays):
    from ..exceptions import ConvergenceWarning
    p = task.point
    ds = state.dataset(p.data)
    s = task.solver
    est = task.cls(**p.kwargs, input_shape=ds.input_shape, tol=s["tol"], max_iter=s["max_iter"],
                   dtype=s["dtype"], cache=state.cache)
    misses = state.cache.misses_by.get("train", 0)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(ds.X_train, ds.y_train, Q0=Q0)
    t_fit = time.perf_counter() - t
    res = est.result_
    rec["kernel_built"] = state.cache.misses_by.get("train", 0) > misses
    rec["warm_start"] = Q0 is not None
    rec.update(converged=bool(res.converged), n_iter=int(res.n_iter),
               n_eval=int(getattr(res, "n_eval", 0) or 0), grad_norm=float(res.grad_norm),
               rel_grad_norm=float(res.rel_grad_norm), action=float(res.action),
               method=str(res.method), solver_message=str(res.message))
    Q, Qbar = est.Q_, est.Qbar_
    arrays["Q"] = np.atleast_2d(np.asarray(Q, dtype=float))
    arrays["Qbar"] = np.atleast_2d(np.asarray(Qbar, dtype=float))
    rec.update(q_summary(Q))
    rec["Qbar_trace"] = float(np.trace(arrays["Qbar"]))
    solve_s = float(res.seconds or 0.0)
    rec["seconds_solve"] = solve_s
    rec["seconds_kernel"] = max(0.0, t_fit - solve_s)
    if not res.converged:
        raise _Invalid(f"unconverged: {res.message}")
    t = time.perf_counter()
    te = est.test_error(ds.X_test, ds.y_test)
    rec.update(test_error=te.total, bias2=te.bias2, variance=te.variance,
               train_error=float(est.train_error()))
    rec["seconds_predict"] = time.perf_counter() - t


def _sampled(task, state, rec):
    try:
        import torch
        from ..sampling import sample_posterior
    except ImportError:
        raise _Invalid("sampled networks need PyTorch: pip install 'kren[nn]'") from None
    p, s = task.point, task.sampling
    ds = state.dataset(p.data)
    est = task.cls(**p.kwargs, input_shape=ds.input_shape, tol=task.solver["tol"],
                   max_iter=task.solver["max_iter"])
    arch = est._check_params()
    old = torch.get_num_threads()
    torch.set_num_threads(task.threads)
    try:
        r = sample_posterior(arch, int(p.params["N"]), ds.X_train, ds.y_train,
                             float(p.params["T"]), step_size=s["step_size"], steps=s["steps"],
                             burn_in=s["burn_in"], thin=s["thin"], chains=s["chains"],
                             X_test=ds.X_test, y_test=ds.y_test, X_kernel=None,
                             dtype=s["dtype"], seed=s["seed"], metropolis=s["metropolis"])
    finally:
        torch.set_num_threads(old)
    te = r.test_error()
    dg = r.diagnostics()
    rhat = max(dg.rhat_test_error, dg.rhat_loss)
    rec.update(test_error=te.total, test_error_se=te.se, bias2=te.bias2, variance=te.variance,
               ess=te.ess, train_error=r.train_error().total, rhat=float(rhat),
               acceptance=float(np.mean(r.acceptance)), seconds_sampling=float(r.wall_time),
               converged=bool(rhat < 1.05) if math.isfinite(rhat) else False)
