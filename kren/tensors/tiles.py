"""Tiles of the local kernels K_ij over the training set, computed from the prepared patches.

Every train×train pass of the large-P modes (:mod:`kren.tensors.packed` builds its storage from
them, :mod:`kren.tensors.streamed` recomputes them on every pass) asks for the same thing: the
rows r0:r1 and the columns 0:c1 of the blocks K_ij(x^μ, x^ν) (THEORY §2) of one patch i against
a list of patches j, i.e. a (len(js), r1 − r0, c1) array

    K_ij[μ, ν] = k(C_ij(x^μ, x^ν); C_ii(x^μ, x^μ), C_jj(x^ν, x^ν)),   C_ij = x_i · x_j/(λ0 M).

Over ordered pairs (i, j) and (j, i) these tiles cover everything: K_ji[μ, ν] = K_ij[ν, μ].

erf has a fast path: with x̂_i = x_i √(2/(λ0 M)) / √(1 + 2 C_ii) (patches rescaled once),
K = (2/π) arcsin(2c/√((1 + 2a)(1 + 2b))) = (2/π) arcsin(x̂_i · x̂_j), one matrix product and one
arcsin per entry (the same closed form as :mod:`kren.activations`). The arcsin is the cost of a
pass. Which arcsin runs (:func:`numpy_simd_arcsin`): NumPy's where NumPy vectorizes it (its
SVML loops, on CPUs with AVX-512: 0.92 ns an entry in float64 against PyTorch's 3.3, measured on
a 2-core AVX-512 EPYC); elsewhere NumPy calls libm entry by entry and, when PyTorch is installed,
its vectorized ``asin`` (within 1 ulp of NumPy's, 2–3× faster there) runs in place on the tile,
one thread per worker (:func:`torch_single_thread`); KREN_TORCH_KERNELS=0 turns PyTorch off.
The choice depends on the machine only, never on timings, so a machine always computes the same
kernels. Every other activation goes through its ``kernel_inplace`` with the variances of the
tile's rows and columns.
"""
from __future__ import annotations

import contextlib
import math
import os

import numpy as np

from .. import activations

__all__ = ["TileMaker", "row_tiles", "torch_single_thread", "arcsin_inplace", "numpy_simd_arcsin"]

_TORCH = None


def _torch_or_none():
    global _TORCH
    if _TORCH is None:
        _TORCH = False
        if os.environ.get("KREN_TORCH_KERNELS", "1") != "0":
            try:
                import torch
                _TORCH = torch
            except ImportError:
                pass
    return _TORCH or None


#: Inputs from which the tiles use PyTorch's asin (below, importing PyTorch costs more).
TORCH_MIN_P = 1000


def numpy_simd_arcsin() -> bool:
    """Whether NumPy's arcsin is vectorized on this machine: NumPy dispatches it to SVML loops
    on CPUs with AVX512_SKX (module docstring); elsewhere it calls libm one entry at a time."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:                                     # NumPy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return False
    return bool(features.get("AVX512_SKX", False))


def arcsin_inplace(x: np.ndarray, use_torch: bool = True) -> np.ndarray:
    """x ← arcsin(x) (PyTorch's vectorized asin when available and asked, else NumPy's)."""
    torch = _torch_or_none() if use_torch else None
    if torch is None or not x.flags.c_contiguous:
        return np.arcsin(x, out=x)
    t = torch.from_numpy(x)
    torch.asin(t, out=t)
    return x


@contextlib.contextmanager
def torch_single_thread():
    """PyTorch on one intra-op thread while kren's own workers run tiles (restored after)."""
    torch = _TORCH or None
    if torch is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def row_tiles(P: int, rows: int) -> list[tuple[int, int]]:
    """Consecutive row ranges [(r0, r1)] of at most ``rows`` rows covering 0..P."""
    rows = max(1, int(rows))
    return [(s, min(s + rows, P)) for s in range(0, P, rows)]


class TileMaker:
    """Computes tiles of K_ij (module docstring) for one prepared input set.

    ``prep``: a :class:`kren.prepared.Prepared`; ``dtype``: float64 or float32 (the precision
    of the tiles; float32 tiles are rounded once from a float32 product and closed form).
    ``covariance=True`` gives the local covariances C_ij (the linear kernel).
    """

    def __init__(self, prep, dtype=np.float64, covariance: bool = False):
        arch = prep.arch
        self.dtype = np.dtype(dtype)
        self.P, self.n = prep.P, arch.n
        self.act = activations.LINEAR if covariance else arch.act
        scale = 1.0 / (arch.lambda0 * arch.M)
        var = np.asarray(prep.var, dtype=np.float64)
        Z = np.asarray(prep.patches, dtype=np.float64)
        self.fast = self.act is activations.ERF
        if self.fast:
            s = np.sqrt(2.0 * scale / (1.0 + 2.0 * var))               # (n, P)
            self.Z = np.ascontiguousarray((Z * s[:, :, None]).astype(self.dtype))
            self.scale = 1.0
        else:
            self.Z = np.ascontiguousarray(Z.astype(self.dtype))
            self.scale = scale
        self.var = var.astype(self.dtype)
        self.use_torch = (self.fast and self.P >= TORCH_MIN_P and not numpy_simd_arcsin()
                          and _torch_or_none() is not None)

    @property
    def factor(self) -> float:
        """The constant that :meth:`ordered` with ``raw=True`` leaves out (2/π for erf)."""
        return 2.0 / math.pi if self.fast else 1.0

    def ordered(self, i: int, js, r0: int, r1: int, c1: int, out: np.ndarray | None = None,
                raw: bool = False, c0: int = 0) -> np.ndarray:
        """K_ij[r0:r1, c0:c1] for every j of ``js``, shape (len(js), r1 − r0, c1 − c0), in
        ``out`` when given (contiguous, of that shape and the maker's dtype). ``raw=True``:
        K/:attr:`factor` (a linear pass can apply the constant to its few coefficients instead
        of every entry)."""
        js = np.asarray(js, dtype=np.intp)
        r = r1 - r0
        shape = (len(js), r, c1 - c0)
        if out is None:
            out = np.empty(shape, dtype=self.dtype)
        Zi = self.Z[i, r0:r1]                                           # (r, M)
        if len(js) == self.n and np.array_equal(js, np.arange(self.n)):
            Zj = self.Z[:, c0:c1]                                        # a view, (n, c, M)
        else:
            Zj = self.Z[js, c0:c1]
        np.matmul(Zi[None], Zj.transpose(0, 2, 1), out=out)
        if self.fast:
            arcsin_inplace(out, self.use_torch)
            if not raw:
                out *= 2.0 / math.pi
            return out
        if self.scale != 1.0:
            out *= self.scale
        vi = self.var[i, r0:r1]
        for k, j in enumerate(js):
            self.act.kernel_inplace(out[k], vi, self.var[j, c0:c1])
        return out

    def symmetrized(self, i: int, j: int) -> np.ndarray:
        """K̃ = K_ij + K_ijᵀ (i ≠ j) or K_ii, the full (P, P) block in float64."""
        P = self.P
        K = self.ordered(i, [j], 0, P, P)[0].astype(np.float64)
        if i != j:
            K += K.T
        else:
            K = 0.5 * (K + K.T)
        return K
