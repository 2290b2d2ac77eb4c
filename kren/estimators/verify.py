"""Does a stored Q satisfy the saddle-point equations of its data and parameters? (THEORY §3)

A loaded fit is trusted only after one evaluation of the saddle-point problem the solver
iterates (``kren.saddle.problem_for(...).evaluate``: the generated action gradient of the
architecture's module in :mod:`kren.generated`, for a scalar order parameter in the eigenbasis
of the kernel) at the stored (Q, Q̄) on the kernels rebuilt from the stored training data, with
the stored T, N, λ1. The relative gradient uses the solver's scales (THEORY §3,
:mod:`kren.saddle.problem`):

    zero-mean units   rel = ‖∂S/∂Q‖_F / (√n + ‖Q⁻¹‖_F)
    otherwise         rel = (‖∂S/∂Q‖²_F + ‖∂S/∂Q̄‖²_F)^½ / (√n + ‖Q‖_F + ‖Q̄‖_F)

and is accepted when rel ≤ :func:`load_tolerance` = ``SLACK`` · max(tol, stored rel) +
``SLACK`` · ε·κ(A). The solver stopped at rel ≤ tol (or, unconverged, at the stored rel), and the
load recomputes the same number by the same route on the same kernels, so the two agree up to
floating-point nondeterminism (threads, another machine's BLAS): a relative error of order
ε·κ(A) in the solves with A, ε the machine epsilon of the stored kernels and κ(A) bounded by
λ_max(A)/T (K_R is positive semi-definite, so λ_min(A) ≥ T; λ_max(A) ≤ Tr(A) = ‖L‖²_F from the
Cholesky factor L, or exactly from the eigenvalues for a scalar Q). Measured over FC, LCN, CNN
and pooled CNN fits (erf, relu, linear; N = 5 … 200, T = 1e-4 … 1): recomputed/stored = 1.00
(tests/test_persistence.py checks the agreement). An edited Q or parameter moves the gradient
by its own size, orders of magnitude above the limit (Q × 2 or N 20 → 5: rel ≈ 0.1–0.3).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["saddle_residual", "load_tolerance", "SLACK"]

#: Margin of the load check over the stored tolerance and over the round-off floor.
SLACK = 10.0


def saddle_residual(arch, tensor, y, Q, Qbar, T: float, N: float):
    """(rel, κ bound, cho, z) at (Q, Q̄): the relative gradient of one evaluation of the
    saddle-point problem the solver iterates (:func:`kren.saddle.problem_for`, its generated
    action gradient), an upper bound on the condition number of A = T𝟙 + K_R (module
    docstring), and the Cholesky factor of A with z = A⁻¹y (None for the eigenbasis of a
    scalar order parameter)."""
    from ..saddle import problem_for
    problem = problem_for(arch.structure, tensor, y, T, N, arch.lambda1, arch.zero_mean)
    if np.ndim(y) == 2:                 # D outputs (THEORY §3c): (nD)×(nD) matrices
        Qa = np.asarray(Q, dtype=float)
        Qba = None if arch.zero_mean else np.asarray(Qbar, dtype=float)
    else:
        Qa, Qba = arch.generated_order_parameters(Q, Qbar)
    ev = problem.evaluate(problem.pack(Qa, Qba))
    if ev.cho is None:
        kappa = problem.condition(ev)                     # exact, from the eigenvalues
    else:
        c, lower = ev.cho
        L = np.tril(c) if lower else np.triu(c)
        kappa = float(np.sum(np.square(L))) / T           # Tr(A)/T ≥ λ_max(A)/λ_min(A)
    return float(ev.rel), float(kappa), ev.cho, ev.z


def load_tolerance(tol: float, stored_rel: float, kappa: float, eps: float) -> float:
    """SLACK·max(tol, stored rel) + SLACK·ε·κ (module docstring)."""
    stored = stored_rel if math.isfinite(stored_rel) else 0.0
    return SLACK * max(float(tol), stored) + SLACK * eps * kappa
