"""Estimator API: inputs checked at the door, convergence reporting, persistence, properties."""
import json
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import kren
from kren.data import load_digits
from kren.estimators import NotFittedError, UnconvergedError, load

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def ds():
    return load_digits(classes=(0, 1), n_train=60, n_test=30, seed=4)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw,match", [
    (dict(T=0.0), "T"), (dict(T=-1.0), "T"), (dict(T=float("nan")), "T"),
    (dict(N=0), "N"), (dict(N=-3), "N"), (dict(lambda0=0.0), "lambda0"),
    (dict(lambda1=-1.0), "lambda1"), (dict(activation="softsign"), "activation"),
    (dict(mask=9), "larger than the input"), (dict(stride=0), "stride"),
    (dict(padding="same"), "padding"),
])
def test_bad_parameters_raise_clear_errors(kw, match):
    base = dict(N=10, T=0.1, input_shape=SHAPE, mask=2, stride=2)
    base.update(kw)
    with pytest.raises((ValueError, TypeError), match=match):
        kren.CNN(**base)


def test_bad_data_raise_clear_errors(ds):
    m = kren.CNN(N=10, T=0.1, input_shape=SHAPE, mask=2, stride=2)
    with pytest.raises(ValueError, match="shape"):
        m.fit(ds.X_train[:, :50], ds.y_train)
    with pytest.raises(ValueError, match="targets"):
        m.fit(ds.X_train, ds.y_train[:-1])
    X = ds.X_train.copy()
    X[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        m.fit(X, ds.y_train)
    y = ds.y_train.copy()
    y[0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        m.fit(ds.X_train, y)
    with pytest.raises(NotFittedError):
        m.predict(ds.X_test)
    m.fit(ds.X_train.reshape(-1, *SHAPE), ds.y_train)          # image-shaped input accepted
    with pytest.raises(ValueError, match="shape"):
        m.predict(ds.X_test[:, :10])


def test_unconverged_fit_warns_and_refuses_to_predict(ds):
    m = kren.CNN(N=5, T=0.01, input_shape=SHAPE, mask=2, stride=2, max_iter=1)
    with pytest.warns(kren.ConvergenceWarning, match="not converged"):
        m.fit(ds.X_train, ds.y_train)
    assert m.result_.converged is False and "not converged" in m.result_.message
    with pytest.raises(UnconvergedError, match="did not converge"):
        m.predict(ds.X_test)
    mean = m.predict(ds.X_test, allow_unconverged=True)
    assert mean.shape == (30,)


# --------------------------------------------------------------------------- results
def test_result_and_errors_are_consistent(ds):
    m = kren.CNN(N=20, T=0.1, input_shape=SHAPE, mask=2, stride=2).fit(ds.X_train, ds.y_train)
    r = m.result_
    assert r.converged and r.rel_grad_norm <= 1e-9 and np.isfinite(r.action)
    mean, var = m.predict(ds.X_test, return_var=True)
    assert np.all(var > 0)
    err = m.test_error(ds.X_test, ds.y_test)
    assert err.total == pytest.approx(np.mean((ds.y_test - mean) ** 2) + np.mean(var), rel=1e-14)
    assert err.total == pytest.approx(err.bias2 + err.variance, rel=1e-14)
    # The training error of THEORY §4, (1/P)[T² yᵀA⁻²y + T Tr(K_R A⁻¹)], is the posterior mean
    # of (y − f)² on the training inputs: ⟨f⟩ = K_R A⁻¹y so y − ⟨f⟩ = T A⁻¹y, and
    # Var f = K_R − K_R A⁻¹ K_R = T K_R A⁻¹. The predictor evaluated on X_train must agree.
    mt, vt = m.predict(ds.X_train, return_var=True)
    direct = np.mean((ds.y_train - mt) ** 2) + np.mean(vt)
    assert m.train_error() == pytest.approx(direct, rel=1e-9)


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_save_and_load_roundtrip(ds, tmp_path, suffix):
    m = kren.CNN(N=20, T=0.1, input_shape=SHAPE, mask=2, stride=2).fit(ds.X_train, ds.y_train)
    path = m.save(tmp_path / f"fit{suffix}")
    m2 = load(path)
    np.testing.assert_array_equal(m2.Q_, m.Q_)
    np.testing.assert_allclose(m2.predict(ds.X_test), m.predict(ds.X_test), atol=1e-13)
    assert m2.result_.converged and m2.get_params() == m.get_params()
    if suffix == ".json":
        d = json.loads(path.read_text())
        assert d["params"]["N"] == 20 and len(d["data_fingerprint"]) == 64
        d["y_train"][0] *= -1
        path.write_text(json.dumps(d))
        with pytest.raises(ValueError, match="fingerprint"):
            load(path)


def test_fc_relu_and_linear_and_infinite(ds):
    for act in ("relu", "linear", "erf"):
        m = kren.FC(N=15, T=0.1, activation=act).fit(ds.X_train, ds.y_train)
        assert m.result_.converged, m.result_.message
    inf = kren.FC(N=float("inf"), T=0.1).fit(ds.X_train, ds.y_train)
    assert inf.Q_ == 1.0 and inf.Qbar_ == 0.0 and inf.result_.converged
    assert kren.FC(N=15, T=0.1, activation="relu").fit(ds.X_train, ds.y_train).equivalent_prior_ is None


def test_hard_case_converges():
    """Small T with large α (THEORY §3 hard regime): even vs odd, P = 300, T = 0.01, N = 5."""
    ds = load_digits(classes="even-odd", n_train=300, n_test=10, seed=0)
    for cls in (kren.FC, kren.LCN, kren.CNN):
        kw = {} if cls is kren.FC else dict(input_shape=SHAPE, mask=2, stride=2)
        with warnings.catch_warnings():
            warnings.simplefilter("error", kren.ConvergenceWarning)
            m = cls(N=5, T=0.01, **kw).fit(ds.X_train, ds.y_train)
        assert m.result_.converged and m.result_.rel_grad_norm <= 1e-9


# --------------------------------------------------------------------------- properties
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), P=st.integers(4, 14), L=st.integers(3, 7),
       m=st.integers(1, 3), logN=st.floats(-0.5, 3.0), logT=st.floats(-2.0, 0.5),
       kind=st.sampled_from(["CNN", "LCN"]), activation=st.sampled_from(["erf", "linear"]))
def test_solution_is_a_positive_definite_local_minimum(seed, P, L, m, logN, logT, kind, activation):
    """Random small problems: Q positive definite, tiny residual, and the action at Q is not
    above the action at nearby positive-definite points (THEORY §3: the saddle point is the
    minimum of S(Q) along the real directions)."""
    from kren.generated import cnn as gcnn
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, 2 * L))
    y = rng.standard_normal(P)
    N, T = 10 ** logN, 10 ** logT
    est = getattr(kren, kind)(N=N, T=T, activation=activation, input_shape=(2, L), mask=m,
                              stride=1).fit(X, y)
    Q = est.Q_
    assert est.result_.converged and est.result_.rel_grad_norm <= 1e-9
    assert np.all(np.linalg.eigvalsh(Q) > 0)
    kt = est._architecture().kernels(X, pairs=kren.linalg.triu_pairs(Q.shape[0]))
    S0 = gcnn.action_zero_mean(Q, kt.blocks, kt.pairs, y, T, N, 1.0)
    n = Q.shape[0]
    for _ in range(5):
        E = rng.standard_normal((n, n))
        E = (E + E.T) / 2
        if kind == "LCN":
            E = np.diag(np.diag(E))
        eps = 1e-3 * np.min(np.linalg.eigvalsh(Q))
        S1 = gcnn.action_zero_mean(Q + eps * E / np.linalg.norm(E), kt.blocks, kt.pairs, y, T, N, 1.0)
        assert S1 >= S0 - 1e-10 * max(1.0, abs(S0))
