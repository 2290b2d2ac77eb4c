"""Streaming kernel tensor: the blocks are never stored, every pass recomputes them.

Memory O(P²) for the P×P results (K_R, the weighted B) plus one tile buffer per core
(n × r × P values), whatever the number of blocks. Each pass walks the row tiles r0:r1 of the
lower triangle (columns 0:r1); for every patch i it computes the tiles K_ij[r0:r1, 0:r1] of all
its partners j at once (:class:`kren.tensors.tiles.TileMaker`: one batched product and the
closed form) and

    combine(W):  K_R[r0:r1, 0:r1] += Σ_j W_ij K_ij[r0:r1, 0:r1]      (one GEMV per i)
    contract(B): h_ij += Σ_lower w ⊙ K_ij[r0:r1, 0:r1]                 (one GEMV per i)

with the lower-triangle weights w of :func:`kren.tensors.source.lower_weights`, so that
G_ij = (h_ij + h_ji)/2 = ⟨K_ij, B⟩. The upper triangle of K_R is copied from the lower one.
Every sum is float64 (tiles in float32 are cast per tile). The tiles are the same numbers the
packed storage holds (:mod:`kren.tensors.packed`), so both modes agree to round-off.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .packed import partners
from .source import BlockSource, lower_weights
from .tiles import TileMaker, row_tiles, torch_single_thread

__all__ = ["StreamedBlocks", "streamed_rows", "TILE_BYTES"]

#: Target size of one worker's tile buffer (n × r × P values).
TILE_BYTES = 4 * 2**20


def streamed_rows(n_partners: int, P: int, itemsize: int = 8) -> int:
    """Rows per streamed tile: the buffer of n_partners × r × P values within TILE_BYTES."""
    return int(max(1, min(P, TILE_BYTES // max(1, n_partners * P * itemsize))))


class StreamedBlocks(BlockSource):
    """Recomputed K_ij (module docstring); ``prep`` a :class:`kren.prepared.Prepared`."""

    kind = "streamed"

    def __init__(self, prep, pairs, dtype=np.float64, threads: int | None = None,
                 rows: int | None = None):
        from ..kernels import _threads
        self.pairs = np.asarray(pairs, dtype=np.intp)
        self.n, self.P = prep.arch.n, prep.P
        self.maker = TileMaker(prep, dtype)
        self.dtype = self.maker.dtype
        self.partners = partners(self.pairs, self.n)
        width = max(len(j) for j in self.partners)
        self.rows = int(rows) if rows else streamed_rows(width, self.P, 8)
        self.tiles = row_tiles(self.P, self.rows)
        self.threads = int(threads or _threads())
        self.passes = 0
        self._local = threading.local()

    @property
    def nbytes(self) -> int:
        """Bytes held between passes: the rescaled patches and variances."""
        return int(self.maker.Z.nbytes + self.maker.var.nbytes)

    def arrays(self) -> list:
        return [self.maker.Z, self.maker.var]

    def work_bytes(self) -> int:
        """Bytes of the tile buffers of one pass (all workers)."""
        width = max(len(j) for j in self.partners)
        return self.threads * (width * self.rows * self.P * (8 + self.dtype.itemsize)
                               + 2 * self.rows * self.P * 8)

    # ------------------------------------------------------------------ passes
    def _map(self, work):
        from ..linalg import single_blas_thread
        # big tiles first: the last rows are the widest, so the workers finish together
        order = sorted(range(len(self.tiles)), key=lambda t: -self.tiles[t][1])
        with single_blas_thread(), torch_single_thread():
            if self.threads == 1:
                return [work(t) for t in order]
            with ThreadPoolExecutor(self.threads) as pool:
                return list(pool.map(work, order))

    def _buffer(self, size: int, dtype) -> np.ndarray:
        """A per-worker scratch array of at least ``size`` values (reused across tiles: fresh
        multi-megabyte arrays would be mapped and faulted in on every tile)."""
        key = np.dtype(dtype).str
        store = self._local.__dict__.setdefault("bufs", {})
        buf = store.get(key)
        if buf is None or buf.size < size:
            buf = store[key] = np.empty(size, dtype=dtype)
        return buf[:size]

    def _tile_sets(self, r0, r1):
        """Yield (i, js, tiles (len(js), r, r1) as float64, K / maker.factor) for every i."""
        maker = self.maker
        for i in range(self.n):
            js = self.partners[i]
            if len(js):
                shape = (len(js), r1 - r0, r1)
                size = shape[0] * shape[1] * shape[2]
                buf = maker.ordered(i, js, r0, r1, r1, raw=True,
                                    out=self._buffer(size, maker.dtype).reshape(shape))
                if buf.dtype != np.float64:
                    b64 = self._buffer(size, np.float64).reshape(shape)
                    np.copyto(b64, buf)
                    buf = b64
                yield i, js, buf

    def combine(self, W) -> np.ndarray:
        """Σ_ij W_ij K_ij, (P, P) float64, one streamed pass."""
        W = self._weights(W) * self.maker.factor
        P = self.P
        K = np.empty((P, P))

        def work(t):
            r0, r1 = self.tiles[t]
            acc = np.zeros((r1 - r0) * r1)
            for i, js, buf in self._tile_sets(r0, r1):
                acc += W[i, js] @ buf.reshape(len(js), -1)
            K[r0:r1, :r1] = acc.reshape(r1 - r0, r1)

        self._map(work)
        for r0, r1 in self.tiles:
            K[:r0, r0:r1] = K[r0:r1, :r0].T
        self.passes += 1
        return K

    def contract(self, B) -> np.ndarray:
        """G_ij = ⟨K_ij, B⟩ for symmetric B, (n, n) float64, one streamed pass."""
        Bw = lower_weights(B)
        n = self.n

        def work(t):
            r0, r1 = self.tiles[t]
            w = Bw[r0:r1, :r1].reshape(-1)
            h = np.zeros((n, n))
            for i, js, buf in self._tile_sets(r0, r1):
                h[i, js] += buf.reshape(len(js), -1) @ w
            return h

        h = np.sum(self._map(work), axis=0) * self.maker.factor
        self.passes += 1
        G = 0.5 * (h + h.T)
        keep = np.zeros((n, n), dtype=bool)
        keep[self.pairs[:, 0], self.pairs[:, 1]] = True
        keep |= keep.T
        return np.where(keep, G, 0.0)

    def symmetrized(self, p: int) -> np.ndarray:
        i, j = self.pairs[p]
        return self.maker.symmetrized(int(i), int(j))

    def block(self, i: int, j: int) -> np.ndarray:
        return self.maker.ordered(i, [j], 0, self.P, self.P)[0].astype(np.float64)
