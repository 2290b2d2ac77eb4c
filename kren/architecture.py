"""One description of a one-hidden-layer network (THEORY §1) that feeds everything else.

An :class:`Architecture` fixes the kind (``"fc"``, ``"lcn"``, ``"cnn"``), the patch geometry
(input shape, mask, stride, padding), the activation and the Gaussian priors λ0, λ1. From it come
the local kernels (:mod:`kren.kernels`), the effective action and predictor (the estimators in
:mod:`kren.estimators`) and the finite sampled network (:mod:`kren.sampling`), so theory and
simulation cannot drift apart. The width N and the temperature T are not part of it: they
belong to the estimator (theory) or to the sampler (simulation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .activations import ZERO_MEAN, check_activation
from .geometry import PatchGeometry
from .linalg import diag_pairs, triu_pairs

KINDS = ("fc", "lcn", "cnn")
READOUTS = ("local", "pool")


def check_positive(value, name: str, allow_inf: bool = False) -> float:
    """A positive real number (raises with the parameter's name otherwise)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {value!r}") from None
    if math.isnan(v):
        raise ValueError(f"{name} is NaN; it must be a positive number")
    if math.isinf(v) and not allow_inf:
        raise ValueError(f"{name} must be finite, got {v}")
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    return v


@dataclass(frozen=True)
class Architecture:
    """FC, LCN or CNN with one hidden layer (THEORY §1).

    ``input_shape``: (C_in, L), (C_in, H, W), or for FC also an int N0 (or None, fixed by the
    first data seen, see :meth:`with_input`). ``mask``/``stride`` are ints (same on every axis) or
    per-axis tuples; FC ignores them (one patch covering the input, n = 1, M = N0).
    ``readout``: ``"local"`` (one readout weight per channel and patch, THEORY §1) or, for the
    CNN only, ``"pool"`` (global average pooling before one readout weight per channel,
    f(x) = N^{-1/2} Σ_a v_a (1/n) Σ_i σ(w_a · x_i/√M); THEORY §1, §3b).
    """

    kind: str
    input_shape: tuple | int | None = None
    mask: tuple | int | None = None
    stride: tuple | int | None = None
    padding: str = "valid"
    activation: str = "erf"
    lambda0: float = 1.0
    lambda1: float = 1.0
    readout: str = "local"
    geometry: PatchGeometry | None = field(init=False, default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        check_activation(self.activation)
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if self.readout == "pool" and self.kind != "cnn":
            raise ValueError(f"readout='pool' (global average pooling, THEORY §3b) is defined for "
                             f"kind='cnn' only, got kind={self.kind!r}")
        object.__setattr__(self, "lambda0", check_positive(self.lambda0, "lambda0"))
        object.__setattr__(self, "lambda1", check_positive(self.lambda1, "lambda1"))
        shape = self.input_shape
        if self.kind == "fc":
            if shape is not None:
                shape = (1, int(shape)) if isinstance(shape, (int, np.integer)) else tuple(shape)
                geom = PatchGeometry.full(shape)
            else:
                geom = None
        else:
            if shape is None:
                raise ValueError(f"{self.kind.upper()} needs input_shape=(C_in, L) or (C_in, H, W)")
            if self.mask is None:
                raise ValueError(f"{self.kind.upper()} needs a mask (int or per-axis tuple)")
            geom = PatchGeometry(tuple(shape), self.mask, self.stride, self.padding)
            shape = geom.input_shape
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "geometry", geom)

    # ----------------------------------------------------------------- derived
    def with_input(self, X) -> "Architecture":
        """The same architecture with its input shape fixed (FC without input_shape: N0 = X.shape[1])."""
        if self.geometry is not None:
            return self
        X = np.asarray(X)
        if X.ndim < 2:
            raise ValueError(f"X must be 2D (P, N0), got shape {X.shape}")
        shape = tuple(X.shape[1:]) if X.ndim in (3, 4) else (1, int(np.prod(X.shape[1:])))
        return replace(self, input_shape=shape)

    def _geom(self) -> PatchGeometry:
        if self.geometry is None:
            raise ValueError("input shape unknown: pass input_shape or call with_input(X) first")
        return self.geometry

    @property
    def n(self) -> int:
        return self._geom().n

    @property
    def M(self) -> int:
        return self._geom().M

    @property
    def N0(self) -> int:
        return self._geom().N0

    @property
    def zero_mean(self) -> bool:
        """True for erf and linear: μ = 0 and Q̄ is eliminated (THEORY §3)."""
        return ZERO_MEAN[self.activation]

    @property
    def pairs(self) -> np.ndarray:
        """Patch pairs whose kernel blocks the action needs: all i ≤ j (CNN) or i = j (LCN, FC)."""
        return triu_pairs(self.n) if self.kind == "cnn" else diag_pairs(self.n)

    def check_data(self, X, name: str = "X") -> np.ndarray:
        return self._geom().check_data(X, name)

    # ----------------------------------------------------------------- kernels
    def kernels(self, X, **kw):
        """Train×train kernel tensor (blocks for :attr:`pairs`), see :func:`kren.kernels.train_kernels`."""
        from .kernels import train_kernels
        return train_kernels(self, X, **kw)

    def nngp_kernel(self, X1, X2=None, **kw) -> np.ndarray:
        """Infinite-width kernel (THEORY §2): K/λ1 (FC), (1/(λ1 n)) Σ_i K_ii (LCN, CNN) or
        (1/(λ1 n²)) Σ_ij K_ij (pooled CNN)."""
        from .kernels import nngp_kernel
        return nngp_kernel(self, X1, X2, **kw)

    def network(self, N: int, **kw):
        """The finite network of width N with this architecture (PyTorch; the ``nn`` extra)."""
        from .sampling.networks import build_network
        return build_network(self, N, **kw)

    def describe(self) -> dict:
        d = {"kind": self.kind, "readout": self.readout, "activation": self.activation,
             "lambda0": self.lambda0, "lambda1": self.lambda1, "padding": self.padding}
        if self.geometry is not None:
            d.update(self.geometry.describe())
        return d
