"""Deep FC theory (product and nested forms, THEORY §3d) against sampled deep networks.

    python benchmarks/deep_vs_sampled.py                      # the default run (below)
    python benchmarks/deep_vs_sampled.py --quick              # a one-minute smoke run
    python benchmarks/deep_vs_sampled.py --tasks even-odd --L 3 --N 50,200 --steps 20000

Digits 0 vs 1 and even/odd (kren.data.load_digits, standardized, P = 200 training and 160 test
images), erf, λ0 = λ_l = 1, T = 0.1, L = 2 and 3, widths N from 50 to 800 (every hidden layer
the same width). For every (task, L, N):

* theory: kren.DeepFC(form="product") and kren.DeepFC(form="nested") — Q, test error
  ε = bias² + variance (THEORY §4); the N = ∞ limit (deep NNGP kernel) once per (task, L);
* sampling: the same kren.DeepArchitecture's finite network, posterior sampled by MALA
  (Metropolis-adjusted Langevin: no step-size bias) with the readout integrated out exactly
  (kren.sampling.integrated: Langevin on the hidden weights of the marginal posterior,
  Rao–Blackwellized predictions), ``--chains`` chains from prior draws, ``--burn-in`` discarded
  steps, every ``--thin``-th state kept; the step η = ``--fraction``/h_max with h_max the
  curvature bound of kren.sampling.suggest_step_size, halved by short pilot runs (part of the
  burn-in) until the MALA acceptance is at least ``--min-accept``. Reported: the test error
  with its Monte-Carlo SE (ESS of the per-draw error), bias² and variance with SEs from per-draw
  scalars and their ESS, split-R̂ of the per-draw test error, MALA acceptance, and the
  posterior-averaged empirical kernel of the top layer against each form's K_R over the
  training set.

Which form is closer: per row, the distance of each form's ε (and variance) to the sampled value
in units of its SE; "product"/"nested" when one is closer by more than 2 SE, "tie" otherwise;
"both fail" when both are off by more than max(2 SE, 5 %); rows whose chains did not mix
(split-R̂ of the per-draw test error ≥ 1.1) are marked "not mixed" and not decided.

Cost: a Langevin step costs O(P·N²·L) per chain (N = 800, L = 3: ~0.3 s for 4 chains on one
core), and the slowest relevant modes relax at the rate T·λ per unit time (thousands of steps), so
``--steps``, ``--chains`` and the width-dependent ``--large-N``/``--large-steps``/``--large-chains``
are flags; the run prints its plan and the wall time. Outputs in ``--out`` (default
benchmarks/results/deep_vs_sampled): results.json, table.md, deep_vs_sampled.png
(``--replot`` rewrites the last two from results.json).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "deep_vs_sampled"
TASKS = {"0v1": (0, 1), "even-odd": "even-odd"}
RHAT_MAX = 1.1
FAIL_REL = 0.05


def _ints(text):
    return [int(v) for v in str(text).split(",") if v.strip()]


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--tasks", nargs="+", default=["even-odd", "0v1"], choices=list(TASKS))
    a("--L", type=_ints, default=[2, 3], help="depths, e.g. 2,3")
    a("--N", type=_ints, default=[50, 100, 200, 400, 800], help="widths, e.g. 50,200,800")
    a("--P", type=int, default=200)
    a("--n-test", type=int, default=160)
    a("--T", type=float, default=0.1)
    a("--activation", default="erf")
    a("--steps", type=int, default=4000, help="steps per chain (N < --large-N)")
    a("--burn-in", type=int, default=1000, help="discarded steps (N < --large-N)")
    a("--chains", type=int, default=4, help="chains (N < --large-N)")
    a("--large-N", type=int, default=400, help="widths ≥ this use the --large-* settings")
    a("--large-steps", type=int, default=2000)
    a("--large-burn-in", type=int, default=600)
    a("--large-chains", type=int, default=2)
    a("--thin", type=int, default=10)
    a("--fraction", type=float, default=3.0, help="η = fraction / h_max (MALA: halved by the "
      "pilot until its acceptance is ≥ --min-accept)")
    a("--min-accept", type=float, default=0.5)
    a("--pilot", type=int, default=40, help="pilot steps per step-size trial (part of burn-in)")
    a("--ula", action="store_true", help="unadjusted Langevin instead of MALA")
    a("--readout", default="integrated", choices=["integrated", "sampled"])
    a("--threads", type=int, default=2)
    a("--seed", type=int, default=0)
    a("--out", default=str(OUT))
    a("--quick", action="store_true", help="smoke run: 0v1, L=2, N=50, 300 steps")
    a("--replot", action="store_true", help="rewrite table.md and the figure from the saved "
      "results.json in --out (no computation)")
    return p


# ----------------------------------------------------------------------------------- pieces
def theory_row(X, y, Xt, yt, L, N, T, activation):
    import kren
    out = {}
    for form in ("product", "nested"):
        m = kren.DeepFC(L=L, N=N, T=T, activation=activation, form=form, tol=1e-10).fit(X, y)
        e = m.test_error(Xt, yt)
        out[form] = {"Q": [float(q) for q in m.Q_], "total": e.total, "bias2": e.bias2,
                     "variance": e.variance, "converged": bool(m.result_.converged),
                     "K_R": m.K_R_}
    return out


def _mc_se(per_draw):
    """Monte-Carlo SE of the mean of a per-draw scalar (C, S): sd/√ESS over all chains (the
    estimate kren.sampling.SamplingResult.error uses for the test error)."""
    from kren.sampling.diagnostics import effective_sample_size, split_chains
    sd = float(np.sqrt(split_chains(per_draw).var(ddof=1)))
    return sd / math.sqrt(float(effective_sample_size(per_draw)))


def _bias_variance_se(r, yt):
    """SEs of bias² and variance from per-draw scalars with their ESS: the variance is the mean of
    d_s = mean_0[(m_s − m̄)² + s²_s]; bias² = mean_0 (y0 − m̄)² moves with m̄ as the mean of
    b_s = mean_0[2 (m̄ − y0)(m_s − m̄)] (its linearization)."""
    F = r.test_predictions
    cv = r.test_conditional_var
    mbar = F.mean(axis=(0, 1))
    d = ((F - mbar) ** 2 + (0.0 if cv is None else cv)).mean(axis=2)
    b = (2 * (mbar - yt) * (F - mbar)).mean(axis=2)
    return _mc_se(b), _mc_se(d)


def sampled_row(arch, N, X, y, Xt, yt, T, cfg, log):
    import torch

    from kren.sampling import LangevinSampler, suggest_step_size
    t0 = time.perf_counter()
    large = N >= cfg.large_N
    steps = cfg.large_steps if large else cfg.steps
    burn = cfg.large_burn_in if large else cfg.burn_in
    chains = cfg.large_chains if large else cfg.chains
    eta = suggest_step_size(arch, N, X, T, fraction=cfg.fraction, seed=cfg.seed, chains=2)
    s = LangevinSampler(arch, N, T, eta, chains=chains, dtype=torch.float32, seed=cfg.seed,
                        metropolis=not cfg.ula, readout=cfg.readout)
    pilot = 0
    while not cfg.ula and pilot < 4 * cfg.pilot:
        acc = float(s.run(X, y, steps=cfg.pilot, burn_in=0, thin=cfg.pilot).acceptance.mean())
        pilot += cfg.pilot
        if acc >= cfg.min_accept:
            break
        s.step_size /= 2
        log(f"      pilot acceptance {acc:.2f} < {cfg.min_accept}: η → {s.step_size:.4f}")
    eta = s.step_size
    burn = max(0, burn - pilot)
    every = max(1, steps // 4)

    def progress(t, loss):
        if t % every == 0:
            log(f"      step {t + pilot}/{steps}  U = {loss:.4f}")
    r = s.run(X, y, steps=steps - pilot, burn_in=burn, thin=cfg.thin, X_test=Xt, y_test=yt,
              progress=progress)
    te = r.test_error()
    d = r.diagnostics()
    se_b, se_v = _bias_variance_se(r, yt)
    return r, {"steps": steps, "burn_in": burn + pilot, "chains": chains,
               "thin": cfg.thin, "pilot_steps": pilot,
               "step_size": eta, "acceptance": float(r.acceptance.mean()),
               "total": te.total, "se": te.se, "ess": te.ess, "bias2": te.bias2,
               "se_bias2": se_b, "variance": te.variance, "se_variance": se_v,
               "rhat_test_error": float(d.rhat_test_error) if d.rhat_test_error is not None
               else None, "rhat_max": float(d.rhat_max), "wall_s": time.perf_counter() - t0,
               "layer_kernels": r.layer_kernels}


def _closer(s, theory, key, se):
    """'product' / 'nested' / 'tie' by the distance to the sampled value in SE; 'both fail' when
    both are off by more than max(2 SE, 5 %)."""
    dp = abs(theory["product"][key] - s)
    dn = abs(theory["nested"][key] - s)
    tol = max(2 * se, FAIL_REL * abs(s))
    if dp > tol and dn > tol:
        return "both fail", dp, dn
    if abs(dp - dn) <= 2 * se:
        return "tie", dp, dn
    return ("product" if dp < dn else "nested"), dp, dn


def kernel_distance(K_hat, K_R):
    return float(np.linalg.norm(K_hat - K_R) / np.linalg.norm(K_R))


def format_table(rows) -> str:
    head = ("| task | L | N | α | ε product | ε nested | ε sampled ± SE | bias² sampled ± SE | "
            "var product | var nested | var sampled ± SE | R̂ | accept | "
            "‖K̂−K_R‖/‖K_R‖ prod / nest | closer (ε) | closer (var) | steps × chains | time (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        th, s = r["theory"], r["sampled"]
        if s is None:
            continue
        rh = s["rhat_test_error"]
        lines.append(
            f"| {r['task']} | {r['L']} | {r['N']} | {r['alpha']:.2g} | "
            f"{th['product']['total']:.4f} | {th['nested']['total']:.4f} | "
            f"{s['total']:.4f} ± {s['se']:.4f} | {s['bias2']:.4f} ± {s['se_bias2']:.4f} | "
            f"{th['product']['variance']:.4f} | {th['nested']['variance']:.4f} | "
            f"{s['variance']:.4f} ± {s['se_variance']:.4f} | "
            f"{rh if rh is None else f'{rh:.3f}'} | {s['acceptance']:.2f} | "
            f"{r['kernel_distance']['product']:.3f} / {r['kernel_distance']['nested']:.3f} | "
            f"{r['closer_error']} | {r['closer_variance']} | "
            f"{s['steps']} × {s['chains']} | {s['wall_s']:.0f} |")
    lines.append("")
    lines.append(f"R̂: split-R̂ of the per-draw test error. \"not mixed\": R̂ ≥ {RHAT_MAX}, the "
                 "sampled networks are NOT converged and the row decides nothing. \"both fail\": "
                 f"both forms off by more than max(2 SE, {FAIL_REL:.0%}). ‖K̂−K_R‖/‖K_R‖: the "
                 "posterior-averaged top-layer empirical kernel against each form's K_R.")
    return "\n".join(lines)


def _mixed(s) -> bool:
    return s["rhat_test_error"] is not None and s["rhat_test_error"] < RHAT_MAX


def figure(rows, nngp, path):
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = sorted({(r["task"], r["L"]) for r in rows})
    fig, axes = plt.subplots(2, len(keys), figsize=(4.2 * len(keys), 6.4), squeeze=False,
                             constrained_layout=True)
    for j, (task, L) in enumerate(keys):
        sel = sorted((r for r in rows if (r["task"], r["L"]) == (task, L)), key=lambda r: r["N"])
        Ns = [r["N"] for r in sel]
        for i, (key, sek, label) in enumerate((("total", "se", "test error ε"),
                                               ("variance", "se_variance", "variance"))):
            ax = axes[i, j]
            for form, style in (("product", "-o"), ("nested", "--s")):
                ax.plot(Ns, [r["theory"][form][key] for r in sel], style, ms=4, label=form)
            ax.axhline(nngp[f"{task}-{L}"][key], color="0.5", lw=0.8, ls=":", label="N = ∞")
            sm = [r for r in sel if r["sampled"] is not None]
            for mixed, fmt, lab in ((True, "^", "sampled ± 2 SE"),
                                    (False, "^", f"sampled, NOT mixed (R̂ ≥ {RHAT_MAX})")):
                pts = [r for r in sm if _mixed(r["sampled"]) == mixed]
                if pts:
                    ax.errorbar([r["N"] for r in pts], [r["sampled"][key] for r in pts],
                                yerr=[2 * r["sampled"][sek] for r in pts], fmt=fmt, ms=5,
                                capsize=3, color="k", mfc="k" if mixed else "white",
                                label=lab)
            ax.set_xscale("log")
            ax.set_xticks(Ns, [str(n) for n in Ns])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_xlabel("N")
            ax.set_ylabel(label)
            ax.set_title(f"{task}, L = {L}", fontsize=10)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _write_atomic(path: Path, text: str):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------- main
def run(cfg, log=print):
    import torch

    import kren
    from kren.data import load_digits
    torch.set_num_threads(cfg.threads)
    if cfg.quick:
        cfg.tasks, cfg.L, cfg.N = ["0v1"], [2], [50]
        cfg.steps, cfg.burn_in, cfg.chains = 300, 100, 2
    t_start = time.perf_counter()
    plan = [(t, L, N) for t in cfg.tasks for L in cfg.L for N in cfg.N]
    log(f"plan: {len(plan)} rows; steps × chains = {cfg.steps} × {cfg.chains} below N = "
        f"{cfg.large_N}, {cfg.large_steps} × {cfg.large_chains} from there; "
        f"{'ULA' if cfg.ula else 'MALA'}, readout {cfg.readout}, η = {cfg.fraction}/h_max, "
        f"{cfg.threads} thread(s)")
    rows, nngp, data, archs = [], {}, {}, {}
    for task in cfg.tasks:
        d = load_digits(classes=TASKS[task], n_train=cfg.P, n_test=cfg.n_test, seed=0)
        data[task] = (d.X_train, d.y_train, d.X_test, d.y_test)
        for L in cfg.L:
            archs[L] = kren.DeepArchitecture(L, d.X_train.shape[1], activation=cfg.activation)
            inf = kren.DeepFC(L=L, N=float("inf"), T=cfg.T, activation=cfg.activation).fit(
                d.X_train, d.y_train)
            e = inf.test_error(d.X_test, d.y_test)
            nngp[f"{task}-{L}"] = {"total": e.total, "bias2": e.bias2, "variance": e.variance}
    # widths outermost: a run stopped early still has every (task, L) at the smaller widths
    for N in cfg.N:
        for task in cfg.tasks:
            X, y, Xt, yt = data[task]
            for L in cfg.L:
                t0 = time.perf_counter()
                th = theory_row(X, y, Xt, yt, L, N, cfg.T, cfg.activation)
                log(f"{task} L={L} N={N}: theory ε product {th['product']['total']:.4f} nested "
                    f"{th['nested']['total']:.4f} ({time.perf_counter() - t0:.1f} s); sampling")
                r, s = sampled_row(archs[L], N, X, y, Xt, yt, cfg.T, cfg, log)
                K_hat = s.pop("layer_kernels")[-1]
                kd = {f: kernel_distance(K_hat, th[f].pop("K_R")) for f in ("product",
                                                                            "nested")}
                ce = _closer(s["total"], th, "total", s["se"])
                cv = _closer(s["variance"], th, "variance", s["se_variance"])
                if not _mixed(s):
                    ce, cv = ("not mixed",) + ce[1:], ("not mixed",) + cv[1:]
                row = {"task": task, "L": L, "N": N, "alpha": cfg.P / N, "theory": th,
                       "sampled": s, "kernel_distance": kd,
                       "closer_error": ce[0], "closer_variance": cv[0],
                       "distance_error": {"product": ce[1], "nested": ce[2]},
                       "distance_variance": {"product": cv[1], "nested": cv[2]}}
                rows.append(row)
                rh = s["rhat_test_error"]
                log(f"   sampled ε {s['total']:.4f} ± {s['se']:.4f}, var {s['variance']:.4f} ± "
                    f"{s['se_variance']:.4f}, R̂ {'n/a' if rh is None else f'{rh:.3f}'}, accept "
                    f"{s['acceptance']:.2f}, {s['wall_s']:.0f} s → closer: {ce[0]} (ε), "
                    f"{cv[0]} (var)")
                _save(cfg, rows, nngp, t_start, partial=True)
    return _save(cfg, rows, nngp, t_start, partial=False)


def _save(cfg, rows, nngp, t_start, partial):
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter() - t_start
    result = {"config": {k: v for k, v in vars(cfg).items()}, "rows": rows, "nngp": nngp,
              "wall_time_s": wall, "partial": partial,
              "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                          "cpus": os.cpu_count()}}
    _write_atomic(out / "results.json", json.dumps(result, indent=1, default=float))
    rows = sorted(rows, key=lambda r: (r["task"], r["L"], r["N"]))
    table = format_table(rows)
    _write_atomic(out / "table.md", table + f"\n\nwall time {wall:.0f} s\n")
    if rows:
        figure(rows, nngp, out / "deep_vs_sampled.png")
    return result


def replot(out) -> str:
    """Rewrite table.md and deep_vs_sampled.png from ``out``/results.json; return the table."""
    out = Path(out)
    res = json.loads((out / "results.json").read_text())
    rows = sorted(res["rows"], key=lambda r: (r["task"], r["L"], r["N"]))
    table = format_table(rows)
    _write_atomic(out / "table.md", table + f"\n\nwall time {res['wall_time_s']:.0f} s\n")
    figure(rows, res["nngp"], out / "deep_vs_sampled.png")
    return table


def main(argv=None):
    cfg = build_parser().parse_args(argv)
    if cfg.replot:
        print(replot(cfg.out))
        return
    t0 = time.perf_counter()
    res = run(cfg, log=lambda *a: print(*a, flush=True))
    print()
    print(format_table(res["rows"]))
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
