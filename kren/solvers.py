"""Saddle-point solvers for the effective actions of THEORY §3.

The actions, gradients and Hessians are the generated functions of :mod:`kren.generated`; this
module only iterates them.

* LCN and CNN: the saddle-point equations written as a fixed point (THEORY §3),
  zero-mean activations   Q ← (𝟙 + G(Q)/(N λ1 n))⁻¹,
  non-zero mean (relu)    Q̄ ← Q̄ + ∂S/∂Q,  Q ← R' − R' H R',  R' = (𝟙 + Q̄')⁻¹,
  where H = μBμᵀ/(Nλ1n) is read off the gradient ∂S/∂Q̄ = −Q + R − RHR, accelerated by Anderson
  mixing (Walker & Ni 2011). Each iteration costs one evaluation of the generated
  action-and-gradient: one Cholesky of A = T𝟙 + K_R and two passes over the kernel tensor
  (building K_R and contracting G). Iterates that leave the positive-definite cone are rejected
  and replaced by a damped step, so every accepted Q is positive definite.
* FC: Newton's method on the eigenbasis form of the action (O(P) per evaluation).

Convergence is declared when the relative gradient norm ‖∇S‖_F / scale ≤ tol, with
scale = √n + ‖Q⁻¹‖_F (zero mean: the size of the terms 𝟙 and Q⁻¹ that cancel at the saddle) or
√n + ‖Q‖_F + ‖Q̄‖_F (relu). A solver that does not converge says so in its result.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning as _SkConvergenceWarning

from .linalg import NotPositiveDefiniteError


class ConvergenceWarning(_SkConvergenceWarning):
    """The saddle-point solver stopped before reaching its tolerance (a subclass of
    scikit-learn's ``ConvergenceWarning``)."""


@dataclass
class SolverResult:
    """Diagnostics of a saddle-point solve."""

    converged: bool
    n_iter: int
    grad_norm: float
    rel_grad_norm: float
    action: float
    message: str
    n_eval: int = 0
    seconds: float = 0.0
    method: str = ""
    history: list = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return asdict(self)


def _finish(rel, gnorm, S, n_iter, tol, max_iter, message, n_eval, t0, method, history,
            steps="iterations") -> SolverResult:
    """The result of a solve: converged iff the relative gradient norm reached ``tol``."""
    converged = bool(rel <= tol)
    if not message:
        message = (f"converged: relative gradient norm {rel:.2e} <= {tol:.0e}" if converged
                   else f"not converged after {max_iter} {steps}: relative gradient norm "
                        f"{rel:.2e} > {tol:.0e}")
    return SolverResult(converged=converged, n_iter=n_iter, grad_norm=float(gnorm),
                        rel_grad_norm=float(rel), action=float(S), message=message,
                        n_eval=n_eval, seconds=time.perf_counter() - t0, method=method,
                        history=history)


def _is_pd(M: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(M)
        return True
    except np.linalg.LinAlgError:
        return False


class MatrixSaddle:
    """The LCN/CNN saddle point as a fixed point in the upper triangle (CNN) or diagonal (LCN).

    ``gen`` is the generated module (:mod:`kren.generated.cnn` or ``.lcn``); for the LCN the
    generated functions take the diagonals as vectors.
    """

    def __init__(self, gen, kt, y, T, N, lambda1, zero_mean: bool, diagonal: bool):
        self.gen, self.kt, self.y = gen, kt, y
        self.T, self.N, self.lambda1 = T, N, lambda1
        self.zero_mean, self.diagonal = zero_mean, diagonal
        self.n = kt.n
        self.iu = (np.arange(self.n), np.arange(self.n)) if diagonal else np.triu_indices(self.n)
        self.n_eval = 0

    # ---------------------------------------------------------------- packing
    def _sym(self, v):
        M = np.zeros((self.n, self.n))
        M[self.iu] = v
        return M + np.triu(M, 1).T

    def pack(self, Q, Qbar):
        x = Q[self.iu]
        return x if self.zero_mean else np.concatenate([x, Qbar[self.iu]])

    def unpack(self, x):
        k = len(self.iu[0])
        Q = self._sym(x[:k])
        Qbar = np.zeros_like(Q) if self.zero_mean else self._sym(x[k:])
        return Q, Qbar

    def pack_gradient(self, G):
        """Gradient in the packed coordinates: dS = Σ_p g_p dx_p (off-diagonal entries count twice)."""
        g = np.asarray(G)[self.iu].copy()
        g[self.iu[0] != self.iu[1]] *= 2.0
        return g

    def hessian(self, ev) -> np.ndarray:
        """Exact Hessian of the zero-mean action in the packed coordinates (generated code)."""
        kt, Q = self.kt, ev["Q"]
        args = (kt.blocks, kt.pairs, self.y, self.T, self.N, self.lambda1, ev["cho"], ev["z"])
        if self.diagonal:
            return self.gen.hessian_zero_mean(np.diag(Q).copy(), *args)
        return self.gen.hessian_zero_mean(Q, *args)

    def hessian_cost(self) -> tuple[float, int]:
        """(flops, bytes) of one exact Hessian: one P × P × n_p·P GEMM and a Gram product."""
        n_p, P = self.kt.blocks.shape[0], self.kt.blocks.shape[1]
        return 2.0 * n_p * P ** 3 + 2.0 * n_p ** 2 * P ** 2, 3 * n_p * P * P * 8

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, x) -> dict:
        """Action, gradients and the fixed-point image of x; raises if x is infeasible."""
        Q, Qbar = self.unpack(x)
        if not _is_pd(Q):
            raise NotPositiveDefiniteError("Q left the positive-definite cone")
        eye = np.eye(self.n)
        if not self.zero_mean and not _is_pd(eye + Qbar):
            raise NotPositiveDefiniteError("1 + Qbar left the positive-definite cone")
        self.n_eval += 1
        kt, g = self.kt, self.gen
        args = (self.y, self.T, self.N, self.lambda1)
        if self.zero_mean:
            if self.diagonal:
                S, gQ, cho, z = g.action_gradient_zero_mean(np.diag(Q).copy(), kt.blocks, kt.pairs, *args)
                gQ = np.diag(gQ)
            else:
                S, gQ, cho, z = g.action_gradient_zero_mean(Q, kt.blocks, kt.pairs, *args)
            Qinv = np.linalg.inv(Q)                    # n×n order parameter, not a P×P kernel
            one_plus_g = gQ + Qinv                     # 𝟙 + G/(Nλ1n) = ∇S + Q⁻¹
            gnorm = float(np.linalg.norm(gQ))
            scale = np.sqrt(self.n) + np.linalg.norm(Qinv)
            try:
                L = np.linalg.cholesky(one_plus_g)
                Linv = np.linalg.inv(L)
                image = Linv.T @ Linv
                image = 0.5 * (image + image.T)
            except np.linalg.LinAlgError:
                image = None                           # 𝟙 + g not PD: only damped steps
            return dict(S=float(S), gQ=gQ, gQbar=None, cho=cho, z=z, Q=Q, Qbar=Qbar,
                        gnorm=gnorm, rel=gnorm / scale,
                        image=None if image is None else self.pack(image, None),
                        natural=self.pack(Q - Q @ gQ @ Q, None))
        if self.diagonal:
            S, gQ, gQb, cho, z = g.action_gradient(np.diag(Q).copy(), np.diag(Qbar).copy(),
                                                   kt.blocks, kt.pairs, kt.mu, *args)
            gQ, gQb = np.diag(gQ), np.diag(gQb)
        else:
            S, gQ, gQb, cho, z = g.action_gradient(Q, Qbar, kt.blocks, kt.pairs, kt.mu, *args)
        R = np.linalg.inv(eye + Qbar)
        Qbar_new = Qbar + gQ
        H = (eye + Qbar) @ (R - Q - gQb) @ (eye + Qbar)
        gnorm = float(np.sqrt(np.sum(gQ ** 2) + np.sum(gQb ** 2)))
        scale = np.sqrt(self.n) + np.linalg.norm(Q) + np.linalg.norm(Qbar)
        image = None
        if _is_pd(eye + Qbar_new):
            Rn = np.linalg.inv(eye + Qbar_new)
            Qn = Rn - Rn @ H @ Rn
            image = self.pack(0.5 * (Qn + Qn.T), 0.5 * (Qbar_new + Qbar_new.T))
        natural = self.pack(Q + gQb, Qbar + gQ)
        return dict(S=float(S), gQ=gQ, gQbar=gQb, cho=cho, z=z, Q=Q, Qbar=Qbar, gnorm=gnorm,
                    rel=gnorm / scale, image=image, natural=natural)


def anderson_solve(problem: MatrixSaddle, x0, tol=1e-9, max_iter=500, memory=8,
                   callback=None) -> tuple[np.ndarray, dict, SolverResult]:
    """Anderson-accelerated fixed-point iteration with positive-definiteness safeguards."""
    t0 = time.perf_counter()
    x = np.asarray(x0, dtype=float)
    ev = problem.evaluate(x)
    history = [ev["rel"]]
    dX, dF = [], []
    x_prev = f_prev = None
    message = ""
    it = 0
    for it in range(1, max_iter + 1):
        if ev["rel"] <= tol:
            it -= 1
            break
        target = ev["image"] if ev["image"] is not None else ev["natural"]
        f = target - x
        if x_prev is not None and ev["image"] is not None:
            dX.append(x - x_prev)
            dF.append(f - f_prev)
            if len(dX) > memory:
                dX.pop(0)
                dF.pop(0)
        elif ev["image"] is None:
            dX, dF = [], []
        x_new = x + f
        if dF:
            Fm = np.stack(dF, axis=1)
            Xm = np.stack(dX, axis=1)
            gamma, *_ = np.linalg.lstsq(Fm, f, rcond=1e-12)
            x_new = x + f - (Xm + Fm) @ gamma
        ev_new = None
        for attempt in range(40):
            try:
                ev_new = problem.evaluate(x_new)
            except (NotPositiveDefiniteError, np.linalg.LinAlgError):
                ev_new = None
            if ev_new is not None and np.isfinite(ev_new["S"]) and \
                    (ev_new["rel"] < 10.0 * ev["rel"] or attempt >= 2):
                break
            # reject: forget the history and shorten the plain step
            dX, dF = [], []
            x_new = x + f * 0.5 ** (attempt + 1)
            ev_new = None
        if ev_new is None:
            message = "no feasible step: every trial point left the positive-definite cone"
            break
        x_prev, f_prev = x, f
        x, ev = x_new, ev_new
        history.append(ev["rel"])
        if callback is not None:
            callback(it, ev)
    res = _finish(ev["rel"], ev["gnorm"], ev["S"], it, tol, max_iter, message, problem.n_eval,
                  t0, "anderson fixed point", history)
    return x, ev, res


def newton_fc(gen, k, yt, m, T, N, lambda1, zero_mean: bool, Q0=1.0, Qbar0=0.0,
              tol=1e-9, max_iter=200):
    """Newton's method on the FC eigenbasis action (THEORY §3), O(P) per evaluation.

    Zero mean: minimizes S(Q) in u = log Q with backtracking. Relu: Newton on ∇S(Q, Q̄) = 0
    with backtracking on ‖∇S‖ and Q > 0, 1 + Q̄ > 0 kept.
    Returns (Q, Qbar, SolverResult).
    """
    t0 = time.perf_counter()
    n_eval = 0
    history = []
    message = ""
    if zero_mean:
        Q = float(Q0)

        def ev(Q):
            nonlocal n_eval
            n_eval += 1
            return gen.action_eig_zero_mean(Q, k, yt, T, N, lambda1)

        S, d1, d2 = ev(Q)
        it = 0
        for it in range(1, max_iter + 1):
            rel = abs(d1) / (1.0 + 1.0 / Q)
            history.append(rel)
            if rel <= tol:
                it -= 1
                break
            gu, hu = Q * d1, Q * Q * d2 + Q * d1          # derivatives in u = log Q
            step = -gu / hu if hu > 0 else -np.sign(gu) * min(1.0, abs(gu))
            step = float(np.clip(step, -2.0, 2.0))
            for _ in range(60):
                Qn = Q * np.exp(step)
                Sn, d1n, d2n = ev(Qn)
                if np.isfinite(Sn) and (Sn <= S + 1e-4 * step * gu or abs(step) < 1e-14):
                    break
                step *= 0.5
            Q, S, d1, d2 = Qn, Sn, d1n, d2n
        rel = abs(d1) / (1.0 + 1.0 / Q)
        res = _finish(rel, abs(d1), S, it, tol, max_iter, "", n_eval, t0, "newton (eigenbasis)",
                      history, "Newton steps")
        return Q, 0.0, res

    x = np.array([float(Q0), float(Qbar0)])

    def ev(x):
        nonlocal n_eval
        n_eval += 1
        return gen.action_eig(x[0], x[1], k, yt, m, T, N, lambda1)

    S, g, H = ev(x)

    def rel_of(x, g):
        return float(np.linalg.norm(g)) / (1.0 + abs(x[0]) + abs(x[1]))

    it = 0
    for it in range(1, max_iter + 1):
        rel = rel_of(x, g)
        history.append(rel)
        if rel <= tol:
            it -= 1
            break
        try:
            step = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            step = -g
        t = 1.0
        for _ in range(60):
            xn = x + t * step
            if xn[0] > 0 and 1 + xn[1] > 0:
                Sn, gn, Hn = ev(xn)
                if np.all(np.isfinite(gn)) and (np.linalg.norm(gn) < (1 - 1e-4 * t) * np.linalg.norm(g)
                                                or t < 1e-12):
                    break
            t *= 0.5
        else:
            message = "line search failed to keep Q > 0 and 1 + Qbar > 0"
            break
        x, S, g, H = xn, Sn, gn, Hn
    res = _finish(rel_of(x, g), np.linalg.norm(g), S, it, tol, max_iter, message, n_eval, t0,
                  "newton (eigenbasis)", history, "Newton steps")
    return float(x[0]), float(x[1]), res


def newton_solve(problem: MatrixSaddle, x0, tol=1e-9, max_iter=100, callback=None):
    """Newton's method with the exact Hessian on the zero-mean action S(Q) (THEORY §3).

    The Hessian is shifted to positive definite when it is not (a Levenberg shift), the step is
    backtracked until Q stays positive definite and the Armijo condition holds on S, so every
    accepted iterate lowers the action. Quadratic convergence near the saddle.
    """
    t0 = time.perf_counter()
    x = np.asarray(x0, dtype=float)
    ev = problem.evaluate(x)
    history = [ev["rel"]]
    message = ""
    it = 0
    for it in range(1, max_iter + 1):
        if ev["rel"] <= tol:
            it -= 1
            break
        g = problem.pack_gradient(ev["gQ"])
        H = problem.hessian(ev)
        w = np.linalg.eigvalsh(H)
        shift = 0.0 if w[0] > 1e-12 * max(1.0, w[-1]) else 1.1 * (-w[0]) + 1e-10 * max(1.0, w[-1])
        d = -np.linalg.solve(H + shift * np.eye(len(g)), g)
        slope = float(g @ d)
        t, ev_new = 1.0, None
        for _ in range(60):
            try:
                cand = problem.evaluate(x + t * d)
                if cand["S"] <= ev["S"] + 1e-4 * t * slope or \
                        abs(cand["S"] - ev["S"]) <= 1e-13 * max(1.0, abs(ev["S"])):
                    ev_new = cand
                    break
            except (NotPositiveDefiniteError, np.linalg.LinAlgError):
                pass
            t *= 0.5
        if ev_new is None:
            message = "Newton line search failed: no step lowers the action"
            break
        x, ev = x + t * d, ev_new
        history.append(ev["rel"])
        if callback is not None:
            callback(it, ev)
    res = _finish(ev["rel"], ev["gnorm"], ev["S"], it, tol, max_iter, message, problem.n_eval,
                  t0, "newton (exact Hessian)", history, "Newton steps")
    return x, ev, res
