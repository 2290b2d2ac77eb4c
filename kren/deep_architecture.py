"""One description of a deep fully-connected network (THEORY §1, §2, §3d) that feeds the theory,
its kernels and the sampled network.

A :class:`DeepArchitecture` fixes the depth L, the input shape, the activation and the Gaussian
priors λ0 (first layer), λ_1 … λ_L (the weights out of layer l; λ_L the readout's):

    h^1 = W^1 x/√N0,  h^{l+1} = W^{l+1} σ(h^l)/√N_l,  f = N_L^{-1/2} Σ_a v_a σ(h^L_a)
    W^1 ~ N(0, 1/λ0),  W^{l+1} ~ N(0, 1/λ_l) (l = 1 … L−1),  v ~ N(0, 1/λ_L).

From it come the prepared inputs (:meth:`prepare`, the first layer's one-hidden-layer FC
geometry), the input covariance C = x·x'/(λ0 N0), the deep NNGP kernel K^{(L)}/λ_L and the NNGP
kernel of every layer (:mod:`kren.deep_kernels`, through ``arch.act``), the kernels the deep
action needs (:meth:`train_kernels`), the renormalized kernel and estimator
(:class:`kren.DeepFC`), and the finite network (:meth:`network`, :mod:`kren.sampling.deep`). As
for :class:`kren.Architecture`, the widths N_l and the temperature T are not part of it: they
belong to the estimator (theory) or the sampler (simulation). L = 1 is the one-hidden-layer FC of
:meth:`one_hidden_layer` (λ1 = λ_1).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import numpy as np

from . import activations
from .activations import Activation
from .architecture import Architecture
from .validation import InvalidParameterError, check_positive

__all__ = ["DeepArchitecture", "DeepTrainKernels", "check_widths"]


def _check_depth(L) -> int:
    if isinstance(L, (bool, np.bool_)) or not isinstance(L, (int, np.integer)) or L < 1:
        raise InvalidParameterError(f"L (number of hidden layers) must be a positive integer, "
                                    f"got {L!r}")
    return int(L)


def _check_priors(lambdas, L: int) -> tuple:
    try:
        lam = np.asarray(lambdas, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"lambdas must be numbers, got {lambdas!r}") from None
    if lam.shape[0] == 1:
        lam = np.full(L, lam[0])
    if lam.shape != (L,):
        raise InvalidParameterError(
            f"lambdas must be one prior for every layer or L = {L} priors (lambda_1 … lambda_L, "
            f"the last one the readout's), got {len(lam)}: {lambdas!r}")
    return tuple(check_positive(v, f"lambdas[{i}]") for i, v in enumerate(lam))


def check_widths(N, L: int, allow_inf: bool = True, integer: bool = False):
    """The widths (N_1, …, N_L) as a tuple of floats (ints with ``integer``), or None for N = ∞.

    N: one positive number (every layer) or L of them; ``allow_inf``: N = inf (one number, or all
    L infinite) is the infinite-width limit and returns None. Mixed finite and infinite widths
    are refused (their limit is not the one the action describes).
    """
    if isinstance(N, (bool, np.bool_)):
        raise InvalidParameterError(f"N must be a positive width or {L} widths, got {N!r}")
    try:
        Ns = np.asarray(N, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"N must be a positive width or {L} widths, got {N!r}") \
            from None
    if Ns.shape[0] == 1:
        Ns = np.full(L, Ns[0])
    if Ns.shape != (L,):
        raise InvalidParameterError(
            f"N must be one width for every layer or L = {L} widths (N_1 … N_L), got {len(Ns)}")
    if np.any(np.isnan(Ns)) or np.any(Ns <= 0):
        raise InvalidParameterError(f"N must hold positive widths, got {N!r}")
    inf = np.isinf(Ns)
    if inf.any():
        if not allow_inf:
            raise InvalidParameterError(f"N must be finite here, got {N!r}")
        if not inf.all():
            raise InvalidParameterError(
                f"N mixes finite and infinite widths ({N!r}): give one N = inf (the infinite-"
                "width limit, the deep NNGP kernel) or L finite widths")
        return None
    if integer:
        if not np.all(Ns == np.round(Ns)):
            raise InvalidParameterError(f"a sampled network needs integer widths, got {N!r}")
        return tuple(int(v) for v in Ns)
    return tuple(float(v) for v in Ns)


@dataclass(frozen=True, eq=False)
class DeepTrainKernels:
    """The training-set kernels the deep action needs (THEORY §3d), read-only:

    ``C`` = XXᵀ/(λ0 N0) (P, P) (the nested form's input) and ``K_L`` = K^{(L)} = λ_L × the deep
    NNGP kernel (P, P) (the product form's). ``mu`` (1, P) holds the (zero) unit means, so that
    code written for one-hidden-layer tensors can ask it.
    """

    C: np.ndarray
    K_L: np.ndarray

    def __post_init__(self):
        for a in (self.C, self.K_L):
            a.flags.writeable = False

    @property
    def P(self) -> int:
        return int(self.C.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.C.nbytes + self.K_L.nbytes)


@dataclass(frozen=True)
class DeepArchitecture:
    """Deep FC network with L hidden layers (module docstring).

    ``input_shape``: an int N0, a shape (C_in, H, W) / (C_in, L) (flattened), or None (fixed by
    the first data seen, :meth:`with_input`). ``activation``: a name or an
    :class:`kren.activations.Activation`. ``lambdas``: one prior for every layer or λ_1 … λ_L.
    """

    L: int
    input_shape: tuple | int | None = None
    activation: str | Activation = "erf"
    lambda0: float = 1.0
    lambdas: tuple | float = 1.0
    fc: Architecture | None = field(init=False, default=None, compare=False, repr=False)
    act: Activation | None = field(init=False, default=None, compare=False, repr=False)

    kind = "deep-fc"
    structure = "layers"

    def __post_init__(self):
        L = _check_depth(self.L)
        object.__setattr__(self, "L", L)
        object.__setattr__(self, "lambdas", _check_priors(self.lambdas, L))
        try:
            act = activations.get(self.activation)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(str(exc)) from None
        object.__setattr__(self, "act", act)
        object.__setattr__(self, "activation", activations.canonical(act))
        fc = Architecture("fc", self.input_shape, activation=self.activation,
                          lambda0=self.lambda0, lambda1=self.lambdas[-1])
        object.__setattr__(self, "fc", fc)
        object.__setattr__(self, "lambda0", fc.lambda0)
        object.__setattr__(self, "input_shape", fc.input_shape)

    # ----------------------------------------------------------------- derived
    @property
    def geometry(self):
        """The input geometry (one patch covering the input), None until the shape is known."""
        return self.fc.geometry

    @property
    def N0(self) -> int:
        return self.fc.N0

    @property
    def n(self) -> int:
        """One patch (the input layer is fully connected)."""
        return 1

    @property
    def zero_mean(self) -> bool:
        """True when the activation's unit mean vanishes (erf, linear, tanh; THEORY §2)."""
        return self.act.zero_mean

    @property
    def lambda_L(self) -> float:
        """The readout prior λ_L."""
        return self.lambdas[-1]

    def with_input(self, X) -> "DeepArchitecture":
        """The same architecture with its input shape fixed by X (N0 = X.shape[1])."""
        if self.geometry is not None:
            return self
        return replace(self, input_shape=self.fc.with_input(X).input_shape)

    def one_hidden_layer(self) -> Architecture:
        """L = 1: the one-hidden-layer :class:`kren.Architecture` ("fc", λ1 = λ_1) it equals."""
        if self.L != 1:
            raise InvalidParameterError(f"one_hidden_layer() needs L = 1, got L = {self.L}")
        return self.fc

    def describe(self) -> dict:
        d = {"kind": self.kind, "L": self.L, "activation": self.act.key,
             "lambda0": self.lambda0, "lambdas": list(self.lambdas)}
        if self.geometry is not None:
            d["input_shape"] = list(self.geometry.input_shape)
            d["N0"] = self.N0
        return d

    @property
    def kernel_key(self) -> str:
        """Cache key of the kernels (:class:`kren.cache.KernelCache`): the whole description."""
        return json.dumps(self.describe(), sort_keys=True, default=str)

    # ----------------------------------------------------------------- inputs
    @property
    def input_key(self) -> tuple:
        return self.fc.input_key

    def prepare(self, X, name: str = "X"):
        """Validated inputs (a :class:`kren.prepared.Prepared` of the first layer's geometry):
        X (P, N0), variances |x|²/(λ0 N0). Done once per input set."""
        return self.with_input(X).fc.prepare(X, name)

    def check_data(self, X, name: str = "X") -> np.ndarray:
        return self.with_input(X).fc.check_data(X, name)

    # ----------------------------------------------------------------- kernels
    def input_covariance(self, X1, X2=None):
        """(C12, d1, d2): C(x1, x2) = x1·x2/(λ0 N0) and the variances of each set (THEORY §2);
        X2 = None: train×train, d2 = d1."""
        from .deep_kernels import input_covariance
        p1 = self.prepare(X1, "X1")
        p2 = None if X2 is None else self.prepare(X2, "X2")
        return input_covariance(p1.X, None if p2 is None else p2.X, self.lambda0)

    def nngp_kernel(self, X1, X2=None, memory_budget=None) -> np.ndarray:
        """The deep NNGP kernel K^{(L)}/λ_L (THEORY §2) between X1 and X2 (default: X1×X1,
        symmetric), :mod:`kren.deep_kernels`."""
        from . import deep_kernels as dk
        p1 = self.prepare(X1, "X1")
        if X2 is None:
            return dk.deep_nngp_kernel(p1.X, self.L, self.act, self.lambda0, self.lambdas,
                                       memory_budget=memory_budget)
        p2 = self.prepare(X2, "X2")
        return dk.deep_nngp_cross(p1.X, p2.X, self.L, self.act, self.lambda0, self.lambdas,
                                  memory_budget=memory_budget)

    def nngp_diagonal(self, X) -> np.ndarray:
        """K^{(L)}(x, x)/λ_L for every input (the variance recursion alone)."""
        from . import deep_kernels as dk
        return dk.deep_nngp_diagonal(self.prepare(X).X, self.L, self.act, self.lambda0,
                                     self.lambdas)

    def layer_kernels(self, X) -> list:
        """[K^{(1)}/λ_1, …, K^{(L)}/λ_L] over X: the NNGP limit of every layer's empirical kernel
        K̂_l = (1/(λ_l N_l)) Σ_a φ^l_a φ^lᵀ_a (THEORY §2, derivations.deep), i.e. C^{(l+1)}."""
        from . import deep_kernels as dk
        p = self.prepare(X)
        return [dk.deep_nngp_kernel(p.X, l, self.act, self.lambda0, self.lambdas[:l])
                for l in range(1, self.L + 1)]

    def train_kernels(self, X, memory_budget=None) -> DeepTrainKernels:
        """C and K^{(L)} = λ_L · NNGP over the training set (:class:`DeepTrainKernels`)."""
        p = self.prepare(X)
        C, _, _ = self.input_covariance(p)
        K = self.nngp_kernel(p, memory_budget=memory_budget) * self.lambda_L
        return DeepTrainKernels(np.ascontiguousarray(C), np.ascontiguousarray(K))

    # ----------------------------------------------------------------- the finite network
    def network(self, N, **kw):
        """The finite deep network of widths N (one int or L ints; PyTorch, the ``nn`` extra):
        :func:`kren.sampling.deep.build_deep_network`."""
        from .sampling.deep import build_deep_network
        return build_deep_network(self, N, **kw)

    def __str__(self) -> str:
        lam = ", ".join(f"{v:g}" for v in self.lambdas)
        N0 = "?" if self.geometry is None else self.N0
        return (f"DeepArchitecture(L={self.L}, N0={N0}, {self.act.name}, λ0={self.lambda0:g}, "
                f"λ=({lam}))")

