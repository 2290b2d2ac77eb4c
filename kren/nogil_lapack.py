"""Two LAPACK/BLAS routines called so that they release the GIL: ``sygst`` and ``syrk``.

SciPy's Python wrappers of BLAS and LAPACK (``scipy.linalg.lapack``, ``scipy.linalg.blas``) hold
the GIL during the call, so kren's worker threads that run them in parallel (one BLAS thread
each) take turns on one core. The same routines are exported by ``scipy.linalg.cython_lapack``
and ``cython_blas`` as C function pointers (the ones SciPy's own Cython code calls); called
through ``ctypes`` they run with the GIL released. Where those pointers cannot be had (another
SciPy build), the Python wrappers are used instead: the same numbers, on one core at a time.

    sygst(a, L):  a ← L⁻¹ a L⁻ᵀ  on the lower triangle of a symmetric a (LAPACK ?sygst, itype 1),
                  L lower triangular; P³ flops (two triangular products would cost 2 P³).
    syrk(F):      F Fᵀ (full symmetric result) for a C-ordered F (k, m) (BLAS ?syrk).
"""
from __future__ import annotations

import ctypes

import numpy as np

__all__ = ["sygst", "syrk", "releases_gil"]

_FUNCS: dict | None = None


def _pointer(module, name: str):
    capsule = module.__pyx_capi__[name]
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))


def _funcs() -> dict:
    global _FUNCS
    if _FUNCS is None:
        _FUNCS = {}
        try:
            from scipy.linalg import cython_blas, cython_lapack
            vp = ctypes.c_void_p
            gst = ctypes.CFUNCTYPE(None, *([vp] * 8))
            rk = ctypes.CFUNCTYPE(None, *([vp] * 10))
            for t in "sd":
                _FUNCS[t + "sygst"] = gst(_pointer(cython_lapack, t + "sygst"))
                _FUNCS[t + "syrk"] = rk(_pointer(cython_blas, t + "syrk"))
        except Exception:                       # another SciPy build: the Python wrappers
            _FUNCS = {}
    return _FUNCS


def releases_gil() -> bool:
    """True when :func:`sygst` and :func:`syrk` run without the GIL (module docstring)."""
    return bool(_funcs())


def _int(v: int):
    return ctypes.byref(ctypes.c_int(int(v)))


def sygst(a: np.ndarray, L: np.ndarray) -> None:
    """a ← L⁻¹ a L⁻ᵀ in place, lower triangle (the upper one is left as it was).

    ``a`` and ``L``: Fortran-ordered (P, P), the same dtype (float32 or float64); ``L`` lower
    triangular with a nonzero diagonal (a Cholesky factor)."""
    if a.dtype != L.dtype or a.dtype not in (np.float32, np.float64):
        raise TypeError(f"sygst needs float32 or float64 arrays of one dtype, got {a.dtype}, "
                        f"{L.dtype}")
    if not (a.flags.f_contiguous and L.flags.f_contiguous and a.flags.writeable):
        raise ValueError("sygst needs a writeable Fortran-ordered a and a Fortran-ordered L")
    P = a.shape[0]
    if a.shape != (P, P) or L.shape != (P, P):
        raise ValueError(f"sygst needs square arrays of one size, got {a.shape}, {L.shape}")
    t = "s" if a.dtype == np.float32 else "d"
    f = _funcs().get(t + "sygst")
    if f is None:
        from scipy.linalg import lapack
        out, info = getattr(lapack, t + "sygst")(a, L, itype=1, lower=1, overwrite_a=1)
        if out is not a:
            a[...] = out
    else:
        info_c = ctypes.c_int(0)
        f(_int(1), ctypes.byref(ctypes.c_char(b"L")), _int(P), a.ctypes.data, _int(P),
          L.ctypes.data, _int(P), ctypes.byref(info_c))
        info = info_c.value
    if info != 0:
        raise np.linalg.LinAlgError(f"{t}sygst failed with info={info}")


def syrk(F: np.ndarray) -> np.ndarray:
    """F Fᵀ for a float64 or float32 F (k, m) whose rows are contiguous (a C-ordered array or
    a column slice of one): the full symmetric (k, k) result in F's precision (BLAS ?syrk on
    the upper triangle, mirrored)."""
    k, m = F.shape
    size = F.dtype.itemsize
    if F.dtype not in (np.float32, np.float64) or (m > 1 and F.strides[1] != size) \
            or F.strides[0] < size * m:
        raise ValueError("syrk needs a float32 or float64 F with contiguous rows")
    t = "s" if F.dtype == np.float32 else "d"
    f = _funcs().get(t + "syrk")
    if f is None:
        from scipy.linalg import blas
        C = getattr(blas, t + "syrk")(1.0, F.T, trans=1)
    else:
        # the rows of F, read in Fortran order, are the columns of an (m, k) matrix Fᵀ with
        # leading dimension the row stride: C = (Fᵀ)ᵀ Fᵀ, trans = 'T'
        C = np.zeros((k, k), dtype=F.dtype, order="F")
        num = ctypes.c_float if t == "s" else ctypes.c_double
        f(ctypes.byref(ctypes.c_char(b"U")), ctypes.byref(ctypes.c_char(b"T")), _int(k), _int(m),
          ctypes.byref(num(1.0)), F.ctypes.data, _int(max(1, F.strides[0] // size)),
          ctypes.byref(num(0.0)), C.ctypes.data, _int(k))
    C = np.triu(C)
    return C + np.triu(C, 1).T
