"""Train×train kernel tensors for large P (issue 13): packed storage (float64 or float32 with
float64 arithmetic), streaming (recomputed tile by tile, O(P²) memory) and a PyTorch device
backend, all behind the linalg primitives the generated physics calls
(:mod:`kren.tensors.source`). The estimators choose the mode with ``storage=`` and report it.

Modules: :mod:`.tiles` (tiles of K_ij from the prepared patches), :mod:`.source` (the
protocol), :mod:`.mixed` (float64 passes over float32 data), :mod:`.packed`, :mod:`.streamed`,
:mod:`.storage` (the modes and their choice), :mod:`.torch_backend` (PyTorch, CPU or CUDA).
"""
from .packed import PackedBlocks, packed_nbytes
from .source import BlockSource, is_source
from .storage import STORAGES, StoragePlan, plan_storage, solver_tensor
from .streamed import StreamedBlocks
from .tiles import TileMaker

__all__ = ["BlockSource", "is_source", "PackedBlocks", "StreamedBlocks", "TileMaker",
           "STORAGES", "StoragePlan", "plan_storage", "solver_tensor", "packed_nbytes"]
