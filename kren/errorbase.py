"""The base class of every error kren raises on purpose.

``KrenError`` is mixed into each of kren's error types (next to the standard or scikit-learn
type it also is: ``ValueError``, ``MemoryError``, ``LinAlgError``, ...), so that
``except kren.KrenError`` catches a user error or a numerical failure that kren detected and
explained, and nothing else. The command line turns these into one ``kren: error: ...`` line;
any other exception is a bug and keeps its traceback. A module that adds an error type (a
subcommand, a new estimator) subclasses it too.
"""
from __future__ import annotations

__all__ = ["KrenError"]


class KrenError(Exception):
    """An error kren raised on purpose: its message names the problem and what to do."""
