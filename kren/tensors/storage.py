"""How the solver holds the train×train kernel tensor: the storage modes and their choice.

``storage``:

* ``"stored"``   — the symmetric combinations K̃_p stored packed (:mod:`kren.tensors.packed`)
  in the estimator's ``dtype``: n_pairs · P(P+1)/2 values;
* ``"float32"``  — the same in float32 (half the memory again); every accumulation, the
  factorization and the gradient stay float64, so the solve converges to tol for the stored
  (float32-rounded) kernels;
* ``"streaming"`` — nothing stored (:mod:`kren.tensors.streamed`): every pass recomputes the
  tiles from the prepared patches; memory O(P²) plus one tile buffer per core;
* ``"auto"``     — ``"stored"`` when it fits the memory budget, else ``"float32"`` when that
  fits, else ``"streaming"``; the plan says which and why.

Scalar order parameters (FC, pooled CNN) need one P×P block, which is stored whatever the mode
(it is O(P²) like the streaming working set). ``device`` (a PyTorch device name) puts the
tensor and its passes on that device (:mod:`kren.tensors.torch_backend`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels import KernelTensor, _fmt, _threads, check_memory, get_memory_budget
from ..validation import InvalidParameterError
from .packed import PackedBlocks, packed_nbytes
from .streamed import StreamedBlocks, streamed_rows

__all__ = ["STORAGES", "StoragePlan", "plan_storage", "solver_tensor", "working_bytes",
           "storage_bytes"]

STORAGES = ("auto", "stored", "float32", "streaming")


@dataclass(frozen=True)
class StoragePlan:
    """The chosen mode (``"stored"``, ``"float32"``, ``"streaming"``), the storage dtype,
    the bytes it holds, and why (``reason``, one sentence)."""

    mode: str
    dtype: np.dtype
    nbytes: int
    reason: str
    device: str | None = None

    def describe(self) -> str:
        where = f" on {self.device}" if self.device else ""
        return f"{self.mode} ({self.dtype.name}{where}): {self.reason}"


def working_bytes(P: int) -> int:
    """The O(P²) working set of an evaluation: K_R, A, its factor, A⁻¹ and B (float64)."""
    return 5 * P * P * 8


def _stream_bytes(arch, P: int, dtype) -> int:
    n = arch.n
    width = n if arch.structure == "matrix" else 1
    rows = streamed_rows(width, P)
    return _threads() * (width * rows * P * (8 + np.dtype(dtype).itemsize) + 2 * rows * P * 8) \
        + 2 * n * P * arch.M * 8


def storage_bytes(arch, P: int, dtype="float64") -> dict:
    """Peak bytes of each mode for P inputs: {"float64", "float32"} (packed storage + working
    set + tile buffers) and "streaming" (working set + tile buffers), what
    :func:`plan_storage` checks against the budget."""
    dtype = np.dtype(dtype)
    work = working_bytes(P) + _stream_bytes(arch, P, dtype)
    n_p = len(arch.pairs)
    return {"float64": packed_nbytes(n_p, P, np.float64) + work,
            "float32": packed_nbytes(n_p, P, np.float32) + work, "streaming": work}


def plan_storage(arch, P: int, storage: str = "auto", dtype="float64",
                 memory_budget: int | None = None, device: str | None = None) -> StoragePlan:
    """The mode for P training inputs (module docstring); raises MemoryBudgetError naming the
    sizes when the requested mode (or, for "auto", even streaming) does not fit."""
    if storage not in STORAGES:
        raise InvalidParameterError(f"storage must be one of {STORAGES}, got {storage!r}")
    dtype = np.dtype(dtype)
    budget = get_memory_budget() if memory_budget is None else int(memory_budget)
    work = working_bytes(P)
    if arch.structure == "scalar":
        need = P * P * dtype.itemsize + work
        check_memory(need, f"the {P}×{P} kernel block", budget)
        return StoragePlan("stored", dtype, P * P * dtype.itemsize,
                           "one P×P block (scalar order parameter)", device)
    n_p = len(arch.pairs)
    size = {d: packed_nbytes(n_p, P, d) for d in (np.dtype(np.float64), np.dtype(np.float32))}
    stream = _stream_bytes(arch, P, dtype)
    fits = {d: size[d] + work + stream <= budget for d in size}
    what = f"{n_p} packed blocks of {P}×{P}"
    if storage == "stored":
        check_memory(size[dtype] + work + stream, f"{what} ({dtype.name}) and the working set",
                     budget, advice="storage='float32' or 'streaming' (or 'auto')")
        return StoragePlan("stored", dtype, size[dtype], "requested", device)
    if storage == "float32":
        f32 = np.dtype(np.float32)
        check_memory(size[f32] + work + stream, f"{what} (float32) and the working set", budget,
                     advice="storage='streaming' (nothing stored; or 'auto')")
        return StoragePlan("float32", f32, size[f32],
                           "requested (float32 storage, float64 arithmetic)", device)
    if storage == "streaming":
        check_memory(work + stream, f"the streaming working set (P = {P})", budget,
                     advice="a machine with more memory")
        return StoragePlan("streaming", dtype, 0, "requested", device)
    # auto
    if fits[dtype]:
        return StoragePlan("stored" if dtype == np.float64 else "float32", dtype, size[dtype],
                           f"{_fmt(size[dtype])} fits the memory budget of {_fmt(budget)}",
                           device)
    f32 = np.dtype(np.float32)
    if fits[f32]:
        return StoragePlan("float32", f32, size[f32],
                           f"float64 storage ({_fmt(size[np.dtype(np.float64)])}) exceeds the "
                           f"memory budget of {_fmt(budget)}; float32 storage "
                           f"({_fmt(size[f32])}) fits, arithmetic stays float64", device)
    check_memory(work + stream, f"the streaming working set (P = {P})", budget,
                 advice="a machine with more memory")
    return StoragePlan("streaming", dtype, 0,
                       f"even float32 storage ({_fmt(size[f32])}) exceeds the memory budget of "
                       f"{_fmt(budget)}: the blocks are recomputed on every pass", device)


def solver_tensor(arch, prep, plan: StoragePlan) -> KernelTensor:
    """The train×train tensor for the solver in the planned mode: a
    :class:`kren.kernels.KernelTensor` whose ``blocks`` is a stacked array (scalar structure),
    a :class:`PackedBlocks`, a :class:`StreamedBlocks` or a PyTorch source."""
    if arch.structure == "scalar":
        return arch.train_tensor(prep, dtype=plan.dtype, memory_budget=None)
    from ..kernels import check_kernel_scale
    # overflowing inputs are a named error before any tile is built (as in kren.kernels)
    check_kernel_scale(arch.act, prep.var, prep.var, plan.dtype, (prep.name, prep.name))
    pairs = arch.pairs
    if plan.device is not None:
        from .torch_backend import TorchBlocks
        blocks = TorchBlocks(prep, pairs, plan.dtype, plan.device,
                             stored=plan.mode != "streaming")
    elif plan.mode == "streaming":
        blocks = StreamedBlocks(prep, pairs, plan.dtype)
    else:
        blocks = PackedBlocks.build(prep, pairs, plan.dtype)
    return KernelTensor(blocks, pairs, arch.n, np.asarray(prep.mu, dtype=np.float64).copy(),
                        np.asarray(prep.var, dtype=np.float64).copy())
