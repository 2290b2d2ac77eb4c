"""kren compare with D = 10 outputs (classes "all", THEORY §3c, §4): the theory column is the
D-output estimator's test error (averaged over outputs), the sampled networks have 10 outputs,
and the per-output errors average to the total."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("torch")

import kren  # noqa: E402
from kren.compare import run_compare  # noqa: E402
from kren.data import load_digits  # noqa: E402


def test_compare_with_ten_outputs_tiny():
    res = run_compare(archs=("fc",), widths=[5], classes="all", P=20, n_test=10, steps=40,
                      burn_in=10, thin=2, chains=2, step=0.005, dtype="float64", seed=3)
    (row,) = res["rows"]
    assert row["outputs"] == 10
    data = load_digits(classes="all", n_train=20, n_test=10, seed=0, one_hot=True)
    te = kren.FC(N=5, T=0.1).fit(data.X_train, data.y_train).test_error(data.X_test,
                                                                        data.y_test)
    assert row["theory"]["test_error"] == pytest.approx(te.total, rel=1e-12)
    per = np.asarray(row["theory"]["per_output"])
    assert per.shape == (10,) and abs(per.mean() - te.total) < 1e-12
    assert np.asarray(row["theory"]["Q"]).shape == (10, 10)
    assert math.isfinite(row["sampled"]["test_error"]["total"])
