"""What the linear-algebra primitives need from a train×train kernel tensor that is not an array.

The generated action, gradient and Hessian (:mod:`kren.generated`) reach the kernel tensor only
through :func:`kren.linalg.pair_combine`, :func:`kren.linalg.pair_contract` and
:func:`kren.linalg.pair_hessian_terms`. Those dispatch on a :class:`BlockSource`: an object that
stands where the stacked blocks ``blocks[p] = K_ij`` (pairs[p] = (i, j), i ≤ j) would, with their
``shape`` (n_pairs, P, P), and performs the three operations itself (stored packed, recomputed
tile by tile, or on a PyTorch device). The physics stays printed; only the passes change.

Conventions shared by every source (THEORY §3): with K̃_p = K_ij + K_ijᵀ (i < j) or K_ii,

    combine(W)  = Σ_ij W_ij K_ij = Σ_p W_p K̃_p                    (W symmetric n×n)
    contract(B) = G,  G_ij = ⟨K_ij, B⟩ = Σ_μν K_ij[μ, ν] B[μ, ν]    (B symmetric P×P)

both accumulated in float64 whatever the storage precision.
"""
from __future__ import annotations

import numpy as np

__all__ = ["BlockSource", "is_source", "lower_weights", "lower_weights_rows"]


def is_source(blocks) -> bool:
    """True for a :class:`BlockSource` (the primitives of kren.linalg dispatch on it)."""
    return isinstance(blocks, BlockSource)


def lower_weights(B: np.ndarray) -> np.ndarray:
    """B weighted for a sum over the lower triangle: 2 B[μ, ν] (μ > ν), B[μ, μ], 0 (μ < ν), so
    that Σ_{lower} w·(K_ij + K_ji) = 2⟨K_ij, B⟩ for symmetric B (float64, (P, P)); written by
    row blocks (:func:`lower_weights_rows`), no P×P temporaries."""
    B = np.asarray(B, dtype=np.float64)
    P = B.shape[0]
    Bw = np.empty((P, P))
    for s in range(0, P, 256):
        e = min(s + 256, P)
        lower_weights_rows(B, s, e, Bw[s:e, :e])
        Bw[s:e, e:] = 0.0
    return Bw


def lower_weights_rows(B: np.ndarray, r0: int, r1: int, out: np.ndarray) -> np.ndarray:
    """Rows r0:r1, columns 0:r1 of :func:`lower_weights` (B) in ``out`` ((r1 − r0, r1), any
    strides): 2B left of the diagonal square, its lower triangle ×2 with B's diagonal, 0 above."""
    np.multiply(B[r0:r1, :r0], 2.0, out=out[:, :r0])
    sq = B[r0:r1, r0:r1]
    d = np.tril(sq, -1)
    d *= 2.0
    k = np.arange(r1 - r0)
    d[k, k] = sq[k, k]
    out[:, r0:r1] = d
    return out


class BlockSource:
    """Base of the kernel-tensor sources (module docstring).

    Subclasses set ``pairs`` (n_pairs, 2), ``n``, ``P``, ``dtype`` (storage or tile precision)
    and implement :meth:`combine`, :meth:`contract`, :meth:`symmetrized` and ``nbytes``.
    ``kind`` names the mode ("packed", "streamed", "torch").
    """

    kind = ""
    ndim = 3

    @property
    def shape(self) -> tuple:
        return (len(self.pairs), self.P, self.P)

    def __len__(self) -> int:
        return len(self.pairs)

    def check_pairs(self, pairs) -> None:
        """The pairs the generated code passes must be the source's own."""
        pairs = np.asarray(pairs)
        if pairs.shape != self.pairs.shape or not np.array_equal(pairs, self.pairs):
            raise ValueError(f"this {self.kind} kernel tensor holds the pairs "
                             f"{self.pairs.tolist()}, got {pairs.tolist()}")

    def combine(self, W) -> np.ndarray:
        raise NotImplementedError

    def contract(self, B) -> np.ndarray:
        raise NotImplementedError

    def symmetrized(self, p: int) -> np.ndarray:
        """K̃_p as a full (P, P) float64 array (used by the exact Hessian)."""
        raise NotImplementedError

    def block(self, i: int, j: int) -> np.ndarray:
        """K_ij (P×P), recomputed or unpacked (K_ji = K_ijᵀ)."""
        raise NotImplementedError

    def hessian_terms(self, pairs, cho, z, mu=None, V=None, sign=1.0):
        """T1, T2 of :func:`kren.linalg.pair_hessian_terms` over K̃_p = :meth:`symmetrized`
        (unpacked or recomputed once and kept between Hessians, :func:`kren.sym_hessian.cached_stack`)."""
        from ..linalg import sym_hessian_terms
        self.check_pairs(pairs)
        return sym_hessian_terms(self.symmetrized, self.pairs, cho, z, mu, V, sign, owner=self)

    # ------------------------------------------------------------------ shared helpers
    def _weights(self, W) -> np.ndarray:
        W = np.asarray(W, dtype=np.float64)
        n = self.n
        if W.shape != (n, n) or not np.allclose(W, W.T, rtol=1e-12, atol=1e-14):
            raise ValueError(f"combine needs a symmetric {n}×{n} W, got shape {W.shape}")
        return W

    def _gram_to_G(self, g: np.ndarray) -> np.ndarray:
        """G (n×n) from g_p = Σ_lower w K̃_p (lower_weights): G_ij = g_p/2 (i < j), g_p (i = j)."""
        n = self.n
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        vals = np.where(i == j, g, 0.5 * g)
        G = np.zeros((n, n))
        G[i, j] = vals
        G[j, i] = vals
        return G

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self.pairs)} blocks of {self.P}×{self.P}, "
                f"{self.dtype}, {self.nbytes / 2**20:.1f} MiB)")
