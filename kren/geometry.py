"""Patch geometry: how a mask with a stride cuts an input into n patches of M entries (THEORY §1).

Inputs are flattened channels-first: an input of shape (C_in, L) or (C_in, H, W) is a vector of
N0 = C_in·L or C_in·H·W entries, entry (c, h, w) at index c·H·W + h·W + w.

A patch i collects, for every input channel, the m (1D) or m_h·m_w (2D) positions under the mask
placed at its origin; inside a patch the entries are ordered channels-first as well, so
M = C_in·m or C_in·m_h·m_w. Patches are numbered row-major over the patch grid (n_h, n_w).

Padding ``valid``: n_h = floor((H − m_h)/s_h) + 1.  Padding ``circular`` (periodic boundary):
n_h = ceil(H/s_h), positions wrap modulo H.  Likewise for w and for 1D inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .validation import InvalidParameterError, check_inputs

PADDINGS = ("valid", "circular")


def _as_tuple(value, ndim: int, name: str) -> tuple[int, ...]:
    """An int means the same value on every spatial axis; a sequence must give one per axis."""
    if isinstance(value, (bool, np.bool_)) or (
            not isinstance(value, (int, np.integer)) and hasattr(value, "__iter__")
            and any(isinstance(v, (bool, np.bool_, float, np.floating)) for v in value)):
        raise InvalidParameterError(f"{name} must be an int or a sequence of integers, got {value!r}")
    if isinstance(value, (int, np.integer)):
        out = (int(value),) * ndim
    else:
        try:
            out = tuple(int(v) for v in value)
        except TypeError:
            raise InvalidParameterError(f"{name} must be an int or a sequence of {ndim} ints, got {value!r}") from None
        if len(out) != ndim:
            raise InvalidParameterError(
                f"{name} must have one entry per spatial axis ({ndim}), got {value!r}")
        for v, raw in zip(out, value):
            if v != raw:
                raise InvalidParameterError(f"{name} entries must be integers, got {value!r}")
    return out


@dataclass(frozen=True)
class PatchGeometry:
    """Patches of an input of shape ``input_shape`` = (C_in, L) or (C_in, H, W).

    ``mask=None`` means a mask covering the whole input (n = 1, M = N0): the FC case.
    Attributes: ``n`` (number of patches), ``M`` (entries per patch), ``N0`` (input size),
    ``grid`` (patch grid shape), ``index`` (n, M) flat input indices of every patch,
    ``positions`` (n, m_h·m_w) flat spatial positions (h·W + w) each patch covers.
    """

    input_shape: tuple[int, ...]
    mask: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: str = "valid"
    index: np.ndarray = field(init=False, repr=False, compare=False)
    positions: np.ndarray = field(init=False, repr=False, compare=False)
    grid: tuple[int, ...] = field(init=False, compare=False)

    def __post_init__(self):
        shape = self.input_shape
        if isinstance(shape, (int, np.integer)):
            shape = (1, int(shape))
        shape = tuple(shape)
        if len(shape) not in (2, 3):
            raise InvalidParameterError(
                "input_shape must be (C_in, L) for 1D inputs or (C_in, H, W) for 2D inputs, "
                f"got {self.input_shape!r}")
        if any((not isinstance(s, (int, np.integer))) or s <= 0 for s in shape):
            raise InvalidParameterError(f"input_shape entries must be positive integers, got {self.input_shape!r}")
        shape = tuple(int(s) for s in shape)
        spatial = shape[1:]
        ndim = len(spatial)
        mask = spatial if self.mask is None else _as_tuple(self.mask, ndim, "mask")
        stride = mask if self.stride is None else _as_tuple(self.stride, ndim, "stride")
        if self.padding not in PADDINGS:
            raise InvalidParameterError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        for m, s, size, ax in zip(mask, stride, spatial, "hw" if ndim == 2 else "l"):
            if m <= 0:
                raise InvalidParameterError(f"mask must be positive on every axis, got mask={mask}")
            if s <= 0:
                raise InvalidParameterError(f"stride must be positive on every axis, got stride={stride}")
            if m > size:
                raise InvalidParameterError(
                    f"mask {mask} is larger than the input {spatial} on axis {ax} "
                    f"({m} > {size})")
        if self.padding == "valid":
            grid = tuple((size - m) // s + 1 for size, m, s in zip(spatial, mask, stride))
        else:
            grid = tuple(math.ceil(size / s) for size, s in zip(spatial, stride))
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "stride", stride)
        object.__setattr__(self, "grid", grid)

        # Spatial positions covered by each patch, row-major over the patch grid.
        axes = []
        for g, m, s, size in zip(grid, mask, stride, spatial):
            start = np.arange(g)[:, None] * s + np.arange(m)[None, :]    # (g, m)
            axes.append(start % size)
        if ndim == 1:
            pos = axes[0]                                                # (n, m)
        else:
            rows, cols = axes
            W = spatial[1]
            pos = (rows[:, None, :, None] * W + cols[None, :, None, :])  # (gh, gw, mh, mw)
            pos = pos.reshape(grid[0] * grid[1], mask[0] * mask[1])
        n_spatial = int(np.prod(spatial))
        index = (np.arange(shape[0])[None, :, None] * n_spatial + pos[:, None, :])
        object.__setattr__(self, "positions", pos.astype(np.intp))
        object.__setattr__(self, "index", index.reshape(pos.shape[0], -1).astype(np.intp))

    # ------------------------------------------------------------------ sizes
    @property
    def n(self) -> int:
        """Number of patches."""
        return int(self.index.shape[0])

    @property
    def M(self) -> int:
        """Entries per patch: C_in × mask area."""
        return int(self.index.shape[1])

    @property
    def N0(self) -> int:
        """Flattened input size C_in × spatial size."""
        return int(np.prod(self.input_shape))

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.input_shape[1:]

    @classmethod
    def full(cls, input_shape) -> "PatchGeometry":
        """One patch covering the whole input (the FC case: n = 1, M = N0)."""
        return cls(input_shape, mask=None, stride=None, padding="valid")

    # ------------------------------------------------------------------ data
    def check_data(self, X, name: str = "X") -> np.ndarray:
        """Validate inputs and return them flattened, shape (P, N0), float
        (:func:`kren.validation.check_inputs`: (P, N0) or (P, *input_shape); no NaN, inf, complex).
        """
        return check_inputs(X, self.input_shape, name)

    def patches(self, X) -> np.ndarray:
        """Patch tensor x_i^μ, shape (P, n, M), from flattened inputs (P, N0)."""
        return np.asarray(X)[:, self.index]

    def paint(self, values) -> np.ndarray:
        """Paint one number per patch back onto the spatial grid.

        Each input position receives the sum of the values of the patches covering it
        (the patch-importance image of THEORY §6 when ``values`` = Σ_j Q_ij).
        Returns an array of shape ``spatial_shape``.
        """
        values = np.asarray(values, dtype=float)
        if values.shape != (self.n,):
            raise ValueError(f"paint expects one value per patch, shape ({self.n},), got {values.shape}")
        image = np.zeros(int(np.prod(self.spatial_shape)))
        np.add.at(image, self.positions, values[:, None])
        return image.reshape(self.spatial_shape)

    def describe(self) -> dict:
        return {"input_shape": list(self.input_shape), "mask": list(self.mask),
                "stride": list(self.stride), "padding": self.padding,
                "n": self.n, "M": self.M, "grid": list(self.grid)}
