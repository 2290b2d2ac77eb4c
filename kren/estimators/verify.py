"""Does a stored Q satisfy the saddle-point equations of its data and parameters? (THEORY §3)

A loaded fit is trusted only after one evaluation of the generated action gradient of the
architecture's module in :mod:`kren.generated` (``action_gradient_zero_mean`` or
``action_gradient``; for a scalar order parameter ``action_eig_zero_mean`` / ``action_eig`` in
the eigenbasis of the kernel, as the solver evaluates it) at the stored (Q, Q̄) on the kernels
rebuilt from the stored training data, with the stored T, N, λ1. The relative gradient uses the
solver's scales (THEORY §3):

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
    """(rel, κ bound, cho, z): the relative gradient at (Q, Q̄) (module docstring), evaluated
    the way the solver evaluates it (the scalar structure in the eigenbasis of its one kernel
    block, the others through ``action_gradient*``), a bound on the condition number of
    A = T𝟙 + K_R, and the Cholesky factor of A with z = A⁻¹y (None for the eigenbasis)."""
    if arch.structure == "scalar":
        return _scalar_residual(arch, tensor, y, Q, Qbar, T, N)
    gen = arch.generated
    n = arch.n
    Qa, Qba = arch.generated_order_parameters(Q, Qbar)
    lam = arch.lambda1
    if arch.zero_mean:
        _, gQ, cho, z = gen.action_gradient_zero_mean(Qa, tensor.blocks, tensor.pairs, y, T, N,
                                                      lam)
        gnorm = float(np.linalg.norm(np.asarray(gQ, dtype=float)))
        Qa = np.asarray(Qa, dtype=float)
        Qinv = np.linalg.inv(Qa) if arch.structure == "matrix" else 1.0 / Qa
        scale = math.sqrt(n) + float(np.linalg.norm(Qinv))
    else:
        _, gQ, gQb, cho, z = gen.action_gradient(Qa, Qba, tensor.blocks, tensor.pairs,
                                                 tensor.mu, y, T, N, lam)
        gnorm = float(np.sqrt(np.sum(np.square(gQ)) + np.sum(np.square(gQb))))
        scale = (math.sqrt(n) + float(np.linalg.norm(np.asarray(Qa, dtype=float)))
                 + float(np.linalg.norm(np.asarray(Qba, dtype=float))))
    L = np.tril(cho[0]) if cho[1] else np.triu(cho[0])
    return gnorm / scale, float(np.sum(np.square(L))) / T, cho, z


def _scalar_residual(arch, tensor, y, Q, Qbar, T, N):
    """The scalar order parameter (FC, pooled CNN) in the eigenbasis of K (zero mean) or of
    K − μμᵀ: the generated ``action_eig_zero_mean`` / ``action_eig`` (THEORY §3)."""
    gen = arch.generated
    K = np.asarray(tensor.blocks[0], dtype=np.float64)
    mu = np.asarray(tensor.mu, dtype=np.float64).reshape(-1)
    Kc = K if arch.zero_mean else K - np.outer(mu, mu)
    k, U = np.linalg.eigh(0.5 * (Kc + Kc.T))
    k = np.maximum(k, 0.0)                 # PSD kernel: round-off negatives clipped (solver)
    yt = U.T @ np.asarray(y, dtype=np.float64)
    Q = float(Q)
    if arch.zero_mean:
        _, d1, _ = gen.action_eig_zero_mean(Q, k, yt, T, N, arch.lambda1)
        rel = abs(float(d1)) / (1.0 + 1.0 / Q)
        top = T + Q * float(np.max(k, initial=0.0)) / arch.lambda1
    else:
        Qb = float(Qbar)
        _, g, _ = gen.action_eig(Q, Qb, k, yt, U.T @ mu, T, N, arch.lambda1)
        rel = float(np.linalg.norm(g)) / (1.0 + abs(Q) + abs(Qb))
        top = T + (Q * float(np.max(k, initial=0.0)) + float(mu @ mu) / (1.0 + Qb)) / arch.lambda1
    return rel, top / T, None, None


def load_tolerance(tol: float, stored_rel: float, kappa: float, eps: float) -> float:
    """SLACK·max(tol, stored rel) + SLACK·ε·κ (module docstring)."""
    stored = stored_rel if math.isfinite(stored_rel) else 0.0
    return SLACK * max(float(tol), stored) + SLACK * eps * kappa
