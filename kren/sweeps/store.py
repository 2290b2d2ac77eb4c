"""A sweep folder: one file per finished point, written atomically, and the config's identity.

Layout of ``SWEEP_DIR``::

    sweep.json          the config's identity (hash and canonical form), kren version, points
    config.toml         the config as given (a copy a user can read and rerun)
    points/<id>.npz     one per finished point: its record (JSON) and its Q, Q̄ — written to a
                        temporary file in the same folder and renamed (os.replace), so a point
                        file is complete or absent, even after ``kill -9``
    events.jsonl        append-only log: one line per point started and per point recorded
    table.parquet, table.csv, Q.npz     the assembled table and the Q matrices (kren.sweeps.table)
    figures/            kren plot

A sweep started in a folder that holds another config's sweep is refused
(:class:`~kren.sweeps.errors.SweepFolderError` naming the keys that differ); the same config
resumes, computing only the points without a file. One sweep at a time per folder (an exclusive
``flock`` on ``.lock``, released by the kernel when the process dies, however it dies).
"""
from __future__ import annotations

import fcntl
import io
import json
import os
import time
from pathlib import Path

import numpy as np

from .errors import SweepFolderError

__all__ = ["SweepStore", "atomic_write_bytes", "atomic_path"]


def atomic_path(path: Path) -> Path:
    """A temporary name next to ``path`` (same folder, so os.replace is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temporary file, fsync, os.replace."""
    path = Path(path)
    tmp = atomic_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _diff(old: dict, new: dict, prefix="") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and a != b \
                and all(isinstance(u, dict) for u in a + b):
            for j, (u, v) in enumerate(zip(a, b)):
                out += _diff(u, v, f"{prefix}{k}[{j}].")
        elif a != b:
            out.append(f"{prefix}{k}: {json.dumps(a)} -> {json.dumps(b)}")
    return out


class SweepStore:
    """The files of one sweep folder (module docstring)."""

    def __init__(self, path):
        self.path = Path(path)
        self.points_dir = self.path / "points"
        self._lock = None

    # ------------------------------------------------------------------ identity
    @property
    def meta_path(self) -> Path:
        """Path of the folder's sweep.json."""
        return self.path / "sweep.json"

    def meta(self) -> dict | None:
        """The content of sweep.json, or None for a folder without a sweep."""
        if not self.meta_path.exists():
            return None
        return json.loads(self.meta_path.read_text())

    def check(self, config) -> bool:
        """True if the folder holds this config's sweep, False if it holds none; refuses
        another config's sweep (:class:`SweepFolderError` listing the differences)."""
        meta = self.meta()
        if meta is None:
            if self.points_dir.exists() and any(self.points_dir.iterdir()):
                raise SweepFolderError(
                    f"{self.path} holds point files but no sweep.json: not a sweep folder this "
                    "version can resume; use another --out folder")
            return False
        if meta.get("config_hash") != config.hash:
            changes = _diff(meta.get("config", {}), config.identity())
            shown = "; ".join(changes[:6]) + (f"; ... ({len(changes) - 6} more)"
                                              if len(changes) > 6 else "")
            raise SweepFolderError(
                f"{self.path} holds a sweep of another config (hash "
                f"{meta.get('config_hash', '?')[:12]}, this config {config.hash[:12]}); changed: "
                f"{shown}. Use a new --out folder, "
                "or delete this one to start over")
        return True

    def open(self, config, n_points: int) -> None:
        """Create (or resume) the sweep of ``config`` here; take the folder's lock."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        existed = self.check(config)
        self.points_dir.mkdir(exist_ok=True)
        for tmp in self.points_dir.glob(".*.tmp"):        # left by a killed run
            tmp.unlink(missing_ok=True)
        if not existed:
            from .. import __version__
            meta = {"schema": 1, "config_hash": config.hash, "config": config.identity(),
                    "name": config.name, "n_points": n_points, "kren_version": __version__,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            atomic_write_bytes(self.meta_path, json.dumps(meta, indent=1).encode())
            if config.text is not None:
                atomic_write_bytes(self.path / "config.toml", config.text.encode())

    def _take_lock(self):
        fh = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            who = fh.read().strip() or "another process"
            fh.close()
            raise SweepFolderError(f"another kren sweep ({who}) is running in {self.path}; wait "
                                   "for it or use another --out folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        self._lock = fh

    def close(self) -> None:
        """Release the folder's lock."""
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # ------------------------------------------------------------------ points
    def point_path(self, pid: str) -> Path:
        """Path of the point's record file, points/<id>.npz."""
        return self.points_dir / f"{pid}.npz"

    def done(self) -> set:
        """Ids of the points with a file."""
        if not self.points_dir.exists():
            return set()
        return {f.stem for f in self.points_dir.glob("*.npz") if not f.name.startswith(".")}

    def write(self, pid: str, record: dict, arrays: dict) -> Path:
        """Write one point (record and arrays) atomically."""
        buf = io.BytesIO()
        np.savez(buf, record=np.array(json.dumps(record, default=_json_default)),
                 **{k: np.asarray(v, dtype=float) for k, v in arrays.items()})
        return atomic_write_bytes(self.point_path(pid), buf.getvalue())

    def read(self, pid: str) -> tuple[dict, dict]:
        """(record, arrays) of one point."""
        with np.load(self.point_path(pid), allow_pickle=False) as f:
            record = json.loads(str(f["record"]))
            arrays = {k: f[k] for k in f.files if k != "record"}
        return record, arrays

    # ------------------------------------------------------------------ log
    def log(self, event: str, pid: str, **kw) -> None:
        """Append one line to events.jsonl (one writer: the process that runs the sweep)."""
        line = json.dumps({"t": round(time.time(), 3), "event": event, "point": pid,
                           "pid": os.getpid(), **kw}, default=_json_default)
        with open(self.path / "events.jsonl", "a") as fh:
            fh.write(line + "\n")

    def events(self) -> list[dict]:
        """The events.jsonl log as a list of dicts (start, done, lost ...)."""
        p = self.path / "events.jsonl"
        if not p.exists():
            return []
        out = []
        for line in p.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:          # a line cut by kill -9
                continue
        return out


def _json_default(o):
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
