"""Linear-algebra primitives the generated code is printed in terms of.

Nothing here is physics: these are the operations the SymPy printer of ``derivations.printer``
maps matrix expressions onto, so that the generated action, gradient and predictor never form an
explicit inverse and never loop over samples in Python.

Kernel tensors over the training set are stored as blocks ``K[p]`` (shape (P, P)) for a list of
patch pairs ``pairs[p] = (i, j)`` with i ≤ j; the block (j, i) is K[p]ᵀ.
"""
from __future__ import annotations

import os

import numpy as np
from scipy.linalg import cho_factor as _cho_factor, cho_solve as _cho_solve
from scipy.linalg import lapack as _lapack

from .errorbase import KrenError


_CONTROLLER = None

#: BLAS thread policy (documented in :func:`blas_threads`): dense factorizations, inverses and
#: products on matrices of size below THREADED_MIN run on one BLAS thread, larger ones on all
#: the cores the process may use. Override with :func:`set_blas_policy` or the environment
#: variable KREN_THREADED_MIN.
THREADED_MIN = int(os.environ.get("KREN_THREADED_MIN", "700"))
#: Kept for compatibility: the largest size run on one thread (THREADED_MIN − 1).
SINGLE_THREAD_MAX = THREADED_MIN - 1


def set_blas_policy(threaded_min: int) -> None:
    """Set the size from which dense linear algebra uses every core (:func:`blas_threads`)."""
    global THREADED_MIN, SINGLE_THREAD_MAX
    THREADED_MIN = max(1, int(threaded_min))
    SINGLE_THREAD_MAX = THREADED_MIN - 1


def _loadavg() -> float:
    """1-minute load average (0 where unknown)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


#: (wall, CPU) samples of this process, for its own share of the load average.
_SAMPLES: list = []
#: The window of the load average that :func:`_own_load` matches (seconds).
LOAD_WINDOW = 60.0


def _own_load(now: float | None = None, cpu: float | None = None) -> float:
    """This process's CPU use (cores) over about the last minute: what it contributes to the
    1-minute load average itself (its own pass threads keep it near 2 on two cores)."""
    import time
    now = time.monotonic() if now is None else now
    cpu = time.process_time() if cpu is None else cpu
    if not _SAMPLES or now - _SAMPLES[-1][0] >= 1.0:           # at most one sample a second
        _SAMPLES.append((now, cpu))
    while len(_SAMPLES) > 2 and now - _SAMPLES[1][0] >= LOAD_WINDOW:
        _SAMPLES.pop(0)
    t0, c0 = _SAMPLES[0]
    if now - t0 < 1.0:
        return 0.0
    return max(0.0, (cpu - c0) / (now - t0))


_own_load()                                   # the first sample: when kren.linalg was imported


#: Scans of /proc a busy test takes (the fewest running others counts: a process that ran
#: for an instant is not a held core).
PROC_SAMPLES = 2
#: Seconds a busy test's answer is reused (a scan reads every /proc/<pid>/stat: ~1 ms).
BUSY_TTL = 0.25
_BUSY: dict = {"t": -1.0, "cores": 0.0}
#: PF_KTHREAD in /proc/<pid>/stat's flags: kernel threads (memory compaction, DAMON, workers
#: woken by kren's own page faults) are not other processes' load.
_PF_KTHREAD = 0x00200000


def _others_running() -> int | None:
    """User processes other than this one whose main thread is running or runnable right now
    (state R in /proc/<pid>/stat, kernel threads excluded); None where /proc is not there."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    if "self" not in names:
        return None
    me, n = os.getpid(), 0
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                st = f.read()
        except OSError:
            continue                              # the process ended meanwhile
        fields = st[st.rfind(b")") + 2:].split()
        if len(fields) > 6 and fields[0] == b"R" and not int(fields[6]) & _PF_KTHREAD:
            n += 1
    return n


def _busy_cores() -> float:
    """Cores held by other processes. Where Linux's /proc tells: the user processes other
    than this one running right now (:func:`_others_running`, the fewer of PROC_SAMPLES scans,
    reused for BUSY_TTL seconds). Elsewhere: the 1-minute load average less this process's
    own CPU use over about the same minute (:func:`_own_load`; 0 where the load is unknown).
    The load average lags by a minute: a fit started just after another process finished saw
    that process's load and ran its factorizations on one thread (P = 1000 Cholesky + potri
    30.5 ms instead of 17.6 ms); the machine-wide count of runnable threads (procs_running)
    counts the kernel threads that kren's own large allocations wake."""
    import time
    now = time.monotonic()
    if now - _BUSY["t"] < BUSY_TTL:
        return _BUSY["cores"]
    others = _others_running()
    if others is None:
        load = _loadavg()
        return max(0.0, load - _own_load()) if load > 0 else 0.0
    for _ in range(PROC_SAMPLES - 1):
        if others <= 0:
            break
        others = min(others, _others_running())
    _BUSY.update(t=now, cores=float(others))
    return float(others)


def blas_threads(n: int) -> int | None:
    """BLAS threads for dense work on n×n matrices: 1, or None (all the cores).

    The policy (benchmarks/bench_scale.py --blas prints the figures):
    * below THREADED_MIN (700) always one thread: a factorization (Cholesky, potri) takes
      a few milliseconds and OpenBLAS's threads cost more than they save (idle two-core machine,
      Cholesky + potri, medians of 7: n = 700 12.0 ms on one thread, 7.3 ms on two; n = 1000
      30.5 → 17.6 ms; n = 1500 93.9 → 51.5 ms; until stop 17 the threshold was 1500);
    * from THREADED_MIN on, all the cores — unless other processes hold part of them
      (:func:`machine_busy`: their threads runnable right now, from Linux's /proc, or else the
      1-minute load average less this process's own CPU use over that minute; above a quarter
      of the cores and at least half a core; kren's own threads do not count): then one
      thread, because a threaded factorization whose threads
      wait for a held core runs 2–20× slower than a single-threaded one (measured on two
      cores at load 7–9: P = 1000 0.14 s against 2.9 s, P = 3000 2.6 s against 4.5 s for
      Cholesky + inverse; in a P = 3000 fit beside another process holding ~1.4 cores,
      Cholesky + inverse averaged 2.5 s an evaluation, mostly threaded, against 1.0–1.7 s on
      one thread measured alongside). On an idle machine two threads are
      expected to give 1.6–1.9× on the O(P³) work of large factorizations.
    Passes over kernel tensors are memory bound and spread over the cores by kren's own
    threads, each with one BLAS thread; the exact Hessian spreads its directions likewise.
    """
    if n < THREADED_MIN:
        return 1
    return 1 if machine_busy() else None


def machine_busy() -> bool:
    """True when kren should not spread dense work over the cores: one core only, or other
    processes hold more than max(0.5, cores/4) of them (:func:`_busy_cores`)."""
    from .kernels import _threads
    cores = _threads()
    return cores <= 1 or _busy_cores() > max(0.5, cores / 4)


def single_blas_thread():
    """Context manager limiting BLAS to one thread (threadpoolctl; one shared controller)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def blas_context(n: int):
    """The BLAS thread policy of :func:`blas_threads` for n×n work, as a context manager."""
    import contextlib
    return single_blas_thread() if blas_threads(n) == 1 else contextlib.nullcontext()


_lapack_context = blas_context


class NotPositiveDefiniteError(KrenError, np.linalg.LinAlgError):
    """A matrix that must be positive definite (A = T𝟙 + K_R, Q, 𝟙 + Q̄) is not."""


def _on_device(x) -> bool:
    """A matrix held on a PyTorch device (kren.tensors.torch_backend.DeviceMatrix)."""
    return bool(getattr(x, "kren_device", False))


def cho_factor(A: np.ndarray, what: str = "matrix", overwrite: bool = False):
    """Cholesky factor (c, lower) of a symmetric positive-definite matrix (a device matrix is
    factorized on its device, kren.tensors.torch_backend).

    ``overwrite=True``: A is a temporary the caller gives up and is *exactly* symmetric (the
    generated code's A = T𝟙 + K_R, kren.multi_linalg.multi_pair_combine); a contiguous float32
    or float64 A is then factorized in its own memory (A viewed in Fortran order: Aᵀ = A), with
    no copy, and c shares A's memory. The factor is the one the copying path gives."""
    if _on_device(A):
        return A.cholesky(what)
    if (overwrite and isinstance(A, np.ndarray) and A.ndim == 2 and A.shape[0] == A.shape[1]
            and A.dtype in (np.float32, np.float64) and A.flags.writeable
            and (A.flags.c_contiguous or A.flags.f_contiguous)):
        F = A if A.flags.f_contiguous else A.T
        potrf = _lapack.dpotrf if A.dtype == np.float64 else _lapack.spotrf
        with _lapack_context(A.shape[0]):
            c, info = potrf(F, lower=True, overwrite_a=True, clean=False)
        if info > 0:
            raise NotPositiveDefiniteError(f"{what} is not positive definite ({info}-th leading "
                                           "minor not positive definite)")
        if info < 0:
            raise ValueError(f"potrf: argument {-info} of the factorization of {what} is invalid")
        return c, True
    try:
        with _lapack_context(A.shape[0]):
            return _cho_factor(A, lower=True, check_finite=False)
    except np.linalg.LinAlgError as exc:
        raise NotPositiveDefiniteError(f"{what} is not positive definite ({exc})") from None


def cho_solve(cho, b: np.ndarray) -> np.ndarray:
    """A⁻¹ b from a Cholesky factor of A (a float32 factor: solved in float32, returned as
    float64)."""
    if _on_device(cho[0]):
        return cho[0].cho_solve(b)
    c, lower = cho
    if c.dtype == np.float32:
        # a float32 working-precision factor (kren.multi_linalg.float32_work): solve in float32
        # (scipy would copy the factor to float64 first), return float64
        with blas_context(c.shape[0]):
            x, info = _lapack.spotrs(c, np.asarray(b, dtype=np.float32), lower=lower)
        if info != 0:
            raise ValueError(f"spotrs failed with info={info}")
        return x.astype(np.float64)
    with blas_context(c.shape[0]):
        return _cho_solve(cho, b, check_finite=False)


def cho_logdet(cho) -> float:
    """log det A = 2 Σ log diag(L)."""
    if _on_device(cho[0]):
        return cho[0].cho_logdet()
    return 2.0 * float(np.sum(np.log(np.diagonal(cho[0]))))


def cho_inverse(cho) -> np.ndarray:
    """A⁻¹ from a Cholesky factor of A (LAPACK potri), symmetrized."""
    if _on_device(cho[0]):
        return cho[0].cho_inverse()
    c, lower = cho
    potri = _lapack.dpotri if c.dtype == np.float64 else _lapack.spotri
    with _lapack_context(c.shape[0]):
        inv, info = potri(c, lower=lower)
    if info != 0:
        raise NotPositiveDefiniteError(f"potri failed with info={info}")
    return mirror(inv, lower)


def inverse_minus_outer(cho, z: np.ndarray, block: int = 512) -> np.ndarray:
    """B = A⁻¹ − z zᵀ from a Cholesky factor of A (THEORY §3: the matrix the gradient contracts
    with the kernel blocks): potri's copy of the factor becomes B, mirrored and then reduced by
    z zᵀ in place, block of rows by block of rows (no P×P temporaries besides B itself: at
    P = 10⁴ each is 800 MB). The same numbers as −np.outer(z, z) + cho_inverse(cho). A device
    factor gives a device matrix."""
    z = np.asarray(z, dtype=np.float64)
    if _on_device(cho[0]):
        return cho_inverse(cho) - np.outer(z, z)
    B = cho_inverse(cho)
    if B.shape != (z.shape[0], z.shape[0]):
        raise ValueError(f"z must have length {B.shape[0]}, got shape {z.shape}")
    for s in range(0, B.shape[0], block):
        e = min(s + block, B.shape[0])
        B[s:e] -= np.outer(z[s:e], z)
    return B


def shifted(K, T):
    """K + T𝟙, adding T to the diagonal of K IN PLACE (K a temporary the caller owns, e.g. the
    renormalized kernel inside an action, a NumPy array or a device matrix): no P×P identity
    and no second P×P array are formed. Returns K."""
    if _on_device(K):
        K.t.diagonal().add_(float(T))
        return K
    K = np.asarray(K)
    K.flat[::K.shape[0] + 1] += T
    return K


def mirror(M: np.ndarray, lower: bool = True, block: int = 512) -> np.ndarray:
    """Copy the lower (or upper) triangle of a square M onto the other one, in place and by
    blocks (no P×P temporaries: at P = 10⁴ a temporary is 800 MB). Returns M."""
    P = M.shape[0]
    for s in range(0, P, block):
        e = min(s + block, P)
        d = M[s:e, s:e]
        d[...] = (np.tril(d) + np.tril(d, -1).T) if lower else (np.triu(d) + np.triu(d, 1).T)
        if lower:
            M[s:e, e:] = M[e:, s:e].T
        else:
            M[e:, s:e] = M[s:e, e:].T
    return M


def cho_diagonal(cho) -> np.ndarray:
    """diag(L) of a Cholesky factor, as a NumPy vector (any backend)."""
    c = cho[0]
    if isinstance(c, np.ndarray):
        return np.diagonal(c)
    return np.asarray(c.diagonal())


def cho_to_numpy(cho):
    """A Cholesky factor (c, lower) with c as a NumPy array (a device factor is copied once)."""
    c = cho[0]
    return cho if isinstance(c, np.ndarray) else (np.asarray(c), cho[1])


def triu_pairs(n: int) -> np.ndarray:
    """All pairs (i, j), i ≤ j, row-major: the storage order of a CNN kernel tensor."""
    i, j = np.triu_indices(n)
    return np.stack([i, j], axis=1).astype(np.intp)


def diag_pairs(n: int) -> np.ndarray:
    """Pairs (i, i): the storage order of an LCN kernel tensor."""
    i = np.arange(n)
    return np.stack([i, i], axis=1).astype(np.intp)


def _is_source(blocks) -> bool:
    from .tensors.source import is_source
    return is_source(blocks)


def _flat(blocks: np.ndarray) -> np.ndarray:
    return blocks.reshape(blocks.shape[0], -1)


def pair_combine(W: np.ndarray, blocks: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Σ_ij W_ij K_ij for a symmetric n×n W over stored blocks (i ≤ j).

    Σ_ij W_ij K_ij = S + Sᵀ with S = Σ_i (W_ii/2) K_ii + Σ_{i<j} W_ij K_ij: one pass (a GEMV)
    over the tensor, accumulated in float64 whatever the blocks' precision (float32 blocks are
    cast chunk by chunk, :mod:`kren.tensors.mixed`). ``blocks`` may also be a
    :class:`kren.tensors.BlockSource` (packed, streamed or on a PyTorch device), which performs
    the pass itself.
    """
    if _is_source(blocks):
        blocks.check_pairs(pairs)
        return blocks.combine(W)
    W = np.asarray(W)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or not np.allclose(W, W.T, rtol=1e-12, atol=1e-14):
        raise ValueError(f"pair_combine needs a symmetric square W, got shape {W.shape}")
    coef = W[pairs[:, 0], pairs[:, 1]].astype(np.float64, copy=True)
    coef[pairs[:, 0] == pairs[:, 1]] *= 0.5
    P1, P2 = blocks.shape[1:]
    if blocks.dtype == np.float64:
        S = (coef @ _flat(blocks)).reshape(P1, P2)
    else:
        from .tensors.mixed import combine_rows
        S = combine_rows(coef, _flat(blocks)).reshape(P1, P2)
    return S + S.T


def pair_contract(blocks: np.ndarray, B: np.ndarray, pairs: np.ndarray, n: int) -> np.ndarray:
    """n×n symmetric matrix G_ij = Σ_μν K_ij[μ, ν] B[μ, ν] for a symmetric B (one pass,
    accumulated in float64 whatever the blocks' precision; B is never rounded to the blocks'
    precision). ``blocks`` may be a :class:`kren.tensors.BlockSource` (see :func:`pair_combine`).

    Entries for pairs not stored (off-diagonal ones of an LCN tensor) are zero.
    """
    if _is_source(blocks):
        blocks.check_pairs(pairs)
        return blocks.contract(B)
    b = np.ascontiguousarray(B, dtype=np.float64).ravel()
    if blocks.dtype == np.float64:
        g = _flat(blocks) @ b
    else:
        from .tensors.mixed import contract_rows
        g = contract_rows(_flat(blocks), b)
    G = np.zeros((n, n))
    G[pairs[:, 0], pairs[:, 1]] = g
    G[pairs[:, 1], pairs[:, 0]] = g
    return G


def full_combine(W: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Σ_ij W_ij K_ij over a full tensor of blocks, shape (n, n, ...) (test×train or test diagonal)."""
    n = blocks.shape[0]
    return np.tensordot(np.asarray(W, dtype=blocks.dtype).reshape(n * n),
                        blocks.reshape((n * n,) + blocks.shape[2:]), axes=1)


def diag_combine(q: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Σ_i q_i K_ii over the diagonal blocks K_ii, shape (n, ...) -> (...) (LCN test×train blocks
    of kren.kernels.cross_kernels(..., diagonal=True) or test diagonals of test_diagonal(...,
    diagonal=True)): one tensordot over the patch index."""
    blocks = np.asarray(blocks)
    q = np.asarray(q, dtype=blocks.dtype)
    if q.ndim != 1 or blocks.ndim < 1 or q.shape[0] != blocks.shape[0]:
        raise ValueError(f"diag_combine needs q of shape (n,) and blocks of shape (n, ...) with the "
                         f"same n, got q {q.shape} and blocks {blocks.shape}")
    return np.tensordot(q, blocks, axes=1)


def sym(A: np.ndarray) -> np.ndarray:
    """(A + Aᵀ)/2."""
    return 0.5 * (A + A.T)


def pair_hessian_terms(blocks: np.ndarray, pairs: np.ndarray, cho, z: np.ndarray, mu=None,
                       V=None, sign: float = 1.0):
    """The two P-contractions in the second derivative of log det A + yᵀA⁻¹y.

    Over a family of symmetric directions D_a, with A = LLᵀ (``cho``) and z = A⁻¹y,
        T1[a, b] = Tr(A⁻¹ D_a A⁻¹ D_b),   T2[a, b] = zᵀ D_a A⁻¹ D_b z.
    The family: for each pair p = (i, j) of ``pairs``, D_p = K̃_p = K_ij + K_ijᵀ (i < j) or
    K_ii, minus M_p = μ_iμ_jᵀ + μ_jμ_iᵀ (or μ_iμ_iᵀ) when ``mu`` (n, P) is given; then, when
    ``V`` (P, n) is given, D_{n_p+q} = sign · V E_q Vᵀ for the same pairs q = (k, l), E_q the
    symmetric basis matrix (e_k e_lᵀ + e_l e_kᵀ, or e_k e_kᵀ). Those low-rank directions cost
    only n×n work: with W = A⁻¹V, M = VᵀW, ζ = Vᵀz, the blocks are Tr(Wᵀ D_p W E_q),
    (Wᵀ D_p z)ᵀ E_q ζ, Tr(M E_q M E_r) and (E_q ζ)ᵀ M (E_r ζ).
    Computed in the symmetric form (:func:`sym_hessian_terms`): T1 is the Gram matrix of the
    symmetric L⁻¹D_pL⁻ᵀ (one LAPACK sygst each), packed (lower triangle, off-diagonal entries
    ×√2), one SYRK.
    ``blocks`` may be a :class:`kren.tensors.BlockSource`.
    """
    if _is_source(blocks):
        return blocks.hessian_terms(pairs, cho, z, mu, V, float(sign))
    pairs = np.asarray(pairs)

    def get(p):
        i, j = pairs[p]
        K = np.asarray(blocks[p], dtype=np.float64)
        return K + K.T if i != j else np.array(K)
    return sym_hessian_terms(get, pairs, cho, z, mu, V, float(sign))


_HESSIAN_DTYPE = [np.dtype(np.float64)]


class hessian_precision:
    """Context manager: the P³ products of :func:`sym_hessian_terms` (L⁻¹D_aL⁻ᵀ) in ``dtype``.

    float64 by default (the generated ``hessian*`` are exact). The quasi-Newton stage
    (kren.saddle.quasi) asks for float32 — 1.5–3× the speed of float64 — because its Hessians
    only choose directions: the gradient, the line search and the convergence test stay
    float64, and a Hessian accurate to ~1e-5 still gives Newton's convergence to any tol."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def __enter__(self):
        _HESSIAN_DTYPE.append(self.dtype)
        return self

    def __exit__(self, *exc):
        _HESSIAN_DTYPE.pop()
        return False


def sym_hessian_terms(get, pairs, cho, z, mu=None, V=None, sign=1.0, owner=None):
    """T1, T2 of :func:`pair_hessian_terms` with ``get(p)`` returning K̃_p (P×P float64), kept
    between Hessians for a block source ``owner`` (:func:`kren.sym_hessian.cached_stack`): S_a = L⁻¹D_aL⁻ᵀ by one LAPACK sygst per direction, the
    Gram matrix ⟨S_a, S_b⟩ of their packed lower triangles by SYRK, on every core
    (:mod:`kren.sym_hessian`), in the precision of :class:`hessian_precision`."""
    from .sym_hessian import sym_hessian_terms as terms
    return terms(get, pairs, cho, z, mu, V, sign, owner=owner, dtype=_HESSIAN_DTYPE[-1])


def assemble_hessian_terms(T1, T2, U, Gv, pairs, z, V=None, W=None, sign=1.0):
    """The blocks of :func:`pair_hessian_terms` from the per-direction results: T1, T2 over the
    kernel directions, U[p] = D_p z and, with ``V`` (P, n) and W = A⁻¹V, Gv[p] = Wᵀ D_p W
    (NumPy arrays, whichever backend computed them)."""
    T2 = 0.5 * (T2 + T2.T)
    if V is None:
        return T1, T2
    pairs = np.asarray(pairs)
    n_p = len(pairs)
    k, l = pairs[:, 0], pairs[:, 1]
    diag = k == l
    Gs = Gv + Gv.transpose(0, 2, 1)
    X1 = Gs[:, k, l]                                             # Tr(Wᵀ D_p W E_q)
    X1[:, diag] *= 0.5
    zeta = V.T @ z
    Bz = np.zeros((n_p, V.shape[1]))                             # rows E_q ζ
    Bz[np.arange(n_p), k] += zeta[l]
    Bz[np.arange(n_p), l] += np.where(diag, 0.0, zeta[k])
    Mv = V.T @ W
    X2 = (U @ W) @ Bz.T                                          # (Wᵀ D_p z)ᵀ E_q ζ
    from .checks import packed_sandwich
    T1 = np.block([[T1, sign * X1], [sign * X1.T, packed_sandwich(Mv, pairs)]])
    T2 = np.block([[T2, sign * X2], [sign * X2.T, Bz @ Mv @ Bz.T]])
    return T1, T2
