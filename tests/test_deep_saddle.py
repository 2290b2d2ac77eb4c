"""Saddle points of kren.DeepFC (the kren.saddle driver on kren.saddle.deep's problems) on digits
(kren.data.load_digits), each against an independent computation: the product form satisfies its
saddle-point equations evaluated with dense linear algebra; deep linear networks at small T match
the closed form of THEORY §5.9; the nested form equals the root found by a short Newton loop
written here (the part-1 reference solver, in log Q with its own line search) and is a root of the
gradient of an independent autograd implementation of deepbays' ``FC_deep`` action (conventions
in derivations.deep, "Reproducing deepbays"). L = 1 against kren.FC: test_deep_estimator.py."""
from __future__ import annotations

import numpy as np
import pytest

import kren
from derivations.deep import deep_linear_closed_form
from kren import deep_kernels as dk
from kren.data import load_digits
from kren.generated import deep_fc as g


def newton(fun, Q0, tol=1e-12, max_iter=60):
    """Minimize S over Q > 0 with Newton steps in u = log Q and backtracking; ``fun(Q)`` returns
    (S, ∂S/∂Q, ∂²S/∂Q²). Stops when max_l |∂S/∂Q_l| ≤ tol; returns (Q, grad, iterations)."""
    Q = np.asarray(Q0, dtype=float)
    S, grad, hess = fun(Q)
    for it in range(max_iter):
        if np.abs(grad).max() <= tol:
            return Q, grad, it
        gu = Q * grad                                            # ∂S/∂u
        Hu = Q[:, None] * hess * Q[None, :] + np.diag(gu)        # ∂²S/∂u²
        try:
            np.linalg.cholesky(Hu)
            step = -np.linalg.solve(Hu, gu)
        except np.linalg.LinAlgError:
            step = -gu
        step = np.clip(step, -1.0, 1.0)
        t = 1.0
        while True:
            Qn = Q * np.exp(t * step)
            Sn, gn, Hn = fun(Qn)
            if Sn <= S + 1e-4 * t * (gu @ step) + 1e-15 * abs(S) or t < 1e-8:
                break
            t *= 0.5
        Q, S, grad, hess = Qn, Sn, gn, Hn
    raise AssertionError(f"Newton did not converge: |grad| = {np.abs(grad).max():.2e}")


@pytest.fixture(scope="module")
def digits():
    d = load_digits(classes=(0, 1), n_train=150, seed=0)
    return d.X_train, d.y_train


def _fit(X, y, L, T, N, lambda0, lambdas, form, activation="erf", tol=1e-12):
    m = kren.DeepFC(L=L, N=N, T=T, lambda0=lambda0, lambdas=lambdas, activation=activation,
                    form=form, tol=tol).fit(X, y)
    assert m.result_.converged, m.result_.message
    return np.asarray(m.Q_)


def _nested_newton(X, y, L, T, N, lambda0, lambdas, activation="erf"):
    """The nested saddle point by the local Newton loop above (independent of kren.saddle)."""
    lams = dk.check_priors(lambdas, L)
    C, _, _ = dk.input_covariance(X, None, lambda0)

    def fun(q):
        S, grad, hess, _, _ = g.nested_action_gradient_hessian(q, C, y, T, N, lams, activation)
        return S, grad, hess
    Q, _, _ = newton(fun, np.ones(L))
    return Q, C


@pytest.mark.parametrize("L", [2, 3])
def test_product_form_satisfies_its_saddle_point_equations(digits, L):
    """At kren.DeepFC's solution the saddle-point equations, evaluated independently with dense
    NumPy linear algebra, hold to 1e-9:
    ν_l(1 − 1/Q_l) + (Π/Q_l)(Tr(A⁻¹K) − zᵀKz)/(N λ_L) = 0, A = T𝟙 + ΠK/λ_L, z = A⁻¹y.
    With equal widths every Q_l is the same (the equations differ only through ν_l)."""
    X, y = digits
    T, N = 0.1, 100.0
    lams = [1.2, 0.9, 1.1][:L]
    Q = _fit(X, y, L, T, N, 1.0, lams, "product")
    K = dk.deep_nngp_kernel(X, L, "erf", 1.0, lams) * lams[-1]           # K^{(L)}
    Pi = np.prod(Q)
    A = T * np.eye(len(y)) + Pi * K / lams[-1]
    Ainv = np.linalg.inv(A)
    z = Ainv @ y
    eq = (1 - 1 / Q) + (Pi / Q) * (np.trace(Ainv @ K) - z @ K @ z) / (N * lams[-1])
    assert np.abs(eq).max() < 1e-9
    assert np.ptp(Q) < 1e-12 and abs(Q[0] - 1) > 1e-3         # equal, and renormalized
    # unequal widths: ν_l(1 − 1/Q_l) + (Π/Q_l)(Tr(A⁻¹K) − zᵀKz)/(N_L λ_L) = 0
    Ns = np.array([150.0, 60.0, 90.0])[:L]
    Q = _fit(X, y, L, T, Ns, 1.0, lams, "product")
    Pi = np.prod(Q)
    A = T * np.eye(len(y)) + Pi * K / lams[-1]
    Ainv = np.linalg.inv(A)
    z = Ainv @ y
    eq = Ns / Ns[-1] * (1 - 1 / Q) + (Pi / Q) * (np.trace(Ainv @ K) - z @ K @ z) / (Ns[-1]
                                                                                    * lams[-1])
    assert np.abs(eq).max() < 1e-9


@pytest.mark.parametrize("form", ["product", "nested"])
@pytest.mark.parametrize("L", [2, 3])
def test_deep_linear_small_temperature_matches_closed_form(form, L):
    """Linear σ, P = 30 ≤ rank C (raw pixels/16: standardizing would center X and lose a rank),
    T = 1e-11: Q_l = Q with Q^L(Q − (1 − α)) = s, s = yᵀ(K^{(L)}/λ_L)⁻¹y/N, α = P/N
    (THEORY §5.9); unequal widths: ν_l(Q_l − 1) shared. The T-dependence is O(T/k_min) with
    k_min > 1e-4 here (≲ 1e-7), below the 1e-6 tolerance. The nested gradient goes through
    A⁻¹ with cond(A) ~ 1e5 at this T, so its round-off floor is ~1e-8: Newton stops at 1e-7
    there (an error δQ ~ δgrad/hess ~ 1e-7 at most)."""
    d = load_digits(classes=(0, 1), n_train=30, seed=1, standardize=False)
    X, y = d.X_train, d.y_train
    lams = np.array([1.3, 0.7, 1.1])[:L]
    NNGP = dk.deep_nngp_kernel(X, L, "linear", 1.0, lams)
    assert np.linalg.eigvalsh(NNGP * lams[-1]).min() > 1e-4
    for N in (30.0, np.array([60.0, 20.0, 45.0])[:L]):
        Ns = np.broadcast_to(np.asarray(N, dtype=float), (L,))
        alpha = len(y) / Ns[-1]
        s = y @ np.linalg.solve(NNGP, y) / Ns[-1]
        want = deep_linear_closed_form(alpha, s, L, nu=Ns / Ns[-1])
        Q = _fit(X, y, L, 1e-11, N, 1.0, lams, form, activation="linear",
                 tol=1e-12 if form == "product" else 1e-7)
        assert np.abs(Q - want).max() < 1e-6, (Q, want)
        if np.ndim(N) == 0:   # equal widths: all Q_l equal, Q − (1 − α) = s/Q^L written out here
            assert np.ptp(Q) < 1e-6
            assert abs(Q.mean() - (1 - alpha) - s / Q.mean() ** L) < 1e-5 * max(1.0, s)


def _deepbays_style_gradient(Q, C, y, T, N, l1):
    """∂S/∂Q of the nested action as deepbays' FC_deep writes it (rKL ← (Q_l/l1)·kernel_erf(
    diag, rKL, diag) from C; S = Σ(Q − log Q) + (yᵀA⁻¹y + log det A)/N1), by torch autograd —
    an implementation that shares no code with kren and differentiates by backpropagation."""
    torch = pytest.importorskip("torch")
    Qt = torch.tensor(Q, dtype=torch.float64, requires_grad=True)
    rK = torch.tensor(C, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64)
    for l in range(len(Q)):
        d = torch.diagonal(rK)
        rK = Qt[l] / l1 * (2 / np.pi) * torch.arcsin(
            2 * rK / torch.sqrt((1 + 2 * d[:, None]) * (1 + 2 * d[None, :])))
    A = rK + T * torch.eye(len(y), dtype=torch.float64)
    S = torch.sum(Qt - torch.log(Qt)) + (yt @ torch.linalg.solve(A, yt) + torch.logdet(A)) / N
    S.backward()
    return Qt.grad.numpy()


@pytest.mark.parametrize("L", [2, 3])
def test_nested_form_is_a_saddle_point_of_the_deepbays_action(digits, L):
    """kren.DeepFC(form="nested") equals the local Newton root (1e-10) and is a root (to 1e-9) of
    the autograd gradient of the deepbays
    ``FC_deep`` action with every λ_l = l1 = 1.2, λ0 = l0 = 1, N1 = 100, T = 0.1; and it differs
    from the product form's solution (the forms part ways for erf, L ≥ 2)."""
    X, y = digits
    T, N, l1 = 0.1, 100.0, 1.2
    Q = _fit(X, y, L, T, N, 1.0, l1, "nested")
    Q_ref, C = _nested_newton(X, y, L, T, N, 1.0, l1)
    assert np.abs(Q - Q_ref).max() < 1e-10
    assert np.abs(_deepbays_style_gradient(Q, C, y, T, N, l1)).max() < 1e-9
    Qp = _fit(X, y, L, T, N, 1.0, l1, "product")
    assert np.abs(Q - Qp).max() > 1e-3
    assert np.all(np.abs(Q - 1) > 1e-3)
