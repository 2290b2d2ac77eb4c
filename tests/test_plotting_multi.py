"""kren.plotting_multi: the reorderings are the index maps of THEORY §3c (checked entry by entry
on a Q whose entries encode their own indices), and the figures are written."""
from __future__ import annotations

import numpy as np
import pytest

from kren import plotting_multi as pm

n, D = 3, 2


def _coded():
    """Q4[i, d, j, e] = 1000 i + 100 d + 10 j + e (symmetry is not needed for the maps)."""
    i, d, j, e = np.meshgrid(range(n), range(D), range(n), range(D), indexing="ij")
    return 1000 * i + 100 * d + 10 * j + e + 0.0


def test_maps_are_the_index_maps():
    Q4 = _coded()
    M = pm.output_pair_map(Q4, 1, 0)
    assert M.shape == (n, n)
    assert M[2, 1] == 1000 * 2 + 100 * 1 + 10 * 1 + 0
    R = pm.output_resolved(Q4)
    for (ii, dd, jj, ee) in [(0, 0, 0, 0), (2, 1, 0, 1), (1, 0, 2, 1)]:
        assert R[dd * n + ii, ee * n + jj] == Q4[ii, dd, jj, ee]
    # the flat (nD)×(nD) order of kren (I = i·D + d) reshapes to the same (n, D, n, D)
    flat = Q4.reshape(n * D, n * D)
    assert flat[2 * D + 1, 0 * D + 1] == Q4[2, 1, 0, 1]
    S = np.arange(9.0).reshape(3, 3)
    np.testing.assert_array_equal(pm.kernel_shape(S), S)
    np.testing.assert_array_equal(pm.kernel_shape(S[None, :, None, :]), S)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="n = 3 patches"):
        pm.kernel_shape(_coded())
    with pytest.raises(ValueError, match="output indices"):
        pm.output_pair_map(_coded(), 0, 2)
    with pytest.raises(ValueError, match="got shape"):
        pm.output_resolved(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="labels"):
        pm.plot_kernel_shape(np.eye(3), labels=["a"])


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    A = rng.normal(size=(n * D, n * D))
    Q = np.eye(n * D) + 0.05 * (A + A.T)
    p1 = pm.plot_kernel_shape(Q[:D, :D], tmp_path / "shape.png", labels=["a", "b"])
    p2 = pm.plot_output_pair_maps(Q.reshape(n, D, n, D), tmp_path / "maps.png")
    for p in (p1, p2):
        assert p.stat().st_size > 1000
    fig = pm.plot_kernel_shape(np.eye(2))            # path None: the figure, Q = 𝟙 drawn
    assert fig.axes
