"""Property-based test of the estimators' state (issue 9): random sequences of fit, set_params
(good and bad values), save, load, corrupting a saved file, predict and refit, with random bad
inputs (NaN, inf, wrong shape, complex, empty, huge scale, duplicate points), on tiny problems.

Every outcome must be either a correct number or a named kren error (``kren.KrenError``), never
a raw NumPy/SciPy exception and never a stale number:

- a successful fit predicts what GP regression with its own K_R computes in plain NumPy
  (mean k_Rᵀ(K_R + T𝟙)⁻¹y, variance K_R(x0, x0) − k_Rᵀ(K_R + T𝟙)⁻¹k_R), and what a fresh
  estimator with the same parameters fitted on the same data predicts;
- a failed fit (bad data, bad parameters) leaves the previous fit predicting exactly as before;
- a parameter changed since the fit makes predict raise StaleFitError until it is set back;
- a saved fit loads with the same parameters and predictions; a corrupted file is a FitFileError.
"""
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

import kren
from kren.exceptions import (FitFileError, KrenError, NotFittedError, StaleFitError,
                             UnconvergedError)
from kren.estimators import load

SHAPE = (1, 4, 4)
N0 = 16
PROBE = np.random.default_rng(12345).standard_normal((5, N0))
GOOD = {"N": [3.0, 10.0, 50.0, float("inf")], "T": [0.05, 0.2, 1.0], "lambda1": [0.5, 1.0]}
BAD = {"N": [0.0, -5.0, float("nan")], "T": [-1.0, 0.0, float("nan")],
       "lambda1": [-1.0], "max_iter": [0], "activation": ["nope"], "mask": [(9, 9)]}
BAD_X = ["nan", "inf", "wrong_shape", "complex", "empty", "huge", "text", "one_d"]
BAD_Y = ["nan", "short", "complex", "matrix", "none"]


def _make(kind, activation, N, T):
    loc = dict(input_shape=SHAPE, mask=2, stride=2)
    if kind == "FC":                         # (with input_shape, other widths are bad data)
        return kren.FC(N=N, T=T, activation=activation, input_shape=SHAPE)
    if kind == "LCN":
        return kren.LCN(N=N, T=T, activation=activation, **loc)
    return kren.CNN(N=N, T=T, activation=activation, readout="pool" if kind == "pool" else
                    "local", **loc)


def _data(seed, P):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((P, N0)), np.sign(rng.standard_normal(P))


def _bad_x(how, X):
    return {"nan": np.where(np.arange(X.size).reshape(X.shape) == 3, np.nan, X),
            "inf": np.where(np.arange(X.size).reshape(X.shape) == 0, np.inf, X),
            "wrong_shape": X[:, :7], "complex": X + 1j, "empty": X[:0],
            "huge": X * 1e100, "text": np.full(X.shape, "x"), "one_d": X[0]}[how]


def _bad_y(how, y):
    return {"nan": np.where(np.arange(y.size) == 0, np.nan, y), "short": y[:-1],
            # a (P, D) matrix is D outputs (issue 10, THEORY §3c): a 3-d array is the bad shape
            "complex": y + 0.5j, "matrix": np.outer(y, y)[:, :, None], "none": None}[how]


def _gp(est, X, y, T):
    """GP regression with the fit's K_R in plain NumPy (THEORY §4)."""
    K_R = est.renormalized_kernel()
    A = K_R(X) + T * np.eye(len(y))
    k = K_R(PROBE, X)
    mean = k @ np.linalg.solve(A, y)
    var = K_R.diag(PROBE) - np.einsum("ij,ji->i", k, np.linalg.solve(A, k.T))
    return mean, var


class EstimatorStates(RuleBasedStateMachine):
    """The model: ``fitted`` (parameters, data and predictions of the fit in use, or None),
    ``changed`` (parameters set since), ``saved`` (files and what they must predict)."""

    @initialize(kind=st.sampled_from(["FC", "LCN", "CNN", "pool"]),
                activation=st.sampled_from(["erf", "relu"]),
                N=st.sampled_from(GOOD["N"]), T=st.sampled_from(GOOD["T"]))
    def start(self, kind, activation, N, T):
        self.est = _make(kind, activation, N, T)
        self.kind = kind
        self.fitted = None
        self.saved = []
        self.tmp = Path(tempfile.mkdtemp(prefix="kren-states-"))

    def teardown(self):
        shutil.rmtree(getattr(self, "tmp", ""), ignore_errors=True)

    # ------------------------------------------------------------------ helpers
    def attempt(self, fn):
        """("ok", value) or ("error", a KrenError); anything else fails the test."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", kren.ConvergenceWarning)
                warnings.simplefilter("ignore", kren.estimators.StaleParametersWarning)
                return "ok", fn()
        except KrenError as exc:
            return "error", exc

    def params_now(self):
        return {k: v for k, v in self.est.get_params().items() if k not in ("cache",)}

    def stale(self):
        from kren.estimators.state import same_value
        if self.fitted is None:
            return []
        return [k for k, v in self.fitted["params"].items()
                if not same_value(v, self.params_now().get(k))]

    def params_valid(self):
        try:
            type(self.est)(**self.est.get_params())
        except KrenError:
            return False
        return True

    def check_fit(self, X, y):
        """The fit just made: correct numbers, and the model updated."""
        est = self.est
        fresh = type(est)(**est.get_params())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", kren.ConvergenceWarning)
            fresh.fit(X, y)
        converged = est.result_.converged
        mean, var = est.predict(PROBE, return_var=True, allow_unconverged=True)
        m2, v2 = fresh.predict(PROBE, return_var=True, allow_unconverged=True)
        np.testing.assert_allclose(mean, m2, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(var, v2, rtol=1e-9, atol=1e-12)
        gm, gv = _gp(est, X, y, float(est.T))
        scale = 1.0 + np.max(np.abs(gm))
        np.testing.assert_allclose(mean, gm, rtol=1e-7, atol=1e-9 * scale)
        np.testing.assert_allclose(var, gv, rtol=1e-7, atol=1e-9 * (1 + np.max(np.abs(gv))))
        self.fitted = {"params": self.params_now(), "X": X, "y": y, "mean": mean, "var": var,
                       "converged": converged}

    def check_predict(self):
        kind, out = self.attempt(lambda: self.est.predict(PROBE, return_var=True))
        if self.fitted is None:
            assert kind == "error" and isinstance(out, NotFittedError), out
        elif self.stale():
            assert kind == "error" and isinstance(out, StaleFitError), out
            assert all(k in str(out) for k in self.stale())
        elif not self.fitted["converged"]:
            assert kind == "error" and isinstance(out, UnconvergedError), out
        else:
            assert kind == "ok", out
            np.testing.assert_array_equal(out[0], self.fitted["mean"])
            np.testing.assert_array_equal(out[1], self.fitted["var"])

    # ------------------------------------------------------------------ rules
    @rule(seed=st.integers(0, 10_000), P=st.integers(4, 9))
    def fit(self, seed, P):
        X, y = _data(seed, P)
        valid = self.params_valid()
        before = self.est.__dict__.get("fit_")
        kind, out = self.attempt(lambda: self.est.fit(X, y))
        if not valid:
            assert kind == "error" and isinstance(out, kren.InvalidParameterError), out
            assert self.est.__dict__.get("fit_") is before
            return
        assert kind == "ok", out
        self.check_fit(X, y)

    @rule()
    @precondition(lambda self: self.fitted is not None)
    def refit_same_data(self):
        if self.params_valid():
            self.fit_with(self.fitted["X"], self.fitted["y"])

    def fit_with(self, X, y):
        kind, out = self.attempt(lambda: self.est.fit(X, y))
        assert kind == "ok", out
        self.check_fit(X, y)

    @rule(seed=st.integers(0, 10_000), how=st.sampled_from(BAD_X))
    def fit_bad_inputs(self, seed, how):
        X, y = _data(seed, 6)
        before = self.est.__dict__.get("fit_")
        kind, out = self.attempt(lambda: self.est.fit(_bad_x(how, X), y))
        assert kind == "error", how
        assert self.est.__dict__.get("fit_") is before
        self.check_predict()

    @rule(seed=st.integers(0, 10_000), how=st.sampled_from(BAD_Y))
    def fit_bad_targets(self, seed, how):
        X, y = _data(seed, 6)
        before = self.est.__dict__.get("fit_")
        kind, out = self.attempt(lambda: self.est.fit(X, _bad_y(how, y)))
        assert kind == "error", how
        assert self.est.__dict__.get("fit_") is before
        self.check_predict()

    @rule(seed=st.integers(0, 10_000))
    def fit_duplicates(self, seed):
        """Duplicate inputs with conflicting targets: valid data (T > 0 keeps A positive
        definite): a correct fit, or a named error with the previous fit intact."""
        X, y = _data(seed, 6)
        X, y = np.concatenate([X, X[:2]]), np.concatenate([y, -y[:2]])
        before = self.est.__dict__.get("fit_")
        valid = self.params_valid()
        kind, out = self.attempt(lambda: self.est.fit(X, y))
        if kind == "ok":
            assert valid
            self.check_fit(X, y)
        else:
            assert self.est.__dict__.get("fit_") is before

    @rule(name=st.sampled_from(sorted(GOOD)), data=st.data())
    def set_good_parameter(self, name, data):
        self.est.set_params(**{name: data.draw(st.sampled_from(GOOD[name]))})
        self.check_predict()

    @rule(name=st.sampled_from(sorted(BAD)), data=st.data())
    def set_bad_parameter(self, name, data):
        if name == "mask" and self.kind == "FC":
            return
        value = data.draw(st.sampled_from(BAD[name]))
        kind, out = self.attempt(lambda: self.est.set_params(**{name: value}))
        assert kind == "ok", out                     # scikit-learn: validated by fit
        assert not self.params_valid()
        self.check_predict()

    @rule()
    @precondition(lambda self: self.fitted is not None)
    def set_parameters_back(self):
        self.est.set_params(**self.fitted["params"])
        assert not self.stale()
        self.check_predict()

    @rule()
    def predict(self):
        self.check_predict()

    @rule(how=st.sampled_from(BAD_X))
    def predict_bad_inputs(self, how):
        kind, out = self.attempt(lambda: self.est.predict(_bad_x(how, PROBE)))
        assert kind == "error", how

    @rule(suffix=st.sampled_from([".json", ".npz"]))
    def save(self, suffix):
        path = self.tmp / f"fit{len(self.saved)}{suffix}"
        kind, out = self.attempt(lambda: self.est.save(path))
        if self.fitted is None:
            assert kind == "error" and isinstance(out, NotFittedError), out
            assert not path.exists()
            return
        assert kind == "ok", out
        self.saved.append((path, self.fitted))

    @rule(i=st.integers(0, 100))
    @precondition(lambda self: self.saved)
    def load(self, i):
        path, fitted = self.saved[i % len(self.saved)]
        kind, out = self.attempt(lambda: load(path))
        assert kind == "ok", out
        got = {k: v for k, v in out.get_params().items() if k != "cache"}
        from kren.estimators.state import same_value
        assert all(same_value(v, got[k]) for k, v in fitted["params"].items()), got
        mean, var = out.predict(PROBE, return_var=True, allow_unconverged=True)
        np.testing.assert_allclose(mean, fitted["mean"], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(var, fitted["var"], rtol=1e-10, atol=1e-13)
        if not fitted["converged"]:
            with pytest.raises(UnconvergedError):
                out.predict(PROBE)

    @rule(i=st.integers(0, 100), how=st.sampled_from(["truncate", "garbage", "double_Q"]))
    @precondition(lambda self: self.saved)
    def corrupt_a_saved_file(self, i, how):
        path, fitted = self.saved.pop(i % len(self.saved))
        if how == "truncate":
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 3])
        elif how == "garbage":
            path.write_bytes(b"\x00\xffnot a fit")
        else:
            if path.suffix != ".json" or not np.isfinite(fitted["params"]["N"]):
                return
            import json
            d = json.loads(path.read_text())
            d["Q"] = (2 * np.asarray(d["Q"])).tolist()
            path.write_text(json.dumps(d))
        kind, out = self.attempt(lambda: load(path))
        assert kind == "error" and isinstance(out, FitFileError), out
        assert str(path) in str(out)


EstimatorStates.TestCase.settings = settings(
    max_examples=25, stateful_step_count=10, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_estimator_states = EstimatorStates.TestCase
