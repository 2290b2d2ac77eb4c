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
