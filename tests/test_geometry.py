"""Patch geometry (THEORY §1): sizes, index tables, painting, and every error path.

Expected n, M and grids are worked out by hand from THEORY §1:
valid n_h = floor((H − m_h)/s_h) + 1, circular n_h = ceil(H/s_h), M = C_in · mask area.
Index tables are compared with the brute-force walk of tests/nngp_reference.py.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

from kren import Architecture, PatchGeometry

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nngp_reference as ref  # noqa: E402

# (input_shape, mask, stride, padding, grid, M) — grid and M computed by hand.
CASES = [
    ((1, 8, 8), 2, 2, "valid", (4, 4), 4),           # (8-2)//2+1 = 4
    ((1, 8, 8), 4, 4, "valid", (2, 2), 16),
    ((1, 8, 8), 3, 1, "valid", (6, 6), 9),           # overlapping
    ((1, 8, 8), 3, 1, "circular", (8, 8), 9),        # ceil(8/1) = 8
    ((3, 8, 8), 3, 2, "valid", (3, 3), 27),          # (8-3)//2+1 = 3, M = 3·9
    ((3, 8, 8), 3, 2, "circular", (4, 4), 27),       # ceil(8/2) = 4
    ((2, 7, 10), (2, 3), (1, 2), "valid", (6, 4), 12),     # (7-2)//1+1, (10-3)//2+1
    ((2, 7, 10), (2, 3), (1, 2), "circular", (7, 5), 12),  # ceil(7/1), ceil(10/2)
    ((1, 7, 7), 2, 2, "valid", (3, 3), 4),           # last row/column not covered
    ((1, 7, 7), 2, 2, "circular", (4, 4), 4),        # last patch wraps around
    ((2, 32), 4, 4, "valid", (8,), 8),               # 1D, two channels
    ((2, 32), 5, 2, "valid", (14,), 10),             # (32-5)//2+1 = 14, stride < mask
    ((2, 32), 5, 2, "circular", (16,), 10),
    ((1, 9), 2, 3, "valid", (3,), 2),                # stride > mask: gaps
    ((1, 9), 2, 3, "circular", (3,), 2),
    ((1, 8, 8), 8, 8, "valid", (1, 1), 64),          # mask = whole input
    ((3, 5, 7), (5, 7), None, "circular", (1, 1), 105),
    ((2, 11), 11, None, "valid", (1,), 22),
]


def _ids(case):
    shape, mask, stride, padding = case[:4]
    return f"{shape}-m{mask}-s{stride}-{padding}"


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_sizes(case):
    shape, mask, stride, padding, grid, M = case
    g = PatchGeometry(shape, mask, stride, padding)
    assert g.grid == grid
    assert g.n == int(np.prod(grid))
    assert g.M == M
    assert g.N0 == int(np.prod(shape))
    assert g.index.shape == (g.n, g.M)
    assert g.positions.shape == (g.n, M // shape[0])
    # the brute-force walk finds the same number of patches
    walk = ref.patch_coordinates(shape, mask, stride if stride is not None else mask, padding)
    assert len(walk) == g.n and len(walk[0]) == g.M


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_index_and_positions_brute_force(case):
    shape, mask, stride, padding = case[:4]
    g = PatchGeometry(shape, mask, stride, padding)
    walk = ref.patch_coordinates(shape, mask, stride if stride is not None else mask, padding)
    index = np.array([[ref.flat_index(c, shape) for c in patch] for patch in walk])
    assert np.array_equal(g.index, index)
    # positions: the spatial sites of channel 0, in mask order
    positions = np.array([[ref.spatial_index(c, shape) for c in patch if c[0] == 0]
                          for patch in walk])
    assert np.array_equal(g.positions, positions)
    # every channel of a patch covers the same sites
    area = positions.shape[1]
    n_spatial = int(np.prod(shape[1:]))
    for ch in range(shape[0]):
        assert np.array_equal(g.index[:, ch * area:(ch + 1) * area], positions + ch * n_spatial)
    # patches() gathers the same numbers as the raw-image gather of the reference
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, g.N0))
    assert np.array_equal(g.patches(X), ref.extract_patches(X, shape, mask,
                                                            stride if stride is not None else mask,
                                                            padding))


def test_channels_first_flattening():
    # entry (c, h, w) of an image sits at c·H·W + h·W + w: the patch at the origin of a (2, 3, 4)
    # input with a 2×2 mask holds (0,0,0), (0,0,1), (0,1,0), (0,1,1), then channel 1.
    g = PatchGeometry((2, 3, 4), 2, 2)
    img = np.arange(24).reshape(1, 2, 3, 4)
    assert g.patches(img.reshape(1, -1))[0, 0].tolist() == [0, 1, 4, 5, 12, 13, 16, 17]
    assert g.check_data(img.astype(float)).shape == (1, 24)       # (P, C, H, W) accepted


def test_ints_mean_all_axes_and_default_stride():
    a = PatchGeometry((3, 8, 8), 3, 2, "circular")
    b = PatchGeometry((3, 8, 8), (3, 3), (2, 2), "circular")
    assert a.mask == (3, 3) and a.stride == (2, 2)
    assert np.array_equal(a.index, b.index)
    c = PatchGeometry((1, 8, 8), (2, 4))                 # stride defaults to the mask
    assert c.stride == (2, 4) and c.grid == (4, 2)
    d = PatchGeometry((2, 20), [5], [3])                 # 1D with sequences
    assert d.mask == (5,) and d.grid == ((20 - 5) // 3 + 1,)
    e = PatchGeometry(12)                                # bare int: (1, 12), whole-input mask
    assert e.input_shape == (1, 12) and e.n == 1 and e.M == 12


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8), (2, 30), (4, 5, 7)])
def test_whole_input_mask(shape):
    for g in (PatchGeometry(shape), PatchGeometry.full(shape),
              PatchGeometry(shape, shape[1:], None, "circular")):
        assert g.n == 1 and g.M == int(np.prod(shape)) == g.N0
        assert np.array_equal(g.index[0], np.arange(g.N0))       # the patch is the input itself


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_paint_brute_force(case):
    shape, mask, stride, padding = case[:4]
    g = PatchGeometry(shape, mask, stride, padding)
    walk = ref.patch_coordinates(shape, mask, stride if stride is not None else mask, padding)
    values = np.random.default_rng(1).standard_normal(g.n)
    image = np.zeros(shape[1:])
    for v, patch in zip(values, walk):
        for coord in patch:
            if coord[0] == 0:
                image[coord[1:]] += v
    painted = g.paint(values)
    assert painted.shape == shape[1:]
    assert np.allclose(painted, image, rtol=1e-15, atol=1e-15)   # same sums, maybe other order


def test_paint_coverage_counts():
    # painting ones counts how many patches cover each site
    assert np.array_equal(PatchGeometry((1, 8, 8), 3, 1, "circular").paint(np.ones(64)),
                          np.full((8, 8), 9.0))
    cover = PatchGeometry((1, 7, 7), 2, 2, "valid").paint(np.ones(9))
    expect = np.ones((7, 7))
    expect[6, :] = 0
    expect[:, 6] = 0
    assert np.array_equal(cover, expect)
    cover1d = PatchGeometry((1, 9), 2, 3, "circular").paint(np.ones(3))
    assert cover1d.tolist() == [1, 1, 0, 1, 1, 0, 1, 1, 0]
    with pytest.raises(ValueError, match="one value per patch"):
        PatchGeometry((1, 8, 8), 2, 2).paint(np.ones(15))


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("shape, mask", [((1, 8, 8), 9), ((1, 8, 8), (2, 9)), ((3, 4, 6), (5, 2)),
                                         ((2, 10), 11)])
@pytest.mark.parametrize("padding", ["valid", "circular"])
def test_mask_larger_than_input(shape, mask, padding):
    with pytest.raises(ValueError, match="larger than the input"):
        PatchGeometry(shape, mask, 1, padding)


@pytest.mark.parametrize("stride", [0, -1, (2, 0), (-3, 1)])
def test_stride_not_positive(stride):
    with pytest.raises(ValueError, match="stride must be positive"):
        PatchGeometry((1, 8, 8), 2, stride)


@pytest.mark.parametrize("mask", [0, -2, (0, 2), (2, -1)])
def test_mask_not_positive(mask):
    with pytest.raises(ValueError, match="mask must be positive"):
        PatchGeometry((1, 8, 8), mask, 1)


@pytest.mark.parametrize("padding", ["same", "zeros", "Valid", None, ""])
def test_bad_padding(padding):
    with pytest.raises(ValueError, match="padding must be one of"):
        PatchGeometry((1, 8, 8), 2, 2, padding)


@pytest.mark.parametrize("shape", [(8,), (1, 2, 3, 4), (), (0, 8, 8), (1, -8, 8), (1, 8.0, 8),
                                   (1, "8", 8), (1, 0)])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match="input_shape"):
        PatchGeometry(shape, 1, 1)


def test_bad_mask_or_stride_spec():
    with pytest.raises(ValueError, match="one entry per spatial axis"):
        PatchGeometry((1, 8, 8), (2, 2, 2), 1)
    with pytest.raises(ValueError, match="one entry per spatial axis"):
        PatchGeometry((1, 8), 2, (1, 1))
    with pytest.raises(TypeError, match="mask must be an int or a sequence"):
        PatchGeometry((1, 8, 8), 2.5, 1)
    with pytest.raises(TypeError, match="integers"):
        PatchGeometry((1, 8, 8), (2.5, 2), 1)


def test_check_data_errors():
    g = PatchGeometry((3, 8, 8), 2, 2)
    good = np.random.default_rng(2).standard_normal((4, 192))
    assert g.check_data(good) is good                          # float64 passes through, no copy
    assert np.array_equal(g.check_data(good.reshape(4, 3, 8, 8)), good)
    assert g.check_data(good.astype(int)).dtype == np.float64  # integer data is cast
    with pytest.raises(ValueError, match=r"shape \(4, 191\).*\(P, 192\)"):
        g.check_data(good[:, :191])
    with pytest.raises(ValueError, match="expected"):
        g.check_data(good.reshape(4, 1, 192))
    with pytest.raises(ValueError, match="expected"):
        g.check_data(good.reshape(4, 8, 8, 3))                 # channels last is refused
    with pytest.raises(ValueError, match="expected"):
        g.check_data(good[0])                                   # a single unbatched vector
    with pytest.raises(ValueError, match="no samples"):
        g.check_data(good[:0])
    for bad in (np.nan, np.inf, -np.inf):
        X = good.copy()
        X[2, 17] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            g.check_data(X, "X_train")
    with pytest.raises(TypeError, match="numeric"):
        g.check_data(np.full((4, 192), "a"))
    with pytest.raises(ValueError, match="X_test has shape"):     # the name appears
        g.check_data(good[:, :10], "X_test")


def test_architecture_geometry_plumbing():
    a = Architecture("cnn", input_shape=(3, 8, 8), mask=3, stride=1, padding="circular")
    assert (a.n, a.M, a.N0) == (64, 27, 192)
    assert a.pairs.shape == (64 * 65 // 2, 2) and np.all(a.pairs[:, 0] <= a.pairs[:, 1])
    lcn = Architecture("lcn", input_shape=(3, 8, 8), mask=3, stride=1, padding="circular")
    assert np.array_equal(lcn.pairs, np.stack([np.arange(64)] * 2, axis=1))
    fc = Architecture("fc", input_shape=(3, 8, 8))
    assert (fc.n, fc.M) == (1, 192) and fc.pairs.tolist() == [[0, 0]]
    assert Architecture("fc").with_input(np.zeros((2, 30))).N0 == 30
    with pytest.raises(ValueError, match="needs a mask"):
        Architecture("cnn", input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="needs input_shape"):
        Architecture("lcn", mask=2)
    with pytest.raises(ValueError, match="larger than the input"):
        Architecture("cnn", input_shape=(1, 8, 8), mask=10)
    with pytest.raises(ValueError, match="NaN or inf"):
        a.check_data(np.full((2, 192), np.nan))
