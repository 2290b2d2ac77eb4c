"""Figures of the D-output order parameter (THEORY §3c, §6): the FC's D×D "kernel shape" and,
for the CNN/LCN, the patch×patch map of Q for every output pair.

With D outputs Q is (nD)×(nD), index (i, d) flattened as I = i·D + d; estimators expose it as
``Q_`` of shape (n, D, n, D) (FC, pooled CNN: (D, D)). Two readings:

* kernel shape (FC): K_R = (Q ⊗ K)/λ1 (zero mean), so Q_de is the weight with which the data
  kernel K couples outputs d and e: Q = 𝟙 at infinite width (independent outputs), off-diagonal
  entries are learned output–output correlations (Baglioni et al., arXiv:2412.15911);
* output-resolved patch maps (CNN): Q_{(i,d),(j,e)} over (i, j) for each pair (d, e), the weight
  of the block K_ij in the (d, e) block of K_R (THEORY §3c).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["kernel_shape", "output_pair_map", "output_resolved", "plot_kernel_shape",
           "plot_output_pair_maps"]


def _as4(Q) -> np.ndarray:
    Q = np.asarray(Q, dtype=float)
    if Q.ndim == 2 and Q.shape[0] == Q.shape[1]:
        return Q[None, :, None, :]
    if Q.ndim != 4 or Q.shape[0] != Q.shape[2] or Q.shape[1] != Q.shape[3]:
        raise ValueError(f"Q must be (D, D) or (n, D, n, D), got shape {Q.shape}")
    return Q


def kernel_shape(Q) -> np.ndarray:
    """The D×D output–output matrix of an FC (or pooled) fit: Q itself, K_R = (Q ⊗ K)/λ1
    (THEORY §3c). A (1, D, 1, D) Q (n = 1) is accepted; n > 1 raises (use
    :func:`output_pair_map`)."""
    Q4 = _as4(Q)
    if Q4.shape[0] != 1:
        raise ValueError(f"kernel_shape is the D×D Q of an FC fit (n = 1); this Q has n = "
                         f"{Q4.shape[0]} patches: use output_pair_map(Q, d, e)")
    return Q4[0, :, 0, :].copy()


def output_pair_map(Q, d: int, e: int) -> np.ndarray:
    """The n×n patch×patch map M_ij = Q_{(i,d),(j,e)} of the output pair (d, e)."""
    Q4 = _as4(Q)
    D = Q4.shape[1]
    if not (0 <= d < D and 0 <= e < D):
        raise ValueError(f"output indices must lie in [0, {D}), got ({d}, {e})")
    return Q4[:, d, :, e].copy()


def output_resolved(Q) -> np.ndarray:
    """Q reordered output-major, (Dn)×(Dn) with entry [d·n + i, e·n + j] = Q_{(i,d),(j,e)}: the
    block (d, e) is :func:`output_pair_map` (d, e)."""
    Q4 = _as4(Q)
    n, D = Q4.shape[0], Q4.shape[1]
    return Q4.transpose(1, 0, 3, 2).reshape(D * n, D * n).copy()


def _finish(fig, path):
    if path is None:
        return fig
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_kernel_shape(Q, path=None, labels=None, title=""):
    """Heatmap of the FC's D×D kernel shape Q − 𝟙 (:func:`kernel_shape`), outputs labelled by
    ``labels`` (e.g. the classes). Returns ``path`` after saving, or the figure if path is None."""
    S = kernel_shape(Q)
    D = S.shape[0]
    labels = [str(c) for c in (range(D) if labels is None else labels)]
    if len(labels) != D:
        raise ValueError(f"{len(labels)} labels for D = {D} outputs")
    M = S - np.eye(D)
    v = float(np.max(np.abs(M))) or 1.0
    fig, ax = plt.subplots(figsize=(4.8, 4.2), constrained_layout=True)
    im = ax.imshow(M, cmap="RdBu_r", vmin=-v, vmax=v)
    ax.set_xticks(range(D), labels)
    ax.set_yticks(range(D), labels)
    ax.set_xlabel("output e")
    ax.set_ylabel("output d")
    ax.set_title(title or "kernel shape Q − 𝟙 (output × output)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.85)
    return _finish(fig, path)


def plot_output_pair_maps(Q, path=None, labels=None, title=""):
    """All patch×patch maps of a CNN/LCN Q (n, D, n, D) as one image, Q − 𝟙 output-major
    (:func:`output_resolved`): block (d, e) is the n×n map of the output pair (d, e), blocks
    separated by grid lines. Returns ``path`` after saving, or the figure if path is None."""
    Q4 = _as4(Q)
    n, D = Q4.shape[0], Q4.shape[1]
    labels = [str(c) for c in (range(D) if labels is None else labels)]
    if len(labels) != D:
        raise ValueError(f"{len(labels)} labels for D = {D} outputs")
    M = output_resolved(Q4) - np.eye(n * D)
    v = float(np.max(np.abs(M))) or 1.0
    fig, ax = plt.subplots(figsize=(6.4, 5.6), constrained_layout=True)
    im = ax.imshow(M, cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
    for k in range(1, D):
        ax.axhline(k * n - 0.5, color="k", lw=0.4)
        ax.axvline(k * n - 0.5, color="k", lw=0.4)
    centers = [k * n + (n - 1) / 2 for k in range(D)]
    ax.set_xticks(centers, labels)
    ax.set_yticks(centers, labels)
    ax.set_xlabel("output e  (patch j inside each block)")
    ax.set_ylabel("output d  (patch i inside each block)")
    ax.set_title(title or f"Q − 𝟙 per output pair ({n}×{n} patch maps)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.85)
    return _finish(fig, path)
