"""The standard figures of a sweep (``kren plot SWEEP_DIR``), each as PNG and PDF, written
atomically into ``SWEEP_DIR/figures``:

- ``test_error_vs_N`` (or ``_vs_alpha``): test error ε = bias² + variance (THEORY §4) of each
  architecture against the width N (α = P/N), theory as lines, sampled networks as points with
  ±2 standard errors; N = ∞ drawn one decade beyond the largest finite N;
- ``bias_variance``: the theory's ε split into bias² and variance, one panel per architecture;
- ``Q_spectra``: the eigenvalues of Q against N (THEORY §6; FC: the one number Q);
- ``heatmap_T_N``: ε over the (T, N) grid, one panel per architecture, when T and N both vary.

Series are the architectures (with the readout, the mask and the activation when those vary);
every other parameter that varies (data set, P, T, λ0, λ1, ...) makes a row of panels; seeds
are averaged (error bars: the standard error over seeds). Only points with ``status = "ok"``
are drawn.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from .store import atomic_write_bytes
from .table import read_table

__all__ = ["plot_sweep", "plot_test_error", "plot_bias_variance", "plot_q_spectra",
           "plot_heatmap", "save_figure"]

COLORS = {"FC": "#1f77b4", "LCN": "#2ca02c", "CNN": "#d62728"}
CYCLE = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e")
SERIES_KEYS = ("readout", "mask", "stride", "patches", "activation")
SKIP = {"point", "index", "kind", "arch", "label", "N", "alpha", "seed", "n", "n_test"}
MAX_FACETS = 6


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path_stem, formats=("png", "pdf"), dpi=150) -> list[Path]:
    """Save ``fig`` as ``path_stem.<fmt>`` for each format, each atomically."""
    out = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi)
        out.append(atomic_write_bytes(Path(f"{path_stem}.{fmt}"), buf.getvalue()))
    return out


def _param_columns(df):
    from .table import RESULT_COLUMNS
    return [c for c in df.columns if c not in SKIP and c not in RESULT_COLUMNS]


def _varying(df, cols):
    out = []
    for c in cols:
        vals = {_key(v) for v in df[c]}
        if len(vals - {None}) > 1:
            out.append(c)
    return out


def _key(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v


def _series_label(row, keys):
    parts = [row["label"]]
    for k in keys:
        v = _key(row[k])
        if v is not None and not (k == "readout" and v == "local"):
            parts.append(f"{v}" if k in ("readout", "activation") else f"{k} {v}")
    return " ".join(parts)


def _prepare(df):
    """(ok rows with 'series' and 'facet' columns, series order, facet order)."""
    ok = df[df["status"] == "ok"].copy()
    params = _param_columns(ok)
    varying = _varying(ok, params)
    skeys = [k for k in SERIES_KEYS if k in varying]
    fkeys = [k for k in varying if k not in skeys]
    ok["series"] = [_series_label(r, skeys) for _, r in ok.iterrows()]
    ok["facet"] = [", ".join(f"{k} = {_key(r[k])}" for k in fkeys) for _, r in ok.iterrows()]
    order = {"FC": 0, "LCN": 1, "CNN": 2}
    series = sorted(ok["series"].unique(), key=lambda s: (order.get(s.split()[0], 9), s))
    facets = list(dict.fromkeys(ok["facet"]))[:MAX_FACETS]
    return ok, series, facets


def _colors(series):
    out, used = {}, {}
    for s in series:
        base = s.split()[0]
        n = used.get(base, 0)
        out[s] = COLORS.get(base, CYCLE[len(out) % len(CYCLE)]) if n == 0 else \
            CYCLE[(len(out) + n) % len(CYCLE)]
        used[base] = n + 1
    return out


def _mean_over_seeds(rows, col, se_col=None):
    """x -> (mean, error) over seeds: the standard error over seeds, or (one seed) the row's
    own standard error ``se_col`` (sampled points), or 0."""
    out = {}
    for x, g in rows.groupby("_x", sort=True):
        vals = g[col].astype(float).to_numpy()
        if len(vals) > 1:
            err = float(np.std(vals, ddof=1) / math.sqrt(len(vals)))
        elif se_col is not None and se_col in g and g[se_col].notna().all():
            err = float(g[se_col].astype(float).iloc[0])
        else:
            err = 0.0
        out[x] = (float(np.mean(vals)), err)
    return out


def _x(df, x):
    """Positions on a log axis: N (inf one decade beyond the largest finite N) or α (α = 0,
    i.e. N = ∞, one decade below the smallest positive α); returns (positions, tick labels)."""
    if x == "N":
        N = df["N"].astype(float).to_numpy()
        finite = N[np.isfinite(N)]
        top = (finite.max() * 10) if finite.size else 1.0
        pos = np.where(np.isfinite(N), N, top)
        labels = {top: "∞"} if not np.all(np.isfinite(N)) else {}
        return pos, labels
    a = df["alpha"].astype(float).to_numpy()
    pos_a = a[a > 0]
    low = (pos_a.min() / 10) if pos_a.size else 1.0
    pos = np.where(a > 0, a, low)
    labels = {low: "0"} if np.any(a == 0) else {}
    return pos, labels


def _ticks(ax, positions, labels):
    ticks = sorted(set(float(p) for p in positions))
    ax.set_xscale("log")
    if len(ticks) <= 14:
        ax.set_xticks(ticks)
        ax.set_xticklabels([labels.get(t, f"{t:g}") for t in ticks], fontsize=8)
        ax.minorticks_off()


def _grid(plt, nrows, ncols, w=5.2, h=3.8):
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows),
                             constrained_layout=True, squeeze=False)
    return fig, axes


def _xlabel(x):
    return "hidden width N (channels)" if x == "N" else "α = P/N"



def _finish(plt, fig, stem, formats, title):
    """Give the figure its title, write it in every format (:func:`save_figure`), close it and
    return the paths written."""
    if title:
        fig.suptitle(title, fontsize=10)
    paths = save_figure(fig, stem, formats)
    plt.close(fig)
    return paths

def plot_test_error(df, stem, x="N", title="", formats=("png", "pdf")):
    """Test error against N (or α) per architecture: theory lines, sampled ±2 SE (module doc)."""
    plt = _plt()
    ok, series, facets = _prepare(df)
    colors = _colors(series)
    fig, axes = _grid(plt, 1, max(1, len(facets)), w=6.2, h=4.4)
    pos, labels = _x(ok, x)
    ok["_x"] = pos
    for ax, facet in zip(axes[0], facets):
        f = ok[ok["facet"] == facet]
        for s in series:
            c = colors[s]
            th = f[(f["series"] == s) & (f["kind"] == "theory")]
            if len(th):
                m = _mean_over_seeds(th, "test_error")
                xs = sorted(m)
                ax.errorbar(xs, [m[v][0] for v in xs], yerr=[m[v][1] for v in xs], fmt="-o",
                            color=c, ms=4, lw=1.6, capsize=2, label=f"{s} theory")
            sa = f[(f["series"] == s) & (f["kind"] == "sampled")]
            if len(sa):
                m = _mean_over_seeds(sa, "test_error", "test_error_se")
                xs = sorted(m)
                ax.errorbar(xs, [m[v][0] for v in xs], yerr=[2 * m[v][1] for v in xs], fmt="s",
                            color=c, mfc="white", ms=6, capsize=3, lw=1.2,
                            label=f"{s} sampled (±2 SE)")
        _ticks(ax, f["_x"], labels)
        ax.set_xlabel(_xlabel(x))
        ax.set_ylabel("test error ε = bias² + variance")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
        if facet:
            ax.set_title(facet, fontsize=9)
    return _finish(plt, fig, stem, formats, title)


def plot_bias_variance(df, stem, x="N", title="", formats=("png", "pdf")):
    """The theory's ε, bias² and variance against N, one panel per architecture and facet."""
    plt = _plt()
    ok, series, facets = _prepare(df)
    ok = ok[ok["kind"] == "theory"]
    pos, labels = _x(ok, x)
    ok["_x"] = pos
    fig, axes = _grid(plt, max(1, len(facets)), max(1, len(series)), w=4.2, h=3.4)
    for row, facet in zip(axes, facets):
        for ax, s in zip(row, series):
            f = ok[(ok["facet"] == facet) & (ok["series"] == s)]
            if not len(f):
                ax.set_visible(False)
                continue
            for col, style, name in (("test_error", "-o", "ε"), ("bias2", "--", "bias²"),
                                     ("variance", ":", "variance")):
                m = _mean_over_seeds(f, col)
                xs = sorted(m)
                ax.plot(xs, [m[v][0] for v in xs], style, color=COLORS.get(s.split()[0], "k"),
                        ms=3, label=name)
            _ticks(ax, f["_x"], labels)
            ax.set_title(f"{s}" + (f"; {facet}" if facet else ""), fontsize=9)
            ax.set_xlabel(_xlabel(x))
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    return _finish(plt, fig, stem, formats, title)


def plot_q_spectra(df, stem, x="N", title="", formats=("png", "pdf")):
    """Eigenvalues of Q against N (one dot per eigenvalue), one panel per architecture."""
    plt = _plt()
    ok, series, facets = _prepare(df)
    ok = ok[(ok["kind"] == "theory") & ok["Q_eigenvalues"].notna()]
    ok = ok[ok["seed"] == ok["seed"].min()] if len(ok) else ok
    pos, labels = _x(ok, x)
    ok["_x"] = pos
    fig, axes = _grid(plt, max(1, len(facets)), max(1, len(series)), w=4.2, h=3.4)
    for row, facet in zip(axes, facets):
        for ax, s in zip(row, series):
            f = ok[(ok["facet"] == facet) & (ok["series"] == s)]
            if not len(f):
                ax.set_visible(False)
                continue
            c = COLORS.get(s.split()[0], "k")
            for xv, ev in zip(f["_x"], f["Q_eigenvalues"]):
                ev = np.asarray(ev, float)
                ax.plot(np.full(ev.shape, xv), ev, "_", color=c, ms=9, alpha=0.7)
            ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
            _ticks(ax, f["_x"], labels)
            ax.set_title(f"{s}: eigenvalues of Q" + (f"; {facet}" if facet else ""), fontsize=9)
            ax.set_xlabel(_xlabel(x))
            ax.grid(alpha=0.3, which="both")
    return _finish(plt, fig, stem, formats, title)


def plot_heatmap(df, stem, title="", formats=("png", "pdf")):
    """ε over T (rows) × N (columns), one panel per architecture (first facet without T)."""
    plt = _plt()
    th = df[(df["status"] == "ok") & (df["kind"] == "theory")]
    ok, series, _ = _prepare(th.assign(T=0.0))     # facets/series without T
    ok["T"] = th.loc[ok.index, "T"]
    facet = ok["facet"].iloc[0]
    ok = ok[ok["facet"] == facet]
    Ts = sorted(ok["T"].unique())
    Ns = sorted(ok["N"].unique())
    fig, axes = _grid(plt, 1, max(1, len(series)), w=4.6, h=3.8)
    for ax, s in zip(axes[0], series):
        f = ok[ok["series"] == s]
        M = np.full((len(Ts), len(Ns)), np.nan)
        for (T, N), g in f.groupby(["T", "N"]):
            M[Ts.index(T), Ns.index(N)] = g["test_error"].astype(float).mean()
        im = ax.imshow(M, origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(Ns)))
        ax.set_xticklabels(["∞" if math.isinf(N) else f"{N:g}" for N in Ns], fontsize=7)
        ax.set_yticks(range(len(Ts)))
        ax.set_yticklabels([f"{T:g}" for T in Ts], fontsize=7)
        ax.set_xlabel("N")
        ax.set_ylabel("T")
        ax.set_title(f"{s}: test error" + (f"; {facet}" if facet else ""), fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.85)
    return _finish(plt, fig, stem, formats, title)


def plot_sweep(folder, x="N", formats=("png", "pdf"), out=None, title=None) -> dict:
    """Every standard figure of the sweep in ``folder`` (module docstring); returns
    {figure name: [paths]}. ``x``: "N" or "alpha"."""
    import json
    if x not in ("N", "alpha"):
        raise ValueError(f"x must be 'N' or 'alpha', got {x!r}")
    folder = Path(folder)
    df = read_table(folder)
    if not (df["status"] == "ok").any():
        raise ValueError(f"{folder}: no point of the sweep succeeded; nothing to plot (see the "
                         "error column of table.csv)")
    out = Path(out) if out is not None else folder / "figures"
    out.mkdir(parents=True, exist_ok=True)
    if title is None:
        meta = folder / "sweep.json"
        title = json.loads(meta.read_text()).get("name", "") if meta.exists() else ""
    paths = {f"test_error_vs_{x}": plot_test_error(df, out / f"test_error_vs_{x}", x, title,
                                                   formats)}
    if (df["kind"] == "theory").any():
        paths["bias_variance"] = plot_bias_variance(df, out / "bias_variance", x, title, formats)
        paths["Q_spectra"] = plot_q_spectra(df, out / "Q_spectra", x, title, formats)
        th = df[(df["kind"] == "theory") & (df["status"] == "ok")]
        if th["T"].nunique() > 1 and th["N"].nunique() > 1:
            paths["heatmap_T_N"] = plot_heatmap(df, out / "heatmap_T_N", title, formats)
    return {k: [str(p) for p in v] for k, v in paths.items()}
