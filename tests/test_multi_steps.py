"""THEORY §3c, §5.7: the D-output derivation (derivations.multi_steps) and its symbolic limits.

Every step verifies itself exactly (rational-function cancellation) and raises if a derived
expression differs from the formula THEORY states; the tests run the steps at the smallest sizes
that exercise every index (two outputs, two patches where the architecture has patches) and add
checks that can fail: a wrong formula is detected, and the symbolic K_R equals the NumPy
assembly of kren.multi_linalg at an exact rational point.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from derivations import multi_steps as ms
from derivations import steps as st
from derivations.steps import N, T, lambda1


# ------------------------------------------------------------------------ steps 2–6
def test_step2_and_step3_with_two_outputs():
    s2 = ms.step2_multi_readout(P=1, n=2, D=2, channels=1)
    assert sp.expand(s2.derived - s2.expected) == 0
    # the readout scale 1/(λ1 N n): with n = 2 a kernel of twice the size is detected
    assert sp.expand(s2.derived - 2 * s2.expected) != 0
    s3 = ms.step3_multi_outputs(P=1, D=2)
    assert sp.expand(s3.derived - s3.expected) == 0


@pytest.mark.parametrize("kind", ["cnn", "lcn"])
def test_step4_factorizes_over_channels_and_step5_moments(kind):
    s4 = ms.step4_multi_factorization(kind, P=1, n=2, D=2, channels=2)
    assert sp.expand(s4.derived - s4.expected) == 0
    s5 = ms.step5_multi_moments(P=1, n=2, D=2, kind=kind)
    # CNN: all 4 patch pairs × 4 output pairs; LCN: the 2 diagonal pairs × 4
    assert s5.checked == [f"{kind} P=1 n=2 D=2: {16 if kind == 'cnn' else 8} covariances"]


def test_step6_order_parameters_fc_with_mean():
    d = ms.multi_data("fc", 1, 2, 1, zero_mean=False)
    s6 = ms.step6_multi_order_parameters(d)
    diff = (s6.derived - s6.expected).applyfunc(lambda e: sp.cancel(sp.together(e)))
    assert diff == sp.zeros(2, 2)


# ------------------------------------------------------------------------ limits (THEORY §5.7)
@pytest.mark.parametrize("kind,n,zero_mean", [("fc", 1, True), ("fc", 1, False),
                                              ("lcn", 2, True), ("cnn", 2, True)])
def test_D1_is_the_single_output_action(kind, n, zero_mean):
    step = ms.d1_is_single_output(kind, n=n, P=1, zero_mean=zero_mean)
    assert st.symbolic_equal(step.derived, step.expected)


@pytest.mark.parametrize("kind,n", [("fc", 1), ("cnn", 2)])
def test_Q_identity_gives_D_independent_GPs(kind, n):
    step = ms.identity_gives_independent_gps(kind, n=n, D=2, P=1)
    assert st.symbolic_equal(step.derived, step.expected)


def test_output_coupling_in_Q_couples_the_outputs():
    """The independent-GP limit can fail: an off-diagonal output entry Q_(0,0),(0,1) = c makes the
    off-diagonal output block of K_R equal to c·K/λ1 (FC), not zero."""
    d = ms.multi_data("fc", 1, 2, 2, zero_mean=True)
    c = sp.Symbol("c", real=True)
    K_R = ms.theory_multi_K_R(d, Q=sp.Matrix([[1, c], [c, 1]]))
    assert (K_R[:2, 2:] - c * d.K[(0, 0)] / lambda1).applyfunc(sp.expand) == sp.zeros(2, 2)
    assert K_R[:2, 2:] != sp.zeros(2, 2)


def test_n1_cnn_lcn_fc_coincide():
    step = ms.n1_cnn_lcn_fc(D=2, P=1, zero_mean=True)
    assert st.symbolic_equal(step.derived, step.expected)
    step = ms.n1_cnn_lcn_fc(D=2, P=1, zero_mean=False)
    assert st.symbolic_equal(step.derived, step.expected)


def test_wrong_assembly_is_detected():
    """A K_R with the output indices of Q transposed in the cross-patch blocks (d ↔ e) is not the
    THEORY §3c assembly: step 6's check compares against the correct one and must differ."""
    d = ms.multi_data("cnn", 2, 2, 2, zero_mean=True)
    good = ms.theory_multi_K_R(d)
    Qt = sp.Matrix(4, 4, lambda I, J: d.Q[(I // 2) * 2 + J % 2, (J // 2) * 2 + I % 2])
    bad = ms.theory_multi_K_R(d, Q=Qt)
    assert (good - bad).applyfunc(sp.expand) != sp.zeros(4, 4)


def test_symbolic_K_R_equals_numpy_assembly_at_a_rational_point():
    """THEORY §3c assembly in SymPy (exact) = kren.multi_linalg.multi_pair_combine + the mean
    term in floating point, to round-off (1e-12 on entries of order 1)."""
    from kren.multi_linalg import multi_pair_combine
    d = ms.multi_data("cnn", 2, 2, 2, zero_mean=False)
    at = ms.rational_point(d, seed=1)
    exact = ms.theory_multi_K_R(d, Q=d.Q.xreplace(at), Qbar=d.Qbar.xreplace(at))
    exact = np.array(exact.xreplace(at).evalf(), dtype=float)
    n, D, P = 2, 2, 2
    lam = float(at[lambda1])
    blocks = np.array([np.array(d.K[p].xreplace(at), dtype=float) for p in [(0, 0), (0, 1), (1, 1)]])
    pairs = np.array([[0, 0], [0, 1], [1, 1]])
    mu = np.array(d.mu.xreplace(at), dtype=float)
    Q = np.array(d.Q.xreplace(at), dtype=float)
    Qbar = np.array(d.Qbar.xreplace(at), dtype=float)
    mublocks = np.array([np.outer(mu[i], mu[j]) for i, j in pairs])
    R = np.linalg.inv(np.eye(n * D) + Qbar)
    num = (multi_pair_combine(Q, blocks - mublocks, pairs, D)
           + multi_pair_combine(R, mublocks, pairs, D)) / (lam * n)
    assert np.max(np.abs(num - exact)) < 1e-12 * max(1.0, np.max(np.abs(exact)))


def test_derive_multi_runs_every_step():
    """Steps 2–8 for the FC, D = 2; step 8 compares the action written out from THEORY §3c with
    derivations.multi_output, from which kren/generated/multi*.py are printed."""
    steps = ms.derive_multi("fc", 1, D=2, P=1, zero_mean=True)
    assert [s.number for s in steps] == ["2D", "3D", "4D", "5D", "6D", "8D"]


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="FC has n = 1"):
        ms.multi_data("fc", 2, 2, 1, zero_mean=True)


def test_drift_check_covers_the_multi_output_files():
    """`python -m derivations.codegen --check` (tests/test_codegen.py runs it on every module
    of codegen.MODULES) includes the printed D-output modules."""
    from derivations import codegen
    assert {"multi", "multi_fc"} <= set(codegen.MODULES)
    for name in ("multi.py", "multi_fc.py"):
        assert (codegen.OUT_DIR / name).read_text().startswith(
            "# Generated by `python -m derivations.codegen`; do not edit.\n")
