"""The Dask worker plugin of a sweep: one :class:`~kren.sweeps.worker.WorkerState` per worker.

Registered by :mod:`kren.sweeps.run` on the cluster (``client.register_plugin``); a task finds
it as ``get_worker().plugins["kren-sweep"]``. Each worker thereby keeps its own kernel cache
and data sets: tensors are built where they are used, never shipped.
"""
from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin

from .worker import WorkerState

__all__ = ["SweepWorkerPlugin"]


class SweepWorkerPlugin(WorkerPlugin):
    """Installs a :class:`WorkerState` (kernel cache of ``cache_bytes``) on every worker;
    ``token`` (the config hash) tells a task it runs under the plugin of its own sweep."""

    name = "kren-sweep"

    def __init__(self, cache_bytes: int, token: str):
        self.cache_bytes = int(cache_bytes)
        self.token = token
        self.state = None

    def setup(self, worker):
        """Give the worker its own state (kernel cache, data sets)."""
        self.state = WorkerState(self.cache_bytes)
        self.state.name = worker.address

    def teardown(self, worker):
        """Drop the worker's state."""
        self.state = None
