"""Gaussian expectations of an elementwise σ by Gauss–Hermite quadrature and Mehler's formula.

This is the engine behind activations without a closed-form kernel (THEORY §2), e.g. tanh or a
user-supplied σ. With u ~ N(0, 1) and the orthonormal probabilists' Hermite polynomials
ψ_k = He_k/√(k!), expand

    σ(√a u) = Σ_k A_k(a) ψ_k(u),        A_k(a) = E[σ(√a u) ψ_k(u)].

For (h, h') ~ N(0, [[a, c], [c, b]]) write h = √a u, h' = √b u' where (u, u') are standard normals
with correlation ρ = c/√(ab) (ρ = 0 when ab = 0; ρ clipped to [−1, 1] against round-off). Mehler's
formula E[ψ_j(u) ψ_k(u')] = δ_jk ρ^k turns the two-dimensional Gaussian integral into one sum:

    K(c, a, b) = E[σ(h) σ(h')] = Σ_k A_k(a) A_k(b) ρ^k,       μ(a) = E[σ(h)] = A_0(a).

This is the two-dimensional Gauss–Hermite quadrature diagonalized: a tensor rule in the Cholesky
coordinates h = √a u, h' = √b(ρu + √(1−ρ²) v) needs n² evaluations of σ per kernel entry, with n
growing like the variance for a saturating σ (tanh: n ≈ 110·a nodes per axis for 1e-10, measured
by ``benchmarks/bench_activation_quadrature.py``); here each entry costs K multiply-adds (a
polynomial in ρ, Horner's rule) and the coefficients A_k are one-dimensional Gauss–Hermite
quadratures computed once per distinct variance. The form is well conditioned everywhere: a → 0
leaves only A_0 = σ(0); |ρ| → 1 needs no √(1 − ρ²); |ρ^k| ≤ 1.

Coefficients. With the n-point rule (x_i, w_i) for N(0, 1), A_k ≈ Σ_i (√w_i σ(√a x_i)) Φ_ki,
Φ_ki = √w_i ψ_k(x_i), from the three-term recurrence ψ_{k+1} = (x ψ_k − √k ψ_{k−1})/√(k+1).
Φ (n×n) is orthogonal, so the transform is perfectly conditioned and |Φ_ki| ≤ 1: a node of weight
w_i contributes at most √w_i |σ_i|, and nodes with w_i < 1e-34 are pruned (|x| ≳ 12.1: 700 of
8192 nodes are kept). With S(a) = E[σ(√a u)²] = Σ_k A_k² (Parseval), E(K)² = Σ_{k≥K} A_k² is the tail of an
expansion and e(K) = E(K)/√S its relative size.

Error control (relative to the natural scale √(S(a) S(b)) ≥ |K|, by Cauchy–Schwarz):
- each variance's expansion is kept up to K_s, the first K with E(K) ≤ tol·√S ("strong" level);
  dropping the rest costs at most tol·√(S(a)S(b)) against any partner;
- a block of entries (rows R, columns C) is summed up to the first K with
  max_R e(K) · max_C e(K) ≤ tol (e = E/√S), the Cauchy–Schwarz bound of the truncated tail;
  most entries need far fewer terms than K_s;
- the node count of a variance range (one octave 2^(j−1) < a ≤ 2^j) is calibrated once, at both
  ends of the octave: the smallest n of the sequence 32, 48, 64, 96, … whose K_s is at most n/2 (of 2n/3 computed)
  and whose coefficients A_0..A_{K_s−1} and S agree with the next rule's to tol (relative 2-norm).
  Where that fails below ``max_nodes`` (non-smooth σ such as relu converge only algebraically,
  like 1/n; a saturating σ needs n ∝ a) a :class:`QuadratureWarning` states the estimated error.

The result is accurate to a few times ``tol`` (default 1e-11) relative to √(S(a)S(b)).
"""
from __future__ import annotations

import math
import threading
import warnings

import numpy as np
from scipy.special import roots_hermitenorm

__all__ = ["QuadratureWarning", "HermiteExpansion", "gauss_hermite"]

_W_MIN = 1e-34            # nodes of smaller weight are pruned (contribution ≤ 1e-17 |σ|)
_OCT_MIN = -10            # octaves 2^(j−1) < a ≤ 2^j are calibrated for j ≥ _OCT_MIN
_TILE = 1 << 15           # entries per Horner tile (256 KiB of float64: stays in cache)


class QuadratureWarning(RuntimeWarning):
    """The Gauss–Hermite/Mehler expansion of a σ did not reach its tolerance."""


def gauss_hermite(n: int, prune: bool = True):
    """n-point Gauss–Hermite rule for u ~ N(0, 1): nodes x, weights w (Σ w = 1), E f ≈ Σ w f(x).

    ``prune``: drop the nodes of weight < 1e-34 (their contribution is below 1e-17 |f|).
    """
    x, w = roots_hermitenorm(int(n))
    w = w / math.sqrt(2.0 * math.pi)
    if prune:
        keep = w >= _W_MIN
        x, w = x[keep], w[keep]
    return x, w


def _hermite_rows(x: np.ndarray, sw: np.ndarray, K: int, chunk: int = 256):
    """Φ_ki = √w_i ψ_k(x_i) for k < K, yielded as (k0, rows k0..k0+m−1) in chunks of ≤ ``chunk``
    rows, so the (K, len(x)) matrix is never held at once."""
    prev2, prev1 = None, None
    for k0 in range(0, K, chunk):
        F = np.empty((min(chunk, K - k0), x.size))
        for r in range(F.shape[0]):
            k = k0 + r
            if k == 0:
                F[r] = sw
            elif k == 1:
                np.multiply(x, sw, out=F[r])
            else:
                np.multiply(x, prev1, out=F[r])
                F[r] -= math.sqrt(k - 1) * prev2
                F[r] *= 1.0 / math.sqrt(k)
            prev2, prev1 = prev1, F[r]
        yield k0, F


def _algebraic(history: dict, n: int, max_nodes: int, tol: float) -> bool:
    """Whether the coefficient change d(n) between rules decays algebraically (a non-smooth σ:
    slower than n^-2 over a factor 4 in n, from n ≥ 2048 on) so that even ``max_nodes`` nodes
    would leave it above tol: then growing the rule further only costs time."""
    m = n // 4 if n // 4 in history else 3 * n // 16 if 3 * n // 16 in history else None
    if n < 2048 or n not in history or m is None or history[m] <= 0:
        return False
    d, dm = history[n], history[m]
    if d >= dm or dm / d < 16:
        order = math.log(dm / d) / math.log(n / m) if 0 < d < dm else 0.0
        return d * (max_nodes / n) ** (-order) > tol
    return False


def _octave(a: np.ndarray) -> np.ndarray:
    """Octave index j with 2^(j−1) < a ≤ 2^j; variances below 2^_OCT_MIN share its octave (a
    smaller variance makes σ(√a u) smoother, so that octave's rule serves them too)."""
    with np.errstate(divide="ignore"):
        j = np.ceil(np.log2(np.maximum(a, 2.0 ** _OCT_MIN)))
    return np.maximum(j, _OCT_MIN).astype(int)


def _node_sequence(max_nodes: int) -> list:
    """32, 48, 64, 96, 128, … (ratios 3/2 and 4/3) up to and including ``max_nodes``."""
    seq = sorted({m for k in range(5, 30) for m in (2 ** k, 3 * 2 ** (k - 1)) if m < max_nodes})
    return seq + [int(max_nodes)]


_PHI_KEEP = 1 << 20       # Φ matrices up to this many entries (8 MiB) are kept with their rule


class _Level:
    """The rule of one octave: n nodes (pruned: x, w), K_s coefficients, estimated error, and
    (when small) the matrix Φ (K_s, nodes) of its Hermite transform."""

    __slots__ = ("n", "K", "x", "sw", "error", "converged", "phi")

    def __init__(self, n, K, error, converged):
        self.n, self.K, self.error, self.converged = n, K, error, converged
        self.x, w = gauss_hermite(n)
        self.sw = np.sqrt(w)
        self.phi = None
        if K * self.x.size <= _PHI_KEEP:
            self.phi = np.concatenate([F for _, F in _hermite_rows(self.x, self.sw, K)])


class HermiteExpansion:
    """Hermite expansion of σ(√a u) for any variance a ≥ 0, with kernels by Mehler's formula.

    ``sigma``: vectorized NumPy function (validated by the caller). ``tol``: target relative
    accuracy (module docstring). ``max_nodes``: largest Gauss–Hermite rule tried. ``name``:
    used in warnings and errors.
    """

    def __init__(self, sigma, tol: float = 1e-11, max_nodes: int = 32768, name: str = "σ"):
        self.sigma = sigma
        self.tol = float(tol)
        self.max_nodes = int(max_nodes)
        self.name = name
        self._levels: dict[int, _Level] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ calibration
    def _values(self, a: np.ndarray, x: np.ndarray) -> np.ndarray:
        """σ(√a_m x_i), shape (m, len(x)); raises on NaN/inf naming an argument."""
        h = np.sqrt(a)[:, None] * x[None, :]
        s = np.asarray(self.sigma(h), dtype=np.float64)
        if s.shape != h.shape:
            raise ValueError(f"activation {self.name!r}: σ returned shape {s.shape} for an input "
                             f"of shape {h.shape}; σ must be elementwise")
        bad = ~np.isfinite(s)
        if bad.any():
            raise ValueError(f"activation {self.name!r}: σ(h) is not finite at h = "
                             f"{float(h[bad].flat[0]):g} (needed by the Gaussian quadrature)")
        return s

    def _expand(self, a: np.ndarray, x, sw, K, phi=None):
        """Coefficients A (m, K) and S = E σ² (m,) with the rule (x, sw) (Φ given or streamed)."""
        S = self._values(a, x) * sw[None, :]
        if phi is not None:
            A = S @ phi.T
        else:
            A = np.empty((a.size, K))
            for k0, F in _hermite_rows(x, sw, K):
                A[:, k0:k0 + F.shape[0]] = S @ F.T
        return A, np.einsum("mi,mi->m", S, S)

    def _calibrate(self, j: int) -> _Level:
        """Smallest rule that is converged at both ends of octave j (module docstring)."""
        edges = np.array([2.0 ** (j - 1), 2.0 ** j])
        tol = self.tol
        prev, history = None, {}
        for n in _node_sequence(self.max_nodes):
            x, w = gauss_hermite(n)
            A, S = self._expand(edges, x, np.sqrt(w), max(2, (2 * n) // 3))
            e = _normalized_tails(A, S)                            # (2, K + 1)
            Ks = max(int(np.max(np.argmax(e <= tol, axis=1))), 1)
            Ks = Ks if Ks <= n // 2 else None          # decayed well inside the computed range
            if prev is not None:
                pA, pS, pn, pK = prev
                K = min(pA.shape[1], n // 2)
                if pK is not None:
                    K = pK if Ks is None else max(pK, Ks)
                if K <= pA.shape[1]:
                    dA = np.linalg.norm(A[:, :K] - pA[:, :K], axis=1)
                    if pK is not None and np.all(dA <= tol * np.sqrt(S)) and \
                            np.all(np.abs(S - pS) <= tol * S):
                        return _Level(pn, K, tol, True)
                    history[n] = float(np.max(dA / np.sqrt(np.maximum(S, 1e-300))))
                if _algebraic(history, n, self.max_nodes, tol):
                    break
            prev = (A, S, n, Ks)
        # not converged: keep the last rule, estimate its error, say so
        A, S, n = prev[0], prev[1], prev[2]
        K = n // 2
        e = _normalized_tails(A, S)
        # the dropped tail against the slowest partner (e·1) and the last change of the kept
        # coefficients between rules (their quadrature error)
        err = max(float(np.max(e[:, K])), history.get(n, 1.0) if history else 1.0)
        warnings.warn(
            f"activation {self.name!r}: the Hermite expansion of σ(√a u) did not reach the "
            f"tolerance {tol:.0e} for variances {edges[0]:g} < a ≤ {edges[1]:g} (σ not smooth, "
            f"or the variance too large for a saturating σ); kernels there carry a relative "
            f"error of up to about {max(err, tol):.0e} ({n} Gauss–Hermite nodes, {K} terms)",
            QuadratureWarning, stacklevel=2)
        return _Level(n, K, max(err, tol), False)

    def level(self, j: int) -> _Level:
        """The calibrated rule of octave j (computed once, thread-safe)."""
        lev = self._levels.get(j)
        if lev is None:
            with self._lock:
                lev = self._levels.get(j)
                if lev is None:
                    lev = self._calibrate(j)
                    self._levels[j] = lev
        return lev

    def levels(self) -> dict:
        """{octave j: (n nodes, K_s terms, converged)} for the octaves calibrated so far."""
        return {j: (lv.n, lv.K, lv.converged) for j, lv in sorted(self._levels.items())}

    # ------------------------------------------------------------------ coefficients
    def coefficients(self, a):
        """A (m, K) for the unique variances a (1D), their normalized tails e (m, K + 1) and S.

        Each variance uses its octave's rule; rows are zero-padded to the longest expansion.
        """
        a = np.maximum(np.asarray(a, dtype=np.float64).ravel(), 0.0)
        jj = _octave(a)
        groups = {j: np.flatnonzero(jj == j) for j in np.unique(jj)}
        lev = {j: self.level(int(j)) for j in groups}
        K = max(lv.K for lv in lev.values()) if lev else 1
        A = np.zeros((a.size, K))
        S = np.empty(a.size)
        for j, idx in groups.items():
            lv = lev[j]
            Aj, Sj = self._expand(a[idx], lv.x, lv.sw, lv.K, lv.phi)
            A[idx, :lv.K] = Aj
            S[idx] = Sj
        return A, _normalized_tails(A, S), S

    def mean(self, a) -> np.ndarray:
        """μ(a) = A_0(a) = E σ(√a u), any shape."""
        a = np.maximum(np.asarray(a, dtype=np.float64), 0.0)
        u, inv = np.unique(a.ravel(), return_inverse=True)
        out = np.empty(u.size)
        jj = _octave(u)
        for j in np.unique(jj):
            idx = np.flatnonzero(jj == j)
            lv = self.level(int(j))
            out[idx] = self._values(u[idx], lv.x) @ (lv.sw * lv.sw)
        return out[inv].reshape(a.shape)

    # ------------------------------------------------------------------ kernels
    def kernel_inplace(self, block: np.ndarray, a, b) -> np.ndarray:
        """Overwrite ``block`` (p, q) of covariances c with K(c, a_p, b_q) (Mehler, tiled)."""
        p, q = block.shape
        if p == 0 or q == 0:
            return block
        a = np.maximum(np.asarray(a, dtype=np.float64), 0.0)
        b = np.maximum(np.asarray(b, dtype=np.float64), 0.0)
        ua, ia = np.unique(a, return_inverse=True)
        ub, ib = np.unique(b, return_inverse=True)
        Aa, ea, _ = self.coefficients(ua)
        Ab, eb, _ = self.coefficients(ub)
        Aa, ea = Aa[ia], ea[ia]
        Ab, eb = Ab[ib], eb[ib]
        sa, sb = np.sqrt(a), np.sqrt(b)
        tol = self.tol
        # sort rows and columns by how fast their expansions converge; columns in groups of
        # similar level, rows in tiles of a few, so every tile sums only the terms it needs
        lr = _levels_of(ea, tol)
        lc = _levels_of(eb, tol)
        rows = np.argsort(lr, kind="stable")
        cols = np.argsort(lc, kind="stable")
        col_groups = _split_levels(cols, lc[cols])
        for cg in col_groups:
            ebg = eb[cg].max(axis=0)
            step = max(1, _TILE // cg.size)
            for s in range(0, p, step):
                rg = rows[s:s + step]
                K = _terms(ea[rg].max(axis=0), ebg, tol)
                ix = np.ix_(rg, cg)
                rho = block[ix].astype(np.float64)
                _correlation(rho, sa[rg], sb[cg])
                block[ix] = _horner_outer(rho, Aa[rg, :K], Ab[cg, :K])
        return block

    def kernel(self, c, a, b) -> np.ndarray:
        """K(c, a, b) for broadcasting arrays (Mehler, elementwise)."""
        c, a, b = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (c, a, b)))
        shape = c.shape
        c, a, b = c.ravel(), np.maximum(a.ravel(), 0.0), np.maximum(b.ravel(), 0.0)
        out = np.empty(c.size)
        if c.size == 0:
            return out.reshape(shape)
        ua, ia = np.unique(a, return_inverse=True)
        ub, ib = np.unique(b, return_inverse=True)
        Aa, ea, _ = self.coefficients(ua)
        Ab, eb, _ = self.coefficients(ub)
        la = _levels_of(ea, self.tol)[ia]
        lb = _levels_of(eb, self.tol)[ib]
        order = np.argsort(np.maximum(la, lb), kind="stable")
        rho = c.copy()
        _correlation_flat(rho, np.sqrt(a), np.sqrt(b))
        start = 0
        while start < order.size:
            K0 = max(int(np.maximum(la, lb)[order[start]]), 1)
            chunk = order[start:start + max(1, _TILE // K0)]
            ca, cb = ia[chunk], ib[chunk]
            K = _terms(ea[ca].max(axis=0), eb[cb].max(axis=0), self.tol)
            out[chunk] = _horner_pairs(rho[chunk], Aa[ca, :K], Ab[cb, :K])
            start += chunk.size
        return out.reshape(shape)


# ---------------------------------------------------------------------- helpers
def _normalized_tails(A: np.ndarray, S: np.ndarray) -> np.ndarray:
    """e[m, K] = √(Σ_{K≤k<K_max} A_mk²)/√S_m for K = 0..K_max (e[:, K_max] = 0); 0 where S = 0.

    Only the computed coefficients enter: the part of S beyond them, S − Σ A_k², is known only
    to √eps relative (cancellation), far above the tolerances in use; the calibration makes sure
    the expansion has died out well inside the computed range instead.
    """
    sq = A * A
    tail = np.zeros((A.shape[0], A.shape[1] + 1))
    tail[:, :-1] = np.cumsum(sq[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.sqrt(tail / S[:, None])
    e[~np.isfinite(e)] = 0.0
    return np.minimum(e, 1.0)


def _levels_of(e: np.ndarray, tol: float) -> np.ndarray:
    """First K with e(K) ≤ √tol, per row (a tile of such rows meets tol among itself)."""
    ok = e <= math.sqrt(tol)
    return np.where(ok.any(axis=1), np.argmax(ok, axis=1), e.shape[1] - 1)


def _terms(er: np.ndarray, ec: np.ndarray, tol: float) -> int:
    """Smallest K with er(K)·ec(K) ≤ tol (the Cauchy–Schwarz bound of the dropped terms)."""
    n = min(er.size, ec.size)
    ok = er[:n] * ec[:n] <= tol
    return max(int(np.argmax(ok)) if ok.any() else n - 1, 1)


def _split_levels(idx: np.ndarray, lev: np.ndarray) -> list:
    """Split indices (sorted by level) where the level doubles."""
    out, start = [], 0
    for k in range(1, idx.size + 1):
        if k == idx.size or lev[k] > 2 * max(lev[start], 8):
            out.append(idx[start:k])
            start = k
    return out


def _correlation(block: np.ndarray, sa: np.ndarray, sb: np.ndarray) -> None:
    """block (c) → ρ = c/(√a √b), 0 where ab = 0, clipped to [−1, 1]."""
    den = np.multiply.outer(sa, sb)
    np.divide(block, den, out=block, where=den > 0)
    block[den == 0] = 0.0
    np.clip(block, -1.0, 1.0, out=block)


def _correlation_flat(c, sa, sb) -> None:
    den = sa * sb
    np.divide(c, den, out=c, where=den > 0)
    c[den == 0] = 0.0
    np.clip(c, -1.0, 1.0, out=c)


def _horner_outer(rho: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Σ_k A_pk B_qk ρ_pq^k (Horner's rule)."""
    K = A.shape[1]
    acc = np.multiply.outer(A[:, K - 1], B[:, K - 1])
    work = np.empty_like(acc)
    for k in range(K - 2, -1, -1):
        acc *= rho
        np.multiply.outer(A[:, k], B[:, k], out=work)
        acc += work
    return acc


def _horner_pairs(rho: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Σ_k A_ek B_ek ρ_e^k for paired rows e (Horner's rule)."""
    AB = A * B
    acc = AB[:, -1].copy()
    for k in range(A.shape[1] - 2, -1, -1):
        acc *= rho
        acc += AB[:, k]
    return acc
