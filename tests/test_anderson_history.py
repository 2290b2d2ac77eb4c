"""Anderson mixing seeded with the differences of an earlier stage (kren.saddle.anderson,
``history``; the float32 → float64 hand-over of kren.saddle.driver) on an affine fixed-point
map, where the result is fixed by linear algebra."""
from __future__ import annotations

import numpy as np

from kren.saddle.anderson import anderson
from kren.saddle.merit import merit_for
from kren.saddle.problem import Evaluation


class Quadratic:
    """S(x) = ½xᵀHx − bᵀx with the Richardson map x ↦ x − c(Hx − b) (fixed point H⁻¹b)."""

    minimization = True
    n_eval = 0

    def __init__(self, k, seed):
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((k, k))
        self.H = X @ X.T / k + 0.5 * np.eye(k)
        self.b = rng.standard_normal(k)
        self.c = 1.0 / np.linalg.eigvalsh(self.H)[-1]

    def feasible(self, x):
        return bool(np.all(np.isfinite(x)))

    def evaluate(self, x):
        self.n_eval += 1
        g = self.H @ x - self.b
        S = 0.5 * x @ self.H @ x - self.b @ x
        gn = float(np.linalg.norm(g))
        return Evaluation(x, float(S), g, gn, gn, x - self.c * g, x - self.c * g)


def test_full_history_of_an_affine_map_lands_on_the_fixed_point():
    """With k independent differences of the affine map in R^k, the residual f(x) = −c(Hx − b)
    is matched exactly by the least-squares mixture, so the first mixed step is x* = H⁻¹b; a
    run without the history takes a plain step first and does not."""
    k = 6
    prob = Quadratic(k, 0)
    xs = np.random.default_rng(1).standard_normal((k + 1, k))      # earlier iterates
    fs = [prob.evaluate(x).image - x for x in xs]
    dX = [xs[j] - xs[j - 1] for j in range(1, k + 1)]
    dF = [fs[j] - fs[j - 1] for j in range(1, k + 1)]
    x_star = np.linalg.solve(prob.H, prob.b)
    start = prob.evaluate(np.full(k, 3.0))
    seeded = anderson(prob, start, merit_for(prob), tol=1e-10, max_iter=1, history=(dX, dF))
    assert seeded.status == "converged" and seeded.n_iter == 1
    assert len(seeded.anderson_history[0]) == k             # handed on for a later stage
    np.testing.assert_allclose(seeded.ev.x, x_star, rtol=0, atol=1e-10 * np.linalg.norm(x_star))
    plain = anderson(prob, start, merit_for(prob), tol=1e-10, max_iter=1)
    assert plain.status != "converged"


def _carried_from(prob, model_H, seed):
    """k differences of the Richardson map of ``model_H`` (a stage that saw a perturbed H, as a
    float32 stage sees a rounded one) at random points."""
    k = len(prob.b)
    xs = np.random.default_rng(seed).standard_normal((k + 1, k))
    fs = [-prob.c * (model_H @ x - prob.b) for x in xs]
    return ([xs[j] - xs[j - 1] for j in range(1, k + 1)],
            [fs[j] - fs[j - 1] for j in range(1, k + 1)])


def _mixed_point(x, f, dX, dF):
    Xm, Fm = np.stack(dX, axis=1), np.stack(dF, axis=1)
    gamma, *_ = np.linalg.lstsq(Fm, f, rcond=1e-12)
    return x + f - (Xm + Fm) @ gamma


def test_first_mixed_step_of_a_carried_history_is_judged_by_gradient_growth():
    """A history whose differences saw 0.4·H (a stage with other round-off sees another map)
    sends the first mixed step from e0 = x0 − x* to e1 = (1 − 1/0.4) e0 = −1.5 e0 (the affine
    algebra of the mixture: e1 = (𝟙 − H_model⁻¹H) e0): S rises, so the merit alone would reject it, while the
    gradient grows 1.5× ≤ CARRIED_GROWTH = 10×: the step is taken, with one evaluation.
    From 0.05·H the error grows 19×, past the bound, and the step is rejected."""
    from kren.saddle.anderson import CARRIED_GROWTH
    k = 6
    prob = Quadratic(k, 3)
    x_star = np.linalg.solve(prob.H, prob.b)
    near = prob.evaluate(x_star + 1e-3 * np.random.default_rng(5).standard_normal(k))
    dX, dF = _carried_from(prob, 0.4 * prob.H, 6)
    x1 = _mixed_point(near.x, near.image - near.x, dX, dF)
    new = prob.evaluate(x1)
    assert new.S > near.S and near.rel < new.rel <= CARRIED_GROWTH * near.rel   # the premise
    n0 = prob.n_eval
    out = anderson(prob, near, merit_for(prob), tol=1e-14, max_iter=1, history=(dX, dF))
    assert prob.n_eval - n0 == 1
    np.testing.assert_allclose(out.ev.x, x1, rtol=0, atol=1e-12)

    dX, dF = _carried_from(prob, 0.05 * prob.H, 6)
    x_bad = _mixed_point(near.x, near.image - near.x, dX, dF)
    assert prob.evaluate(x_bad).rel > CARRIED_GROWTH * near.rel                  # the premise
    out = anderson(prob, near, merit_for(prob), tol=1e-14, max_iter=1, history=(dX, dF))
    assert np.linalg.norm(out.ev.x - x_bad) > 1e-6 and out.ev.S <= near.S
