"""``kren sweep``, ``kren plot``, ``kren paper``: registered in :mod:`kren.cli` by :func:`register`.

User mistakes raise clear exceptions (:class:`~kren.sweeps.errors.SweepConfigError`,
:class:`~kren.sweeps.errors.SweepFolderError`, ``FileNotFoundError``); :mod:`kren.cli` turns
them into its error line.
"""
from __future__ import annotations

import sys
import time

__all__ = ["register", "cmd_sweep", "cmd_plot", "cmd_paper"]


def _print_summary(res, out=None):
    out = out or sys.stdout
    s = res.summary
    t = res.table
    failed = int((t["status"] != "ok").sum()) if len(t) else 0
    print(f"{len(t)}/{len(res.plan)} points recorded ({s['computed']} computed now by "
          f"{s['executor']} in {s['seconds']:.1f} s); {failed} failed", file=out)
    if failed:
        errs = t.loc[t["status"] != "ok", "error"].astype(str)
        for msg, count in errs.value_counts().head(5).items():
            print(f"  {count} × {msg}", file=out)
    if s.get("lost") or s.get("not_computed"):
        print(f"{s.get('lost', 0)} point(s) lost with a worker and {s.get('not_computed', 0)} "
              "not reached: run the same command again to compute them", file=out)
    for k, p in res.paths.items():
        print(f"wrote {p}", file=out)


def _interrupted() -> int:
    print("\nkren: interrupted; every point finished so far is recorded: run the same command "
          "again to compute the rest", file=sys.stderr)
    return 130


def cmd_sweep(args) -> int:
    """``kren sweep CONFIG``: plan (``--dry-run``: print it and stop), run, summary; exit
    status 0 when every point is recorded, 3 otherwise."""
    from . import sweep
    try:
        res = sweep(args.config, args.out, workers=args.workers, scheduler=args.scheduler,
                    threads=args.threads, progress=not args.quiet, dry_run=args.dry_run,
                    log=(lambda *a: None) if args.quiet and not args.dry_run else print)
    except KeyboardInterrupt:
        return _interrupted()
    if args.dry_run:
        return 0
    _print_summary(res)
    if args.plot:
        from .figures import plot_sweep
        for name, paths in plot_sweep(res.folder, x=args.x).items():
            print(f"wrote {', '.join(paths)}")
    return 0 if res.complete else 3


def cmd_plot(args) -> int:
    """``kren plot FOLDER``: every standard figure of the sweep (:func:`plot_sweep`)."""
    from .figures import plot_sweep
    for name, paths in plot_sweep(args.folder, x=args.x, formats=args.format).items():
        print(f"wrote {', '.join(paths)}")
    return 0


def cmd_paper(args) -> int:
    """``kren paper``: the packaged paper sweep and its figure (:func:`run_paper`)."""
    from .paper import print_config, run_paper
    if args.print_config:
        print_config()
        return 0
    t0 = time.perf_counter()
    try:
        res, figure = run_paper(out=args.out, data=args.data, workers=args.workers,
                                scheduler=args.scheduler, progress=not args.quiet,
                                config=args.config)
    except KeyboardInterrupt:
        return _interrupted()
    _print_summary(res)
    print(f"wrote {figure}\n({time.perf_counter() - t0:.0f} s)")
    return 0 if res.complete else 3


def _run_args(p, workers_help="local worker processes (default: [run] workers, else 1)"):
    p.add_argument("--workers", type=int, default=None, help=workers_help)
    p.add_argument("--scheduler", default=None,
                   help="address of a running Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--quiet", action="store_true", help="no plan, no progress bar")


def _formats(text: str) -> tuple:
    """"png,pdf" -> ("png", "pdf"); each a format matplotlib writes."""
    import argparse

    from matplotlib.backend_bases import FigureCanvasBase
    fmts = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    allowed = sorted(FigureCanvasBase.get_supported_filetypes())
    bad = [f for f in fmts if f not in allowed]
    if not fmts or bad:
        raise argparse.ArgumentTypeError(f"unknown figure format {', '.join(bad) or repr(text)}; "
                                         f"choose among {', '.join(allowed)}")
    return fmts


def register(sub) -> None:
    """Add the sweep, plot and paper subcommands to ``kren``'s subparsers."""
    s = sub.add_parser("sweep", help="run a grid of fits and sampled networks (TOML config)",
                       description="Run the sweep of CONFIG (schema: python -c 'import "
                       "kren.sweeps.config as c; help(c)') into --out; a killed sweep "
                       "resumes where it stopped.")
    s.add_argument("config", help="sweep config (.toml or .json)")
    s.add_argument("--out", default=None, help="sweep folder (default kren-sweeps/<config name>)")
    _run_args(s)
    s.add_argument("--threads", type=int, default=None, help="BLAS/torch threads per worker")
    s.add_argument("--dry-run", action="store_true",
                   help="print the plan: points, kernel groups, memory; compute nothing")
    s.add_argument("--plot", action="store_true", help="draw the figures when done")
    s.add_argument("--x", default="N", choices=["N", "alpha"], help="x axis of the figures")
    s.set_defaults(func=cmd_sweep)

    p = sub.add_parser("plot", help="the standard figures of a sweep folder (PNG and PDF)")
    p.add_argument("folder", help="a sweep folder (with table.parquet)")
    p.add_argument("--x", default="N", choices=["N", "alpha"], help="x axis: N or α = P/N")
    p.add_argument("--format", default="png,pdf", type=_formats,
                   help="comma-separated file formats (default png,pdf)")
    p.set_defaults(func=cmd_plot)

    q = sub.add_parser("paper", help="the headline figure: FC vs LCN vs CNN against N on "
                       "digits (or --data), theory and sampled networks")
    q.add_argument("--out", default="kren-paper", help="output folder (default kren-paper)")
    q.add_argument("--data", default=None,
                   help="MNIST or CIFAR-10 folder (KIND:PATH to name it) instead of digits")
    q.add_argument("--config", default=None, help="another config (default: the packaged one)")
    q.add_argument("--print-config", action="store_true",
                   help="print the packaged config (a TOML file to copy) and exit")
    _run_args(q, "local worker processes (default 2)")
    q.set_defaults(func=cmd_paper)
