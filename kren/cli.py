"""Command line: ``kren demo | solve | compare | codegen | sweep | plot | paper``.

Errors: every error kren raises on purpose (:class:`kren.errorbase.KrenError`: a bad flag or
config value, bad data, a file that cannot be written, ...) reaches the user as one line
``kren: error: ...`` naming the flag or config key, with exit status 2 and no traceback
(:func:`main`); Ctrl-C prints ``kren: interrupted`` (exit status 130). Any other exception is a
bug and keeps its traceback. Subcommands added by other modules (registered in
:func:`build_parser`) get the same treatment: their parsers are :class:`kren.cliutil.ArgumentParser`
and their errors pass through :func:`main`.

Outputs are checked before anything is computed (a missing or read-only folder is an error at
once) and written atomically (:mod:`kren.outputs`).

``kren solve --config run.toml``: values come from the defaults, then the config file, then the
flags given on the command line (a flag given explicitly wins, even when it equals its
default). Every value is type-checked with its source named (``P = 50.7`` in a config is an
error naming P).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import activations
from .cliutil import (ArgumentParser, CommandLineExit, Setting, UsageError, check_setting, flag,
                      one_line, parse_widths, source_of)
from .errorbase import KrenError


def _classes(text, src: str = "--classes"):
    if text is None or text == "even-odd":
        return "even-odd"
    if isinstance(text, (list, tuple)):
        return tuple(tuple(c) if isinstance(c, (list, tuple)) else c for c in text)
    if text in ("none", "regression"):
        return None
    try:
        if "/" in text:
            a, b = text.split("/")
            return (tuple(int(v) for v in a.split(",")), tuple(int(v) for v in b.split(",")))
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 2:
        raise UsageError(f"{src} expects 'a,b', 'a,b/c,d', 'even-odd' or 'none', got {text!r}")
    return vals


# ----------------------------------------------------------------------------- demo
def parse_archs(text: str) -> list:
    """--archs: comma-separated names among FC, LCN, CNN, CNN-pool."""
    from .demo import ARCHS
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [a for a in names if a not in ARCHS]
    if bad or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected distinct names among {','.join(ARCHS)}, got {text!r}")
    return names


DEMO_SETTINGS = {
    "P": Setting("int", 1), "n_test": Setting("int", 1), "T": Setting("float", 0, True),
    "seed": Setting("int", 0), "max_iter": Setting("int", 1),
}


def cmd_demo(args) -> int:
    from .demo import format_table, run_demo
    for k, s in DEMO_SETTINGS.items():
        check_setting(k, getattr(args, k), s, flag(k))
    t0 = time.perf_counter()
    res = run_demo(out=args.out, P=args.P, n_test=args.n_test, Ns=args.N, T=args.T,
                   activation=args.activation, seed=args.seed, quiet=args.quiet,
                   max_iter=args.max_iter, archs=args.archs)
    print(f"digits even vs odd: P = {res['P']}, {res['n_test']} test images, T = {res['T']}, "
          f"{res['activation']}, λ0 = λ1 = 1; LCN and CNN with 2×2 mask, stride 2 (n = 16)"
          + ("; CNN-pool: the CNN with the pooled readout" if "CNN-pool" in args.archs else ""))
    print(format_table(res["rows"]))
    if any(not r["converged"] for r in res["rows"]):
        print("! = solver did not converge, x = fit failed (see demo.json for the messages)")
    for p in res["paths"].values():
        print(f"wrote {p}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


# ----------------------------------------------------------------------------- solve
SOLVE_KEYS = ("arch", "N", "T", "lambda0", "lambda1", "activation", "mask", "stride", "padding",
              "data", "data_path", "classes", "P", "n_test", "seed", "tol", "max_iter")

_DEFAULTS = dict(arch="cnn", N=50.0, T=0.1, lambda0=1.0, lambda1=1.0, activation="erf", mask="2",
                 stride="2", padding="valid", data="digits", data_path=None, classes="even-odd",
                 P=500, n_test=500, seed=0, tol=1e-9, max_iter=1000)

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")


def _solve_settings() -> dict:
    return {
        "arch": Setting("str", choices=("fc", "lcn", "cnn")),
        "N": Setting("float", 0, True, allow_inf=True),
        "T": Setting("float", 0, True), "lambda0": Setting("float", 0, True),
        "lambda1": Setting("float", 0, True), "tol": Setting("float", 0, True),
        "activation": Setting("str", choices=tuple(activations.names())),
        "mask": Setting("ints"), "stride": Setting("ints"),
        "padding": Setting("str", choices=("valid", "circular")),
        "data": Setting("str", choices=DATASETS), "data_path": Setting("str", none=True),
        "classes": Setting("any"),
        "P": Setting("int", 1), "n_test": Setting("int", 1), "seed": Setting("int", 0),
        "max_iter": Setting("int", 1),
    }


def _load_config(path: str) -> dict:
    p = Path(path)
    src = f"--config {p}"
    if not p.is_file():
        raise UsageError(f"{src}: config file not found")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{src}: cannot be read ({exc})") from None
    if p.suffix == ".json":
        try:
            cfg = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{src}: not valid JSON ({exc.msg} at line {exc.lineno} column "
                             f"{exc.colno})") from None
    elif p.suffix == ".toml":
        import tomllib
        try:
            cfg = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{src}: not valid TOML ({exc})") from None
    else:
        raise UsageError(f"{src}: config must be .json or .toml, got {p.name}")
    if not isinstance(cfg, dict):
        raise UsageError(f"{src}: expected a table of settings, got {type(cfg).__name__}")
    unknown = set(cfg) - set(SOLVE_KEYS)
    if unknown:
        raise UsageError(f"{src}: unknown keys in {p.name}: {sorted(unknown)}; known: "
                         f"{list(SOLVE_KEYS)}")
    return cfg


def solve_settings(args) -> tuple[dict, dict]:
    """The settings of ``kren solve``: (values, sources). Defaults, then the config file, then
    every flag given explicitly (argparse leaves flags that were not given out of ``args``,
    so a flag wins even when it equals its default)."""
    settings = _solve_settings()
    cfg, src = dict(_DEFAULTS), {k: flag(k) + " (default)" for k in SOLVE_KEYS}
    config = getattr(args, "config", None)
    if config:
        for k, v in _load_config(config).items():
            cfg[k], src[k] = v, source_of(k, Path(config).name)
    for k in SOLVE_KEYS:
        if k in vars(args):
            cfg[k], src[k] = getattr(args, k), flag(k)
    for k in SOLVE_KEYS:
        cfg[k] = check_setting(k, cfg[k], settings[k], src[k])
    return cfg, src


def _source_of_parameter(message: str, src: dict) -> str:
    """The flag or config key behind an estimator's InvalidParameterError message."""
    import re
    m = re.search(r"'(\w+)' parameter", message)
    names = [m.group(1)] if m else re.findall(r"\b(\w+)\b", message)
    for name in names:
        if name in src:
            return src[name].replace(" (default)", "")
    return "--arch/--mask/--stride"


def _load_data(cfg, src):
    from . import data as _data
    classes = _classes(cfg["classes"], src["classes"])
    kw = dict(classes=classes, n_train=cfg["P"], n_test=cfg["n_test"], seed=cfg["seed"])
    name = cfg["data"]
    try:
        if name == "digits":
            return _data.load_digits(**kw)
        if not cfg["data_path"]:
            raise UsageError(f"{src['data']} {name} needs --data-path DIR")
        loader = {"mnist": _data.load_mnist, "fashion-mnist": _data.load_fashion_mnist,
                  "cifar10": _data.load_cifar10}[name]
        return loader(cfg["data_path"], **kw)
    except (ValueError, OSError) as exc:
        if isinstance(exc, KrenError):
            raise
        msg = one_line(exc)
        where = (src["P"] if "n_train" in msg else src["n_test"] if "n_test" in msg
                 else src["classes"] if "class" in msg else src["data_path"]
                 if cfg["data_path"] else src["data"])
        raise UsageError(f"{where.replace(' (default)', '')}: {msg}") from None


def cmd_solve(args) -> int:
    from .estimators import CNN, FC, LCN
    from .outputs import check_output_file
    from .validation import InvalidParameterError
    cfg, src = solve_settings(args)
    if args.out:
        suffixes = (".json", ".npz") if args.save_fit else None
        check_output_file(args.out, "--out", suffixes)
    common = dict(N=cfg["N"], T=cfg["T"], lambda0=cfg["lambda0"], lambda1=cfg["lambda1"],
                  activation=cfg["activation"], tol=cfg["tol"], max_iter=cfg["max_iter"])
    if cfg["arch"] == "fc":
        make = lambda ds: FC(**common)                                   # noqa: E731
    else:
        cls = CNN if cfg["arch"] == "cnn" else LCN
        make = lambda ds: cls(input_shape=ds.input_shape, mask=cfg["mask"],   # noqa: E731
                              stride=cfg["stride"], padding=cfg["padding"], **common)
    ds = _load_data(cfg, src)
    try:
        m = make(ds)
    except InvalidParameterError as exc:
        raise UsageError(f"{_source_of_parameter(str(exc), src)}: {one_line(exc)}") from None
    m.fit(ds.X_train, ds.y_train)
    out = m.to_dict()
    out["data"] = ds.meta
    if m.result_.converged:
        err = m.test_error(ds.X_test, ds.y_test)
        out["test_error"] = err.to_dict()
        out["train_error"] = m.train_error()
    if args.out:
        from .atomic import write_text
        path = Path(args.out)
        if path.suffix in (".json", ".npz") and args.save_fit:
            m.save(path)
        else:
            write_text(path, json.dumps(out, indent=1, default=str))
        if not args.quiet:
            print(f"wrote {path}", file=sys.stderr)
    else:
        print(json.dumps(out, indent=1, default=str))
    return 0 if m.result_.converged else 3


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="kren", description=(
        "Local kernel renormalization: effective actions of Bayesian one-hidden-layer FC, LCN "
        "and CNN networks in the proportional limit."))
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="FC, LCN, CNN on digits (even vs odd) across widths N")
    d.add_argument("--out", default="kren-output", help="output directory (default kren-output)")
    d.add_argument("--P", type=int, default=500, help="training set size (default 500)")
    d.add_argument("--n-test", type=int, default=500)
    d.add_argument("--N", type=parse_widths, default=None,
                   help="comma-separated widths, 'inf' allowed")
    d.add_argument("--T", type=float, default=0.1)
    d.add_argument("--activation", default="erf", choices=activations.names())
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--max-iter", type=int, default=1000, help="solver iterations per fit")
    d.add_argument("--archs", type=parse_archs, default=None,
                   help="comma-separated among FC,LCN,CNN,CNN-pool (default FC,LCN,CNN; "
                        "CNN-pool: the CNN with the pooled readout, THEORY §3b)")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_demo)

    # No defaults in the namespace: a flag is in it only when given, so that it wins over
    # --config even when it equals the default (solve_settings fills in the defaults).
    s = sub.add_parser("solve", help="one configuration; prints or saves JSON",
                       argument_default=argparse.SUPPRESS)
    s.add_argument("--config", default=None,
                   help="TOML or JSON file with any of: " + ", ".join(SOLVE_KEYS))
    s.add_argument("--arch", choices=["fc", "lcn", "cnn"],
                   help=f"(default {_DEFAULTS['arch']})")
    s.add_argument("--N", type=float, help="width ('inf' for N = ∞; default 50)")
    for k in ("T", "lambda0", "lambda1"):
        s.add_argument(f"--{k}", type=float, help=f"(default {_DEFAULTS[k]})")
    s.add_argument("--activation", choices=activations.names(), help="(default erf)")
    s.add_argument("--mask", help="int or comma-separated per axis (default 2)")
    s.add_argument("--stride", help="(default 2)")
    s.add_argument("--padding", choices=["valid", "circular"], help="(default valid)")
    s.add_argument("--data", help="digits | mnist | fashion-mnist | cifar10 (default digits)")
    s.add_argument("--data-path")
    s.add_argument("--classes", help="'a,b', 'a,b,c/d,e', 'even-odd', 'none' (default even-odd)")
    s.add_argument("--P", type=int, help="(default 500)")
    s.add_argument("--n-test", type=int, help="(default 500)")
    s.add_argument("--seed", type=int, help="(default 0)")
    s.add_argument("--tol", type=float, help="(default 1e-9)")
    s.add_argument("--max-iter", type=int, help="(default 1000)")
    s.add_argument("--out", default=None, help="write JSON here instead of printing")
    s.add_argument("--save-fit", action="store_true", default=False,
                   help="write a loadable fit (kren.estimators.load) to --out (.json/.npz)")
    s.add_argument("--quiet", action="store_true", default=False)
    s.set_defaults(func=cmd_solve)

    c = sub.add_parser("compare", help="theory vs Langevin-sampled networks", add_help=False)
    c.set_defaults(func=None)
    g = sub.add_parser("codegen", help="regenerate kren/generated from the SymPy derivation",
                       add_help=False)
    g.set_defaults(func=None)
    from .sweeps.cli import register as register_sweeps      # sweep, plot, paper
    register_sweeps(sub)
    return p


def _dispatch(argv) -> int:
    if argv and argv[0] == "compare":
        from .compare import run_main as compare_main
        return compare_main(argv[1:]) or 0
    if argv and argv[0] == "codegen":
        from derivations.codegen import main as codegen_main
        return codegen_main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    if args.command == "demo" and args.N is None:
        from .demo import DEFAULT_NS
        args.N = list(DEFAULT_NS)
    if args.command == "demo" and args.archs is None:
        from .demo import DEFAULT_ARCHS
        args.archs = list(DEFAULT_ARCHS)
    return args.func(args)


def main(argv=None) -> int:
    """Run the command line. Returns the exit status of a completed command (0; ``kren
    solve``: 3 when the solver did not converge); a user error prints one ``kren: error:``
    line to stderr and raises :class:`kren.cliutil.CommandLineExit` (a ``SystemExit`` with
    status 2; Ctrl-C: 130)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except KrenError as exc:
        message = one_line(exc)
        print(f"kren: error: {message}", file=sys.stderr)
        raise CommandLineExit(2, message) from None
    except KeyboardInterrupt:
        message = "interrupted (outputs of earlier runs are left intact)"
        print(f"kren: {message}", file=sys.stderr)
        raise CommandLineExit(130, message) from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
