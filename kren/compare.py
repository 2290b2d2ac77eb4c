"""``kren compare``: the theory (THEORY §3–4) beside Langevin-sampled finite networks.

For every architecture and width N asked for, the same :class:`~kren.architecture.Architecture`
feeds the saddle-point estimator (``kren.FC/LCN/CNN``) and the finite network sampled by
:mod:`kren.sampling`. The test error ε = (1/P0) Σ_0 ⟨(y0 − f0)²⟩ (bias² + variance, THEORY §4) of
both is tabulated; the sampled one carries a Monte-Carlo standard error (ESS of the per-draw
test error over all chains) and split-R̂ diagnostics.

Agreement criterion (per row): |ε_sampled − ε_theory| ≤ max(2·SE, 10 % · ε_theory), and the
chains converged (split-R̂ of the per-draw test error and of the training loss < 1.05). Rows that
miss it are marked DISAGREE (or NOT CONVERGED) in the table, never hidden.

Outputs in ``--out``: ``compare.json`` (configuration, every row, diagnostics, kernel
summaries), ``compare.png`` (test error against N with error bars; theory curves), ``table.md``
(the table) and ``similarity.png`` (over the training set, sorted by label: NNGP kernel, the
theory's renormalized K_R and the sampled K̂ averaged over posterior draws, THEORY §6).

    kren compare --arch cnn lcn fc --N cnn:10,50 lcn:10,50 fc:10,50,400 --out out/
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time

import numpy as np

from . import activations

ARCH_NAMES = {"fc": "FC", "lcn": "LCN", "cnn": "CNN"}
RHAT_MAX = 1.05
REL_TOL = 0.10


# ----------------------------------------------------------------------------- parsing
def _int_tuple(text):
    vals = [int(v) for v in str(text).replace("x", ",").split(",") if v.strip()]
    if not vals:
        raise argparse.ArgumentTypeError(f"expected an int or comma-separated ints, got {text!r}")
    return vals[0] if len(vals) == 1 else tuple(vals)


def _classes(text):
    if text in ("even-odd", "all"):
        return text
    vals = tuple(int(v) for v in str(text).split(","))
    if len(vals) != 2:
        raise argparse.ArgumentTypeError(f"--classes expects 'a,b', 'even-odd' or 'all', got "
                                         f"{text!r}")
    return vals


def parse_widths(tokens, archs):
    """Widths per architecture from tokens ``10 50`` / ``10,50`` (every arch) or ``cnn:10,50``.

    Returns {arch: sorted list of int N}. An arch named with ``arch:`` but missing from
    ``archs`` is an error; plain widths apply to every arch without its own list.
    """
    common, own = [], {}
    for tok in tokens:
        tok = str(tok).strip()
        if ":" in tok:
            kind, vals = tok.split(":", 1)
            kind = kind.strip().lower()
            if kind not in archs:
                raise ValueError(f"--N names {kind!r}, which is not among --arch {list(archs)}")
            own.setdefault(kind, []).extend(_width_list(vals))
        else:
            common.extend(_width_list(tok))
    out = {}
    for kind in archs:
        Ns = own.get(kind, common)
        if not Ns:
            raise ValueError(f"no width N given for {kind!r} (use --N 10,50 or --N {kind}:10,50)")
        out[kind] = sorted(set(Ns))
    return out


def _width_list(text):
    out = []
    for v in str(text).split(","):
        v = v.strip()
        if not v:
            continue
        try:
            N = int(v)
        except ValueError:
            raise ValueError(f"widths must be positive integers, got {v!r}") from None
        if N <= 0:
            raise ValueError(f"widths must be positive integers, got {N}")
        out.append(N)
    return out


def build_parser() -> argparse.ArgumentParser:
    from .cliutil import ArgumentParser
    p = ArgumentParser(
        prog="kren compare",
        description="Theory (saddle point) vs Langevin-sampled finite networks, side by side.")
    a = p.add_argument
    a("--arch", nargs="+", default=["cnn", "lcn", "fc"], choices=["fc", "lcn", "cnn"],
      help="architectures (default: cnn lcn fc)")
    a("--N", nargs="+", default=["10,50"],
      help="widths: '10 50', '10,50' (all archs) and/or per arch 'cnn:10,50 fc:400'")
    a("--classes", type=_classes, default=(0, 1),
      help="digit classes 'a,b', 'even-odd' (one ±1 output) or 'all' (10 outputs, one-hot ±1 "
           "targets, THEORY §3c) (default 0,1)")
    a("--P", type=int, default=200, help="training set size (default 200)")
    a("--n-test", type=int, default=100, help="test set size (default 100)")
    a("--data-seed", type=int, default=0, help="seed of the train/test split (default 0)")
    a("--mask", type=_int_tuple, default=(2, 2), help="mask, e.g. 2 or 2,2 (default 2,2)")
    a("--stride", type=_int_tuple, default=(2, 2), help="stride (default 2,2)")
    a("--padding", default="valid", choices=["valid", "circular"])
    a("--activation", default="erf", choices=activations.names())
    a("--lambda0", type=float, default=1.0)
    a("--lambda1", type=float, default=1.0)
    a("--T", type=float, default=0.1, help="temperature (default 0.1)")
    a("--steps", type=int, default=40000, help="Langevin steps per chain (default 40000)")
    a("--burn-in", type=int, default=5000, help="discarded steps (default 5000)")
    a("--thin", type=int, default=20, help="keep every thin-th state (default 20)")
    a("--chains", type=int, default=4, help="independent chains (default 4)")
    a("--step", type=float, default=0.02, help="Langevin step η (default 0.02)")
    a("--ula", action="store_true",
      help="unadjusted Langevin (O(η) bias); default: Metropolis-adjusted (MALA, exact)")
    a("--dtype", default="float32", choices=["float32", "float64"])
    a("--device", default="cpu", help="cpu (default), cuda, cuda:k or auto")
    a("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    a("--seed", type=int, default=0, help="sampler seed (default 0)")
    a("--kernel-N", type=int, default=None,
      help="width of the similarity figure (default: the smallest N of each arch)")
    a("--out", default="kren-compare", help="output directory (default kren-compare)")
    a("--quiet", action="store_true", help="no progress lines")
    return p


# ----------------------------------------------------------------------------- core
def _estimator(kind, N, cfg):
    import kren
    kw = dict(N=N, T=cfg["T"], lambda0=cfg["lambda0"], lambda1=cfg["lambda1"],
              activation=cfg["activation"], input_shape=tuple(cfg["input_shape"]))
    if kind != "fc":
        kw.update(mask=cfg["mask"], stride=cfg["stride"], padding=cfg["padding"])
    return getattr(kren, ARCH_NAMES[kind])(**kw)


def _architecture(kind, cfg):
    from .architecture import Architecture
    kw = dict(input_shape=tuple(cfg["input_shape"]), activation=cfg["activation"],
              lambda0=cfg["lambda0"], lambda1=cfg["lambda1"])
    if kind != "fc":
        kw.update(mask=cfg["mask"], stride=cfg["stride"], padding=cfg["padding"])
    return Architecture(kind, **kw)


def kernel_summary(K, y) -> dict:
    """Scalars of a P×P kernel: label alignment yᵀKy/(‖K‖_F |y|²) and trace/P."""
    K = np.asarray(K, dtype=float)
    return {"alignment": float(y @ K @ y / (np.linalg.norm(K) * (y @ y))),
            "trace_over_P": float(np.trace(K) / K.shape[0])}


def verdict(theory, sampled, se, rhat) -> str:
    """'agree' iff |sampled − theory| ≤ max(2 se, 10 % theory) and rhat < 1.05 (module doc)."""
    if not (rhat < RHAT_MAX):
        return "NOT CONVERGED"
    return "agree" if abs(sampled - theory) <= max(2 * se, REL_TOL * theory) else "DISAGREE"


def run_compare(archs=("cnn", "lcn", "fc"), widths=None, classes=(0, 1), P=200, n_test=100,
                data_seed=0, mask=(2, 2), stride=(2, 2), padding="valid", activation="erf",
                lambda0=1.0, lambda1=1.0, T=0.1, steps=40000, burn_in=5000, thin=20, chains=4,
                step=0.02, metropolis=True, dtype="float32", device="cpu", seed=0,
                threads=None, kernel_N=None, out=None, quiet=True, log=print) -> dict:
    """Theory and sampling side by side; returns a dict (the content of compare.json) with
    ``rows`` (one per arch and N), ``kernels`` (similarity matrices per arch) and ``paths``.

    ``widths``: {arch: [N, ...]} or a list of N for every arch (default [10, 50]).

    ``out``: the output folder, checked (created if needed, writable, not in use by another
    run) before anything is computed; the outputs are written together at the end
    (:class:`kren.outputs.RunFolder`), so an interrupted run leaves the previous ones intact.
    """
    if out is None:
        return _run_compare(archs, widths, classes, P, n_test, data_seed, mask, stride, padding,
                            activation, lambda0, lambda1, T, steps, burn_in, thin, chains, step,
                            metropolis, dtype, device, seed, threads, kernel_N, None, quiet, log)
    from .outputs import RunFolder
    with RunFolder(out, "compare", flag="--out") as run:
        res = _run_compare(archs, widths, classes, P, n_test, data_seed, mask, stride, padding,
                           activation, lambda0, lambda1, T, steps, burn_in, thin, chains, step,
                           metropolis, dtype, device, seed, threads, kernel_N, run, quiet, log)
        run.commit()
    return res


def _run_compare(archs, widths, classes, P, n_test, data_seed, mask, stride, padding,
                 activation, lambda0, lambda1, T, steps, burn_in, thin, chains, step, metropolis,
                 dtype, device, seed, threads, kernel_N, run, quiet, log) -> dict:
    """The body of :func:`run_compare`; ``run`` (a RunFolder or None) receives the outputs."""
    import torch

    from .data import load_digits
    from .sampling import sample_posterior

    archs = [a.lower() for a in archs]
    for a in archs:
        if a not in ARCH_NAMES:
            raise ValueError(f"unknown architecture {a!r}; choose from {list(ARCH_NAMES)}")
    if widths is None:
        widths = [10, 50]
    if not isinstance(widths, dict):
        widths = {a: sorted(set(int(N) for N in widths)) for a in archs}
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    say = (lambda *a: None) if quiet else log
    t_start = time.perf_counter()
    try:
        multi = classes == "all"         # D = 10 outputs, one-hot ±1 targets (THEORY §3c)
        data = load_digits(classes=classes, n_train=P, n_test=n_test, seed=data_seed,
                           one_hot=multi)
        X, y, Xt, yt = data.X_train, data.y_train, data.X_test, data.y_test
        outputs = y.shape[1] if y.ndim == 2 else None
        cfg = dict(input_shape=list(data.input_shape), mask=mask, stride=stride, padding=padding,
                   activation=activation, lambda0=lambda0, lambda1=lambda1, T=T)
        rows, kernels = [], {}
        for kind in archs:
            arch = _architecture(kind, cfg)
            inf = _estimator(kind, math.inf, cfg).fit(X, y)
            nngp_err = inf.test_error(Xt, yt).total
            k_N = kernel_N if kernel_N is not None else min(widths[kind])
            for N in widths[kind]:
                t0 = time.perf_counter()
                est = _estimator(kind, N, cfg).fit(X, y)
                te = est.test_error(Xt, yt)
                t_theory = time.perf_counter() - t0
                say(f"[{ARCH_NAMES[kind]} N={N}] theory ε = {te.total:.4f} "
                    f"({t_theory:.1f} s); sampling {chains} chains × {steps} steps ...")
                want_kernel = (N == k_N) and outputs is None      # K̂ vs K_R: one output
                r = sample_posterior(arch, N, X, y, T, step_size=step, steps=steps,
                                     burn_in=burn_in, thin=thin, chains=chains, X_test=Xt,
                                     y_test=yt, X_kernel="train" if want_kernel else None,
                                     dtype=dtype, device=device, seed=seed,
                                     metropolis=metropolis, outputs=outputs)
                se = r.test_error()
                dg = r.diagnostics()
                rhat = max(dg.rhat_test_error, dg.rhat_loss)
                row = {
                    "arch": ARCH_NAMES[kind], "N": N, "alpha": P / N,
                    "theory": {"test_error": te.total, "bias2": te.bias2,
                               "variance": te.variance, "train_error": est.train_error(),
                               "converged": bool(est.result_.converged),
                               "wall_time_s": t_theory},
                    "theory_nngp_test_error": nngp_err,
                    "sampled": r.summary(),
                    "rhat": rhat,
                    "verdict": verdict(te.total, se.total, se.se, rhat),
                    "rel_diff": (se.total - te.total) / te.total,
                    "z": (se.total - te.total) / se.se if se.se > 0 else math.inf,
                }
                if kind == "fc":
                    row["theory"]["Q"] = (float(np.asarray(est.Q_).ravel()[0]) if outputs is None
                                          else np.asarray(est.Q_).tolist())
                if outputs is not None:
                    row["outputs"] = outputs
                    if getattr(te, "per_output", None):
                        row["theory"]["per_output"] = np.asarray(te.per_output["total"]).tolist()
                rows.append(row)
                say(f"[{ARCH_NAMES[kind]} N={N}] sampled ε = {se.total:.4f} ± {se.se:.4f}, "
                    f"R̂ = {rhat:.3f}, acceptance {np.mean(r.acceptance):.2f}, "
                    f"{r.wall_time:.0f} s → {row['verdict']}")
                if want_kernel:
                    K_nngp = arch.nngp_kernel(X)
                    K_R = est.renormalized_kernel(X)
                    K_hat = r.kernel
                    kernels[ARCH_NAMES[kind]] = {
                        "N": N, "nngp": K_nngp, "theory": K_R, "sampled": K_hat,
                        "summary": {
                            "nngp": kernel_summary(K_nngp, y), "theory": kernel_summary(K_R, y),
                            "sampled": kernel_summary(K_hat, y),
                            "rel_dist_sampled_theory": float(np.linalg.norm(K_hat - K_R)
                                                             / np.linalg.norm(K_R)),
                            "rel_dist_sampled_nngp": float(np.linalg.norm(K_hat - K_nngp)
                                                           / np.linalg.norm(K_nngp)),
                            "rel_dist_theory_nngp": float(np.linalg.norm(K_R - K_nngp)
                                                          / np.linalg.norm(K_nngp))}}
    finally:
        torch.set_num_threads(old_threads)
    wall = time.perf_counter() - t_start
    result = {
        "config": {"dataset": "digits", "classes": classes if isinstance(classes, str)
                   else list(classes), "P": P, "n_test": n_test, "data_seed": data_seed,
                   **{k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
                   "steps": steps, "burn_in": burn_in, "thin": thin, "chains": chains,
                   "step_size": step, "sampler": "MALA" if metropolis else "ULA",
                   "dtype": dtype, "device": str(device), "seed": seed,
                   "threads": threads, "widths": {ARCH_NAMES[k]: v for k, v in widths.items()},
                   "criterion": f"|Δε| ≤ max(2 SE, {REL_TOL:.0%} ε_theory) and R̂ < {RHAT_MAX}"},
        "rows": rows,
        "kernels": {k: {"N": v["N"], **v["summary"]} for k, v in kernels.items()},
        "wall_time_s": wall,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__},
    }
    if run is not None:
        paths = {"json": str(run.path("compare.json")), "table": str(run.path("table.md")),
                 "figure": str(run.path("compare.png"))}
        plot_comparison(rows, run.stage("compare.png"), title=_title(result["config"]))
        if kernels:
            paths["similarity"] = str(run.path("similarity.png"))
            plot_similarity(kernels, y, run.stage("similarity.png"))
        result["paths"] = paths
        result["run_id"] = run.run_id
        run.stage("table.md").write_text(format_table(rows) + "\n")
        run.stage("compare.json").write_text(json.dumps(_jsonable(result), indent=2))
    result["kernel_matrices"] = kernels
    return result


def _title(cfg):
    return (f"digits {cfg['classes']}, P = {cfg['P']}, {cfg['n_test']} test, T = {cfg['T']}, "
            f"{cfg['activation']}, mask {cfg['mask']} stride {cfg['stride']}")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


# ----------------------------------------------------------------------------- output
def format_table(rows) -> str:
    """Markdown table: theory and sampled test errors, their difference, diagnostics, verdict."""
    head = ("| arch | N | α = P/N | ε theory | ε sampled ± SE | Δ/ε theory | Δ/SE | R̂ | "
            "R̂ max (pred.) | ESS | accept | time (s) | verdict |")
    sep = "|" + "---|" * 13
    lines = [head, sep]
    for r in rows:
        s = r["sampled"]
        te = s["test_error"]
        d = s["diagnostics"]
        lines.append(
            f"| {r['arch']} | {r['N']} | {r['alpha']:.3g} | {r['theory']['test_error']:.4f}"
            f"{'' if r['theory']['converged'] else ' (unconverged)'} | "
            f"{te['total']:.4f} ± {te['se']:.4f} | {100 * r['rel_diff']:+.1f} % | "
            f"{r['z']:+.1f} | {r['rhat']:.3f} | {d['rhat_predictions_max']:.3f} | "
            f"{te['ess']:.0f} | {np.mean(s['acceptance']):.2f} | {s['wall_time_s']:.0f} | "
            f"{r['verdict']} |")
    return "\n".join(lines)


def plot_comparison(rows, path, title=""):
    """Test error against N: theory (line, N = ∞ as a dashed level) and sampled (error bars)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plotting import COLORS
    fig, ax = plt.subplots(figsize=(6.6, 4.4), constrained_layout=True)
    archs = [a for a in ("FC", "LCN", "CNN") if any(r["arch"] == a for r in rows)]
    for k, arch in enumerate(archs):
        rs = sorted((r for r in rows if r["arch"] == arch), key=lambda r: r["N"])
        Ns = np.array([r["N"] for r in rs], dtype=float)
        col = COLORS.get(arch)
        ax.plot(Ns, [r["theory"]["test_error"] for r in rs], "-", color=col, lw=1.6,
                marker="s", ms=4, label=f"{arch} theory")
        ax.axhline(rs[0]["theory_nngp_test_error"], color=col, ls="--", lw=0.9, alpha=0.7)
        shift = 1.0 + 0.04 * (k - 1)
        ax.errorbar(Ns * shift, [r["sampled"]["test_error"]["total"] for r in rs],
                    yerr=[2 * r["sampled"]["test_error"]["se"] for r in rs], fmt="o",
                    color=col, mfc="white", capsize=3, label=f"{arch} sampled (±2 SE)")
        for r, x in zip(rs, Ns * shift):
            if r["verdict"] != "agree":
                ax.annotate("✗", (x, r["sampled"]["test_error"]["total"]), color=col,
                            textcoords="offset points", xytext=(6, 4), fontsize=10)
    ax.set_xscale("log")
    ticks = sorted({r["N"] for r in rows})
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("hidden width N (channels)")
    ax.set_ylabel("test error ε = bias² + variance")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, title="dashed: N = ∞ (NNGP);  ✗: disagree", title_fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def plot_similarity(kernels, y, path):
    """Rows: architectures; columns: NNGP kernel, theory K_R, sampled ⟨K̂⟩ (training set sorted
    by label). Each row shares one colour scale so the three matrices compare directly."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    order = np.argsort(-np.asarray(y), kind="stable")
    names = list(kernels)
    fig, axes = plt.subplots(len(names), 3, figsize=(10.5, 3.4 * len(names)),
                             constrained_layout=True, squeeze=False)
    for row, name in zip(axes, names):
        k = kernels[name]
        mats = [k["nngp"], k["theory"], k["sampled"]]
        vmax = max(np.abs(m).max() for m in mats)
        titles = [f"{name} NNGP kernel", f"{name} theory K_R (N = {k['N']})",
                  f"{name} sampled ⟨K̂⟩ (N = {k['N']})"]
        for ax, M, t in zip(row, mats, titles):
            im = ax.imshow(np.asarray(M)[np.ix_(order, order)], cmap="RdBu_r", vmin=-vmax,
                           vmax=vmax, interpolation="nearest")
            ax.set_title(t, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(im, ax=row, shrink=0.8)
    fig.suptitle("similarity over the training set (sorted by label)", fontsize=10)
    fig.savefig(path, dpi=80)          # ≥ 1 screen pixel per matrix entry at P = 200
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- CLI
def _setting(kind, low=None, open_low=False, none=False):
    from .cliutil import Setting
    return Setting(kind, low, open_low, none=none)


_SETTINGS = {
    "P": _setting("int", 1), "n_test": _setting("int", 1), "data_seed": _setting("int", 0),
    "lambda0": _setting("float", 0, True), "lambda1": _setting("float", 0, True),
    "T": _setting("float", 0, True), "steps": _setting("int", 1), "burn_in": _setting("int", 0),
    "thin": _setting("int", 1), "chains": _setting("int", 1), "step": _setting("float", 0, True),
    "threads": _setting("int", 1), "seed": _setting("int", 0),
    "kernel_N": _setting("int", 1, none=True),
}


def main(argv=None) -> int:
    """Entry point of ``kren compare`` (see :func:`build_parser`): a user error is one
    ``kren: error:`` line on stderr and exit status 2 (``kren compare`` runs :func:`run_main`
    under :func:`kren.cli.main`, which does the same for every subcommand)."""
    from .cliutil import one_line
    from .errorbase import KrenError
    try:
        return run_main(argv)
    except KrenError as exc:
        print(f"kren: error: {one_line(exc)}", file=sys.stderr)
        return 2


def run_main(argv=None) -> int:
    """``kren compare`` with its errors raised (:func:`main` and :func:`kren.cli.main` report
    them)."""
    from .cliutil import UsageError, check_setting, flag
    args = build_parser().parse_args(argv)
    try:
        widths = parse_widths(args.N, args.arch)
    except ValueError as exc:
        msg = str(exc)
        raise UsageError(msg if msg.startswith("--N") else f"--N: {msg}") from None
    for key, setting in _SETTINGS.items():           # checked before anything is computed
        check_setting(key, getattr(args, key), setting, flag(key))
    if args.burn_in >= args.steps:
        raise UsageError(f"--burn-in ({args.burn_in}) must be smaller than --steps "
                         f"({args.steps})")
    from .outputs import check_output_dir
    check_output_dir(args.out, "--out")
    try:
        import torch  # noqa: F401  (the nn extra is needed for the sampled side)
    except ImportError:
        raise UsageError("kren compare needs PyTorch: pip install 'kren[nn]'") from None
    from .sampling.networks import resolve_device
    try:
        resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"--device: {exc}") from None
    t0 = time.perf_counter()
    res = run_compare(archs=args.arch, widths=widths, classes=args.classes, P=args.P,
                      n_test=args.n_test, data_seed=args.data_seed, mask=args.mask,
                      stride=args.stride, padding=args.padding, activation=args.activation,
                      lambda0=args.lambda0, lambda1=args.lambda1, T=args.T, steps=args.steps,
                      burn_in=args.burn_in, thin=args.thin, chains=args.chains, step=args.step,
                      metropolis=not args.ula, dtype=args.dtype, device=args.device,
                      seed=args.seed, threads=args.threads, kernel_N=args.kernel_N,
                      out=args.out, quiet=args.quiet, log=lambda *a: print(*a, flush=True))
    print(_title(res["config"]) + f"; λ0 = {args.lambda0}, λ1 = {args.lambda1}")
    print(f"sampler: {res['config']['sampler']}, η = {args.step}, {args.chains} chains × "
          f"{args.steps} steps (burn-in {args.burn_in}, thin {args.thin}), {args.dtype}, "
          f"{args.device}")
    print(format_table(res["rows"]))
    print(f"criterion: {res['config']['criterion']}")
    bad = [r for r in res["rows"] if r["verdict"] != "agree"]
    if bad:
        print("theory and sampling DISAGREE (or the chains did not converge) for: " + ", ".join(
            f"{r['arch']} N={r['N']} ({100 * r['rel_diff']:+.0f} %, {r['verdict']})" for r in bad))
    for name, k in res["kernels"].items():
        print(f"{name} N={k['N']}: label alignment NNGP {k['nngp']['alignment']:.3f}, theory K_R "
              f"{k['theory']['alignment']:.3f}, sampled K̂ {k['sampled']['alignment']:.3f}; "
              f"‖K̂ − K_R‖/‖K_R‖ = {k['rel_dist_sampled_theory']:.3f}, "
              f"‖K̂ − K_NNGP‖/‖K_NNGP‖ = {k['rel_dist_sampled_nngp']:.3f}")
    for key, p in res.get("paths", {}).items():
        print(f"wrote {p}")
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from .cli import main as _cli_main
    sys.exit(_cli_main(["compare", *sys.argv[1:]]))
