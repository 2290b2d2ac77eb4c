"""Activation objects: σ and everything the theory and the sampler need from it (THEORY §2).

One :class:`Activation` per σ holds σ itself (NumPy and PyTorch), σ′ for the Langevin sampler,
the local NNGP kernel K(c, a, b) = E[σ(h)σ(h')] for (h, h') ~ N(0, [[a, c], [c, b]]), the unit
mean μ(a) = E[σ(h)], h ~ N(0, a), and its SymPy form for the derivations. A registry resolves
names (:func:`get`, :func:`register`, :func:`names`); everything else in kren asks the object.

Closed forms (built in):

- erf:    K = (2/π) arcsin(2c / √((1 + 2a)(1 + 2b))),            μ = 0
- relu:   K = √(ab)/(2π) · (sin θ + (π − θ) cos θ), cos θ = c/√(ab),  μ = √(a/(2π))
- linear: K = c,                                                   μ = 0

evaluated in arctan2 form, which is well conditioned as the correlation c/√(ab) approaches ±1 and
never produces NaN when round-off pushes it past ±1:

- erf:  arcsin(u/√D) = arctan2(u, √max(D − u², 0)),  u = 2c, D = (1 + 2a)(1 + 2b)
- relu: θ = arctan2(√max(ab − c², 0), c),  K = (√max(ab − c², 0) + (π − θ) c) / (2π)

tanh (built in, no closed form: odd, so μ = 0) and any other elementwise σ
(:meth:`Activation.from_function`) get K and μ from the Gauss–Hermite expansion and
Mehler's formula of :mod:`kren.quadrature`, where their accuracy and node counts are stated.

Identity: the activations kren ships (erf, relu, linear, tanh) are equal by
name. A user σ is keyed by ``name:fingerprint``, the fingerprint a SHA-256 of σ on a fixed
grid of 401 points in [−20, 20] (12 significant digits, so last-ulp differences between
machines do not matter), of its declared zero-mean flag and of its quadrature settings: a
changed function gets a new key, so caches keyed on ``Architecture.describe()`` never mix
two functions that share a name.
"""
from __future__ import annotations

import hashlib
import math
import threading

import numpy as np
from scipy.special import erf as _erf

from .quadrature import HermiteExpansion, gauss_hermite

__all__ = ["Activation", "get", "register", "names", "sigma", "kernel", "kernel_inplace",
           "unit_mean", "check_activation", "ERF", "RELU", "LINEAR", "TANH"]

_SQRT_PI = math.sqrt(math.pi)


def _sympy():
    import sympy
    return sympy


class Activation:
    """One activation σ and its Gaussian kernel, unit mean, PyTorch and SymPy forms.

    Subclasses define ``name``, ``zero_mean`` and the methods below; :meth:`from_function` builds
    one from a NumPy function. Instances are immutable values: equal when their :attr:`key` is.
    """

    name: str = ""
    zero_mean: bool = False

    # ------------------------------------------------------------------ σ
    def sigma(self, h) -> np.ndarray:
        """σ(h), elementwise (NumPy)."""
        raise NotImplementedError

    def sigma_torch(self, h):
        """σ(h), elementwise (PyTorch tensor in, tensor out)."""
        raise NotImplementedError

    def sigma_prime_torch(self, h):
        """σ′(h), elementwise (PyTorch), for the sampler's closed-form gradient."""
        raise NotImplementedError

    def sigma_prime_torch_(self, h):
        """σ′(h) written into ``h`` (in place) and returned; the default copies σ′(h) in."""
        return h.copy_(self.sigma_prime_torch(h))

    @property
    def has_torch(self) -> bool:
        """Whether σ has a PyTorch form (needed by the sampled networks)."""
        return True

    def require_torch(self) -> "Activation":
        """Raise a clear error when σ has no PyTorch form (sampled networks need one)."""
        if not self.has_torch:
            raise ValueError(
                f"activation {self.name!r} has no PyTorch form, which sampled networks need: "
                "pass sigma_torch= (and optionally sigma_prime_torch=) to "
                "Activation.from_function")
        return self

    # ------------------------------------------------------------------ Gaussian moments
    def kernel(self, c, a, b) -> np.ndarray:
        """K = E[σ(h)σ(h')], (h, h') ~ N(0, [[a, c], [c, b]]) (broadcasting arrays)."""
        raise NotImplementedError

    def kernel_inplace(self, block: np.ndarray, a: np.ndarray, b: np.ndarray,
                       work: np.ndarray | None = None) -> np.ndarray:
        """Overwrite ``block`` (covariances c, shape (p, q)) with K(c, a[:, None], b[None, :]).

        ``work`` is optional scratch space of the block's shape and dtype. Returns ``block``.
        """
        block[...] = self.kernel(block, np.asarray(a)[:, None], np.asarray(b)[None, :])
        return block

    def mean(self, a) -> np.ndarray:
        """μ = E[σ(h)], h ~ N(0, a) (any shape; zeros for a zero-mean σ)."""
        raise NotImplementedError

    def tabulate(self, variances, cover=None):
        """What :meth:`kernel_inplace` needs of a vector of variances, computed once so that the
        kernel-tensor builders can reuse it for every block of a patch: the variances themselves
        for a closed form, their Hermite coefficients for the quadrature path (enough against
        partners of variance up to ``cover``, default the largest of ``variances``)."""
        return variances

    # ------------------------------------------------------------------ symbolic
    def sympy(self, h):
        """σ(h) as a SymPy expression of the symbol ``h`` (used by :mod:`derivations`)."""
        raise NotImplementedError(f"activation {self.name!r} has no SymPy form")

    def mean_sympy(self, a):
        """μ(a) in closed form as a SymPy expression, or None when no closed form is known."""
        return None

    # ------------------------------------------------------------------ identity
    @property
    def key(self) -> str:
        """JSON-able identity: the name for built-ins, ``name:fingerprint`` for a user σ."""
        return self.name

    def describe(self) -> dict:
        """JSON-able description."""
        return {"name": self.name, "key": self.key, "zero_mean": bool(self.zero_mean)}

    def __eq__(self, other):
        return isinstance(other, Activation) and other.key == self.key

    def __hash__(self):
        return hash(("kren.Activation", self.key))

    def __repr__(self):
        return f"<Activation {self.key}>"

    def __str__(self):
        return self.name

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    # ------------------------------------------------------------------ user σ
    @staticmethod
    def from_function(sigma, name: str, sigma_torch=None, sigma_prime_torch=None,
                      sigma_prime_torch_=None, sympy=None, zero_mean=None, tol: float = 1e-11,
                      max_nodes: int = 32768) -> "Activation":
        """An activation from an elementwise NumPy function σ (e.g. ``np.tanh``).

        K and μ come from :class:`kren.quadrature.HermiteExpansion` (relative accuracy about
        ``tol`` for smooth σ; a :class:`kren.quadrature.QuadratureWarning` says where not).
        ``sigma_torch``: σ on PyTorch tensors (needed only by sampled networks; checked against
        σ on a probe grid at its first use);
        ``sigma_prime_torch``: σ′ (default: autograd of ``sigma_torch``); ``sigma_prime_torch_``:
        an in-place σ′ (default: out of place, copied); ``sympy``: h ↦ SymPy expression;
        ``zero_mean``: None decides it (μ(a) = 0 to round-off for 13 variances 2^-6 … 2^6),
        True/False declares it (True is checked the same way).
        """
        return _FunctionActivation(sigma, name, sigma_torch, sigma_prime_torch,
                                   sigma_prime_torch_, sympy, zero_mean, tol, max_nodes)


# ---------------------------------------------------------------------- built-ins
def _sq(x: np.ndarray) -> np.ndarray:
    return np.multiply(x, x)


def _as_float(c, a, b):
    c = np.asarray(c, dtype=np.result_type(c, a, b, np.float64))
    return c, np.asarray(a, dtype=c.dtype), np.asarray(b, dtype=c.dtype)


class _Builtin(Activation):
    def __reduce__(self):
        return (get, (self.name,))


class _Erf(_Builtin):
    name = "erf"
    zero_mean = True

    def sigma(self, h):
        return _erf(np.asarray(h))

    def sigma_torch(self, h):
        return h.erf()

    def sigma_prime_torch(self, h):
        """(2/√π) exp(−h²)."""
        return (-h * h).exp_().mul_(2.0 / _SQRT_PI)

    def sigma_prime_torch_(self, h):
        return h.square_().neg_().exp_().mul_(2.0 / _SQRT_PI)

    def kernel(self, c, a, b):
        c, a, b = _as_float(c, a, b)
        u = 2.0 * c
        D = (1.0 + 2.0 * a) * (1.0 + 2.0 * b)
        return (2.0 / np.pi) * np.arctan2(u, np.sqrt(np.maximum(D - u * u, 0.0)))

    def kernel_inplace(self, block, a, b, work=None):
        if work is None:
            work = np.empty_like(block)
        block *= 2.0                                              # u = 2c
        np.multiply.outer(1.0 + 2.0 * a, 1.0 + 2.0 * b, out=work)  # D
        work -= _sq(block)
        np.maximum(work, 0.0, out=work)
        np.sqrt(work, out=work)
        np.arctan2(block, work, out=block)
        block *= 2.0 / np.pi
        return block

    def mean(self, a):
        return np.zeros_like(np.asarray(a, dtype=np.result_type(a, np.float64)))

    def sympy(self, h):
        return _sympy().erf(h)

    def mean_sympy(self, a):
        return _sympy().S.Zero


class _ReLU(_Builtin):
    name = "relu"
    zero_mean = False

    def sigma(self, h):
        return np.maximum(np.asarray(h), 0.0)

    def sigma_torch(self, h):
        return h.relu()

    def sigma_prime_torch(self, h):
        """1[h > 0]."""
        return (h > 0).to(h.dtype)

    def sigma_prime_torch_(self, h):
        return h.gt_(0)

    def kernel(self, c, a, b):
        c, a, b = _as_float(c, a, b)
        s = np.sqrt(np.maximum(a * b - c * c, 0.0))
        theta = np.arctan2(s, c)
        return (s + (np.pi - theta) * c) / (2.0 * np.pi)

    def kernel_inplace(self, block, a, b, work=None):
        if work is None:
            work = np.empty_like(block)
        np.multiply.outer(a, b, out=work)                         # ab
        work -= _sq(block)
        np.maximum(work, 0.0, out=work)
        np.sqrt(work, out=work)                                   # s = √(ab − c²)
        theta = np.arctan2(work, block)
        np.subtract(np.pi, theta, out=theta)
        theta *= block
        theta += work
        theta *= 1.0 / (2.0 * np.pi)
        block[...] = theta
        return block

    def mean(self, a):
        """√(a/(2π))."""
        a = np.asarray(a, dtype=np.result_type(a, np.float64))
        return np.sqrt(np.maximum(a, 0.0) / (2.0 * np.pi))

    def sympy(self, h):
        return _sympy().Max(h, 0)

    def mean_sympy(self, a):
        sp = _sympy()
        return sp.sqrt(a / (2 * sp.pi))


class _Linear(_Builtin):
    name = "linear"
    zero_mean = True

    def sigma(self, h):
        return np.asarray(h)

    def sigma_torch(self, h):
        return h

    def sigma_prime_torch(self, h):
        return h.new_ones(h.shape)

    def sigma_prime_torch_(self, h):
        return h.fill_(1.0)

    def kernel(self, c, a, b):
        c, a, b = _as_float(c, a, b)
        return np.array(np.broadcast_arrays(c, a, b)[0], copy=True)

    def kernel_inplace(self, block, a, b, work=None):
        return block

    def mean(self, a):
        return np.zeros_like(np.asarray(a, dtype=np.result_type(a, np.float64)))

    def sympy(self, h):
        return h

    def mean_sympy(self, a):
        return _sympy().S.Zero


ERF, RELU, LINEAR = _Erf(), _ReLU(), _Linear()


# ---------------------------------------------------------------------- user σ
_PROBE = np.linspace(-20.0, 20.0, 401)
_MEAN_VARIANCES = 2.0 ** np.arange(-6, 7)


def _mean_and_scale(sig, variances):
    """E σ(√a u) and √E σ(√a u)² by a 256-node Gauss–Hermite rule (the zero-mean decision: an
    odd σ gives 0 to round-off on the symmetric nodes, a σ with a mean gives a clear non-zero)."""
    x, w = gauss_hermite(256)
    s = sig(np.sqrt(variances)[:, None] * x[None, :])
    return s @ w, np.sqrt((s * s) @ w)


class _FunctionActivation(Activation):
    """A user σ (see :meth:`Activation.from_function`)."""

    def __init__(self, sigma, name, sigma_torch, sigma_prime_torch, sigma_prime_torch_, sympy,
                 zero_mean, tol, max_nodes):
        if not callable(sigma):
            raise TypeError(f"sigma must be a callable NumPy function h -> σ(h), got "
                            f"{type(sigma).__name__}")
        if not isinstance(name, str) or not name or ":" in name or name != name.strip():
            raise ValueError(f"activation name must be a non-empty string without ':' or "
                             f"surrounding spaces, got {name!r}")
        for arg, v in (("sigma_torch", sigma_torch), ("sigma_prime_torch", sigma_prime_torch),
                       ("sigma_prime_torch_", sigma_prime_torch_), ("sympy", sympy)):
            if v is not None and not callable(v):
                raise TypeError(f"{arg} must be callable or None, got {type(v).__name__}")
        if zero_mean not in (None, True, False):
            raise TypeError(f"zero_mean must be None (decide), True or False, got {zero_mean!r}")
        if not (isinstance(tol, (int, float)) and 1e-15 <= tol < 1e-2):
            raise ValueError(f"tol must be a number in [1e-15, 1e-2), got {tol!r}")
        if not (isinstance(max_nodes, (int, np.integer)) and 64 <= max_nodes <= 1 << 16):
            raise ValueError(f"max_nodes must be an integer in [64, 65536], got {max_nodes!r}")
        self.name = name
        self._sigma = sigma
        self._sigma_torch = sigma_torch
        self._sigma_prime_torch = sigma_prime_torch
        self._sigma_prime_torch_ = sigma_prime_torch_
        self._sympy_fn = sympy
        self._lock = threading.Lock()
        values = self.sigma(_PROBE)                        # validates shape and finiteness
        self.expansion = HermiteExpansion(self.sigma, tol=float(tol), max_nodes=int(max_nodes),
                                          name=name)
        mu, scale = _mean_and_scale(self.sigma, _MEAN_VARIANCES)
        measured_zero = bool(np.all(np.abs(mu) <= 1e-12 * np.maximum(scale, 1e-300)))
        if zero_mean is True and not measured_zero:
            k = int(np.argmax(np.abs(mu) / np.maximum(scale, 1e-300)))
            raise ValueError(f"activation {name!r} was declared zero_mean=True but "
                             f"E[σ(h)] = {mu[k]:.3e} for h ~ N(0, {_MEAN_VARIANCES[k]:g})")
        self.zero_mean = measured_zero if zero_mean is None else bool(zero_mean)
        digest = hashlib.sha256()
        digest.update(" ".join(f"{v:.12e}" for v in values).encode())
        digest.update(f"|zero_mean={self.zero_mean}|tol={float(tol)!r}|max_nodes={int(max_nodes)}"
                      .encode())
        self._key = f"{name}:{digest.hexdigest()[:16]}"
        self._torch_checked = False             # checked on first use: importing torch is slow

    # ------------------------------------------------------------------ σ
    def sigma(self, h):
        h = np.asarray(h, dtype=np.float64)
        s = np.asarray(self._sigma(h))
        if s.shape != h.shape:
            raise ValueError(f"activation {self.name!r}: σ returned shape {s.shape} for an input "
                             f"of shape {h.shape}; σ must be elementwise")
        if not np.issubdtype(s.dtype, np.number) or np.iscomplexobj(s):
            raise TypeError(f"activation {self.name!r}: σ must return real numbers, got dtype "
                            f"{s.dtype}")
        s = s.astype(np.float64, copy=False)
        bad = ~np.isfinite(s)
        if bad.any():
            raise ValueError(f"activation {self.name!r}: σ(h) is not finite (NaN or inf) at "
                             f"h = {float(h[bad].flat[0]):g}")
        return s

    @property
    def has_torch(self) -> bool:
        return self._sigma_torch is not None

    def require_torch(self) -> "Activation":
        """As :meth:`Activation.require_torch`; the first call also checks that ``sigma_torch``
        (and ``sigma_prime_torch``) agree with σ (and its derivative) on the probe grid."""
        super().require_torch()
        if not self._torch_checked:
            with self._lock:
                if not self._torch_checked:
                    self._check_torch(self.sigma(_PROBE))
                    self._torch_checked = True
        return self

    def sigma_torch(self, h):
        self.require_torch()
        return self._sigma_torch(h)

    def sigma_prime_torch(self, h):
        """σ′ given, or autograd of ``sigma_torch`` (σ is elementwise, so ∂Σσ/∂h = σ′(h))."""
        self.require_torch()
        if self._sigma_prime_torch is not None:
            return self._sigma_prime_torch(h)
        import torch
        with torch.enable_grad():
            x = h.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self._sigma_torch(x).sum(), x)
        return g

    def sigma_prime_torch_(self, h):
        if self._sigma_prime_torch_ is not None:
            self.require_torch()
            return self._sigma_prime_torch_(h)
        return h.copy_(self.sigma_prime_torch(h))

    def _check_torch(self, values):
        """sigma_torch (and sigma_prime_torch) must agree with sigma on the probe grid."""
        import torch
        h = torch.as_tensor(_PROBE, dtype=torch.float64)
        t = self._sigma_torch(h)
        if not torch.is_tensor(t) or tuple(t.shape) != h.shape:
            raise ValueError(f"activation {self.name!r}: sigma_torch must map a tensor to a "
                             f"tensor of the same shape")
        dev = np.abs(t.detach().double().numpy() - values)
        if not np.all(dev <= 1e-10 * np.maximum(1.0, np.abs(values))):
            k = int(np.argmax(dev))
            raise ValueError(f"activation {self.name!r}: sigma_torch differs from sigma at "
                             f"h = {_PROBE[k]:g} ({t[k].item():.6g} vs {values[k]:.6g})")
        if self._sigma_prime_torch is not None:
            with torch.enable_grad():
                x = h.clone().requires_grad_(True)
                (g,) = torch.autograd.grad(self._sigma_torch(x).sum(), x)
            d = self._sigma_prime_torch(h.clone())
            if not torch.allclose(d.double(), g, rtol=1e-8, atol=1e-10):
                k = int(torch.argmax((d.double() - g).abs()))
                raise ValueError(f"activation {self.name!r}: sigma_prime_torch differs from the "
                                 f"derivative of sigma_torch at h = {_PROBE[k]:g}")

    # ------------------------------------------------------------------ Gaussian moments
    def kernel(self, c, a, b):
        """Mehler's formula with Gauss–Hermite coefficients (:mod:`kren.quadrature`)."""
        return self.expansion.kernel(c, a, b)

    def kernel_inplace(self, block, a, b, work=None):
        """``a``, ``b``: variances or their :meth:`tabulate` (a :class:`HermiteTable`)."""
        return self.expansion.kernel_inplace(block, a, b)

    def tabulate(self, variances, cover=None):
        return self.expansion.table(variances, cover)

    def mean(self, a):
        """A_0(a) = E σ(√a u) by Gauss–Hermite quadrature; zeros when zero_mean."""
        a = np.asarray(a, dtype=np.result_type(a, np.float64))
        if self.zero_mean:
            return np.zeros_like(a)
        return self.expansion.mean(a).astype(a.dtype, copy=False)

    # ------------------------------------------------------------------ symbolic, identity
    def sympy(self, h):
        if self._sympy_fn is None:
            raise NotImplementedError(f"activation {self.name!r} has no SymPy form: pass sympy= "
                                      "to Activation.from_function")
        return self._sympy_fn(h)

    @property
    def key(self) -> str:
        return self._key

    def describe(self) -> dict:
        d = super().describe()
        d.update(tol=self.expansion.tol, max_nodes=self.expansion.max_nodes,
                 torch=self.has_torch)
        return d

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


# ---------------------------------------------------------------------- registry
_REGISTRY: dict[str, Activation] = {}
_BUILTIN_NAMES: set[str] = set()


def register(activation: Activation, replace: bool = False, builtin: bool = False) -> Activation:
    """Make ``activation`` resolvable by name (``get(name)``); returns it.

    A name already registered for a different σ raises unless ``replace=True``; the activations
    kren ships (``builtin=True``, registered below) can never be replaced.
    """
    if not isinstance(activation, Activation):
        raise TypeError(f"register needs an Activation, got {type(activation).__name__}")
    old = _REGISTRY.get(activation.name)
    if old is not None and old != activation:
        shipped = old.name in _BUILTIN_NAMES
        if shipped or not replace:
            raise ValueError(f"activation name {activation.name!r} is already registered "
                             f"({old.key}); choose another name"
                             + ("" if shipped else " or pass replace=True"))
    _REGISTRY[activation.name] = activation
    if builtin:
        _BUILTIN_NAMES.add(activation.name)
        if isinstance(activation, _FunctionActivation):
            activation._key = activation.name        # shipped: fixed code, keyed by its name
    return activation


def names() -> tuple:
    """Names of the registered activations, in registration order."""
    return tuple(_REGISTRY)


def get(activation) -> Activation:
    """The :class:`Activation` for a name, a key ``name:fingerprint`` or an Activation.

    Unknown names raise a ValueError that lists the known ones.
    """
    if isinstance(activation, Activation):
        return activation
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a name ({', '.join(map(repr, names()))}) or a "
                        f"kren.activations.Activation (wrap a function with "
                        f"Activation.from_function), got {type(activation).__name__}")
    name = activation.split(":", 1)[0]
    act = _REGISTRY.get(name)
    if act is None:
        raise ValueError(f"activation must be one of {names()} or an Activation, got "
                         f"{activation!r}")
    if ":" in activation and act.key != activation:
        raise ValueError(f"activation {activation!r} is not the registered {name!r} "
                         f"({act.key}): its σ differs")
    return act


def canonical(activation):
    """The name when ``activation`` is the registered one of its name, else the object itself
    (what :class:`kren.Architecture` stores, so that equal activations compare equal)."""
    act = get(activation)
    return act.name if _REGISTRY.get(act.name) == act else act


for _a in (ERF, RELU, LINEAR):
    register(_a, builtin=True)

#: tanh: odd, so μ = 0 (zero mean, decided by the quadrature and by oddness in the derivation);
#: K by the Hermite expansion of :mod:`kren.quadrature`; σ′ = 1 − tanh² (sech²).
TANH = register(Activation.from_function(
    np.tanh, "tanh",
    sigma_torch=lambda h: h.tanh(),
    sigma_prime_torch=lambda h: 1.0 - h.tanh().square(),
    sigma_prime_torch_=lambda h: h.tanh_().square_().neg_().add_(1.0),
    sympy=lambda h: _sympy().tanh(h)), builtin=True)


# ---------------------------------------------------------------------- by-name wrappers
def check_activation(activation):
    """Raise (listing the known names) unless ``activation`` resolves; returns it unchanged."""
    get(activation)
    return activation


def sigma(activation, h):
    """σ(h) of the named activation (NumPy)."""
    return get(activation).sigma(h)


def kernel(activation, c, a, b):
    """K = E[σ(h)σ(h')] for covariance [[a, c], [c, b]] (broadcasting arrays)."""
    return get(activation).kernel(c, a, b)


def kernel_inplace(activation, block, a, b, work=None):
    """Overwrite ``block`` (covariances c, shape (p, q)) with K(c, a[:, None], b[None, :])."""
    return get(activation).kernel_inplace(block, a, b, work)


def unit_mean(activation, a):
    """μ = E[σ(h)], h ~ N(0, a)."""
    return get(activation).mean(a)


def __getattr__(attr):
    # ACTIVATIONS and ZERO_MEAN are views of the registry, so a registered σ appears in them
    if attr == "ACTIVATIONS":
        return names()
    if attr == "ZERO_MEAN":
        return {n: a.zero_mean for n, a in _REGISTRY.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
