"""D outputs in the estimators (THEORY §1, §3c, §4): targets, one-hot class labels, the
test error per output and averaged, the accuracy of argmax.

* ``y`` of shape (P,) (or a (P, 1) column): one output, exactly as without this module;
* ``y`` of shape (P, D), D ≥ 2: D outputs, the likelihood exp(−(1/2T) Σ_{μ,d} (y_d^μ − f_d)²);
* ``one_hot=True``: ``y`` holds integer class labels (P,); the C classes seen by ``fit``
  (``classes_``, sorted) become D = C outputs with targets ``label_values = (on, off)``:
  y_d = on for the true class d, off for every other class. The default (1, −1) keeps the
  targets centred like the prior mean 0 of the network's outputs; (1, 0) gives 0/1 targets.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..validation import InvalidDataError, InvalidParameterError, check_targets

__all__ = ["MultiTestError", "prepare_targets", "encode_labels", "check_label_values",
           "multi_storage_plan", "multi_working_bytes",
           "check_multi_targets", "test_error_multi", "check_labels"]


@dataclass(frozen=True)
class MultiTestError:
    """Test error with D outputs (THEORY §4): ε = (1/D) Σ_d ⟨(y_d − f_d)²⟩ = bias² + variance,
    averaged over the test set and the outputs; ``per_output`` holds the (D,) arrays
    ``total``, ``bias2``, ``variance`` of each output; ``accuracy`` the fraction of test inputs
    whose argmax_d ⟨f_d⟩ is the true class (one-hot fits; None otherwise)."""

    __test__ = False

    total: float
    bias2: float
    variance: float
    n: int
    per_output: dict = field(default_factory=dict, repr=False)
    accuracy: float | None = None

    def to_dict(self) -> dict:
        d = {"total": self.total, "bias2": self.bias2, "variance": self.variance, "n": self.n,
             "per_output": {k: np.asarray(v).tolist() for k, v in self.per_output.items()}}
        if self.accuracy is not None:
            d["accuracy"] = self.accuracy
        return d


def check_label_values(values) -> tuple:
    """(on, off): two distinct finite numbers."""
    try:
        on, off = (float(v) for v in values)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"label_values must be a pair of numbers (true class, other "
                                    f"classes), got {values!r}") from None
    if not (np.isfinite(on) and np.isfinite(off)) or on == off:
        raise InvalidParameterError(f"label_values must be two distinct finite numbers, got "
                                    f"{values!r}")
    return on, off


def check_labels(y, P, name="y") -> np.ndarray:
    """Integer class labels, a vector of P entries (floats with integer values accepted)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise InvalidDataError(f"one_hot=True needs {name} to hold integer class labels, a vector "
                               f"of P = {P} entries, got shape {y.shape}")
    if y.shape[0] != P:
        raise InvalidDataError(f"{name} has {y.shape[0]} labels but X has P = {P} samples")
    if not np.issubdtype(y.dtype, np.number) or np.iscomplexobj(y):
        raise InvalidDataError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    yf = y.astype(np.float64)
    if not np.all(np.isfinite(yf)) or np.any(yf != np.round(yf)):
        raise InvalidDataError(f"{name} must hold integer class labels (one_hot=True), got "
                               "non-integer values")
    return yf.astype(np.int64)


def encode_labels(labels, classes, values) -> np.ndarray:
    """One-hot targets (P, C): values[0] where labels == classes[d], values[1] elsewhere."""
    on, off = values
    labels = np.asarray(labels)
    unknown = ~np.isin(labels, classes)
    if np.any(unknown):
        raise InvalidDataError(f"labels {sorted(set(labels[unknown].tolist()))} were not seen by "
                               f"fit (classes {list(np.asarray(classes).tolist())})")
    Y = np.full((labels.shape[0], len(classes)), off, dtype=np.float64)
    Y[np.arange(labels.shape[0]), np.searchsorted(classes, labels)] = on
    return Y


def check_multi_targets(y, P, D=None, name="y") -> np.ndarray:
    """A finite real (P, D) target array (D ≥ 2; or the given D)."""
    y = np.asarray(y)
    if np.iscomplexobj(y) or not np.issubdtype(y.dtype, np.number):
        raise InvalidDataError(f"{name} must be a real numeric array, got dtype {y.dtype}")
    if y.ndim != 2 or y.shape[0] != P or (D is not None and y.shape[1] != D):
        want = f"({P}, {D})" if D is not None else f"({P}, D)"
        raise InvalidDataError(f"{name} must have shape {want}, got {y.shape}")
    y = y.astype(np.float64)
    if not np.all(np.isfinite(y)):
        raise InvalidDataError(f"{name} contains NaN or inf")
    return y


def prepare_targets(y, P, one_hot: bool, label_values):
    """(targets, classes): targets (P,) for one output (exactly as before), (P, D) for D ≥ 2
    outputs or one-hot labels; classes the sorted labels of a one-hot fit (None otherwise)."""
    if y is None:
        raise InvalidDataError("fit requires y to be passed, but the target y is None")
    if one_hot:
        labels = check_labels(y, P)
        classes = np.unique(labels)
        if classes.shape[0] < 2:
            raise InvalidDataError(f"one_hot=True needs at least 2 classes in y, got "
                                   f"{classes.tolist()}")
        return encode_labels(labels, classes, check_label_values(label_values)), classes
    shape = np.shape(y)
    if len(shape) == 2 and shape[1] >= 2:
        return check_multi_targets(y, P), None
    return check_targets(y, P), None


def test_error_multi(y, mean, cov, classes=None, labels=None) -> MultiTestError:
    """ε per output d: mean over the test set of (y_d − ⟨f_d⟩)² + Σ_dd (THEORY §4), and their
    average over outputs; with ``classes``/``labels`` also the accuracy of argmax_d ⟨f_d⟩."""
    var = np.diagonal(cov, axis1=1, axis2=2)
    bias2 = np.mean((y - mean) ** 2, axis=0)
    variance = np.mean(var, axis=0)
    total = bias2 + variance
    acc = None
    if classes is not None and labels is not None:
        acc = float(np.mean(np.asarray(classes)[np.argmax(mean, axis=1)] == labels))
    return MultiTestError(float(np.mean(total)), float(np.mean(bias2)), float(np.mean(variance)),
                          int(y.shape[0]), {"total": total, "bias2": bias2,
                                            "variance": variance}, acc)


test_error_multi.__test__ = False   # a public name, not a pytest test when imported into one


def multi_working_bytes(structure: str, P: int, D: int) -> int:
    """The working set of a D-output evaluation beyond the stored blocks (float64 bytes).
    LCN and CNN (:mod:`kren.saddle.multi`): four (DP)×(DP) matrices: A and its factor (one
    array, factorized in place), potri's copy that becomes A⁻¹, A⁻¹'s D² blocks gathered for
    the contraction (the last two are :mod:`kren.scratch` buffers), and the factor the previous
    evaluation still holds. FC and pooled CNN (:mod:`kren.saddle.multi_eig`): the eigenbasis of
    the P×P kernel, a few P×P matrices."""
    if structure == "scalar":
        return 4 * P * P * 8
    return 4 * (D * P) ** 2 * 8


def multi_storage_plan(arch, P: int, storage, device, dtype, D: int, memory_budget=None):
    """The storage of a D-output fit (THEORY §3c): the D-output problems
    (:mod:`kren.saddle.multi`, :mod:`kren.saddle.multi_eig`) and the D-output predictor read the
    train×train blocks as one stacked array (``arch.train_tensor``), n_pairs·P² values in
    ``dtype``; the packed, float32, streamed and device storages of
    :mod:`kren.tensors.storage` serve one output. ``storage`` "auto" or "stored" on the CPU
    is accepted, anything else a named error. The blocks and the working set of an evaluation
    with D outputs (:func:`multi_working_bytes`) must fit the memory budget
    (:class:`kren.kernels.MemoryBudgetError` before anything is allocated)."""
    from ..kernels import check_memory
    from ..tensors.storage import StoragePlan
    if storage not in ("auto", "stored") or device is not None:
        raise InvalidParameterError(
            f"storage={storage!r}, device={device!r} is not available with D outputs (y of shape "
            "(P, D) or one_hot=True): use storage='auto' or 'stored' and device=None")
    dtype = np.dtype(dtype)
    stored = len(arch.pairs) * P * P * dtype.itemsize
    work = multi_working_bytes(arch.structure, P, int(D))
    what = (f"a D-output fit with D = {D}, P = {P} (the stacked blocks, {len(arch.pairs)} of "
            f"{P}×{P} in {dtype.name}, and the evaluation's working set"
            + ("" if arch.structure == "scalar" else
               f", four {D * P}×{D * P} float64 matrices") + ")")
    check_memory(stored + work, what, memory_budget,
                 advice="fewer outputs (classes), float32 storage (dtype=np.float32)")
    return StoragePlan("stored", dtype, stored,
                       "D outputs: the stacked train×train blocks (kren.saddle.multi)")
