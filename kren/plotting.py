"""Figures: test error against width, and the CNN order parameter Q (THEORY §6)."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"FC": "#1f77b4", "LCN": "#2ca02c", "CNN": "#d62728", "CNN-pool": "#9467bd"}
ORDER = ["FC", "LCN", "CNN", "CNN-pool"]


def _x_positions(Ns):
    """Finite N on a log axis; N = inf drawn one decade beyond the largest finite N."""
    finite = [N for N in Ns if math.isfinite(N)]
    top = max(finite) * 10 if finite else 1.0
    return [N if math.isfinite(N) else top for N in Ns], top


def plot_test_error(rows, path, title="", P=None):
    """Test error (bias² + variance) against N for each architecture; N = ∞ marked."""
    fig, ax = plt.subplots(figsize=(6.2, 4.2), constrained_layout=True)
    archs = sorted({r["arch"] for r in rows},
                   key=lambda a: (ORDER.index(a) if a in ORDER else len(ORDER), a))
    xs_all = []
    for arch in archs:
        rs = sorted((r for r in rows if r["arch"] == arch), key=lambda r: r["N"])
        xs, top = _x_positions([r["N"] for r in rs])
        xs_all += xs
        err = [r["test_error"] for r in rs]
        ax.plot(xs, err, "o-", color=COLORS.get(arch), label=arch, lw=1.8, ms=5)
        ax.plot(xs, [r["bias2"] for r in rs], ":", color=COLORS.get(arch), lw=1.2, alpha=0.8)
    ax.set_xscale("log")
    ticks = sorted(set(xs_all))
    labels = ["∞" if t == max(ticks) and any(not math.isfinite(r["N"]) for r in rows)
              else f"{t:g}" for t in ticks]
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels)
    ax.minorticks_off()
    ax.set_xlabel("hidden width N (channels)")
    ax.set_ylabel("test error  ε = bias² + variance")
    if P is not None:
        sec = ax.secondary_xaxis("top", functions=(lambda n: P / np.maximum(n, 1e-9),
                                                   lambda a: P / np.maximum(a, 1e-9)))
        sec.set_xlabel("α = P/N")
    ax.grid(alpha=0.3, which="both")
    ax.legend(title="solid: ε   dotted: bias²", fontsize=9, title_fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def plot_Q(Q, importance, path, title=""):
    """Heatmap of the n×n order parameter Q beside the patch-importance image Σ_j Q_ij."""
    Q = np.asarray(Q)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.0, 4.0), constrained_layout=True)
    v = np.max(np.abs(Q - np.eye(Q.shape[0]))) or 1.0
    im = a1.imshow(Q - np.eye(Q.shape[0]), cmap="RdBu_r", vmin=-v, vmax=v)
    step = max(1, Q.shape[0] // 8)
    a1.set_xticks(range(0, Q.shape[0], step))
    a1.set_yticks(range(0, Q.shape[0], step))
    a1.set_title("Q − 𝟙  (patch × patch)", fontsize=10)
    a1.set_xlabel("patch j")
    a1.set_ylabel("patch i")
    fig.colorbar(im, ax=a1, shrink=0.85)
    img = np.asarray(importance)
    if img.ndim == 1:
        img = img[None, :]
    im2 = a2.imshow(img, cmap="viridis")
    a2.set_title("patch importance Σ_j Q_ij on the input grid", fontsize=10)
    a2.set_xticks([])
    a2.set_yticks([])
    fig.colorbar(im2, ax=a2, shrink=0.85)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
