"""Gaussian expectations of an elementwise σ by Gauss–Hermite quadrature and Mehler's formula.

This is the engine behind activations without a closed-form kernel (THEORY §2): tanh, or a
user-supplied σ. With u ~ N(0, 1) and the orthonormal probabilists' Hermite polynomials
ψ_k = He_k/√(k!), expand

    σ(√a u) = Σ_k A_k(a) ψ_k(u),        A_k(a) = E[σ(√a u) ψ_k(u)].

For (h, h') ~ N(0, [[a, c], [c, b]]) write h = √a u, h' = √b u', where (u, u') are standard
normals with correlation ρ = c/√(ab) (ρ = 0 when ab = 0; clipped to [−1, 1] against round-off).
Mehler's formula E[ψ_j(u) ψ_k(u')] = δ_jk ρ^k turns the two-dimensional Gaussian integral into

    K(c, a, b) = E[σ(h) σ(h')] = Σ_k A_k(a) A_k(b) ρ^k,       μ(a) = E[σ(h)] = A_0(a).

This is the two-dimensional Gauss–Hermite quadrature diagonalized. The plain tensor rule in the
Cholesky coordinates h = √a u, h' = √b(ρu + √(1−ρ²) v) costs n² evaluations of σ per kernel
entry, and for a saturating σ n grows like the variance (tanh, 1e-10: n = 96, 384, 1536 nodes
per axis at a = 1, 4, 16, i.e. 72², 150², 304² evaluations after pruning). Here an entry costs
at most K multiply-adds (a polynomial in ρ) and the A_k are one-dimensional Gauss–Hermite
quadratures done once per variance (per patch, see :class:`HermiteTable`). The form is well
conditioned everywhere: a → 0 leaves A_0 = σ(0) alone, |ρ| → 1 needs no √(1 − ρ²), |ρ^k| ≤ 1.

Coefficients. With the n-point rule (x_i, w_i) for N(0, 1), A_k ≈ Σ_i (√w_i σ(√a x_i)) Φ_ki,
Φ_ki = √w_i ψ_k(x_i) from the recurrence ψ_{k+1} = (x ψ_k − √k ψ_{k−1})/√(k+1). Φ (n×n) is
orthogonal, so the transform is perfectly conditioned and |Φ_ki| ≤ 1: a node contributes at most
√w_i |σ_i|, and nodes with w_i < 1e-34 are pruned (|x| ≳ 12.1; 700 of 8192 nodes are kept).
With S(a) = E σ(√a u)² = Σ_k A_k² (Parseval), E(K)² = Σ_{k≥K} A_k² is the tail of an
expansion and e(K) = E(K)/√S its relative size.

Error control, relative to the natural scale √(S(a) S(b)) ≥ |K| (Cauchy–Schwarz):
- rule per variance octave 2^(j−1) < a ≤ 2^j, calibrated once per σ at both ends of the octave:
  the smallest n of 32, 48, 64, 96, … whose strong level K_s (first K with e(K) ≤ tol) is at
  most n/2 and whose A_0..A_{K_s−1} and S agree with the next rule's to tol (relative 2-norm).
  Inside an octave a smaller variance is assumed no harder (true for saturating and analytic σ);
- a block of entries (rows R, columns C) is summed up to the first K with
  max_R e(K) · max_C e(K) ≤ tol, the Cauchy–Schwarz bound of the dropped terms; a variance's
  coefficients are computed up to the K its largest possible partner needs;
- where calibration fails (σ not smooth: relu, |h| converge like 1/n and the search stops once
  that is evident; or a saturating σ at a variance beyond ``max_nodes``) a
  :class:`QuadratureWarning` states the estimated error and the last rule is used.

Measured with ``python benchmarks/bench_activation_quadrature.py`` (tol = 1e-11): tanh needs
768 nodes (214 kept) and K_s = 288 terms for a ≤ 1; 3072 (430) and 1062 for a ≤ 4; 8192 (700)
and 4068 for a ≤ 16; 16384 (988) and 8022 for a ≤ 32; beyond 32 (max_nodes = 32768) it warns.
Its error against an independent composite Gauss–Legendre quadrature is ≤ 2e-11 for
2^-6 ≤ a ≤ 32 at all ρ ∈ [−1, 1], ±1 included (6e-12 at a = 1; σ = erf through this path: the
same against the closed form). relu through this path: 8.5e-5 at a = b = 1, with the warning.
Building a kernel tensor costs about K multiply-adds per entry against a handful of operations
for a closed form: CNN 2×2/2 on P = 500 digits, tanh took 8–14× the time of erf.
"""
from __future__ import annotations

import math
import threading
import warnings

import numpy as np
from scipy.special import roots_hermitenorm

__all__ = ["QuadratureWarning", "HermiteExpansion", "HermiteTable", "gauss_hermite"]

_W_MIN = 1e-34            # nodes of smaller weight are pruned (contribution ≤ 1e-17 |σ|)
_OCT_MIN = -10            # octaves 2^(j−1) < a ≤ 2^j are calibrated for j ≥ _OCT_MIN
_TILE = 1 << 15           # entries per Horner tile (256 KiB of float64: stays in cache)
_POWERS = 1 << 20         # tiles with entries × terms below this sum all powers at once


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

    __slots__ = ("n", "K", "x", "sw", "error", "converged", "phi", "tail")

    def __init__(self, n, K, error, converged, tail):
        self.n, self.K, self.error, self.converged = n, K, error, converged
        self.tail = tail          # e(K), K = 0..K_s: the slower of the octave's two ends
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
        self._warned = False

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
                        tail = _normalized_tails(pA[:, :K], pS).max(axis=0)
                        return _Level(pn, K, tol, True, tail)
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
        if not self._warned:                 # once per σ; levels() lists every octave
            self._warned = True
            warnings.warn(
                f"activation {self.name!r}: the Hermite expansion of σ(√a u) did not reach the "
                f"tolerance {tol:.0e} for variances {edges[0]:g} < a ≤ {edges[1]:g} (σ not "
                f"smooth, or the variance too large for a saturating σ); kernels there carry a "
                f"relative error of up to about {max(err, tol):.0e} ({n} Gauss–Hermite nodes, "
                f"{K} terms); other variance ranges may follow (see .expansion.levels())",
                QuadratureWarning, stacklevel=2)
        return _Level(n, K, max(err, tol), False, _normalized_tails(A[:, :K], S).max(axis=0))

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
        """{octave j: (n nodes, K_s terms, converged, estimated relative error)} for the octaves
        calibrated so far (octave j: 2^(j−1) < a ≤ 2^j)."""
        return {j: (lv.n, lv.K, lv.converged, lv.error) for j, lv in sorted(self._levels.items())}

    # ------------------------------------------------------------------ coefficients
    def table(self, a, cover=None) -> "HermiteTable":
        """The coefficients of σ(√a u) for a vector of variances (reusable across kernel calls),
        enough for kernels against partners of variance up to ``cover`` (default: max a)."""
        return HermiteTable(self, a, cover)

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
        """Overwrite ``block`` (p, q) of covariances c with K(c, a_p, b_q) (Mehler, tiled).

        ``a``, ``b``: variances (1D) or their :class:`HermiteTable` (built once per patch by the
        kernel-tensor builders and reused for every block of that patch).
        """
        p, q = block.shape
        if p == 0 or q == 0:
            return block
        ta, tb = self._pair(a, b)
        if ta.size != p or tb.size != q:
            raise ValueError(f"block has shape {block.shape}, variances {ta.size} and {tb.size}")
        tol = self.tol
        for rows, Ar, er in ta.groups:
            for cols, Ac, ec in tb.groups:
                ecmax = ec.max(axis=0)
                step = max(1, _TILE // cols.size)
                for s in range(0, rows.size, step):
                    K = _terms(er[s:s + step].max(axis=0), ecmax, tol)
                    rg = rows[s:s + step]
                    ix = np.ix_(rg, cols)
                    rho = block[ix].astype(np.float64)
                    _correlation(rho, ta.sqrt_a[rg], tb.sqrt_a[cols])
                    block[ix] = _horner_outer(rho, Ar[s:s + step, :K], Ac[:, :K])
        return block

    def _pair(self, a, b):
        """Tables for the two sides of a kernel, each covering the other's largest variance
        (a table given with too small a cover is rebuilt: correctness first)."""
        va = a.variances if isinstance(a, HermiteTable) else np.asarray(a, dtype=np.float64)
        vb = b.variances if isinstance(b, HermiteTable) else np.asarray(b, dtype=np.float64)
        cover = max(float(np.max(va, initial=0.0)), float(np.max(vb, initial=0.0)))
        ta = a if isinstance(a, HermiteTable) and a.cover >= cover else self.table(va, cover)
        if b is a:
            return ta, ta
        tb = b if isinstance(b, HermiteTable) and b.cover >= cover else self.table(vb, cover)
        return ta, tb

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
        ta, tb = self._pair(ua, ub)
        rho = c.copy()
        _correlation_flat(rho, np.sqrt(a), np.sqrt(b))
        ga, pa = ta.position(ia)
        gb, pb = tb.position(ib)
        for g1, (_, Ar, er) in enumerate(ta.groups):
            for g2, (_, Ac, ec) in enumerate(tb.groups):
                sel = np.flatnonzero((ga == g1) & (gb == g2))
                if sel.size == 0:
                    continue
                K = _terms(er[np.unique(pa[sel])].max(axis=0),
                           ec[np.unique(pb[sel])].max(axis=0), self.tol)
                step = max(1, _TILE // K)
                for s in range(0, sel.size, step):
                    e = sel[s:s + step]
                    out[e] = _horner_pairs(rho[e], Ar[pa[e], :K], Ac[pb[e], :K])
        return out.reshape(shape)


class HermiteTable:
    """Hermite coefficients A_k(a) of σ(√a u) for a vector of variances, grouped by octave.

    ``groups``: list of (indices into the variances, A (m, K), normalized tails e (m, K + 1)),
    the indices of a group ordered by how fast their expansions converge. K is what a kernel
    against any partner of variance ≤ ``cover`` needs: the first K with e_j(K)·e_J(K) ≤ tol for
    the calibrated tail profiles of the group's octave j and the octave J of ``cover`` (at most
    the strong level K_s of octave j). The ragged layout keeps the few large-variance rows (long
    expansions) from padding the many short ones. Built by :meth:`HermiteExpansion.table`.
    """

    def __init__(self, expansion: HermiteExpansion, a, cover=None):
        a = np.maximum(np.asarray(a, dtype=np.float64).ravel(), 0.0)
        self.size = a.size
        self.variances = a
        self.sqrt_a = np.sqrt(a)
        self.cover = float(np.max(a, initial=0.0)) if cover is None else float(cover)
        self.groups = []
        jj = _octave(a)
        top = expansion.level(int(_octave(np.array([self.cover]))[0]))
        for j in np.unique(jj):
            idx = np.flatnonzero(jj == j)
            lv = expansion.level(int(j))
            K = _terms(lv.tail, top.tail, expansion.tol)
            phi = None if lv.phi is None else lv.phi[:K]
            A, S = expansion._expand(a[idx], lv.x, lv.sw, K, phi)
            e = _normalized_tails(A, S)
            order = np.argsort(_levels_of(e, expansion.tol), kind="stable")
            self.groups.append((idx[order], A[order], e[order]))

    def position(self, i: np.ndarray):
        """(group, row within the group) of the variances ``i``."""
        g = np.empty(self.size, dtype=np.intp)
        r = np.empty(self.size, dtype=np.intp)
        for k, (idx, _, _) in enumerate(self.groups):
            g[idx] = k
            r[idx] = np.arange(idx.size)
        return g[i], r[i]


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
    """Σ_k A_pk B_qk ρ_pq^k: Horner's rule on large tiles; on small tiles with many terms the
    powers ρ^k at once (cumulative products, relative error ≤ k·eps), one contraction."""
    K = A.shape[1]
    if rho.size * K <= _POWERS:
        pw = np.empty(rho.shape + (K,))
        pw[..., 0] = 1.0
        pw[..., 1:] = rho[..., None]
        np.cumprod(pw, axis=-1, out=pw)
        pw *= A[:, None, :]
        pw *= B[None, :, :]
        return pw.sum(axis=-1)
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
