"""One description of a one-hidden-layer network (THEORY §1) that feeds everything else.

An :class:`Architecture` fixes the kind (``"fc"``, ``"lcn"``, ``"cnn"``), the patch geometry
(input shape, mask, stride, padding), the activation and the Gaussian priors λ0, λ1. From it come
the prepared inputs (:meth:`Architecture.prepare`), the local kernels (:mod:`kren.kernels`), the
effective action and predictor (the estimators in :mod:`kren.estimators`) and the finite sampled
network (:mod:`kren.sampling`), so theory and simulation cannot drift apart. The width N and the
temperature T are not part of it: they belong to the estimator (theory) or to the sampler
(simulation).

The architecture is the one place that knows how the kinds differ (:class:`KindSpec`): the
structure of the order parameter, the train×train tensor the action needs, the test×train
blocks and test diagonal in the shapes the generated cross functions take, and which generated
module prints the physics. Estimators, the renormalized kernel and the solver adapter ask it
and never branch on the kind themselves.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from importlib import import_module

import numpy as np

from . import activations
from .activations import Activation
from .geometry import PatchGeometry
from .linalg import diag_pairs, triu_pairs
from .validation import InvalidDataError, InvalidParameterError, check_positive

__all__ = ["Architecture", "KindSpec", "KINDS", "STRUCTURES", "check_positive"]

KINDS = ("fc", "lcn", "cnn")
READOUTS = ("local", "pool")
STRUCTURES = ("scalar", "diagonal", "matrix")


@dataclass(frozen=True)
class KindSpec:
    """How one kind of network differs from the others (THEORY §1, §3).

    ``structure``: the order parameter, ``"scalar"`` (FC), ``"diagonal"`` (LCN) or ``"matrix"``
    (CNN). ``generated``: the module of :mod:`kren.generated` that prints its physics.
    ``train_pairs``: the blocks of the train×train tensor the action needs, ``"diagonal"``
    (K_ii), ``"triangle"`` (K_ij, i ≤ j) or ``"pooled"`` (one block K_pool = (1/n²) Σ_ij K_ij,
    accumulated, with the pooled means μ̄ = (1/n) Σ_i μ_i, THEORY §3b). ``cross``: the test×train
    blocks and test diagonal the generated cross functions take, ``"full"`` ((n, n, P1, P2) and
    (n, n, P0)), ``"diagonal"`` ((n, P1, P2) and (n, P0)) or ``"pooled"`` ((P1, P2) and (P0,)).
    A new kind (or readout) is a new spec here plus its branch in the tensor methods of
    :class:`Architecture`.
    """

    structure: str
    generated: str
    train_pairs: str
    cross: str


KIND_SPECS = {
    "fc": KindSpec("scalar", "fc", "diagonal", "full"),       # n = 1: one block K
    "lcn": KindSpec("diagonal", "lcn", "diagonal", "diagonal"),
    "cnn": KindSpec("matrix", "cnn", "triangle", "full"),
    # CNN with readout="pool": the FC action on the pooled kernel (THEORY §3b, §5.8)
    "cnn-pool": KindSpec("scalar", "fc", "pooled", "pooled"),
}


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
    activation: str | Activation = "erf"
    lambda0: float = 1.0
    lambda1: float = 1.0
    readout: str = "local"
    geometry: PatchGeometry | None = field(init=False, default=None, compare=False, repr=False)
    act: Activation | None = field(init=False, default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InvalidParameterError(f"kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "act", activations.get(self.activation))
        object.__setattr__(self, "activation", activations.canonical(self.act))
        if self.readout not in READOUTS:
            raise InvalidParameterError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if self.readout == "pool" and self.kind != "cnn":
            raise InvalidParameterError(
                f"readout='pool' (global average pooling, THEORY §3b) is defined for "
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
                raise InvalidParameterError(
                    f"{self.kind.upper()} needs input_shape=(C_in, L) or (C_in, H, W)")
            if self.mask is None:
                raise InvalidParameterError(
                    f"{self.kind.upper()} needs a mask (int or per-axis tuple)")
            geom = PatchGeometry(tuple(shape), self.mask, self.stride, self.padding)
            shape = geom.input_shape
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "geometry", geom)

    # ----------------------------------------------------------------- derived
    def with_input(self, X) -> "Architecture":
        """The same architecture with its input shape fixed (FC without input_shape: N0 = X.shape[1])."""
        if self.geometry is not None:
            return self
        from .prepared import Prepared
        if isinstance(X, Prepared):
            return replace(self, input_shape=X.arch.input_shape)
        shape = X.shape if hasattr(X, "tocsr") else np.asarray(X).shape      # sparse: shape only
        if len(shape) < 2:
            raise InvalidDataError(f"X must be 2D (P, N0), got shape {tuple(shape)}. Reshape "
                                   "your data with X.reshape(1, -1) if it is a single sample")
        if int(np.prod(shape[1:])) == 0:
            raise InvalidDataError(f"X has 0 feature(s) (shape={tuple(shape)}) while a minimum "
                                   "of 1 is required.")
        shape = tuple(shape[1:]) if len(shape) in (3, 4) else (1, int(np.prod(shape[1:])))
        return replace(self, input_shape=shape)

    def _geom(self) -> PatchGeometry:
        if self.geometry is None:
            raise InvalidParameterError(
                "input shape unknown: pass input_shape or call with_input(X) first")
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
        """True when the activation's unit mean vanishes (erf, linear, tanh): μ = 0 and Q̄ is
        eliminated (THEORY §3)."""
        return self.act.zero_mean

    def unit_mean(self, var):
        """μ = E[σ(h)], h ~ N(0, var) (THEORY §2): the one place unit means are computed."""
        return self.act.mean(var)

    # ----------------------------------------------------------------- how kinds differ
    @property
    def spec(self) -> KindSpec:
        """How this kind differs from the others (:class:`KindSpec`)."""
        return KIND_SPECS[self.kind if self.readout == "local" else f"{self.kind}-{self.readout}"]

    @property
    def structure(self) -> str:
        """The order parameter: "scalar" (FC, pooled CNN), "diagonal" (LCN) or "matrix" (CNN),
        THEORY §3, §3b."""
        return self.spec.structure

    @property
    def generated(self):
        """The module of :mod:`kren.generated` that prints this architecture's physics."""
        return import_module(f"kren.generated.{self.spec.generated}")

    @property
    def pairs(self) -> np.ndarray:
        """Patch pairs of the local kernel tensor (:meth:`kernels`): all i ≤ j (CNN, also the
        blocks the pooled CNN sums) or i = j (LCN, FC)."""
        return diag_pairs(self.n) if self.spec.train_pairs == "diagonal" else triu_pairs(self.n)

    @property
    def cross_blocks(self) -> int:
        """P1×P2 blocks held at once by :meth:`cross_tensor` (chunk sizing): n² (full), n
        (diagonal), or the accumulator and the blocks of one pass (pooled)."""
        cross = self.spec.cross
        if cross == "pooled":
            from .kernels import _threads
            from .pooling import _BLOCKS_PER_THREAD
            return 1 + _BLOCKS_PER_THREAD * _threads()
        return self.n if cross == "diagonal" else self.n * self.n

    def identity_order_parameters(self):
        """(Q, Q̄) = (𝟙, 0) of the infinite-width limit (THEORY §5.2) in the estimator's form:
        floats for a scalar order parameter, n×n arrays otherwise."""
        if self.structure == "scalar":
            return 1.0, 0.0
        return np.eye(self.n), np.zeros((self.n, self.n))

    def generated_order_parameters(self, Q, Qbar):
        """(Q, Q̄) as the generated functions take them: floats (scalar), the diagonals
        (diagonal), matrices (matrix); Q̄ is None for zero-mean activations, where it does not
        enter K_R (THEORY §3) and the generated code never factorizes 𝟙 + Q̄."""
        if self.structure == "scalar":
            Qa = float(np.asarray(Q).reshape(-1)[0])
            Qba = None if self.zero_mean else float(np.asarray(Qbar).reshape(-1)[0])
        elif self.structure == "diagonal":
            Qa = np.diag(np.asarray(Q, dtype=float)).copy()
            Qba = None if self.zero_mean else np.diag(np.asarray(Qbar, dtype=float)).copy()
        else:
            Qa = np.asarray(Q, dtype=float)
            Qba = None if self.zero_mean else np.asarray(Qbar, dtype=float)
        return Qa, Qba

    # ----------------------------------------------------------------- inputs
    @property
    def input_key(self) -> tuple:
        """What prepared inputs depend on: the geometry, λ0 and the activation."""
        return (self._geom(), self.lambda0, self.activation)

    def prepare(self, X, name: str = "X"):
        """Validate X once and cut it into patches once: a :class:`kren.prepared.Prepared`
        with patches (n, P, M), variances C_ii (n, P) and unit means μ_i (n, P) (THEORY §2).

        A Prepared made for an architecture with the same geometry, λ0 and activation is
        returned as it is (nothing is validated or cut again).
        """
        from .prepared import Prepared
        arch = self.with_input(X)
        if isinstance(X, Prepared):
            if X.arch.input_key != arch.input_key:
                raise InvalidDataError(
                    f"{X.name} was prepared for a different architecture ({X.arch.describe()}); "
                    f"pass the raw array or prepare it with this one ({arch.describe()})")
            return X
        return Prepared.build(arch, X, name)

    def check_data(self, X, name: str = "X") -> np.ndarray:
        """Validated inputs (P, N0) (:func:`kren.validation.check_inputs`)."""
        from .prepared import Prepared
        if isinstance(X, Prepared):
            return self.prepare(X, name).X
        return self._geom().check_data(X, name)

    @property
    def kernel_key(self) -> str:
        """The kernel-relevant description (everything but λ1): a :class:`kren.cache.KernelCache`
        key. Kernels K_ij do not depend on λ1, N or T."""
        d = self.describe()
        d.pop("lambda1", None)
        return json.dumps(d, sort_keys=True, default=str)

    # ----------------------------------------------------------------- kernels
    def kernels(self, X, **kw):
        """Train×train kernel tensor (blocks for :attr:`pairs`), see :func:`kren.kernels.train_kernels`."""
        from .kernels import train_kernels
        return train_kernels(self, X, **kw)

    def train_tensor(self, X, dtype=np.float64, memory_budget=None):
        """The train×train tensor the action needs (:class:`kren.kernels.KernelTensor`): FC one
        block K, LCN the blocks K_ii, CNN the blocks K_ij, i ≤ j (THEORY §3), pooled CNN one
        block K_pool with the pooled means (THEORY §3b, accumulated by :mod:`kren.pooling`)."""
        if self.spec.train_pairs == "pooled":
            from .pooling import pooled_train_kernel
            return pooled_train_kernel(self, X, dtype=dtype, memory_budget=memory_budget)
        from .kernels import train_kernels
        return train_kernels(self, X, dtype=dtype, memory_budget=memory_budget)

    def cross_tensor(self, X1, X2, dtype=np.float64, memory_budget=None) -> np.ndarray:
        """Test×train blocks K_ij(x1, x2) in the shape the generated
        ``renormalized_cross_kernel`` takes: (n, n, P1, P2) (FC, CNN), (n, P1, P2) (LCN) or
        K_pool(x1, x2), (P1, P2) (pooled CNN)."""
        if self.spec.cross == "pooled":
            from .pooling import pooled_cross_kernel
            return pooled_cross_kernel(self, X1, X2, dtype=dtype, memory_budget=memory_budget)
        from .kernels import cross_kernels
        return cross_kernels(self, X1, X2, dtype=dtype, memory_budget=memory_budget,
                             diagonal=self.spec.cross == "diagonal")

    def test_diagonal_tensor(self, X, dtype=np.float64) -> np.ndarray:
        """K_ij(x0, x0) in the shape the generated ``renormalized_test_diagonal`` takes:
        (n, n, P0) (FC, CNN), (n, P0) (LCN) or K_pool(x0, x0), (P0,) (pooled CNN)."""
        if self.spec.cross == "pooled":
            from .pooling import pooled_test_diagonal
            return pooled_test_diagonal(self, X, dtype=dtype)
        from .kernels import test_diagonal
        return test_diagonal(self, X, dtype=dtype, diagonal=self.spec.cross == "diagonal")

    def generated_means(self, prepared) -> np.ndarray:
        """Unit means of prepared inputs in the shape the generated functions take: μ_i, (n, P),
        or the pooled μ̄ = (1/n) Σ_i μ_i, (1, P) (pooled CNN)."""
        mu = self.prepare(prepared).mu
        if self.spec.cross == "pooled":
            from .generated.pool import pooled_means
            return pooled_means(mu)
        return mu

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
        d = {"kind": self.kind, "readout": self.readout, "activation": self.act.key,
             "lambda0": self.lambda0, "lambda1": self.lambda1, "padding": self.padding}
        if self.geometry is not None:
            d.update(self.geometry.describe())
        return d
