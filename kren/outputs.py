"""Output files and folders of the command line and the runs it starts (``kren demo``,
``kren compare``, ``kren solve --out``): checked before computing, written atomically.

- :func:`check_output_file` / :func:`check_output_dir`: raise :class:`kren.exceptions.OutputError`
  naming the flag when an output cannot be written (a missing or read-only folder, a file where
  a folder is expected), *before* anything is computed.
- :class:`RunFolder`: one run writing a set of files into a folder. It holds a lock file
  (:data:`LOCK_NAME`; a second run on the same folder is told the folder is in use), records the
  run's state in :data:`STATUS_NAME` (``running``, then ``complete``, ``interrupted`` or
  ``failed``), stages every output as a temporary file in the folder (:mod:`kren.atomic`) and
  renames them all only when the run completes (:meth:`RunFolder.commit`). A run interrupted by
  Ctrl-C or failing part-way leaves the previous outputs intact, never a mixture of old and new
  files, and says so in the status file.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import signal
import socket
import threading
import uuid
from pathlib import Path

from .atomic import TMP_PREFIX, temporary_path, write_text
from .exceptions import OutputError

__all__ = ["check_output_file", "check_output_dir", "RunFolder", "LOCK_NAME", "STATUS_NAME",
           "read_status"]

LOCK_NAME = ".kren-lock"
STATUS_NAME = "status.json"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _probe(folder: Path, flag: str) -> None:
    """Create and remove a temporary file in ``folder`` (what a write will do)."""
    try:
        tmp = temporary_path(folder / "probe")
    except OSError as exc:
        raise OutputError(f"{flag}: cannot write into {folder} ({exc.strerror or exc}); choose "
                          "a writable folder") from None
    with contextlib.suppress(OSError):
        tmp.unlink()


def check_output_file(path, flag: str = "--out", suffixes=None) -> Path:
    """Check that ``path`` can be written: its folder exists and is writable, it is not a
    folder, and (``suffixes``) its suffix is one of them. Returns the path."""
    path = Path(path)
    if suffixes is not None and path.suffix not in suffixes:
        raise OutputError(f"{flag}: {path} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise OutputError(f"{flag}: {path} is a folder; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise OutputError(f"{flag}: the folder {folder} does not exist; create it first")
    if not folder.is_dir():
        raise OutputError(f"{flag}: {folder} is not a folder")
    _probe(folder, flag)
    return path


def check_output_dir(path, flag: str = "--out") -> Path:
    """Create the output folder ``path`` if needed (with its parents) and check that files can
    be written into it. Returns the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag}: {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{flag}: cannot create the folder {path} ({exc.strerror or exc}); "
                          "choose a writable location") from None
    _probe(path, flag)
    return path


def read_status(folder) -> dict | None:
    """The run status recorded in ``folder`` (:data:`STATUS_NAME`), or None."""
    try:
        return json.loads((Path(folder) / STATUS_NAME).read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _interrupts_deferred():
    """Hold back SIGINT (Ctrl-C) while the block runs, then deliver it (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got = []
    try:
        old = signal.signal(signal.SIGINT, lambda s, f: got.append(s))
    except ValueError:               # not allowed here (e.g. an embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if got:
            raise KeyboardInterrupt


class RunFolder:
    """A run writing a set of output files into ``folder`` (module docstring).

        with RunFolder(out, "demo", flag="--out") as run:
            ...                                   # compute
            fig.savefig(run.stage("figure.png"))  # a temporary file in the folder
            run.commit()                          # all staged files renamed at once

    ``info`` (a JSON-able dict) is recorded in the status file. ``run_id`` identifies the run
    (the outputs can record it too).
    """

    def __init__(self, folder, command: str, flag: str = "--out", info: dict | None = None):
        self.folder = Path(folder)
        self.command, self.flag = command, flag
        self.info = dict(info or {})
        self.run_id = uuid.uuid4().hex[:12]
        self.started = _now()
        self._staged: dict[str, Path] = {}
        self._locked = False
        self.committed = False
        self.previous = None

    # ------------------------------------------------------------------ lock
    @property
    def lock_path(self) -> Path:
        return self.folder / LOCK_NAME

    def _acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
              "run_id": self.run_id, "started": self.started}
        for _ in range(3):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self._holder()
                if other is not None and other.get("host") == me["host"] \
                        and isinstance(other.get("pid"), int) and not _pid_alive(other["pid"]):
                    with contextlib.suppress(OSError):      # a run that died: stale lock
                        self.lock_path.unlink()
                    continue
                who = (f"kren {other.get('command', '?')} (pid {other.get('pid', '?')} on "
                       f"{other.get('host', '?')}, since {other.get('started', '?')})"
                       if other else "another kren run")
                raise OutputError(
                    f"{self.flag}: the folder {self.folder} is in use by {who}; wait for it to "
                    f"finish or choose another folder (if no run is active, delete "
                    f"{self.lock_path})") from None
            except OSError as exc:
                raise OutputError(f"{self.flag}: cannot write into {self.folder} "
                                  f"({exc.strerror or exc})") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self._locked = True
            return
        raise OutputError(f"{self.flag}: could not lock {self.folder} ({self.lock_path})")

    def _holder(self) -> dict | None:
        try:
            d = json.loads(self.lock_path.read_text())
            return d if isinstance(d, dict) else None
        except (OSError, ValueError):
            return None

    def _release(self) -> None:
        if self._locked:
            with contextlib.suppress(OSError):
                self.lock_path.unlink()
            self._locked = False

    # ------------------------------------------------------------------ status
    def _status(self, state: str, **extra) -> None:
        d = {"state": state, "command": self.command, "run_id": self.run_id,
             "started": self.started, "pid": os.getpid(), **self.info, **extra}
        if state != "running":
            d["finished"] = _now()
        if self.previous is not None:
            d["previous"] = {k: self.previous.get(k) for k in
                             ("state", "run_id", "started", "finished", "outputs")
                             if k in self.previous}
        write_text(self.folder / STATUS_NAME, json.dumps(d, indent=1, default=str) + "\n")

    # ------------------------------------------------------------------ staging
    def stage(self, name: str) -> Path:
        """A temporary file in the folder that becomes ``name`` at :meth:`commit`."""
        if name in self._staged:
            return self._staged[name]
        tmp = temporary_path(self.folder / name)
        self._staged[name] = tmp
        return tmp

    def path(self, name: str) -> Path:
        """Where ``name`` will be once committed."""
        return self.folder / name

    def commit(self) -> dict:
        """Rename every staged file to its name (Ctrl-C held back meanwhile) and record the run
        as complete. Returns {name: final path}."""
        out = {}
        with _interrupts_deferred():
            for name, tmp in self._staged.items():
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            for name, tmp in self._staged.items():
                os.replace(tmp, self.folder / name)
                out[name] = str(self.folder / name)
            self._staged.clear()
            self.committed = True
            self._status("complete", outputs=sorted(out))
        return out

    def _discard(self) -> None:
        for tmp in self._staged.values():
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._staged.clear()

    # ------------------------------------------------------------------ context
    def __enter__(self) -> "RunFolder":
        check_output_dir(self.folder, self.flag)
        self._acquire()
        try:
            self.previous = read_status(self.folder)
            self._status("running")
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self._discard()
            if exc_type is not None and not self.committed:
                state = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
                kept = ("the outputs of the previous run are intact"
                        if self.previous is not None else "no outputs were written")
                with contextlib.suppress(OSError):
                    self._status(state, message=f"{exc_type.__name__}: {exc}".rstrip(": ")
                                 + f"; {kept}")
            elif exc_type is None and not self.committed:
                self._status("failed", message="the run ended without committing its outputs")
        finally:
            self._release()
        return False


def leftover_temporaries(folder) -> list[Path]:
    """Temporary files of kren's atomic writes left in ``folder`` (none after a clean exit)."""
    return sorted(Path(folder).glob(f"{TMP_PREFIX}*"))
