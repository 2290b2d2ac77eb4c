"""Command line: ``kren demo | solve | compare | codegen | sweep | plot | paper``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _floats(text: str):
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str):
    vals = [int(v) for v in str(text).split(",") if v.strip()]
    return vals[0] if len(vals) == 1 else tuple(vals)


def _classes(text: str | None):
    if text is None or text == "even-odd":
        return "even-odd"
    if text in ("none", "regression"):
        return None
    if "/" in text:
        a, b = text.split("/")
        return (tuple(int(v) for v in a.split(",")), tuple(int(v) for v in b.split(",")))
    vals = tuple(int(v) for v in text.split(","))
    if len(vals) != 2:
        raise SystemExit(f"--classes expects 'a,b', 'a,b/c,d', 'even-odd' or 'none', got {text!r}")
    return vals


# ----------------------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    from .demo import format_table, run_demo
    t0 = time.perf_counter()
    res = run_demo(out=args.out, P=args.P, n_test=args.n_test, Ns=args.N, T=args.T,
                   activation=args.activation, seed=args.seed, quiet=args.quiet)
    print(f"digits even vs odd: P = {res['P']}, {res['n_test']} test images, T = {res['T']}, "
          f"{res['activation']}, λ0 = λ1 = 1; LCN and CNN with 2×2 mask, stride 2 (n = 16)")
    print(format_table(res["rows"]))
    if any(not r["converged"] for r in res["rows"]):
        print("! = solver did not converge (see demo.json)")
    print(f"\nwrote {res['paths']['test_error']}\nwrote {res['paths']['Q']}\n"
          f"wrote {res['paths']['json']}\n({time.perf_counter() - t0:.1f} s)")
    return 0


# ----------------------------------------------------------------------------- solve
SOLVE_KEYS = ("arch", "N", "T", "lambda0", "lambda1", "activation", "mask", "stride", "padding",
              "data", "data_path", "classes", "P", "n_test", "seed", "tol", "max_iter")


def _load_config(path: str) -> dict:
    p = Path(path)
    if not p.exists():
        raise SystemExit(f"config file not found: {p}")
    if p.suffix == ".json":
        cfg = json.loads(p.read_text())
    elif p.suffix == ".toml":
        import tomllib
        cfg = tomllib.loads(p.read_text())
    else:
        raise SystemExit(f"config must be .json or .toml, got {p.name}")
    unknown = set(cfg) - set(SOLVE_KEYS)
    if unknown:
        raise SystemExit(f"unknown keys in {p.name}: {sorted(unknown)}; known: {list(SOLVE_KEYS)}")
    return cfg


def cmd_solve(args) -> int:
    from . import data as _data
    from .estimators import CNN, FC, LCN
    cfg = {k: getattr(args, k) for k in SOLVE_KEYS}
    if args.config:
        for k, v in _load_config(args.config).items():
            if getattr(args, k) == _DEFAULTS.get(k):     # flags given explicitly win
                cfg[k] = v
    classes = _classes(cfg["classes"]) if isinstance(cfg["classes"], (str, type(None))) else cfg["classes"]
    kw = dict(classes=classes, n_train=int(cfg["P"]), n_test=int(cfg["n_test"]), seed=int(cfg["seed"]))
    name = cfg["data"]
    if name == "digits":
        ds = _data.load_digits(**kw)
    elif name in ("mnist", "fashion-mnist", "cifar10"):
        if not cfg["data_path"]:
            raise SystemExit(f"--data {name} needs --data-path DIR")
        loader = {"mnist": _data.load_mnist, "fashion-mnist": _data.load_fashion_mnist,
                  "cifar10": _data.load_cifar10}[name]
        ds = loader(cfg["data_path"], **kw)
    else:
        raise SystemExit(f"--data must be digits, mnist, fashion-mnist or cifar10, got {name!r}")
    N = float(cfg["N"])
    common = dict(N=N, T=float(cfg["T"]), lambda0=float(cfg["lambda0"]),
                  lambda1=float(cfg["lambda1"]), activation=cfg["activation"],
                  tol=float(cfg["tol"]), max_iter=int(cfg["max_iter"]))
    arch = cfg["arch"].lower()
    if arch == "fc":
        m = FC(**common)
    elif arch in ("lcn", "cnn"):
        cls = CNN if arch == "cnn" else LCN
        m = cls(input_shape=ds.input_shape, mask=_ints(cfg["mask"]), stride=_ints(cfg["stride"]),
                padding=cfg["padding"], **common)
    else:
        raise SystemExit(f"--arch must be fc, lcn or cnn, got {cfg['arch']!r}")
    m.fit(ds.X_train, ds.y_train)
    out = m.to_dict()
    out["data"] = ds.meta
    if m.result_.converged:
        err = m.test_error(ds.X_test, ds.y_test)
        out["test_error"] = err.to_dict()
        out["train_error"] = m.train_error()
    if args.out:
        path = Path(args.out)
        if path.suffix in (".json", ".npz") and args.save_fit:
            m.save(path)
        else:
            path.write_text(json.dumps(out, indent=1, default=str))
        if not args.quiet:
            print(f"wrote {path}", file=sys.stderr)
    else:
        print(json.dumps(out, indent=1, default=str))
    return 0 if m.result_.converged else 3


_DEFAULTS = dict(arch="cnn", N=50.0, T=0.1, lambda0=1.0, lambda1=1.0, activation="erf", mask="2",
                 stride="2", padding="valid", data="digits", data_path=None, classes="even-odd",
                 P=500, n_test=500, seed=0, tol=1e-9, max_iter=1000)


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kren", description=(
        "Local kernel renormalization: effective actions of Bayesian one-hidden-layer FC, LCN "
        "and CNN networks in the proportional limit."))
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="FC, LCN, CNN on digits (even vs odd) across widths N")
    d.add_argument("--out", default="kren-output", help="output directory (default kren-output)")
    d.add_argument("--P", type=int, default=500, help="training set size (default 500)")
    d.add_argument("--n-test", type=int, default=500)
    d.add_argument("--N", type=_floats, default=None, help="comma-separated widths, 'inf' allowed")
    d.add_argument("--T", type=float, default=0.1)
    d.add_argument("--activation", default="erf", choices=["erf", "relu", "linear"])
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("solve", help="one configuration; prints or saves JSON")
    s.add_argument("--config", help="TOML or JSON file with any of: " + ", ".join(SOLVE_KEYS))
    s.add_argument("--arch", default=_DEFAULTS["arch"], choices=["fc", "lcn", "cnn"])
    s.add_argument("--N", type=float, default=_DEFAULTS["N"], help="width ('inf' for N = ∞)")
    for k in ("T", "lambda0", "lambda1"):
        s.add_argument(f"--{k}", type=float, default=_DEFAULTS[k])
    s.add_argument("--activation", default="erf", choices=["erf", "relu", "linear"])
    s.add_argument("--mask", default="2", help="int or comma-separated per axis")
    s.add_argument("--stride", default="2")
    s.add_argument("--padding", default="valid", choices=["valid", "circular"])
    s.add_argument("--data", default="digits", help="digits | mnist | fashion-mnist | cifar10")
    s.add_argument("--data-path", default=None)
    s.add_argument("--classes", default="even-odd", help="'a,b', 'a,b,c/d,e', 'even-odd', 'none'")
    s.add_argument("--P", type=int, default=500)
    s.add_argument("--n-test", type=int, default=500)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--tol", type=float, default=1e-9)
    s.add_argument("--max-iter", type=int, default=1000)
    s.add_argument("--out", help="write JSON here instead of printing")
    s.add_argument("--save-fit", action="store_true",
                   help="write a loadable fit (kren.estimators.load) to --out (.json/.npz)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_solve)

    c = sub.add_parser("compare", help="theory vs Langevin-sampled networks", add_help=False)
    c.set_defaults(func=None)
    g = sub.add_parser("codegen", help="regenerate kren/generated from the SymPy derivation",
                       add_help=False)
    g.set_defaults(func=None)
    from .sweeps.cli import register as register_sweeps      # sweep, plot, paper
    register_sweeps(sub)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "compare":
        from .compare import main as compare_main
        return compare_main(argv[1:]) or 0
    if argv and argv[0] == "codegen":
        from derivations.codegen import main as codegen_main
        return codegen_main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    if args.command == "demo" and args.N is None:
        from .demo import DEFAULT_NS
        args.N = list(DEFAULT_NS)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
