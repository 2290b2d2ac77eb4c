"""The patch-based estimators: LCN (diagonal Q, Q̄) and CNN (symmetric n×n Q, Q̄), THEORY §3."""
from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from ..geometry import PADDINGS
from ..validation import InvalidParameterError
from .base import KrenEstimator

__all__ = ["LCN", "CNN"]

_SIZE = Interval(Integral, 1, None, closed="left")


class _Local(KrenEstimator):
    _parameter_constraints: dict = {
        **KrenEstimator._parameter_constraints,
        "mask": [_SIZE, tuple, list],
        "stride": [None, _SIZE, tuple, list],
        "padding": [StrOptions(set(PADDINGS))],
    }

    def __init__(self, N, T, lambda0=1.0, lambda1=1.0, activation="erf", input_shape=None,
                 mask=None, stride=None, padding="valid", *, tol=1e-9, max_iter=1000,
                 dtype="float64", memory_budget=None, cache=None, storage="auto", device=None,
                 time_budget=None, progress=False, one_hot=False, label_values=(1.0, -1.0)):
        self.N = N
        self.T = T
        self.lambda0 = lambda0
        self.lambda1 = lambda1
        self.activation = activation
        self.input_shape = input_shape
        self.mask = mask
        self.stride = stride
        self.padding = padding
        self.tol = tol
        self.max_iter = max_iter
        self.dtype = dtype
        self.memory_budget = memory_budget
        self.cache = cache
        self.storage = storage
        self.device = device
        self.time_budget = time_budget
        self.progress = progress
        self.one_hot = one_hot
        self.label_values = label_values
        self._check_params()

    def patch_importance(self) -> np.ndarray:
        """Σ_j Q_ij painted back onto the input grid (THEORY §6); with D outputs one image per
        output d from its diagonal block, Σ_j Q_(i,d),(j,d), shape (D, *grid)."""
        fit = self._fit_or_raise()
        if fit.arch.structure == "scalar":
            raise InvalidParameterError(
                "patch_importance needs a patch-resolved Q; with readout='pool' Q is one number "
                "(global renormalization, THEORY §3b)")
        if fit.outputs is not None:
            D, n = fit.outputs, fit.arch.n
            Q4 = np.asarray(fit.Q).reshape(n, D, n, D)
            return np.stack([fit.arch.geometry.paint(Q4[:, d, :, d].sum(axis=1))
                             for d in range(D)])
        return fit.arch.geometry.paint(np.asarray(fit.Q).sum(axis=1))


class CNN(_Local):
    """Convolutional one-hidden-layer network: symmetric positive-definite n×n Q (THEORY §3).

    Q can reweight patches and switch on the cross-patch blocks K_ij (i ≠ j) that the NNGP
    kernel lacks: local kernel renormalization (THEORY §5.5).

    ``readout="pool"``: global average pooling before one readout weight per channel (THEORY
    §1, §3b). Its action is the FC action on K_pool = (1/n²) Σ_ij K_ij with the pooled means
    (1/n) Σ_i μ_i, so Q and Q̄ are numbers: weight sharing with a pooled readout renormalizes
    globally, like the FC (THEORY §5.8).
    """

    _kind = "cnn"
    _parameter_constraints: dict = {**_Local._parameter_constraints,
                                    "readout": [StrOptions({"local", "pool"})]}

    def __init__(self, N, T, lambda0=1.0, lambda1=1.0, activation="erf", input_shape=None,
                 mask=None, stride=None, padding="valid", readout="local", *, tol=1e-9,
                 max_iter=1000, dtype="float64", memory_budget=None, cache=None,
                 storage="auto", device=None, time_budget=None, progress=False, one_hot=False,
                 label_values=(1.0, -1.0)):
        self.readout = readout
        super().__init__(N, T, lambda0, lambda1, activation, input_shape, mask, stride, padding,
                         tol=tol, max_iter=max_iter, dtype=dtype, memory_budget=memory_budget,
                         cache=cache, storage=storage, device=device, time_budget=time_budget,
                         progress=progress, one_hot=one_hot, label_values=label_values)


class LCN(_Local):
    """Locally connected network (no weight sharing): diagonal Q, Q̄ (THEORY §3).

    ``Q_`` is returned as an n×n diagonal matrix; the LCN only reweights the blocks K_ii.
    """

    _kind = "lcn"
