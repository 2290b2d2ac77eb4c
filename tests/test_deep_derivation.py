"""Deep FC derivation (derivations.deep): steps D1–D6, where the product and nested forms part
ways, the kernel derivatives, and the limits of THEORY §5.9. Every symbolic check is exact; each
numeric one compares with an independent computation."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from derivations import deep as dp
from derivations.limits import linear_fc_closed_form
from derivations.steps import DerivationError, N, T


# ------------------------------------------------------------------------------ D1–D6
def test_d1_top_layer_is_the_one_hidden_layer_readout():
    step = dp.step_d1_top_layer()
    assert sp.expand(step.derived[0] - step.expected[0]) == 0
    assert sp.expand(step.derived[1] - step.expected[1]) == 0


def test_d2_preactivations_are_conditionally_gaussian():
    step = dp.step_d2_conditional_gaussian(P=2, n_prev=2)
    assert sp.expand(step.derived - step.expected) == 0
    # the exponent holds no cross term between the two units (independent units)
    t0 = [s for s in step.derived.free_symbols if s.name.startswith("t_0")]
    t1 = [s for s in step.derived.free_symbols if s.name.startswith("t_1")]
    assert all(sp.diff(step.derived, a, b) == 0 for a in t0 for b in t1)


def test_d3_one_unit_average_and_d4_amplitude():
    s3 = dp.step_d3_top_average()
    assert sp.cancel(sp.together(s3.derived - s3.expected)) == 0
    s4 = dp.step_d4_amplitude()
    assert sp.simplify(sp.expand_log(s4.derived - s4.expected, force=True)) == 0
    # numerically: the χ² rate (N/2)(ρ − 1 − log ρ) against the exact log-probability density
    # of a mean of N independent χ²₁ (a Gamma(N/2, 2/N) law): −(1/N) log p → (1/2)(ρ − 1 − log ρ)
    from scipy.stats import gamma
    rho = 1.7
    rates = [-gamma.logpdf(rho, a=n / 2, scale=2 / n) / n for n in (1e3, 1e4, 1e5)]
    want = 0.5 * (rho - 1 - np.log(rho))
    errs = [abs(r - want) for r in rates]
    assert errs[2] < 1e-4 and errs[1] < errs[0] and errs[2] < errs[1]    # O(log N / N)


def test_d5_where_the_forms_part_ways():
    step = dp.step_d5_closure()
    assert any("linear" in c for c in step.checked) and len(step.checked) == 4
    # erf's Euler defect ℰk − k is negative at positive correlation (k is concave in the
    # overall scale of its covariance): feeding a larger covariance gives less than scaling
    defect, homogeneous = dp.homogeneity_defect("erf")
    a, b = sp.Symbol("a", positive=True), sp.Symbol("b", positive=True)
    val = float(defect.xreplace({sp.Symbol("c", real=True): 0.4, a: 0.5, b: 0.8}))
    assert not homogeneous and val < 0
    for act in ("linear", "relu"):
        d, hom = dp.homogeneity_defect(act)
        assert hom and d == 0


@pytest.mark.parametrize("L,equal", [(1, True), (2, False), (3, False), (3, True)])
def test_d6_deep_action(L, equal):
    step = dp.step_d6_action(L=L, P=2, equal_widths=equal)
    assert step.checked


def test_d6_rejects_a_wrong_action():
    """The comparison used by D6 fails when one entropy weight is wrong."""
    from derivations.steps import symbolic_equal
    step = dp.step_d6_action(L=2, P=2, equal_widths=False)
    Q1 = sp.Symbol("Q_1", positive=True)
    wrong = step.expected + (Q1 - sp.log(Q1)) / 7
    assert not symbolic_equal(step.derived, wrong, gens=[sp.Symbol(f"y_{a}", real=True)
                                                         for a in range(2)])


def test_price_theorem_and_data_term_second_differential():
    assert dp.price_theorem_erf().checked
    step = dp.data_term_second_differential(P=2)
    assert step.checked


def test_layer_chain_rule_against_explicit_differentiation():
    """The printed chain rule, evaluated with the erf partials, equals ``sympy.diff`` of an
    explicit two-layer entry F = (q/λ) k(c(θ), a(θ), b(θ)) with concrete c, a, b."""
    ch = dp.layer_chain_rule()
    sy = ch["symbols"]
    parts = dp.kernel_partials("erf")
    t1, t2 = sp.symbols("t1 t2", positive=True)
    c = sp.Rational(1, 5) * t1 * t2 + t1**2 / 7
    a = sp.Rational(1, 2) + t1 / 3
    b = sp.Rational(3, 4) + t2**2 / 5
    q, lam = sp.Rational(6, 5), sp.Rational(4, 3)
    F = q / lam * dp.kernel_closed_form("erf", c, a, b)
    pt = {t1: sp.Rational(2, 3), t2: sp.Rational(5, 4)}
    cab = {sp.Symbol("c", real=True): c, sp.Symbol("a", real=True): a,
           sp.Symbol("b", real=True): b}
    env = {sy["q"]: q, sy["lam"]: lam}
    env.update({sy[nm]: parts[nm].xreplace(cab) for nm in dp.PARTIALS})
    env.update({sy["cm"]: c.diff(t1), sy["am"]: a.diff(t1), sy["bm"]: b.diff(t1),
                sy["cn"]: c.diff(t2), sy["an"]: a.diff(t2), sy["bn"]: b.diff(t2),
                sy["cmn"]: c.diff(t1, t2), sy["amn"]: a.diff(t1, t2),
                sy["bmn"]: b.diff(t1, t2)})
    for key, direct in (("F_m", F.diff(t1)), ("F_mn", F.diff(t1, t2))):
        got = ch[key].xreplace(env)
        assert abs(sp.N((got - direct).xreplace(pt), 40)) < 1e-35, key


# ------------------------------------------------------------------------------ product form
@pytest.mark.parametrize("L,equal", [(1, True), (2, True), (3, False)])
def test_product_derivatives_equal_sympy_diff(L, equal):
    n = dp.verify_product_derivatives(L=L, P=2, equal_widths=equal)
    assert n == L + L * L


# ------------------------------------------------------------------------------ limits
def test_L1_is_the_fc_action():
    step = dp.deep_L1_equals_fc(P=2)
    assert any("derivations.action" in c for c in step.checked)


@pytest.mark.parametrize("L,activation", [(2, "erf"), (3, "linear"), (2, "relu")])
def test_infinite_width(L, activation):
    assert dp.deep_infinite_width(L=L, P=2, activation=activation).checked


@pytest.mark.parametrize("L", [1, 2, 3])
def test_deep_linear_zero_temperature_symbolic(L):
    step = dp.deep_linear_zero_temperature(L=L, P=2)
    assert step.derived == step.expected


def test_deep_linear_closed_form_numeric():
    """The root satisfies Q^L (Q − (1 − α)) = s, is the only positive one (np.roots), L = 1 is
    THEORY §5.4, and unequal widths satisfy ν_l(Q_l − 1) = κ, κ + α = s/Π_l Q_l."""
    for alpha, s in ((0.4, 0.7), (1.6, 0.3), (1.0, 2.0)):
        q1 = dp.deep_linear_closed_form(alpha, s, 1)
        assert np.allclose(q1, linear_fc_closed_form(alpha, 1.0, s, 1.0), rtol=1e-13)
        for L in (2, 3, 5):
            Q = dp.deep_linear_closed_form(alpha, s, L)
            assert np.allclose(Q, Q[0], rtol=0, atol=0)
            assert abs(Q[0]**L * (Q[0] - (1 - alpha)) - s) < 1e-12 * max(1, s)
            roots = np.roots([1, -(1 - alpha)] + [0] * (L - 1) + [-s])
            pos = roots[(abs(roots.imag) < 1e-9) & (roots.real > 0)].real
            assert len(pos) == 1 and abs(pos[0] - Q[0]) < 1e-10
    nu = np.array([2.0, 0.5, 1.0])
    Q = dp.deep_linear_closed_form(0.7, 0.9, 3, nu=nu)
    kappa = nu * (Q - 1)
    assert np.ptp(kappa) < 1e-13 and abs(kappa[0] + 0.7 - 0.9 / np.prod(Q)) < 1e-13
    with pytest.raises(ValueError, match="alpha"):
        dp.deep_linear_closed_form(-1.0, 1.0, 2)
    with pytest.raises(ValueError, match="nu"):
        dp.deep_linear_closed_form(0.5, 1.0, 2, nu=[1.0])


def _value(S, Q, q):
    """S at Q = q in 30-digit arithmetic (lambdify to mpmath)."""
    import mpmath
    mpmath.mp.dps = 30
    return sp.lambdify(Q, S, "mpmath")(*[mpmath.mpf(sp.Rational(v).p) / sp.Rational(v).q
                                         for v in q])


def test_forms_differ_for_erf_beyond_one_layer():
    """The two explicit actions agree for linear σ and at L = 1, and for erf at L = 2 they agree
    at Q_1 = 1 only (exact rational data, 30-digit evaluation)."""
    C = sp.Matrix([[sp.Rational(9, 10), sp.Rational(3, 10)],
                   [sp.Rational(3, 10), sp.Rational(7, 10)]])
    y = [1, -1]
    args = dict(T_=sp.Rational(1, 10), Ns=[5, 5], lambdas=[1, sp.Rational(3, 2)])
    vals = {}
    for form in dp.FORMS:
        for act in ("erf", "linear"):
            S, Q = dp.nested_explicit_action(form, act, C, y, **args)
            vals[(form, act)] = [_value(S, Q, (q1, sp.Rational(4, 5)))
                                 for q1 in (1, sp.Rational(3, 2))]
    lin_p, lin_n = vals[("product", "linear")], vals[("nested", "linear")]
    assert all(abs(a - b) < 1e-25 for a, b in zip(lin_p, lin_n))
    erf_p, erf_n = vals[("product", "erf")], vals[("nested", "erf")]
    assert abs(erf_p[0] - erf_n[0]) < 1e-25            # Q_1 = 1: the same kernel
    assert abs(erf_p[1] - erf_n[1]) > 1e-3             # Q_1 = 3/2: the forms part ways
    one = [dp.nested_explicit_action(form, "erf", C, y, T_=sp.Rational(1, 10), Ns=[5],
                                     lambdas=[sp.Rational(3, 2)]) for form in dp.FORMS]
    v = [_value(S, Q, (sp.Rational(7, 4),)) for S, Q in one]
    assert abs(v[0] - v[1]) < 1e-25


def test_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        dp.kernel_closed_form("tanh")
    with pytest.raises(ValueError, match="zero-mean"):
        dp.kernel_partials("relu")
    with pytest.raises(ValueError, match="form"):
        dp.nested_explicit_action("sideways", "erf", [[1]], [1], 1, [1], [1])
    assert issubclass(DerivationError, AssertionError) and T.is_positive and N.is_positive
