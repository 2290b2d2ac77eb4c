"""No traceback from inside NumPy or SciPy at kren's public API.

:func:`guarded` wraps a public function or method: a ``LinAlgError``, ``FloatingPointError``,
``OverflowError``, ``ZeroDivisionError``, or a ``ValueError`` raised inside NumPy/SciPy that
escapes from it becomes a :class:`kren.exceptions.NumericalError` naming the call and saying what
to change; a :class:`kren.linalg.NotPositiveDefiniteError` gets the same advice appended. kren's
own errors (:class:`kren.errorbase.KrenError`) pass through unchanged. The checks that stop bad
numbers early (inputs whose variances or kernels overflow) live where those numbers are made:
:attr:`kren.prepared.Prepared.var` and :func:`kren.kernels.check_kernel_scale`.
"""
from __future__ import annotations

import functools

import numpy as np

from .errorbase import KrenError

__all__ = ["guarded", "translate", "ADVICE"]

#: What usually fixes a numerical failure of the kernels or of A = T𝟙 + K_R.
ADVICE = ("standardize the inputs (e.g. sklearn.preprocessing.StandardScaler, or "
          "kren.data.standardize_splits), raise T, or remove duplicate inputs with conflicting "
          "targets")

_NUMERIC = (np.linalg.LinAlgError, FloatingPointError, OverflowError, ZeroDivisionError)
_LIBRARIES = ("numpy", "scipy")


def _raised_in_library(exc: BaseException) -> bool:
    """True when the innermost frame of the traceback belongs to NumPy or SciPy."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "")
    return module.split(".", 1)[0] in _LIBRARIES


def translate(exc: BaseException, what: str) -> BaseException | None:
    """The kren error to raise for ``exc`` escaping from ``what``, or None to let it pass."""
    from .exceptions import NumericalError
    from .linalg import NotPositiveDefiniteError
    if isinstance(exc, NotPositiveDefiniteError):
        if "To fix:" in str(exc) or "raise T" in str(exc):
            return None
        return NotPositiveDefiniteError(f"{what}: {exc}. To fix: {ADVICE}")
    if isinstance(exc, KrenError):
        return None
    if isinstance(exc, _NUMERIC) or (isinstance(exc, ValueError) and _raised_in_library(exc)):
        return NumericalError(f"{what}: numerical failure ({type(exc).__name__}: {exc}). "
                              f"To fix: {ADVICE}")
    return None


def guarded(what: str):
    """Decorator: numerical failures escaping the wrapped callable become kren errors
    (module docstring). ``what`` names the call in the message, e.g. ``"nngp_kernel"``; a
    method's ``".fit"`` is prefixed with the class of its instance (``"CNN.fit"``)."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                name = type(args[0]).__name__ + what if what.startswith(".") and args else what
                new = translate(exc, name)
                if new is None:
                    raise
                raise new from exc
        wrapper.__wrapped_guard__ = what
        return wrapper
    return deco
