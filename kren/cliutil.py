"""Command-line errors: one line naming the flag or config key, exit status 2.

- :class:`UsageError`: a flag or config value is invalid (a :class:`kren.errorbase.KrenError`).
- :class:`ArgumentParser`: argparse with its errors raised as :class:`UsageError` instead of a
  usage block and ``sys.exit`` (so that every user error reaches the one handler in
  :func:`kren.cli.main`); subcommand parsers made from it inherit this.
- :class:`Setting` and :func:`check_setting`: the type and range of each value, with its source
  (``--P`` or ``config key 'P' in run.toml``), so that ``P = 50.7`` is an error naming P, never
  silently 50.
- :func:`flag`: the flag of a setting (``n_test`` → ``--n-test``).
- :func:`one_line`: an exception's message as one line.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from .errorbase import KrenError

__all__ = ["UsageError", "ArgumentParser", "Setting", "check_setting", "flag", "one_line",
           "source_of", "CommandLineExit", "parse_widths"]


class UsageError(KrenError, ValueError):
    """A command-line flag or config value is invalid; the message names it."""


class CommandLineExit(SystemExit):
    """Raised by :func:`kren.cli.main` after printing its one ``kren: error:`` line: the exit
    status is ``code`` (2 for a user error, 130 for Ctrl-C), ``str()`` is the message."""

    def __init__(self, code: int, message: str):
        super().__init__(code)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors raise :class:`UsageError` (one line, exit status 2 in
    :func:`kren.cli.main`) instead of printing the usage block and exiting."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def flag(key: str) -> str:
    """The command-line flag of a setting: ``n_test`` → ``--n-test``."""
    return "--" + key.replace("_", "-")


def source_of(key: str, config: str | None = None) -> str:
    """How a message names where a value came from."""
    return f"config key {key!r} in {config}" if config else flag(key)


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line."""
    text = str(exc) or type(exc).__name__
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


@dataclass(frozen=True)
class Setting:
    """The type of a setting: ``kind`` is "int", "float", "str", "ints" (an int, a list of
    ints or a comma-separated string) or "any"; ``low``
    the smallest value allowed (``open_low``: excluded), ``allow_inf`` for floats, ``choices``
    for strings, ``none`` when None is allowed."""

    kind: str
    low: float | None = None
    open_low: bool = False
    allow_inf: bool = False
    choices: tuple | None = None
    none: bool = False


def _number(v, key, src, s: Setting):
    if isinstance(v, bool):
        raise UsageError(f"{src} must be a number, got {v!r}")
    if isinstance(v, str) and s.allow_inf and v.strip().lower() in ("inf", "infinity", "∞"):
        return math.inf
    if not isinstance(v, (int, float)):
        raise UsageError(f"{src} must be a number, got {v!r}")
    v = float(v)
    if math.isnan(v) or (math.isinf(v) and not (s.allow_inf and v > 0)):
        raise UsageError(f"{src} must be a finite number{' or inf' if s.allow_inf else ''}, "
                         f"got {v}")
    return v


def _integer(v, key, src):
    if isinstance(v, bool) or not isinstance(v, int):
        raise UsageError(f"{src} must be an integer, got {v!r}")
    return v


def _low(v, src, s: Setting):
    if s.low is None:
        return
    bad = v <= s.low if s.open_low else v < s.low
    if bad:
        raise UsageError(f"{src} must be {'>' if s.open_low else '>='} {s.low:g}, got {v:g}")


def check_setting(key: str, value, s: Setting, src: str):
    """``value`` checked against ``s`` and converted (str → number where a flag allows it);
    a :class:`UsageError` naming ``src`` otherwise."""
    if value is None:
        if s.none:
            return None
        raise UsageError(f"{src} is required")
    if s.kind == "int":
        v = _integer(value, key, src)
        _low(v, src, s)
        return v
    if s.kind == "float":
        v = _number(value, key, src, s)
        _low(v, src, s)
        return v
    if s.kind == "str":
        if not isinstance(value, str):
            raise UsageError(f"{src} must be a string, got {value!r}")
        if s.choices is not None and value not in s.choices:
            raise UsageError(f"{src} must be one of {', '.join(s.choices)}, got {value!r}")
        return value
    if s.kind == "ints":
        if isinstance(value, str):
            parts = [p for p in value.replace("x", ",").split(",") if p.strip()]
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            parts = [value]
        if not parts:
            raise UsageError(f"{src} must be a positive integer or a list of them, got {value!r}")
        out = []
        for p in parts:
            try:
                q = _integer(int(p) if isinstance(p, str) else p, key, src)
            except (UsageError, ValueError):
                raise UsageError(f"{src} must be a positive integer or a list of them (e.g. 2 or "
                                 f"2,2), got {value!r}") from None
            if q < 1:
                raise UsageError(f"{src} entries must be >= 1, got {value!r}")
            out.append(q)
        return out[0] if len(out) == 1 else tuple(out)
    return value


def parse_widths(text: str) -> list:
    """argparse type: comma-separated positive widths, 'inf' allowed (``--N 1000,100,inf``)."""
    out = []
    for t in str(text).split(","):
        t = t.strip()
        if not t:
            continue
        try:
            v = float(t)
        except ValueError:
            raise argparse.ArgumentTypeError(f"widths must be positive numbers or 'inf', got "
                                             f"{t!r}") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"widths must be > 0, got {t!r}")
        out.append(v)
    if not out:
        raise argparse.ArgumentTypeError(f"no width in {text!r}")
    return out
