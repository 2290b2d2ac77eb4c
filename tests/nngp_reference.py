"""An independent, brute-force implementation of the local kernels of THEORY.md §1–2.

Used only by the tests, to check :mod:`kren.geometry` and :mod:`kren.kernels` against code that
shares nothing with them but the conventions of THEORY.md:

- patches are found by walking the patch origins one step at a time (``valid``: while the mask
  still fits; ``circular``: while the origin is inside the input, positions wrapped modulo the
  size), row-major over the patch grid, every input channel inside every patch;
- covariances are computed from the raw pixels gathered through those coordinates,
  C_ij(x, x') = x_i · x'_j / (λ0 M);
- the closed forms are written in their textbook form (``arcsin`` for erf, the angle
  θ = arccos(c/√(ab)) for relu), not the arctan2 form of :mod:`kren.activations`;
- tanh, which has no closed form, is the textbook double integral E[tanh(h) tanh(h')] done by a
  composite Gauss–Legendre rule in the eigenbasis of the covariance (kren uses Gauss–Hermite
  coefficients and Mehler's formula in the correlation instead);
- loops run explicitly over the first patch i of a pair (all j at once for each i).

Nothing here imports kren.
"""
from __future__ import annotations

import numpy as np


# --------------------------------------------------------------------------- geometry
def patch_origins(size: int, m: int, s: int, padding: str) -> list[int]:
    """Origins of the patches along one axis, found by stepping (no floor/ceil formula)."""
    origins = []
    o = 0
    if padding == "valid":
        while o + m <= size:
            origins.append(o)
            o += s
    elif padding == "circular":
        while o < size:
            origins.append(o)
            o += s
    else:
        raise ValueError(padding)
    return origins


def _per_axis(v, ndim):
    return (v,) * ndim if isinstance(v, int) else tuple(v)


def patch_coordinates(input_shape, mask, stride, padding="valid"):
    """List over patches (row-major over the patch grid) of lists of coordinates.

    A coordinate is (c, l) for 1D inputs (C, L) and (c, h, w) for 2D inputs (C, H, W); inside a
    patch the channel runs slowest, then the mask rows, then the mask columns.
    """
    C, *spatial = input_shape
    ndim = len(spatial)
    mask = _per_axis(mask, ndim)
    stride = _per_axis(stride, ndim)
    patches = []
    if ndim == 1:
        (L,), (m,), (s,) = spatial, mask, stride
        for o in patch_origins(L, m, s, padding):
            patches.append([(c, (o + d) % L) for c in range(C) for d in range(m)])
        return patches
    (H, W), (mh, mw), (sh, sw) = spatial, mask, stride
    for oh in patch_origins(H, mh, sh, padding):
        for ow in patch_origins(W, mw, sw, padding):
            coords = []
            for c in range(C):
                for dh in range(mh):
                    for dw in range(mw):
                        coords.append((c, (oh + dh) % H, (ow + dw) % W))
            patches.append(coords)
    return patches


def flat_index(coord, input_shape) -> int:
    """Channels-first flattening: (c, h, w) -> c·H·W + h·W + w, (c, l) -> c·L + l."""
    idx = 0
    for x, size in zip(coord, input_shape):
        idx = idx * size + x
    return idx


def spatial_index(coord, input_shape) -> int:
    """Spatial position of a coordinate: h·W + w (2D) or l (1D)."""
    return flat_index(coord[1:], input_shape[1:])


def extract_patches(X, input_shape, mask, stride, padding="valid") -> np.ndarray:
    """Patch vectors x_i^μ, shape (P, n, M), gathered from the raw images X.reshape(P, *input_shape)."""
    X = np.asarray(X, dtype=np.float64)
    img = X.reshape((X.shape[0],) + tuple(input_shape))
    coords = patch_coordinates(input_shape, mask, stride, padding)
    out = np.empty((X.shape[0], len(coords), len(coords[0])))
    for i, patch in enumerate(coords):
        for k, coord in enumerate(patch):
            out[:, i, k] = img[(slice(None),) + tuple(coord)]
    return out


# --------------------------------------------------------------------------- closed forms
def kernel_erf(c, a, b):
    """(2/π) arcsin(2c / √((1 + 2a)(1 + 2b)))  [Williams 1997]."""
    arg = 2.0 * c / np.sqrt((1.0 + 2.0 * a) * (1.0 + 2.0 * b))
    return (2.0 / np.pi) * np.arcsin(np.clip(arg, -1.0, 1.0))


def kernel_relu(c, a, b):
    """√(ab)/(2π) (sin θ + (π − θ) cos θ), cos θ = c/√(ab)  [Cho & Saul 2009]; 0 if ab = 0."""
    c, a, b = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (c, a, b)))
    norm = np.sqrt(a * b)
    safe = np.where(norm > 0, norm, 1.0)
    cos = np.where(norm > 0, np.clip(c / safe, -1.0, 1.0), 0.0)
    theta = np.arccos(cos)
    return norm / (2.0 * np.pi) * (np.sin(theta) + (np.pi - theta) * cos)


def kernel_linear(c, a, b):
    return np.broadcast_arrays(np.asarray(c, dtype=np.float64), a, b)[0].copy()


# Composite Gauss–Legendre in the eigenbasis: (h, h') = U diag(√λ) z, z ~ N(0, 𝟙₂), z cut to
# [−Z_MAX, Z_MAX]² (the Gaussian mass outside is < 2e-19). tanh(s z + …) has its poles at a
# distance d = π/(2s) from the real z axis, s the largest scale of z in the two arguments;
# panels of width w = min(1, 1/s) with m Gauss nodes then converge like r^(−2m),
# r = d/(w/2) + √(1 + (d/(w/2))²) ≥ π + √(1 + π²) ≈ 6.4: m = 12 gives ~1e-19 per panel
# (checked against m = 16 in the tests).
Z_MAX = 9.0
GL_NODES = 12


def _panels(scale, m):
    """Nodes and weights (Gaussian density included) of the composite rule on [−Z_MAX, Z_MAX]."""
    width = 1.0 if scale <= 1.0 else 1.0 / scale
    n_pan = int(np.ceil(2 * Z_MAX / width))
    edges = np.linspace(-Z_MAX, Z_MAX, n_pan + 1)
    t, wt = np.polynomial.legendre.leggauss(m)
    half = 0.5 * (edges[1:] - edges[:-1])
    mid = 0.5 * (edges[1:] + edges[:-1])
    z = (mid[:, None] + half[:, None] * t[None, :]).ravel()
    w = (half[:, None] * wt[None, :]).ravel() * np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
    return z, w


def gaussian_double_integral(f, c, a, b, m=GL_NODES):
    """E[f(h) f(h')] for one covariance [[a, c], [c, b]] by the composite rule above."""
    lam, U = np.linalg.eigh(np.array([[a, c], [c, b]], dtype=np.float64))
    lam = np.maximum(lam, 0.0)
    M = U * np.sqrt(lam)[None, :]                    # (h, h')ᵀ = M z
    z1, w1 = _panels(max(abs(M[0, 0]), abs(M[1, 0])), m)
    z2, w2 = _panels(max(abs(M[0, 1]), abs(M[1, 1])), m)
    h = M[0, 0] * z1[:, None] + M[0, 1] * z2[None, :]
    hp = M[1, 0] * z1[:, None] + M[1, 1] * z2[None, :]
    return float(w1 @ (f(h) * f(hp)) @ w2)


def kernel_tanh(c, a, b, m=GL_NODES):
    """E[tanh(h) tanh(h')], (h, h') ~ N(0, [[a, c], [c, b]]), elementwise over broadcast arrays."""
    c, a, b = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (c, a, b)))
    out = np.empty(c.shape)
    for idx in np.ndindex(c.shape):
        out[idx] = gaussian_double_integral(np.tanh, c[idx], a[idx], b[idx], m)
    return out


CLOSED_FORMS = {"erf": kernel_erf, "relu": kernel_relu, "linear": kernel_linear,
                "tanh": kernel_tanh}


def mean_relu(a):
    """E[max(h, 0)], h ~ N(0, a) = √a · E[max(z, 0)] = √a/√(2π)."""
    return np.sqrt(np.asarray(a, dtype=np.float64)) / np.sqrt(2.0 * np.pi)


# --------------------------------------------------------------------------- kernels
def local_covariances(X1, X2, input_shape, mask, stride, padding="valid", lambda0=1.0):
    """C_ij(x1, x2) for all patch pairs, shape (n, n, P1, P2), and the variances
    C_ii(x1, x1) (n, P1), C_jj(x2, x2) (n, P2).

    Loop over the first patch i; for each i all second patches j at once (one batched product).
    """
    p1 = extract_patches(X1, input_shape, mask, stride, padding)
    p2 = extract_patches(X2, input_shape, mask, stride, padding)
    n, M = p1.shape[1], p1.shape[2]
    rhs = np.ascontiguousarray(p2.transpose(1, 2, 0))                 # (n, M, P2)
    C = np.empty((n, n, p1.shape[0], p2.shape[0]))
    for i in range(n):
        C[i] = np.matmul(p1[:, i, :], rhs) / (lambda0 * M)             # (n_j, P1, P2)
    v1 = np.array([np.sum(p1[:, i, :] ** 2, axis=1) for i in range(n)]) / (lambda0 * M)
    v2 = np.array([np.sum(p2[:, i, :] ** 2, axis=1) for i in range(n)]) / (lambda0 * M)
    return C, v1, v2


def local_kernels(X1, X2, input_shape, mask, stride, padding="valid", activation="erf",
                  lambda0=1.0):
    """K_ij(x1, x2) for all patch pairs, shape (n, n, P1, P2) (THEORY §2)."""
    C, v1, v2 = local_covariances(X1, X2, input_shape, mask, stride, padding, lambda0)
    form = CLOSED_FORMS[activation]
    K = np.empty_like(C)
    for i in range(C.shape[0]):
        # a = C_ii(x1, x1) for the first patch, b = C_jj(x2, x2) for every second patch j
        K[i] = form(C[i], v1[i][None, :, None], v2[:, None, :])
    return K


def same_input_kernels(X, input_shape, mask, stride, padding="valid", activation="erf",
                       lambda0=1.0):
    """K_ij(x0, x0) for every input x0, shape (n, n, P0): per-sample dot products of its patches."""
    p = extract_patches(X, input_shape, mask, stride, padding)
    P, n, M = p.shape
    form = CLOSED_FORMS[activation]
    var = np.einsum("pim,pim->ip", p, p) / (lambda0 * M)              # (n, P)
    out = np.empty((n, n, P))
    for i in range(n):
        c = np.einsum("pm,pjm->jp", p[:, i, :], p) / (lambda0 * M)     # (n_j, P)
        out[i] = form(c, var[i][None, :], var)
    return out


def nngp(X1, X2, input_shape, mask, stride, padding="valid", activation="erf",
         lambda0=1.0, lambda1=1.0):
    """Infinite-width CNN/LCN kernel (1/(λ1 n)) Σ_i K_ii(x1, x2) (THEORY §2), diagonal blocks only."""
    p1 = extract_patches(X1, input_shape, mask, stride, padding)
    p2 = extract_patches(X2, input_shape, mask, stride, padding)
    n, M = p1.shape[1], p1.shape[2]
    form = CLOSED_FORMS[activation]
    total = np.zeros((p1.shape[0], p2.shape[0]))
    for i in range(n):
        x1, x2 = p1[:, i, :], p2[:, i, :]
        c = x1 @ x2.T / (lambda0 * M)
        a = np.sum(x1 * x1, axis=1) / (lambda0 * M)
        b = np.sum(x2 * x2, axis=1) / (lambda0 * M)
        total += form(c, a[:, None], b[None, :])
    return total / (lambda1 * n)


def nngp_fc(X1, X2, activation="erf", lambda0=1.0, lambda1=1.0):
    """Infinite-width FC kernel K(x1, x2)/λ1 with C = x1 · x2/(λ0 N0)."""
    X1 = np.asarray(X1, dtype=np.float64).reshape(len(X1), -1)
    X2 = np.asarray(X2, dtype=np.float64).reshape(len(X2), -1)
    N0 = X1.shape[1]
    c = X1 @ X2.T / (lambda0 * N0)
    a = np.sum(X1 ** 2, axis=1) / (lambda0 * N0)
    b = np.sum(X2 ** 2, axis=1) / (lambda0 * N0)
    return CLOSED_FORMS[activation](c, a[:, None], b[None, :]) / lambda1


# --------------------------------------------------------------------------- pooled readout
def nngp_pooled(X1, X2, input_shape, mask, stride, padding="valid", activation="erf",
                lambda0=1.0, lambda1=1.0):
    """Infinite-width kernel of the CNN with global average pooling before the readout,
    f(x) = N^{-1/2} Σ_a v_a (1/n) Σ_i σ(w_a · x_i/√M) (THEORY §1, §2):

        E_w[(1/n Σ_i σ(h_i(x1))) (1/n Σ_j σ(h_j(x2)))]/λ1 = (1/(λ1 n²)) Σ_i Σ_j K_ij(x1, x2).

    Brute force: one ordered patch pair (i, j) at a time, its covariance c = x1_i · x2_j/(λ0 M)
    and variances a = |x1_i|²/(λ0 M), b = |x2_j|²/(λ0 M) recomputed from the raw patches."""
    p1 = extract_patches(X1, input_shape, mask, stride, padding)
    p2 = extract_patches(X2, input_shape, mask, stride, padding)
    n, M = p1.shape[1], p1.shape[2]
    form = CLOSED_FORMS[activation]
    total = np.zeros((p1.shape[0], p2.shape[0]))
    for i in range(n):
        for j in range(n):
            x1, x2 = p1[:, i, :], p2[:, j, :]
            c = x1 @ x2.T / (lambda0 * M)
            a = np.sum(x1 * x1, axis=1) / (lambda0 * M)
            b = np.sum(x2 * x2, axis=1) / (lambda0 * M)
            total += form(c, a[:, None], b[None, :])
    return total / (lambda1 * n * n)


def pooled_unit_mean(X, input_shape, mask, stride, padding="valid", activation="erf",
                     lambda0=1.0):
    """(1/n) Σ_i E[σ(h_i)], h_i ~ N(0, |x_i|²/(λ0 M)): 0 for erf/linear, the mean of
    √(C_ii/(2π)) over patches for relu. Shape (P,)."""
    p = extract_patches(X, input_shape, mask, stride, padding)
    if activation in ("erf", "linear"):
        return np.zeros(p.shape[0])
    var = np.sum(p * p, axis=2) / (lambda0 * p.shape[2])             # (P, n)
    return np.mean(mean_relu(var), axis=1)


# --------------------------------------------------------------------------- deep FC
def deep_nngp_fc(X1, X2, L, activation="erf", lambda0=1.0, lambdas=1.0):
    """Infinite-width kernel of an L-layer FC network (THEORY §2), K^{(L)}(x1, x2)/λ_L.

    Done on the joint Gram matrix of X1 ∪ X2 (one (P1 + P2)² matrix): C = ZZᵀ/(λ0 N0), then L
    times C ← form(C, diag(C) rows, diag(C) columns)/λ_l with the textbook closed forms; the
    (X1, X2) block is returned. ``lambdas``: one number for every layer or a list of L.
    """
    X1 = np.asarray(X1, dtype=np.float64).reshape(len(X1), -1)
    X2 = np.asarray(X2, dtype=np.float64).reshape(len(X2), -1)
    lambdas = [float(lambdas)] * L if np.ndim(lambdas) == 0 else [float(v) for v in lambdas]
    assert len(lambdas) == L
    Z = np.concatenate([X1, X2], axis=0)
    C = Z @ Z.T / (lambda0 * Z.shape[1])
    form = CLOSED_FORMS[activation]
    for layer in range(L):
        v = np.diag(C).copy()
        C = form(C, v[:, None], v[None, :]) / lambdas[layer]
    return C[:len(X1), len(X1):]
