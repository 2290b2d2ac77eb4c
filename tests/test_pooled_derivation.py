"""THEORY §3 for the pooled readout (derivations.pooled) and its limits (derivations.limits,
THEORY §5.8): every symbolic statement is checked exactly; the derived action is also evaluated
numerically against the generated FC action on the generated pooled block.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from derivations import limits as L
from derivations import pooled as pl
from derivations import steps as st
from derivations.steps import N, T, lambda1


# ------------------------------------------------------------------------ steps 2, 4, 5
@pytest.mark.parametrize("P,n,channels", [(2, 2, 2), (2, 3, 1)])
def test_step2_pooled_readout_gives_the_pooled_empirical_kernel(P, n, channels):
    step = pl.step2_pooled_readout(P, n, channels)
    sbar = sp.Matrix(P, 1, lambda m, _: sp.Symbol(f"sbar_{m}", real=True))
    phi = {(a, i): sp.Matrix(P, 1, lambda m, _: sp.Symbol(f"phi_{a}{i}^{m}", real=True))
           for a in range(channels) for i in range(n)}
    # written independently: K̂ = (1/(λ1 N n²)) Σ_a (Σ_i φ_ai)(Σ_j φ_aj)ᵀ
    K_hat = sp.zeros(P, P)
    for a in range(channels):
        s = sum((phi[(a, i)] for i in range(n)), sp.zeros(P, 1))
        K_hat += s * s.T
    K_hat /= lambda1 * channels * n**2
    assert sp.expand(step.derived + (sbar.T * K_hat * sbar)[0, 0] / 2) == 0
    # the local readout's kernel (1/(λ1 N n)) Σ_ai φ_ai φ_aiᵀ is a different quadratic form
    local = sum((p * p.T for p in phi.values()), sp.zeros(P, P)) / (lambda1 * channels * n)
    assert sp.expand(step.derived + (sbar.T * local * sbar)[0, 0] / 2) != 0


def test_step4_pooled_factorizes_over_channels_with_a_scalar_q():
    step = pl.step4_pooled_factorization(P=2, n=3, channels=2)
    assert sp.expand(step.derived - step.expected) == 0


@pytest.mark.parametrize("n", [2, 3])
def test_step5_pooled_moments(n):
    step = pl.step5_pooled_moments(P=2, n=n)
    assert sp.expand(step.derived - step.expected) == 0
    # Var q holds every cross block: K_01[0, 1] enters through K_01 and K_10 = K_01ᵀ, with
    # coefficient 2 s̄_0 s̄_1/n²
    K01 = sp.Symbol("K01_01", real=True)
    s0, s1 = sp.symbols("sbar_0 sbar_1", real=True)
    assert sp.expand(step.derived).coeff(K01) == 2 * s0 * s1 / n**2


def test_step5_pooled_gaussian_equivalence_scalar():
    step = pl.step5_pooled_gaussian_equivalence()
    assert step.checked and "Gaussian" in step.title


# ------------------------------------------------------------------------ steps 6, 8
def test_step6_pooled_K_R_in_blocks():
    step = pl.step6_pooled_order_parameters(n=2, P=2)
    diff = (step.derived - step.expected).applyfunc(lambda e: sp.cancel(sp.together(e)))
    assert diff == sp.zeros(2, 2)


@pytest.mark.parametrize("n,zero_mean", [(2, True), (2, False), (3, True)])
def test_step8_pooled_action_is_fc_action_on_pooled_kernel(n, zero_mean):
    step = pl.step8_pooled_action(n, 2, zero_mean)
    # an independent numerical comparison at a rational point (60 digits)
    rng = np.random.default_rng(n)
    pt = {}
    for s in step.expected.free_symbols | step.derived.free_symbols:
        if s.name == "Q":
            pt[s] = sp.Rational(11, 10)
        elif s.name == "Qbar":
            pt[s] = sp.Rational(3, 10)
        else:
            pt[s] = sp.Rational(int(rng.integers(5, 20)), 10)
    a = sp.N(step.derived.xreplace(pt), 60)
    b = sp.N(step.expected.xreplace(pt), 60)
    assert abs(a - b) < 1e-50


def test_eliminate_Qbar_pooled_needs_zero_mean():
    with pytest.raises(ValueError, match="zero-mean"):
        pl.eliminate_Qbar_pooled(pl.pooled_data(2, 2, zero_mean=False))


@pytest.mark.parametrize("zero_mean", [True, False])
def test_derived_pooled_action_equals_generated_fc_action_on_generated_pooled_block(zero_mean):
    """S of the pooled steps, evaluated numerically on random valid blocks K_ij (from random
    features), = kren.generated.fc.action(_zero_mean) on kren.generated.pool.pooled_kernel and
    pooled_means of the same blocks: derivation → printed code, end to end."""
    from kren.generated import fc, pool
    n, P = 2, 2
    pdat = pl.pooled_data(n, P, zero_mean)
    step = pl.step8_pooled_action(n, P, zero_mean)
    rng = np.random.default_rng(5)
    Phi = rng.standard_normal((n, P + 2, P)) / 2
    K = {(i, j): Phi[i].T @ Phi[j] for i in range(n) for j in range(n)}
    mu = np.zeros((n, P)) if zero_mean else rng.uniform(0.1, 0.6, (n, P))
    y = rng.standard_normal(P)
    Q_, Qb_, T_, N_, l1 = 1.2, 0.3, 0.4, 7.0, 1.3
    sub = {T: T_, N: N_, lambda1: l1, pdat.fc.Q[0, 0]: Q_, pdat.fc.Qbar[0, 0]: Qb_}
    for (i, j), blk in pdat.cnn.K.items():
        for a in range(P):
            for b in range(P):
                sub[blk[a, b]] = K[(i, j)][a, b]
    for i in range(n):
        for a in range(P):
            if not zero_mean:
                sub[pdat.cnn.mu[i, a]] = mu[i, a]
    for a in range(P):
        sub[pdat.fc.y[a]] = y[a]
    S_sym = float(step.derived.xreplace(sub))
    pairs = np.array([(i, j) for i in range(n) for j in range(i, n)])
    blocks = np.stack([K[tuple(p)] for p in pairs])
    Kp = pool.pooled_kernel(blocks, pairs, n)[None]
    if zero_mean:
        S_gen = fc.action_zero_mean(Q_, Kp, None, y, T_, N_, l1)   # both drop the constant −1
    else:
        S_gen = fc.action(Q_, Qb_, Kp, None, pool.pooled_means(mu), y, T_, N_, l1)
    assert S_sym == pytest.approx(S_gen, rel=1e-12)


def test_pooling_program_evaluates_to_its_definitions():
    assert pl.verify_pooling_program(n=2, P=2, P0=2) == 2 * 2 + 2 + 4 + 4 + 2
    assert pl.verify_pooling_program(n=3, P=2, P0=1) > 0


def test_derive_pooled_runs_every_step():
    steps = pl.derive(zero_mean=True, n=2, P=2)
    assert [s.number for s in steps] == ["1", "2p", "3", "4p", "5p", "5pe", "6p", "7", "8p",
                                          "8p", "8c"]
    assert all(s.checked for s in steps)
    assert "K_{\\rm pool}" in steps[8].markdown()


# ------------------------------------------------------------------------ limits (THEORY §5.8)
@pytest.mark.parametrize("n,zero_mean", [(2, True), (2, False)])
def test_pooled_equals_fc(n, zero_mean):
    step = L.pooled_equals_fc(n, 2, zero_mean)
    assert any("derivations.action" in c for c in step.checked)
    assert any("gradient programs" in c for c in step.checked)


@pytest.mark.parametrize("zero_mean", [True, False])
def test_pooled_n1_equals_fc(zero_mean):
    step = L.pooled_n1_equals_fc(P=2, zero_mean=zero_mean)
    assert st.symbolic_equal(step.derived, step.expected,
                             gens=[sp.Symbol(f"y_{a}", real=True) for a in range(2)])


@pytest.mark.parametrize("zero_mean", [True, False])
def test_pooled_infinite_width_is_the_pooled_nngp_kernel(zero_mean):
    step = L.pooled_infinite_width(2, 2, zero_mean)
    diff = (step.derived - step.expected).applyfunc(lambda e: sp.cancel(sp.together(e)))
    assert diff == sp.zeros(2, 2)
    assert any("cross-patch" in c for c in step.checked)


@pytest.mark.parametrize("n", [2, 3])
def test_pooled_K_R_is_the_cnn_K_R_on_a_rank_one_Q(n):
    L.pooled_rank_one_cnn(n, 2, zero_mean=False)
    # and not on a diagonal Q (the LCN direction): Q^c = (Q/n) 𝟙 misses the cross blocks
    pdat = pl.pooled_data(n, 2, zero_mean=True)
    Q = pdat.fc.Q[0, 0]
    diag = sum((Q / n * pdat.cnn.K[(i, i)] for i in range(n)), sp.zeros(2, 2)) / (lambda1 * n)
    assert (diag - st.theory_K_R(pdat.fc)).applyfunc(sp.expand) != sp.zeros(2, 2)


@pytest.mark.parametrize("zero_mean", [True, False])
def test_pooled_predictor_is_the_fc_cross_program_on_pooled_blocks(zero_mean):
    step = L.pooled_predictor(2, 2, 2, zero_mean)
    diff = (step.derived - step.expected).applyfunc(lambda e: sp.cancel(sp.together(e)))
    assert diff == sp.zeros(2, 2)
