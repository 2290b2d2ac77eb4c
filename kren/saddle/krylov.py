"""Newton directions without a generated Hessian: GMRES on Hessian-vector products by
differences of the generated gradient, H v ≈ (∇S(x + h v) − ∇S(x))/h (a Jacobian-free
Newton–Krylov step). The Hessian is symmetric but indefinite at a (Q, Q̄) saddle point and the
differences are not exactly symmetric, so GMRES (full, no restart; its stopping test is the true
residual ‖H d + g‖ ≤ rtol ‖g‖) rather than MINRES, whose least-squares test stops early on
indefinite systems. Each product costs one evaluation; nothing here knows the physics. A problem
that defines ``hessian_vector(ev, v)`` (exact products) is used through it instead."""
from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator, gmres

from ..linalg import NotPositiveDefiniteError

__all__ = ["hessian_vector", "krylov_direction"]


def hessian_vector(problem, ev, v: np.ndarray) -> np.ndarray:
    """H v by a one-sided difference of the packed gradient, step h = √ε (1 + ‖x‖)/‖v‖
    (truncation and round-off both O(√ε) relative); backwards when x + h v is infeasible."""
    nv = float(np.linalg.norm(v))
    if nv == 0.0:
        return np.zeros_like(ev.g)
    h = np.sqrt(np.finfo(float).eps) * (1.0 + float(np.linalg.norm(ev.x))) / nv
    for s in (h, -h):
        xt = ev.x + s * v
        if not problem.feasible(xt):
            continue
        try:
            e = problem.evaluate(xt)
        except (NotPositiveDefiniteError, np.linalg.LinAlgError):
            continue
        if e.finite:
            return (e.g - ev.g) / s
    raise FloatingPointError("no feasible point for a Hessian-vector product")


def krylov_direction(problem, ev, rtol: float) -> np.ndarray | None:
    """d with ‖H d + g‖ ≤ rtol ‖g‖ (or GMRES's best within ``problem.dim`` products), or None
    when a product could not be formed."""
    exact = getattr(problem, "hessian_vector", None)       # optional exact products
    hv = (lambda v: exact(ev, v)) if exact is not None else (
        lambda v: hessian_vector(problem, ev, v))
    op = LinearOperator((problem.dim, problem.dim), dtype=float,
                        matvec=lambda v: hv(np.ravel(v)))
    try:
        d, _ = gmres(op, -ev.g, rtol=rtol, atol=0.0, restart=problem.dim, maxiter=1)
    except FloatingPointError:
        return None
    return d if np.all(np.isfinite(d)) else None
