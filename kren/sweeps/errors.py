"""The errors a sweep raises for user mistakes (each names what is wrong and how to fix it).

- :class:`SweepConfigError`: the configuration is invalid (an unknown key, a value of the wrong
  type such as ``P = 50.7``, a value out of its domain such as ``T = -1``). Raised before anything
  is computed; a subclass of :class:`kren.validation.InvalidParameterError` (both ``ValueError``
  and ``TypeError``).
- :class:`SweepFolderError`: the output folder cannot hold this sweep (it holds a sweep of a
  different configuration, or another ``kren sweep`` is running in it). A ``ValueError``.

Both are :class:`kren.KrenError`: the command line prints them as one ``kren: error:`` line.
"""
from __future__ import annotations

from ..errorbase import KrenError
from ..validation import InvalidParameterError

__all__ = ["SweepConfigError", "SweepFolderError"]


class SweepConfigError(InvalidParameterError):
    """An invalid sweep configuration; the message names the key (section.key) and the value."""


class SweepFolderError(KrenError, ValueError):
    """The output folder holds another sweep, or is in use by a running sweep."""
