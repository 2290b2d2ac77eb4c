"""Atomic file writes: a file is either its previous version or the complete new one.

Every writer goes to a temporary file in the destination's folder (same file system), which is
flushed, synced and then renamed over the destination with :func:`os.replace` (atomic on POSIX
and Windows). A writer that fails part-way (a full disk, an exception, Ctrl-C) removes its
temporary file and leaves the destination untouched; a reader never sees half a file. An
``OSError`` on the way (no space, no permission) is raised as
:class:`kren.exceptions.OutputError` (an ``OSError`` and a ``KrenError``) naming the file.

    write_text(path, text)
    with staged(path) as tmp:      # for writers that want a file name (matplotlib, NumPy)
        fig.savefig(tmp)
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["staged", "atomic_write", "write_text", "write_bytes", "temporary_path",
           "TMP_PREFIX"]

#: Temporary files start with this prefix (hidden, and recognisable as kren's leftovers).
TMP_PREFIX = ".kren-tmp-"

_UMASK = os.umask(0)
os.umask(_UMASK)


def temporary_path(path) -> Path:
    """A new, empty temporary file beside ``path`` with the same suffix (created, mode as a
    newly created file of this process would get)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.stem}.", suffix=path.suffix,
                                dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)
    return Path(name)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def staged(path):
    """Context manager yielding a temporary path beside ``path``; on a clean exit the file is
    synced and renamed to ``path``, on any exception (KeyboardInterrupt included) removed."""
    from .exceptions import OutputError
    path = Path(path)
    try:
        tmp = temporary_path(path)
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({exc.strerror or exc})") from exc
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"cannot write {path} ({exc.strerror or exc}); "
                              f"{'the previous file is' if path.exists() else 'nothing was'} "
                              "left in its place") from exc
        raise


def atomic_write(path, write, mode: str = "wb") -> Path:
    """Call ``write(fh)`` on a temporary file opened with ``mode`` and rename it to ``path``."""
    path = Path(path)
    with staged(path) as tmp:
        with open(tmp, mode) as fh:
            write(fh)
    return path


def write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """Atomically replace ``path`` by ``text`` (encoded with ``encoding``)."""
    return atomic_write(path, lambda fh: fh.write(text.encode(encoding)))


def write_bytes(path, data: bytes) -> Path:
    """Atomically replace ``path`` by ``data``."""
    return atomic_write(path, lambda fh: fh.write(data))
