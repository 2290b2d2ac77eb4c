"""Stored kernel tensor in packed symmetric form: half the memory of the stacked blocks.

Everything the action needs of the blocks K_ij (i ≤ j) comes through the symmetric combinations
K̃_p = K_ij + K_ijᵀ (i < j) or K_ii (THEORY §3; :mod:`kren.tensors.source`), so only the lower
triangle of each K̃_p is stored, in row tiles: tile t holds rows r0:r1 and columns 0:r1 (the
upper part of its diagonal square rides along, r/P of the storage), flattened one after another.
n_pairs · (P(P+1)/2 + O(P r)) values instead of n_pairs · P², in float64 or float32.

    combine(W) = Σ_p W_p K̃_p : one pass (cᵀD, float64 accumulation) then the tiles unpacked
    contract(B) = G          : B weighted for the lower triangle, one pass (D b)
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .mixed import combine_rows, contract_rows
from .source import BlockSource, lower_weights_rows
from .tiles import TileMaker, row_tiles, torch_single_thread

__all__ = ["PackedBlocks", "packed_nbytes", "tile_rows"]


#: Bytes of the ordered blocks a build worker holds at a time (one column chunk of a tile).
BUILD_CHUNK_BYTES = 16 * 2**20


def tile_rows(P: int) -> int:
    """Rows per stored tile: P/64 clipped to [8, 256] (the diagonal squares cost r/P extra)."""
    return int(np.clip(P // 64, 8, 256))


def _layout(P: int, rows: int):
    tiles, off = [], 0
    for r0, r1 in row_tiles(P, rows):
        tiles.append((r0, r1, off))
        off += (r1 - r0) * r1
    return tiles, off


def packed_nbytes(n_pairs: int, P: int, dtype) -> int:
    """Bytes of the packed storage of n_pairs blocks of P×P."""
    return n_pairs * _layout(P, tile_rows(P))[1] * np.dtype(dtype).itemsize


def partners(pairs: np.ndarray, n: int) -> list[np.ndarray]:
    """For each patch i, the patches j with (i, j) or (j, i) among the pairs (ordered tiles)."""
    out = [set() for _ in range(n)]
    for i, j in pairs.tolist():
        out[i].add(j)
        out[j].add(i)
    return [np.array(sorted(s), dtype=np.intp) for s in out]


class PackedBlocks(BlockSource):
    """Stored packed K̃_p (module docstring). Build with :meth:`build`."""

    kind = "packed"

    def __init__(self, data, tiles, pairs, n, P, maker):
        self.data, self.tiles = data, tiles
        self.pairs, self.n, self.P = np.asarray(pairs, dtype=np.intp), int(n), int(P)
        self.dtype = data.dtype
        self.maker = maker

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    @property
    def flags(self):
        """The flags of the stored array (read-only once built)."""
        return self.data.flags

    def arrays(self) -> list:
        """The arrays held (for kren.cache)."""
        return [self.data]

    @classmethod
    def build(cls, prep, pairs, dtype=np.float64, threads: int | None = None) -> "PackedBlocks":
        """Compute every tile of every K̃_p from the prepared patches (:class:`TileMaker`, in
        ``dtype``) and store it; the row tiles are spread over the cores."""
        from ..kernels import _threads
        from ..linalg import single_blas_thread
        pairs = np.asarray(pairs, dtype=np.intp)
        P, n = prep.P, prep.arch.n
        maker = TileMaker(prep, dtype)
        tiles, L = _layout(P, tile_rows(P))
        data = np.empty((len(pairs), L), dtype=maker.dtype)
        part = partners(pairs, n)

        n_ord = sum(len(js) for js in part)
        slot = [{int(j): k for k, j in enumerate(js)} for js in part]
        itemsize = np.dtype(maker.dtype).itemsize

        def work(tile):
            # every ordered block K_ij of the tile's rows, by column chunks of at most
            # BUILD_CHUNK_BYTES, then each K̃_p = K_ij + K_ji written once (no zeroing, no +=)
            r0, r1, off = tile
            r = r1 - r0
            dst = data[:, off:off + r * r1].reshape(len(pairs), r, r1)
            cw = int(max(1, min(r1, BUILD_CHUNK_BYTES // max(1, n_ord * r * itemsize))))
            flat = np.empty(n_ord * r * cw, dtype=maker.dtype)
            for c0 in range(0, r1, cw):
                c1 = min(c0 + cw, r1)
                w = c1 - c0
                bufs, at = [], 0
                for i in range(n):
                    k = len(part[i])
                    b = flat[at:at + k * r * w].reshape(k, r, w)
                    at += k * r * w
                    if k:
                        maker.ordered(i, part[i], r0, r1, c1, out=b, c0=c0)
                    bufs.append(b)
                for p, (i, j) in enumerate(pairs.tolist()):
                    a = bufs[i][slot[i][j]]
                    if i == j:
                        dst[p, :, c0:c1] = a
                    else:
                        np.add(a, bufs[j][slot[j][i]], out=dst[p, :, c0:c1])

        threads = threads or _threads()
        with single_blas_thread(), torch_single_thread():
            if threads == 1:
                for t in tiles:
                    work(t)
            else:
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(work, tiles))
        data.flags.writeable = False
        return cls(data, tiles, pairs, n, P, maker)

    # ------------------------------------------------------------------ passes
    def _unpack(self, flat: np.ndarray) -> np.ndarray:
        P = self.P
        K = np.empty((P, P))
        for r0, r1, off in self.tiles:
            K[r0:r1, :r1] = flat[off:off + (r1 - r0) * r1].reshape(r1 - r0, r1)
        for r0, r1, _ in self.tiles:
            K[:r0, r0:r1] = K[r0:r1, :r0].T
        return K

    def combine(self, W) -> np.ndarray:
        """Σ_ij W_ij K_ij = Σ_p W_p K̃_p, (P, P) float64."""
        W = self._weights(W)
        coef = W[self.pairs[:, 0], self.pairs[:, 1]]
        return self._unpack(combine_rows(coef, self.data))

    def contract(self, B) -> np.ndarray:
        """G_ij = ⟨K_ij, B⟩ for symmetric B, (n, n) float64."""
        B = np.asarray(B, dtype=np.float64)
        b = np.empty(self.data.shape[1])
        for r0, r1, off in self.tiles:                   # lower_weights(B), tile by tile
            lower_weights_rows(B, r0, r1, b[off:off + (r1 - r0) * r1].reshape(r1 - r0, r1))
        return self._gram_to_G(contract_rows(self.data, b))

    def symmetrized(self, p: int) -> np.ndarray:
        return self._unpack(np.asarray(self.data[p], dtype=np.float64))

    def block(self, i: int, j: int) -> np.ndarray:
        a, b = min(i, j), max(i, j)
        K = self.maker.ordered(a, [b], 0, self.P, self.P)[0].astype(np.float64)
        return K if i <= j else K.T
