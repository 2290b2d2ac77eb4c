"""Checking a saved :class:`kren.DeepFC` fit before it is trusted (called by :mod:`.fitfile`).

The same checks as for the one-hidden-layer estimators, with one order parameter per layer
(THEORY §3d): Q is an array of L finite positive numbers, Q̄ = 1/Q − 1 (zero-mean units, Q̄
eliminated), and the stored Q is a root of the deep saddle-point problem the solver iterates
(:func:`kren.saddle.deep.deep_problem` of the stored form, one evaluation on the kernels rebuilt
from the stored training data) within :func:`kren.estimators.verify.load_tolerance`, with
κ(A) bounded by Tr(A)/T from the Cholesky factor of A (nested form) or exactly from the
eigenvalues (product form). At N = ∞ every Q_l is exactly 1 (the deep NNGP kernel).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..exceptions import FitFileError
from ..linalg import NotPositiveDefiniteError
from .verify import load_tolerance

__all__ = ["restore_deep"]


def _layer_array(path, name, v, L):
    try:
        a = np.asarray(v, dtype=np.float64).reshape(-1) if np.ndim(v) <= 1 else None
    except (TypeError, ValueError, OverflowError):
        raise FitFileError(path, name, "expected numbers") from None
    if a is None or a.shape != (L,):
        raise FitFileError(path, name, f"expected {L} numbers (one per layer), got shape "
                           f"{np.shape(v)}")
    if not np.all(np.isfinite(a)):
        raise FitFileError(path, name, "contains NaN or inf")
    return a


def restore_deep(path, raw, d, est, arch, train, y):
    """Check the order parameters, diagnostics and saddle point of a parsed DeepFC file (module
    docstring) whose parameters and training data :func:`.fitfile.restore` has checked; return
    the fitted estimator."""
    from ..saddle.deep import deep_problem
    from .fitfile import _result, check_alpha, check_converged_flag
    path = Path(path)
    L = arch.L
    Q = _layer_array(path, "Q", raw.Q, L)
    Qbar = _layer_array(path, "Qbar", raw.Qbar, L)
    if np.any(Q <= 0):
        raise FitFileError(path, "Q", f"every Q_l must be positive, got {Q}")
    if np.any(np.abs(Qbar - (1.0 / Q - 1.0)) > 1e-8 * (1.0 + np.abs(1.0 / Q))):
        raise FitFileError(path, "Qbar", "differs from 1/Q − 1 (zero-mean units: Qbar_l = "
                           "1/Q_l − 1, THEORY §3d)")
    result = _result(path, d)
    T, tol = float(est.T), float(est.tol)
    check_converged_flag(path, result, tol)
    widths = est._widths(arch)
    kernels = arch.train_kernels(train, memory_budget=est.memory_budget)
    cho = z = None
    if widths is None:
        if not np.array_equal(Q, np.ones(L)):
            raise FitFileError(path, "Q", "at N = inf every Q_l is 1 exactly (the deep NNGP "
                               "kernel, THEORY §3d)")
        N = float("inf")
    else:
        N = float(widths[-1])
        problem = deep_problem(est.form, kernels, y, T, widths, arch.lambdas, arch.act)
        try:
            ev = problem.evaluate(problem.pack(Q))
        except NotPositiveDefiniteError as exc:
            raise FitFileError(path, "Q", f"A = T·1 + K_R at the stored Q is not positive "
                               f"definite ({exc})") from None
        if ev.cho is not None:
            c, lower = ev.cho
            kappa = float(np.sum(np.square(np.tril(c) if lower else np.triu(c)))) / T
        else:
            kappa = problem.condition(ev)
        limit = load_tolerance(tol, result.rel_grad_norm, kappa, float(np.finfo(np.float64).eps))
        if not (ev.rel <= limit):
            raise FitFileError(
                path, "Q",
                f"the stored Q does not satisfy the saddle-point equations of the stored data "
                f"and parameters (L = {L}, N = {est.N}, T = {T:g}, form = {est.form!r}): "
                f"relative gradient {ev.rel:.2e} > {limit:.1e} (tol = {tol:.0e}, stored "
                f"{result.rel_grad_norm:.1e}); Q or a parameter was modified")
        cho, z = ev.cho, ev.z
    check_alpha(path, d, train.P, N)
    return est._restore(arch, train, y, kernels, Q, result, cho, z)
