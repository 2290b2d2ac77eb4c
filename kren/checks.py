"""Input validation shared by the generated modules (kren.generated.cnn, lcn, fc, predictor).

The code generator (``python -m derivations.codegen``) prints only the physics; every generated
function starts by passing its arguments through these checks, which coerce to float arrays and
raise a ``TypeError``/``ValueError`` naming the offending argument and its shape. The messages
are part of the tested interface (tests/test_generated.py matches on them).
"""
from __future__ import annotations

import numpy as np

__all__ = ["as_float", "square", "vector", "tensor", "means", "fc_kernel", "fc_means",
           "packed_sandwich", "packed_sandwich2", "packed_blocks"]


def as_float(x, name):
    """``float(x)``; a ``TypeError`` naming ``name`` if x is not a real number."""
    try:
        return float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {x!r}") from None


def square(Q, name):
    """Q as a float (n, n) array (an order parameter Q, Q̄ or K_R); ``ValueError`` if not square."""
    Q = np.asarray(Q, dtype=float)
    if Q.ndim != 2 or Q.shape[0] != Q.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) matrix, got shape {Q.shape}")
    return Q


def vector(q, name, n=None):
    """q as a float 1-d array, of length n when n is given; ``ValueError`` otherwise."""
    q = np.asarray(q, dtype=float)
    if q.ndim != 1 or (n is not None and q.shape[0] != n):
        want = "(n,)" if n is None else f"({n},)"
        raise ValueError(f"{name} must be a vector of shape {want}, got shape {q.shape}")
    return q


def tensor(blocks, pairs, n):
    """Check a stored kernel tensor (kren.kernels.KernelTensor): blocks (n_pairs, P, P) with
    pairs (n_pairs, 2) indexing patches 0..n−1. Returns (blocks, pairs, P). ``blocks`` may be a
    :class:`kren.tensors.BlockSource` (the linalg primitives dispatch on it)."""
    from .tensors.source import is_source
    if not is_source(blocks):               # a packed, streamed or device tensor stays as it is
        blocks = np.asarray(blocks)
    pairs = np.asarray(pairs)
    if blocks.ndim != 3 or blocks.shape[1] != blocks.shape[2]:
        raise ValueError(f"blocks must have shape (n_pairs, P, P), got {blocks.shape}")
    if pairs.ndim != 2 or pairs.shape != (blocks.shape[0], 2):
        raise ValueError(f"pairs must have shape ({blocks.shape[0]}, 2), got {pairs.shape}")
    if pairs.size and (pairs.min() < 0 or pairs.max() >= n):
        raise ValueError(f"pairs index patches outside 0..{n - 1}")
    return blocks, pairs, blocks.shape[1]


def means(mu, n, P, name="mu"):
    """Unit means μ_i(x^μ) (THEORY §2) as a float (n, P) array; ``ValueError`` otherwise."""
    mu = np.asarray(mu, dtype=float)
    if mu.shape != (n, P):
        raise ValueError(f"{name} must have shape ({n}, {P}), got {mu.shape}")
    return mu


def fc_kernel(blocks):
    """The single FC kernel block K (n = 1): blocks (1, P, P) or (P, P) -> (K (P, P), P)."""
    K = np.asarray(blocks, dtype=float)
    if K.ndim == 3 and K.shape[0] == 1:
        K = K[0]
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"blocks must have shape (1, P, P) or (P, P), got {np.shape(blocks)}")
    return K, K.shape[0]


def fc_means(mu, P):
    """FC unit means μ(x^μ) (n = 1): mu (1, P) or (P,) -> float (P,) array."""
    m0 = np.asarray(mu, dtype=float).reshape(-1)
    if m0.shape != (P,):
        raise ValueError(f"mu must hold {P} unit means (shape (1, P)), got {np.shape(mu)}")
    return m0


def packed_sandwich(W, pairs):
    """Tr(W E_p W E_q) for the packed basis E_p of pairs p = (i, j), q = (k, l):
    m_p m_q (W_ik W_jl + W_il W_jk)/2, m_p = 2 − δ_ij (derivations.action.PackedSandwich).

    Not a check: the numeric kernel of the printed ``PackedSandwich`` node (the Tr(Q⁻¹E_pQ⁻¹E_q)
    term of the Hessian, THEORY §3), kept here so the generated modules share one copy.
    """
    i, j = pairs[:, 0], pairs[:, 1]
    m = np.where(i == j, 1.0, 2.0)
    return 0.5*np.outer(m, m)*(W[np.ix_(i, i)]*W[np.ix_(j, j)] + W[np.ix_(i, j)]*W[np.ix_(j, i)])


def packed_sandwich2(X, Y, pairs):
    """Tr(X E_p Y E_q) for the packed basis E_p = Σ_{(a,b)} e_a e_bᵀ, (a, b) ∈ {(i, j), (j, i)}
    (once for i = j): w_p w_q [X_li Y_jk + X_ki Y_jl + X_lj Y_ik + X_kj Y_il] for p = (i, j),
    q = (k, l), w = 1/2 on the diagonal, 1 off it (derivations.action.PackedSandwich2);
    packed_sandwich(W) = packed_sandwich2(W, W).

    Not a check: the numeric kernel of the printed ``PackedSandwich2`` node (the Q̄ block of the
    Hessian of the general action, THEORY §3).
    """
    X, Y = np.asarray(X, dtype=float), np.asarray(Y, dtype=float)
    i, j = pairs[:, 0], pairs[:, 1]
    w = np.where(i == j, 0.5, 1.0)
    Xt, ix = X.T, np.ix_
    k, l = i, j                                       # the same pairs index the columns q
    s = (Xt[ix(i, l)] * Y[ix(j, k)] + Xt[ix(i, k)] * Y[ix(j, l)]
         + Xt[ix(j, l)] * Y[ix(i, k)] + Xt[ix(j, k)] * Y[ix(i, l)])
    return np.outer(w, w) * s


def packed_blocks(B, C):
    """The symmetric block matrix [[0, B], [Bᵀ, C]] (derivations.action.PackedBlocks)."""
    B, C = np.asarray(B, dtype=float), np.asarray(C, dtype=float)
    return np.block([[np.zeros((B.shape[0], B.shape[0])), B], [B.T, C]])
