"""NumPy forward pass of the one-hidden-layer networks of THEORY §1.

With N hidden units (FC) or channels (LCN, CNN), patches x_i ∈ R^M (i = 1..n) cut from the
input by ``arch.geometry`` and activation σ:

- FC:  f(x) = N^{-1/2} Σ_a v_a σ(w_a · x / √N0)                        W (N, N0),   v (N,)
- CNN: f(x) = (N n)^{-1/2} Σ_{a,i} v_{a,i} σ(w_a · x_i / √M)            W (N, M),    v (N, n)
- LCN: f(x) = (N n)^{-1/2} Σ_{a,i} v_{a,i} σ(w_{a,i} · x_i / √M)        W (N, n, M), v (N, n)
- CNN with a pooled readout (``readout="pool"``, THEORY §3b):
       f(x) = N^{-1/2} Σ_a v_a φ̄_a(x),  φ̄_a = (1/n) Σ_i σ(w_a · x_i / √M)   W (N, M),    v (N,)

Prior (THEORY §1): every first-layer weight ~ N(0, 1/λ0), every readout weight ~ N(0, 1/λ1).
Averaging f(x) f(x') over the readout gives the empirical kernel of THEORY §3 step 2,
K̂(x, x') = (1/(λ1 N n)) Σ_{a,i} σ(h_{a,i}(x)) σ(h_{a,i}(x')), whose average over the first layer
is the NNGP kernel of THEORY §2 (uncentered, (1/(λ1 n)) Σ_i K_ii; K/λ1 for FC) at every width N.
For the pooled readout K̂(x, x') = (1/(λ1 N)) Σ_a φ̄_a(x) φ̄_a(x'), whose average is the pooled
NNGP kernel (1/(λ1 n²)) Σ_ij K_ij. In general, with the readout features r_{a,k} (φ_{a,i}, or φ̄_a
for the pooled readout, n_r = n or 1 per channel): f = (N n_r)^{-1/2} Σ_{a,k} v_{a,k} r_{a,k} and
K̂ = (1/(λ1 N n_r)) Σ_{a,k} r_{a,k} r_{a,k}ᵀ.

The FC network is the n = 1 case with the single patch equal to the whole input (M = N0); its
readout v may be given as (N,) or (N, 1).
"""
from __future__ import annotations

import numpy as np

__all__ = ["init_weights", "weight_shapes", "preactivations", "features", "readout_features",
           "forward", "empirical_kernel"]

# Samples per chunk in forward/empirical_kernel are chosen so that one chunk of pre-activations
# holds at most this many float64 numbers (32 MiB).
_CHUNK_ELEMENTS = 1 << 22


def _arch_for(arch, X=None):
    """The architecture with its input shape fixed (FC without input_shape takes it from X)."""
    if arch.geometry is None:
        if X is None:
            raise ValueError(
                "the FC architecture has no input_shape: pass input_shape=N0 (or (C, H, W)) "
                "to Architecture, or call arch.with_input(X) first")
        return arch.with_input(X)
    return arch


def _check_width(N) -> int:
    if isinstance(N, (bool, np.bool_)) or not isinstance(N, (int, np.integer)):
        raise TypeError(f"N (number of hidden units/channels) must be a positive int, got {N!r}")
    if N <= 0:
        raise ValueError(f"N (number of hidden units/channels) must be >= 1, got {N}")
    return int(N)


def weight_shapes(arch, N: int) -> dict:
    """Shapes of the weights of a width-N network: FC W (N, N0), v (N,); CNN W (N, M), v (N, n);
    pooled CNN W (N, M), v (N,); LCN W (N, n, M), v (N, n)."""
    arch = _arch_for(arch)
    N = _check_width(N)
    if arch.kind == "fc":
        return {"W": (N, arch.N0), "v": (N,)}
    if arch.readout == "pool":
        return {"W": (N, arch.M), "v": (N,)}
    if arch.kind == "cnn":
        return {"W": (N, arch.M), "v": (N, arch.n)}
    return {"W": (N, arch.n, arch.M), "v": (N, arch.n)}


def init_weights(arch, N: int, rng_or_seed) -> dict:
    """Draw weights from the prior of THEORY §1: W ~ N(0, 1/λ0), v ~ N(0, 1/λ1), independent.

    ``rng_or_seed``: a ``numpy.random.Generator`` (advanced in place) or an int seed.
    Returns ``dict(W=..., v=...)`` with the shapes of :func:`weight_shapes`. W is drawn first,
    then v, so a given seed fixes both.
    """
    shapes = weight_shapes(arch, N)
    if isinstance(rng_or_seed, np.random.Generator):
        rng = rng_or_seed
    elif (isinstance(rng_or_seed, (int, np.integer))
          and not isinstance(rng_or_seed, (bool, np.bool_))):
        rng = np.random.default_rng(int(rng_or_seed))
    else:
        raise TypeError(
            "rng_or_seed must be a numpy.random.Generator or an int seed (an explicit seed is "
            f"required), got {rng_or_seed!r}")
    W = rng.standard_normal(shapes["W"]) / np.sqrt(arch.lambda0)
    v = rng.standard_normal(shapes["v"]) / np.sqrt(arch.lambda1)
    return {"W": W, "v": v}


def _check_W(arch, W) -> np.ndarray:
    W = np.asarray(W)
    if W.dtype == object or not np.issubdtype(W.dtype, np.number):
        raise TypeError(f"W must be a numeric array, got dtype {W.dtype}")
    if arch.kind == "fc":
        expected, text = (arch.N0,), f"(N, N0) = (N, {arch.N0})"
        ok = W.ndim == 2 and W.shape[1:] == expected
    elif arch.kind == "cnn":
        text = f"(N, M) = (N, {arch.M}) (one filter per channel shared by all {arch.n} patches)"
        ok = W.ndim == 2 and W.shape[1] == arch.M
    else:
        text = (f"(N, n, M) = (N, {arch.n}, {arch.M}) (one filter per channel and patch)")
        ok = W.ndim == 3 and W.shape[1:] == (arch.n, arch.M)
    if not ok or W.shape[0] == 0:
        raise ValueError(f"{arch.kind.upper()} first-layer weights W must have shape {text}, "
                         f"got {W.shape}")
    if not np.all(np.isfinite(W)):
        raise ValueError("W contains NaN or inf")
    return W.astype(np.float64, copy=False)


def _check_v(arch, v, N: int) -> np.ndarray:
    v = np.asarray(v)
    if v.dtype == object or not np.issubdtype(v.dtype, np.number):
        raise TypeError(f"v must be a numeric array, got dtype {v.dtype}")
    n = _n_readout(arch)
    if n == 1 and v.shape == (N,):
        v = v.reshape(N, 1)
    if v.shape != (N, n):
        want = f"({N},) or ({N}, 1)" if n == 1 else f"(N, n) = ({N}, {n})"
        raise ValueError(f"{arch.kind.upper()} readout v must have shape {want} "
                         f"to match W with N = {N}, got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("v contains NaN or inf")
    return v.astype(np.float64, copy=False)


def _preact(arch, X, W) -> np.ndarray:
    """h^μ_{a,i} for already validated inputs: (P, N, n)."""
    if arch.kind == "fc":
        return (X @ W.T / np.sqrt(arch.N0))[:, :, None]
    x = arch.geometry.patches(X)                                   # (P, n, M)
    if arch.kind == "cnn":
        return np.einsum("pim,am->pai", x, W, optimize=True) / np.sqrt(arch.M)
    return np.einsum("pim,aim->pai", x, W, optimize=True) / np.sqrt(arch.M)


def preactivations(arch, X, W) -> np.ndarray:
    """First-layer pre-activations h^μ_{a,i}, shape (P, N, n) (THEORY §1).

    FC: h_a = w_a · x / √N0 (n = 1); CNN: h_{a,i} = w_a · x_i / √M; LCN: h_{a,i} = w_{a,i} · x_i / √M,
    with the patches x_i of ``arch.geometry.patches``. X is (P, N0) flattened channels-first or
    (P, *input_shape).
    """
    arch = _arch_for(arch, X)
    X = arch.check_data(X).astype(np.float64, copy=False)
    W = _check_W(arch, W)
    return _preact(arch, X, W)


def features(arch, X, W) -> np.ndarray:
    """Hidden-layer activities φ^μ_{a,i} = σ(h^μ_{a,i}), shape (P, N, n) (THEORY §3 step 2)."""
    return arch.act.sigma(preactivations(arch, X, W))


def _n_readout(arch) -> int:
    """Readout weights per channel n_r: n (local readout), 1 (FC and pooled readout)."""
    return 1 if arch.readout == "pool" else arch.n


def _pool(arch, phi: np.ndarray) -> np.ndarray:
    """Readout features from φ (..., N, n): φ itself, or φ̄ = mean over patches (..., N, 1)."""
    return phi.mean(axis=-1, keepdims=True) if arch.readout == "pool" else phi


def readout_features(arch, X, W) -> np.ndarray:
    """What the readout weights multiply, shape (P, N, n_r): φ_{a,i} (local readout, n_r = n;
    FC n_r = 1) or the patch averages φ̄_a = (1/n) Σ_i φ_{a,i} (pooled readout, n_r = 1;
    THEORY §3b)."""
    return _pool(_arch_for(arch, X), features(arch, X, W))


def _chunks(P: int, per_sample: int):
    step = max(1, _CHUNK_ELEMENTS // max(1, per_sample))
    for start in range(0, P, step):
        yield slice(start, min(P, start + step))


def _params(params):
    if not isinstance(params, dict) or "W" not in params or "v" not in params:
        raise TypeError("params must be a dict with keys 'W' and 'v' (see init_weights), "
                        f"got {type(params).__name__}"
                        + (f" with keys {sorted(params)}" if isinstance(params, dict) else ""))
    return params["W"], params["v"]


def forward(arch, X, params) -> np.ndarray:
    """Network output f(x^μ), shape (P,): f = (N n)^{-1/2} Σ_{a,i} v_{a,i} σ(h_{a,i}) (THEORY §1;
    FC: n = 1, f = N^{-1/2} Σ_a v_a σ(w_a · x / √N0); pooled readout: f = N^{-1/2} Σ_a v_a φ̄_a,
    φ̄_a = (1/n) Σ_i σ(h_{a,i}), THEORY §3b).

    ``params`` = ``dict(W=..., v=...)`` as returned by :func:`init_weights`. Samples are processed
    in chunks so memory stays bounded for large P.
    """
    W, v = _params(params)
    arch = _arch_for(arch, X)
    X = arch.check_data(X).astype(np.float64, copy=False)
    W = _check_W(arch, W)
    N = W.shape[0]
    v = _check_v(arch, v, N)
    n = arch.n
    out = np.empty(X.shape[0])
    for sl in _chunks(X.shape[0], N * n):
        phi = arch.act.sigma(_preact(arch, X[sl], W))                      # (p, N, n)
        out[sl] = np.einsum("pai,ai->p", _pool(arch, phi), v, optimize=True)
    return out / np.sqrt(N * _n_readout(arch))


def empirical_kernel(arch, X1, W, X2=None) -> np.ndarray:
    """Empirical kernel of THEORY §3 step 2: K̂(x, x') = (1/(λ1 N n)) Σ_{a,i} φ_{a,i}(x) φ_{a,i}(x'),
    shape (P1, P2) (P1 × P1 when X2 is None). It is E_v[f(x) f(x')] at fixed first-layer weights.
    Pooled readout: K̂ = (1/(λ1 N)) Σ_a φ̄_a(x) φ̄_a(x') (THEORY §3b).
    """
    arch = _arch_for(arch, X1)
    F1 = readout_features(arch, X1, W)
    N, n = F1.shape[1], F1.shape[2]
    F1 = F1.reshape(F1.shape[0], -1)
    F2 = F1 if X2 is None else readout_features(arch, X2, W).reshape(np.shape(X2)[0], -1)
    K = F1 @ F2.T / (arch.lambda1 * N * n)
    if X2 is None:
        K = 0.5 * (K + K.T)
    return K
