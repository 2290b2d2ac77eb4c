"""THEORY §3 steps 1–8 derived in SymPy (derivations.steps) and the Monte Carlo checks of the
Gaussian-equivalence step (derivations.gaussian_equivalence).

Every symbolic test compares a derived expression with the formula THEORY states, exactly
(rational-function cancellation); the numeric tests compare with independent quadrature,
the generated NumPy action, or Monte Carlo averages with tolerances set from their standard
errors.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import sympy as sp
from scipy import integrate

from derivations import steps as st
from derivations import gaussian_equivalence as ge
from derivations.steps import N, T, lambda1


# ------------------------------------------------------------------------ the Gaussian lemma
def test_gaussian_lemma_by_sympy_and_by_quadrature():
    integral, result, expected = st.gaussian_lemma()
    assert sp.simplify(result - expected) == 0
    # independent check by numerical quadrature at a complex linear coefficient b = 0.7 − 1.3i
    a, b = 1.9, 0.7 - 1.3j
    re = integrate.quad(lambda x: (np.exp(-a * x * x / 2 + b * x)).real, -np.inf, np.inf,
                        epsabs=1e-13)[0]
    im = integrate.quad(lambda x: (np.exp(-a * x * x / 2 + b * x)).imag, -np.inf, np.inf,
                        epsabs=1e-13)[0]
    by_name = {"a": a, "beta": b.real, "gamma": b.imag}
    want = complex(expected.xreplace({x: by_name[x.name] for x in expected.free_symbols}).evalf())
    assert abs(re + 1j * im - want) < 1e-10          # quadrature accuracy ~1e-13


def test_gaussian_integrate_matches_matrix_formula_and_rejects_bad_input():
    x, y = sp.symbols("x y", real=True)
    g = st.gaussian_integrate(-(2 * x**2 + 2 * x * y + 3 * y**2) / 2 + x - 2 * y, [x, y])
    # ∫ exp(−½ vᵀMv + bᵀv) = 2π/√det M · exp(½ bᵀM⁻¹b), M = [[2,1],[1,3]], b = (1, −2)
    M = sp.Matrix([[2, 1], [1, 3]])
    b = sp.Matrix([1, -2])
    assert sp.simplify(g.pref_sq - (2 * sp.pi)**2 / M.det()) == 0
    assert sp.simplify(g.exponent - (b.T * M.inv() * b)[0, 0] / 2) == 0
    with pytest.raises(ValueError, match="degree 3"):
        st.gaussian_integrate(-x**2 + x**3, [x])
    with pytest.raises(ValueError, match="diverges"):
        st.gaussian_integrate(x * y, [x])


def test_symbolic_equal_is_exact_and_can_fail():
    a, b = sp.symbols("a b", positive=True)
    assert st.symbolic_equal(sp.log(a * b) + 1 / (a + b), sp.log(a) + sp.log(b) + 1 / (b + a))
    assert not st.symbolic_equal(sp.log(a * b), sp.log(a) + sp.log(b) + 1e-30 * a)
    assert not st.symbolic_equal(sp.log(a + b), sp.log(a) + sp.log(b))


# ------------------------------------------------------------------------ steps 1–4
def test_step1_fourier_delta_limit():
    step = st.step1_fourier_delta()
    assert sp.simplify(step.derived - step.expected) == 0
    assert step.expected == sp.exp(-sp.Symbol("c", real=True)**2 / 2)


@pytest.mark.parametrize("P,n,channels", [(2, 2, 2), (3, 1, 2)])
def test_step2_readout_gives_empirical_kernel(P, n, channels):
    step = st.step2_readout(P, n, channels)
    sbar = sp.Matrix(P, 1, lambda m, _: sp.Symbol(f"sbar_{m}", real=True))
    phi = [sp.Matrix(P, 1, lambda m, _: sp.Symbol(f"phi_{a}{i}^{m}", real=True))
           for a in range(channels) for i in range(n)]
    K_hat = sum((p * p.T for p in phi), sp.zeros(P, P)) / (lambda1 * channels * n)
    assert sp.expand(step.derived + (sbar.T * K_hat * sbar)[0, 0] / 2) == 0
    # the readout scale matters: 1/(λ1 N) instead of 1/(λ1 N n) is detected
    if n > 1:
        assert sp.expand(step.derived + (sbar.T * K_hat * n * sbar)[0, 0] / 2) != 0


@pytest.mark.parametrize("P", [1, 3])
def test_step3_outputs(P):
    step = st.step3_outputs(P)
    s = [sp.Symbol(f"sbar_{m}", real=True) for m in range(P)]
    y = [sp.Symbol(f"y_{m}", real=True) for m in range(P)]
    assert sp.expand(step.derived - sum(sp.I * a * b - T * a * a / 2 for a, b in zip(s, y))) == 0


@pytest.mark.parametrize("kind", ["fc", "lcn", "cnn"])
def test_step4_factorizes_over_channels(kind):
    step = st.step4_channel_factorization(kind, P=2, n=2, channels=3)
    assert sp.expand(step.derived - step.expected) == 0


# ------------------------------------------------------------------------ step 5
def test_step5_moments():
    assert st.step5_moments(P=2, n=2).checked


@pytest.mark.parametrize("n,diagonal", [(1, False), (2, False), (2, True), (3, True)])
def test_step5_gaussian_equivalence_symbolic(n, diagonal):
    step = st.step5_gaussian_equivalence(n, diagonal)
    pref_sq, expo = step.derived
    want_sq, want_E = step.expected
    assert sp.cancel(pref_sq - want_sq) == 0
    assert st._same_polynomial(expo, want_E, [sp.Symbol(f"m_{i}", real=True) for i in range(n)])


def test_step5_formula_against_quadrature():
    """The closed form at n = 2 against a two-dimensional quadrature of the Gaussian density."""
    m = np.array([0.4, -0.9])
    C = np.array([[1.3, 0.5], [0.5, 0.8]])
    s = 0.7
    Ci = np.linalg.inv(C)
    norm = 1 / (2 * np.pi * np.sqrt(np.linalg.det(C)))

    def f(q2, q1):
        q = np.array([q1, q2])
        r = q - m
        return norm * np.exp(-0.5 * r @ Ci @ r - q @ q / (2 * s))

    val = integrate.dblquad(f, -12, 12, -12, 12, epsabs=1e-12)[0]
    assert abs(val - ge.gaussian_average(m, C, s)) < 1e-9      # quadrature error ≲ 1e-11


# ------------------------------------------------------------------------ steps 6–8
@pytest.mark.parametrize("kind,n", [("fc", 1), ("lcn", 2), ("cnn", 2)])
def test_step6_order_parameters_give_K_R(kind, n):
    d = st.explicit_data(kind, n, 2, zero_mean=False)
    step = st.step6_order_parameters(d)
    diff = (step.derived - st.theory_K_R(d)).applyfunc(lambda e: sp.cancel(sp.together(e)))
    assert diff == sp.zeros(2, 2)


@pytest.mark.parametrize("P", [1, 2, 3])
def test_step7_sbar_integral(P):
    step = st.step7_sbar_integral(P)
    assert st._same_polynomial(step.derived, step.expected,
                               [sp.Symbol(f"y_{m}", real=True) for m in range(P)])


def _random_point(expr, seed):
    rng = random.Random(seed)
    pt = {}
    for s in expr.free_symbols:
        if s.name.startswith(("Q_", "q_")) or s.name == "Q":
            diag = s.name in ("Q",) or s.name.startswith("q_") or s.name[-1] == s.name[-2]
            pt[s] = sp.Rational(rng.randint(9, 14), 10) if diag else sp.Rational(rng.randint(-2, 2), 20)
        elif s.name.startswith(("Qbar", "qbar")):
            diag = s.name == "Qbar" or s.name.startswith("qbar_") or s.name[-1] == s.name[-2]
            pt[s] = sp.Rational(rng.randint(0, 5), 10) if diag else sp.Rational(rng.randint(-1, 1), 20)
        else:
            pt[s] = sp.Rational(rng.randint(5, 20), 10)
    return pt


@pytest.mark.parametrize("kind,n", [("fc", 1), ("lcn", 2), ("cnn", 2)])
def test_step8_action_equals_theory(kind, n):
    d = st.explicit_data(kind, n, 2, zero_mean=False)
    step = st.step8_action(d)
    # an independent numerical comparison at a rational point (60 digits)
    pt = _random_point(step.expected, 3)
    a = sp.N(step.derived.xreplace(pt), 60)
    b = sp.N(step.expected.xreplace(pt), 60)
    assert abs(a - b) < 1e-50


def _generated_data(kind, n, P, seed=0):
    """Random valid kernels (from random features), means, labels and order parameters."""
    rng = np.random.default_rng(seed)
    Phi = rng.standard_normal((n, P + 2, P)) / np.sqrt(P + 2)
    K = {(i, j): Phi[i].T @ Phi[j] for i in range(n) for j in range(n)}
    mu = rng.uniform(0.1, 0.6, (n, P))
    y = rng.standard_normal(P)
    B = rng.standard_normal((n, n)) * 0.1
    Q = np.eye(n) + (B + B.T) / 2
    if kind != "cnn":
        Q = np.diag(np.diag(Q))
    Qbar = np.linalg.inv(Q) - np.eye(n) + 0.05 * np.diag(rng.uniform(size=n))
    return K, mu, y, Q, Qbar


@pytest.mark.parametrize("kind,n,zero_mean", [("cnn", 2, False), ("cnn", 2, True),
                                              ("lcn", 2, False), ("fc", 1, False)])
def test_derived_action_equals_generated_numpy_action(kind, n, zero_mean):
    """The S derived by the steps, evaluated numerically, equals kren.generated.<kind>.action."""
    import importlib
    gen = importlib.import_module(f"kren.generated.{kind}")
    P = 2
    d = st.explicit_data(kind, n, P, zero_mean)
    S = st.eliminate_Qbar(d).derived if zero_mean else st.step8_action(d).derived
    K, mu, y, Q, Qbar = _generated_data(kind, n, P)
    if zero_mean:
        mu = np.zeros_like(mu)
    sub = {T: sp.Float(0.3), N: sp.Float(7.0), lambda1: sp.Float(1.3)}
    for (i, j), blk in d.K.items():
        for a in range(P):
            for b in range(P):
                sub[blk[a, b]] = K[(i, j)][a, b]
    for i in range(n):
        for a in range(P):
            if not zero_mean:
                sub[d.mu[i, a]] = mu[i, a]
    for a in range(P):
        sub[d.y[a]] = y[a]
    for i in range(n):
        for j in range(n):
            if d.Q[i, j] != 0:
                sub[d.Q[i, j]] = Q[i, j]
            if not zero_mean and d.Qbar[i, j] != 0:
                sub[d.Qbar[i, j]] = Qbar[i, j]
    val = float(sp.N(S.xreplace(sub)))
    pairs = np.array([(i, j) for i in range(n) for j in range(i, n)]) if kind == "cnn" \
        else np.array([(i, i) for i in range(n)])
    blocks = np.stack([K[(i, j)] for i, j in pairs])
    args = dict(blocks=blocks, pairs=pairs, y=y, T=0.3, N=7.0, lambda1=1.3)
    if kind == "lcn":
        q, qbar = np.diag(Q), np.diag(Qbar)
        ref = gen.action_zero_mean(q, **args) if zero_mean else gen.action(q, qbar, mu=mu, **args)
    elif kind == "fc":
        ref = gen.action_zero_mean(Q[0, 0], **args) if zero_mean else \
            gen.action(Q[0, 0], Qbar[0, 0], mu=mu[0], **args)
    else:
        ref = gen.action_zero_mean(Q, **args) if zero_mean else gen.action(Q, Qbar, mu=mu, **args)
    assert abs(val - float(ref)) < 1e-10 * max(1.0, abs(val))      # float64 round-off


@pytest.mark.parametrize("kind,n", [("fc", 1), ("lcn", 2), ("cnn", 2), ("cnn", 3)])
def test_eliminate_Qbar(kind, n):
    d = st.explicit_data(kind, n, 2, zero_mean=True)
    step = st.eliminate_Qbar(d)
    Qb = step.equations[1][1]
    want = d.Q.inv() - sp.eye(n)
    assert (Qb - want).applyfunc(sp.simplify) == sp.zeros(n, n)


@pytest.mark.parametrize("kind,n,P,zero_mean", [
    ("fc", 1, 2, True), ("fc", 1, 2, False), ("lcn", 2, 2, True), ("lcn", 2, 2, False),
    ("cnn", 2, 2, True), ("cnn", 3, 2, True), ("cnn", 2, 2, False)])
def test_saddle_point_equations(kind, n, P, zero_mean):
    d = st.explicit_data(kind, n, P, zero_mean)
    step = st.saddle_point_equations(d)
    assert set(step.derived) == set(step.expected)
    assert any("derivations.action" in c for c in step.checked)


def test_saddle_point_bruteforce_fc():
    """sympy.diff of the fully explicit FC action (no chain rule) at P = 2."""
    d = st.explicit_data("fc", 1, 2, zero_mean=True)
    assert st.saddle_point_bruteforce(d) == 1


def test_saddle_point_detects_a_wrong_gradient():
    d = st.explicit_data("fc", 1, 2, zero_mean=True)
    S = st.theory_action_zero_mean(d)
    g = st.theory_gradients(d)["dS_dQ"][0, 0]
    Q = d.Q[0, 0]
    assert st._same_polynomial(sp.diff(S, Q), g, list(d.y))
    assert not st._same_polynomial(sp.diff(S, Q), g + (g - 1 + 1 / Q), list(d.y))


@pytest.mark.parametrize("kind,n,P,zero_mean,symbolic", [
    ("fc", 1, 2, True, True), ("fc", 1, 2, False, True), ("lcn", 2, 2, True, True),
    ("cnn", 2, 2, True, True), ("cnn", 2, 1, False, True), ("lcn", 2, 1, False, True),
    ("cnn", 3, 2, True, False)])
def test_compare_with_action_module(kind, n, P, zero_mean, symbolic):
    assert st.compare_with_action_module(kind, n, P, zero_mean, symbolic=symbolic)


@pytest.mark.parametrize("activation,zero", [("erf", True), ("linear", True), ("relu", False)])
def test_unit_mean_symbolic(activation, zero):
    res, expected = st.unit_mean_symbolic(activation)
    assert (res == 0) == zero
    from kren.activations import ZERO_MEAN, unit_mean
    assert ZERO_MEAN[activation] == zero
    a = sp.Symbol("a", positive=True)
    assert abs(float(res.subs(a, 0.7)) - float(unit_mean(activation, 0.7))) < 1e-15


def test_explicit_data_rejects_bad_input():
    with pytest.raises(ValueError, match="kind"):
        st.explicit_data("rnn", 1, 2, True)
    with pytest.raises(ValueError, match="FC has n = 1"):
        st.explicit_data("fc", 2, 2, True)


def test_derive_runs_every_step_for_zero_mean_fc():
    steps = st.derive("fc", "erf", P=2)
    assert [s.number for s in steps] == ["1", "2", "3", "4", "5a", "5", "6", "7", "8", "8a",
                                          "8c"]
    assert all(s.latex().startswith(r"\begin{aligned}") for s in steps)


# ------------------------------------------------------------------------ Gaussian equivalence
@pytest.mark.parametrize("n,seed", [(1, 0), (2, 1), (3, 2)])
def test_gaussian_equivalence_exact_for_gaussian_q(n, seed):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, n))
    C = B @ B.T + 0.3 * np.eye(n)
    m = rng.standard_normal(n)
    s = np.trace(C)                                 # Tr C/s = 1: far from the linear regime
    est, se = ge.mc_gaussian_average(m, C, s, n_samples=200_000, seed=seed)
    exact = ge.gaussian_average(m, C, s)
    # 4.5 standard errors: a false alarm has probability ~7e-6 (and the seed is fixed)
    assert abs(est - exact) < 4.5 * se
    # the test has power: dropping the mean term moves the value by far more than the error
    assert abs(est - ge.gaussian_average(np.zeros(n), C, s)) > 10 * se or np.allclose(m, 0)


def test_gaussian_average_rejects_bad_input():
    with pytest.raises(ValueError, match="symmetric"):
        ge.gaussian_average([0, 0], [[1, 0.5], [0, 1]], 1.0)
    with pytest.raises(ValueError, match="positive semi-definite"):
        ge.gaussian_average([0, 0], [[1, 2], [2, 1]], 1.0)
    with pytest.raises(ValueError, match="s = "):
        ge.gaussian_average([0], [[1]], -1.0)


def _small_arch(activation, kind="cnn"):
    from kren.architecture import Architecture
    return Architecture(kind, input_shape=(1, 8), mask=4, stride=2, activation=activation)


@pytest.mark.parametrize("kind", ["cnn", "lcn"])
def test_linear_features_are_exactly_gaussian(kind):
    """σ(h) = h: q is linear in the Gaussian w, so the true average equals the formula."""
    arch = _small_arch("linear", kind)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((6, 8))
    sbar = rng.standard_normal(6) / np.sqrt(6)
    g = ge.gaussian_equivalent(arch, X, sbar, 1.0)
    s = g["q2"]
    g = ge.gaussian_equivalent(arch, X, sbar, s)
    tr = ge.true_average(arch, X, sbar, s, n_samples=200_000, seed=11)
    assert abs(tr["value"] - g["value"]) < 4.5 * tr["stderr"]
    assert abs(tr["q4"] - g["q4"]) < 4.5 * tr["q4_stderr"]        # even the 4th moment


@pytest.mark.parametrize("activation,kind", [("erf", "cnn"), ("relu", "cnn"), ("erf", "lcn")])
def test_nonlinear_features_first_order_exact_and_bounded(activation, kind):
    arch = _small_arch(activation, kind)
    rng = np.random.default_rng(7)
    X = rng.standard_normal((5, 8))
    sbar = rng.standard_normal(5) / np.sqrt(5)
    s0 = ge.gaussian_equivalent(arch, X, sbar, 1.0)["q2"]
    for ratio in (0.3, 1.0):
        s = s0 / ratio
        g = ge.gaussian_equivalent(arch, X, sbar, s)
        tr = ge.true_average(arch, X, sbar, s, n_samples=200_000, seed=13)
        # first order exact: E|q|² = Tr C + |m|² (the definition of K_ij and μ_i)
        assert abs(tr["q2"] - g["q2"]) < 4.5 * tr["q2_stderr"]
        # second order: |true − GE| ≤ max(E|q|⁴)/(8s²) (MC error on both sides added)
        bound = ge.second_order_bound(tr["q4"] + 4.5 * tr["q4_stderr"], g["q4"], s)
        assert abs(tr["value"] - g["value"]) <= bound + 4.5 * tr["stderr"]


def test_erf_features_are_not_exactly_gaussian():
    """The check has power: with a 4-dimensional patch, q for erf is measurably non-Gaussian
    at Tr C/s = 1 (the relative error is about −2.5%, 20+ standard errors)."""
    rows = ge.report("erf", "cnn", Ps=(2,), n_samples=100_000)
    r = rows[0]
    assert abs(r["rel_error"]) > 5 * r["rel_stderr"]
    assert abs(r["true"] - r["GE"]) <= r["bound"] + 4.5 * r["stderr"]
