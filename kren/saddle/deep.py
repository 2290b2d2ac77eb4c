"""The deep FC saddle point (THEORY §3d): one scalar Q_l per layer, zero-mean units, S minimized.

Packed coordinates x = (Q_1, …, Q_L). Two forms of K_R, each a problem of the protocol in
:mod:`kren.saddle.problem`, so the driver's Newton/Anderson, line search, stall detection and
failure report are the shared ones:

* :class:`ProductProblem` — K_R = (Π_l Q_l) K^{(L)}/λ_L, in the eigenbasis K^{(L)} = U diag(k) Uᵀ,
  ỹ = Uᵀy: O(P + L²) per evaluation (generated ``product_action_eig``: S, gradient, L×L Hessian).
* :class:`NestedProblem` — K_R^{(l)} = (Q_l/λ_l) k(K_R^{(l−1)}) from C (generated
  ``nested_action_gradient`` and ``nested_action_gradient_hessian``: one Cholesky of A per
  evaluation, the L×L Hessian from the second differential of the data term).

The fixed-point image is the generated ``layer_fixed_point``; the fallback point the natural-
gradient step Q − Q²∇S (a descent direction). Everything physical is a function of
:mod:`kren.generated.deep_fc`; this module holds none. Convergence scale: the relative gradient is
‖∇S‖/(‖ν‖ + ‖ν/Q‖), ν_l = N_l/N_L (the size of the terms ν_l and ν_l/Q_l that cancel at the
saddle point; L = 1: 1 + 1/Q, the FC's scale).
"""
from __future__ import annotations

import numpy as np

from ..generated import deep_fc as gen
from ..linalg import NotPositiveDefiniteError
from .problem import Evaluation

__all__ = ["ProductProblem", "NestedProblem", "deep_problem", "FORMS", "nested_activation"]

FORMS = ("product", "nested")


def nested_activation(act) -> str:
    """The name under which the generated nested-form functions know ``act`` (an
    :class:`kren.activations.Activation`); ValueError naming why when they do not."""
    name = getattr(act, "key", act)
    if name not in gen.nested_activations():
        raise ValueError(
            f"form='nested' differentiates the kernel k(c, a, b) through every layer; its "
            f"partial derivatives are derived for the closed forms {gen.nested_activations()} "
            f"only, not for {getattr(act, 'name', act)!r} (no closed-form kernel: its derivatives "
            f"in c, a, b are not derived). Use form='product' (it needs K^(L) alone) or N=inf")
    return name


def _widths(N, L):
    Ns = np.broadcast_to(np.asarray(N, dtype=float).reshape(-1), (L,)).astype(float)
    if not (np.all(np.isfinite(Ns)) and np.all(Ns > 0)):
        raise ValueError(f"N must be one positive finite width or {L} of them, got {N!r}")
    return Ns


class _LayerProblem:
    """What both forms share: coordinates, feasibility, the map's image, the scale."""

    structure = "layers"
    zero_mean = True
    minimization = True
    n = 1

    def __init__(self, L, y, T, N):
        self.L = self.dim = int(L)
        self.y = np.asarray(y, dtype=np.float64)
        self.T = float(T)
        self.widths = _widths(N, self.L)
        self.nu = self.widths / self.widths[-1]
        self.N = float(self.widths[-1])
        self.arg_N = self.widths if np.ptp(self.widths) > 0 else self.N
        self.eps = float(np.finfo(np.float64).eps)
        self.n_eval = 0

    # ------------------------------------------------------------------ coordinates
    def pack(self, Q, Qbar=None) -> np.ndarray:
        return np.asarray(Q, dtype=float).reshape(-1).copy()

    def unpack(self, x):
        return np.asarray(x, dtype=float).copy(), None

    def start(self, Q0=None, Qbar0=None) -> np.ndarray:
        if Q0 is None:
            return np.ones(self.L)
        Q = np.asarray(Q0, dtype=float).reshape(-1)
        if Q.shape == (1,) and self.L > 1:
            Q = np.full(self.L, Q[0])
        if Q.shape != (self.L,) or not (np.all(np.isfinite(Q)) and np.all(Q > 0)):
            raise ValueError(f"Q0 must hold L = {self.L} positive order parameters, got {Q0!r}")
        return Q.copy()

    def feasible(self, x) -> bool:
        x = np.asarray(x, dtype=float)
        return bool(x.shape == (self.L,) and np.all(np.isfinite(x)) and np.all(x > 0))

    def _check(self, x):
        x = np.asarray(x, dtype=float)
        if not self.feasible(x):
            raise NotPositiveDefiniteError(f"Q_l > 0 violated at {x}")
        self.n_eval += 1
        return x

    def _evaluation(self, x, S, grad, cho=None, z=None, **extra) -> Evaluation:
        grad = np.asarray(grad, dtype=float)
        gnorm = float(np.linalg.norm(grad))
        scale = float(np.linalg.norm(self.nu) + np.linalg.norm(self.nu / x))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            image = gen.layer_fixed_point(x, grad, self.nu)
        if not (np.all(np.isfinite(image)) and np.all(image > 0)):
            image = None                       # ν + ⟨B, ∂_lK_R⟩/N ≤ 0: no image
        return Evaluation(x, float(S), grad, gnorm, gnorm / scale, image, x - x * grad * x,
                          cho, z, extra=extra)

    def solution(self, ev: Evaluation):
        Q = np.asarray(ev.x, dtype=float).copy()
        return Q, 1.0 / Q - 1.0, ev.cho, ev.z


class ProductProblem(_LayerProblem):
    """Product form in the eigenbasis of K^{(L)} (module docstring).

    ``K_L``: K^{(L)} = λ_L × the deep NNGP kernel over the training set (P, P); eigenvalues below
    zero (round-off of a PSD kernel) are clipped to 0.
    """

    form = "product"

    def __init__(self, K_L, y, T, N, lambda_L, L):
        K = np.asarray(K_L, dtype=np.float64)
        if K.ndim != 2 or K.shape[0] != K.shape[1]:
            raise ValueError(f"K_L must be a square (P, P) matrix, got shape {K.shape}")
        super().__init__(L, y, T, N)
        if self.y.shape != (K.shape[0],):
            raise ValueError(f"y must hold the P = {K.shape[0]} targets, got {self.y.shape}")
        self.lambda_L = float(lambda_L)
        k, U = np.linalg.eigh(0.5 * (K + K.T))
        self.k = np.maximum(k, 0.0)
        self.yt = U.T @ self.y
        self.P = K.shape[0]

    def evaluate(self, x) -> Evaluation:
        x = self._check(x)
        S, grad, hess = gen.product_action_eig(x, self.k, self.yt, self.T, self.arg_N,
                                               self.lambda_L)
        return self._evaluation(x, S, grad, hessian=hess)

    def hessian(self, ev: Evaluation) -> np.ndarray:
        """The generated L×L Hessian, part of every evaluation."""
        return np.asarray(ev.extra["hessian"], dtype=float)

    def hessian_cost(self) -> tuple[float, int]:
        return 40.0 * self.P + 4.0 * self.L ** 2, 0

    def condition(self, ev: Evaluation) -> float:
        """κ(A) of A = T𝟙 + Π K^{(L)}/λ_L (exact, from the eigenvalues)."""
        D = self.T + float(np.prod(ev.x)) * self.k / self.lambda_L
        return float(np.max(D) / np.min(D))


class NestedProblem(_LayerProblem):
    """Nested form from the input covariance C = XXᵀ/(λ0 N0) (module docstring).

    ``lambdas``: λ_1 … λ_L; ``activation``: an activation whose kernel partials are printed
    (:func:`nested_activation`).
    """

    form = "nested"

    def __init__(self, C, y, T, N, lambdas, activation):
        C = np.asarray(C, dtype=np.float64)
        if C.ndim != 2 or C.shape[0] != C.shape[1]:
            raise ValueError(f"C must be a square (P, P) matrix, got shape {C.shape}")
        lambdas = np.asarray(lambdas, dtype=float).reshape(-1)
        super().__init__(len(lambdas), y, T, N)
        if self.y.shape != (C.shape[0],):
            raise ValueError(f"y must hold the P = {C.shape[0]} targets, got {self.y.shape}")
        self.C, self.lambdas = C, lambdas
        self.activation = nested_activation(activation)
        self.P = C.shape[0]

    def _args(self):
        return self.C, self.y, self.T, self.arg_N, self.lambdas, self.activation

    def evaluate(self, x) -> Evaluation:
        x = self._check(x)
        S, grad, cho, z = gen.nested_action_gradient(x, *self._args())
        return self._evaluation(x, S, grad, cho, z)

    def hessian(self, ev: Evaluation) -> np.ndarray:
        """The generated L×L Hessian (one more pass through the recursion at ev.x)."""
        return np.asarray(gen.nested_action_gradient_hessian(ev.x, *self._args())[2], dtype=float)

    def hessian_cost(self) -> tuple[float, int]:
        """One recursion with second derivatives (L(L+1)/2 + L matrices of P×P) and L solves."""
        P, L = self.P, self.L
        return 2.0 * (L + 1) * P ** 3 + 30.0 * L * L * P * P, 8 * (L * (L + 3) // 2 + 4) * P * P

    def condition(self, ev: Evaluation) -> float:
        """(max L_ii / min L_ii)² of the Cholesky factor of A: a lower bound on κ(A)."""
        if ev.cho is None:
            return float("nan")
        d = np.abs(np.diagonal(ev.cho[0]))
        return float((np.max(d) / np.min(d)) ** 2) if np.min(d) > 0 else float("inf")


def deep_problem(form: str, kernels, y, T, N, lambdas, activation):
    """The problem of ``form`` ("product" or "nested") on the training kernels ``kernels``
    (:class:`kren.deep_architecture.DeepTrainKernels`: C and K^{(L)}), targets y, temperature T,
    widths N (one or L; N = N_L enters the data term, ν_l = N_l/N_L the entropy terms), priors
    λ_1 … λ_L and the activation object (THEORY §3d)."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    lambdas = np.asarray(lambdas, dtype=float).reshape(-1)
    if form == "product":
        return ProductProblem(kernels.K_L, y, T, N, lambdas[-1], len(lambdas))
    return NestedProblem(kernels.C, y, T, N, lambdas, activation)
