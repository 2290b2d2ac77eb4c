"""scikit-learn estimators (issue 8 item 5) and the immutable fitted state (issue 9).

Parameters are validated by fit with errors naming them; clone, GridSearchCV over N and T,
cross_val_score and a Pipeline work; a failed fit leaves the previous fit intact; a parameter
changed by set_params after fit is reported, never mixed into predictions or errors.
"""
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.base import clone, is_regressor
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

import kren
from kren.data import load_digits
from kren.linalg import NotPositiveDefiniteError

SHAPE = (1, 8, 8)
LOC = dict(input_shape=SHAPE, mask=2, stride=2)


@pytest.fixture(scope="module")
def ds():
    return load_digits(classes="even-odd", n_train=60, n_test=40, seed=9)


def test_sklearn_types():
    m = kren.CNN(N=10, T=0.1, **LOC)
    assert is_regressor(m) and is_regressor(kren.FC(N=10, T=0.1))
    assert issubclass(kren.NotFittedError, sklearn.exceptions.NotFittedError)
    assert issubclass(kren.ConvergenceWarning, sklearn.exceptions.ConvergenceWarning)
    assert issubclass(kren.InvalidParameterError,
                      sklearn.utils._param_validation.InvalidParameterError)
    assert issubclass(kren.StaleFitError, kren.NotFittedError)
    with pytest.raises(sklearn.exceptions.NotFittedError):
        m.predict(np.zeros((2, 64)))
    assert not hasattr(m, "Q_")                           # unfitted attributes do not exist


def test_clone_round_trips(ds):
    m = kren.CNN(N=10, T=0.1, lambda1=0.5, activation="relu", tol=1e-10, **LOC)
    c = clone(m)
    assert c is not m and c.get_params() == m.get_params()
    m.fit(ds.X_train, ds.y_train)
    c2 = clone(m)
    assert "fit_" not in vars(c2) and c2.get_params() == m.get_params()
    np.testing.assert_array_equal(c2.fit(ds.X_train, ds.y_train).Q_, m.Q_)


def test_set_params_bad_value_raises_at_fit_naming_it(ds):
    m = kren.CNN(N=10, T=0.1, **LOC).fit(ds.X_train, ds.y_train)
    Q, mean = m.Q_.copy(), m.predict(ds.X_test)
    m.set_params(T=-1)                                    # accepted (scikit-learn convention)
    with pytest.raises(kren.InvalidParameterError, match="'T' parameter of CNN"):
        m.fit(ds.X_train, ds.y_train)
    np.testing.assert_array_equal(m.Q_, Q)                # the previous fit is intact ...
    with pytest.raises(kren.StaleFitError, match=r"T \(fitted with 0.1, now -1\)"):
        m.predict(ds.X_test)                              # ... but not used with T = -1
    m.set_params(T=0.1)
    np.testing.assert_array_equal(m.predict(ds.X_test), mean)
    for bad, match in [(dict(N=float("nan")), "'N' parameter"), (dict(mask=9), "larger than"),
                       (dict(max_iter=0), "'max_iter' parameter"), (dict(dtype="int8"), "dtype"),
                       (dict(activation="sigmoid"), "activation")]:
        est = kren.CNN(N=10, T=0.1, **LOC).set_params(**bad)
        with pytest.raises(kren.InvalidParameterError, match=match):
            est.fit(ds.X_train, ds.y_train)
    # the same error type for the same mistake everywhere
    for make in (lambda: kren.FC(N=10, T=-1), lambda: kren.Architecture("fc", lambda0=-1),
                 lambda: kren.KernelCache(max_bytes=-1), lambda: kren.set_memory_budget(-1)):
        with pytest.raises(kren.InvalidParameterError):
            make()


def test_changed_parameter_is_reported_never_mixed_in(ds):
    """set_params(T=5) after fit: train_error used to mix the new T with the old A."""
    m = kren.CNN(N=10, T=0.1, **LOC).fit(ds.X_train, ds.y_train)
    err = m.train_error()
    m.set_params(T=5.0)
    for call in (m.train_error, lambda: m.predict(ds.X_test),
                 lambda: m.test_error(ds.X_test, ds.y_test), lambda: m.score(ds.X_test, ds.y_test),
                 lambda: m.renormalized_kernel(ds.X_test)):
        with pytest.raises(kren.StaleFitError, match="T"):
            call()
    with pytest.warns(kren.estimators.StaleParametersWarning, match="T"):
        d = m.to_dict()
    assert d["params"]["T"] == 0.1                        # the parameters of the fit are saved
    m.set_params(memory_budget=2**30)                     # resources do not make a fit stale
    m.set_params(T=0.1)
    assert m.train_error() == err
    assert m.fit(ds.X_train, ds.y_train).train_error() == pytest.approx(err, rel=1e-12)


def test_failed_refit_leaves_previous_fit_intact(ds):
    """Conflicting duplicates at T = 1e-10: A is not positive definite, the refit raises and
    the estimator still predicts what it predicted before (exactly)."""
    m = kren.FC(N=10, T=1e-10).fit(ds.X_train, ds.y_train)
    before = m.predict(ds.X_test, return_var=True)
    fit = m.fit_
    X = np.concatenate([ds.X_train, ds.X_train[:5]])
    y = np.concatenate([ds.y_train, -ds.y_train[:5]])
    with pytest.raises(NotPositiveDefiniteError):
        m.fit(X, y)
    assert m.fit_ is fit
    np.testing.assert_array_equal(m.predict(ds.X_test, return_var=True), before)
    with pytest.raises(kren.InvalidDataError, match="NaN"):
        m.fit(np.full_like(ds.X_train, np.nan), ds.y_train)
    assert m.fit_ is fit


def test_fitted_state_is_immutable(ds):
    m = kren.CNN(N=10, T=0.1, **LOC).fit(ds.X_train, ds.y_train)
    for a in (m.Q_, m.Qbar_, m.y_train_, m.X_train_, m.z_, m.cho_[0], m.K_R_):
        assert not a.flags.writeable
    with pytest.raises(AttributeError):
        m.fit_.T = 5.0
    assert m.n_iter_ == m.result_.n_iter and m.n_features_in_ == 64


def test_complex_and_missing_targets_rejected(ds):
    m = kren.FC(N=10, T=0.1)
    with pytest.raises(kren.InvalidDataError, match="Complex data not supported"):
        m.fit(ds.X_train, ds.y_train + 1e-3j)
    with pytest.raises(kren.InvalidDataError, match="Complex data not supported"):
        m.fit(ds.X_train + 0j, ds.y_train)
    with pytest.raises(kren.InvalidDataError, match="requires y"):
        m.fit(ds.X_train, None)


def test_score_grid_search_cross_val_and_pipeline(ds):
    """(A 4×4 mask, n = 4, keeps the 13 fits of the grid search fast; the 2×2 mask of the issue
    runs the same code with larger matrices.)"""
    cache = kren.KernelCache(max_bytes=2**28)
    loc = dict(input_shape=SHAPE, mask=4, stride=4)
    m = kren.CNN(N=10, T=0.1, cache=cache, **loc).fit(ds.X_train, ds.y_train)
    assert m.score(ds.X_test, ds.y_test) == pytest.approx(
        r2_score(ds.y_test, m.predict(ds.X_test)), rel=1e-15)
    gs = GridSearchCV(kren.CNN(N=10, T=0.1, cache=cache, **loc),
                      {"N": [10, 100], "T": [0.01, 0.1]}, cv=3)
    gs.fit(ds.X_train, ds.y_train)
    assert np.all(np.isfinite(gs.cv_results_["mean_test_score"]))
    assert gs.best_params_["N"] in (10, 100) and gs.best_params_["T"] in (0.01, 0.1)
    best = kren.CNN(**{**m.get_params(), **gs.best_params_}).fit(ds.X_train, ds.y_train)
    np.testing.assert_allclose(gs.predict(ds.X_test), best.predict(ds.X_test), atol=1e-12)
    # each fold's train tensor was built once and reused by the other three (N, T) pairs
    assert cache.hits >= 3 * 3
    scores = cross_val_score(kren.FC(N=10, T=0.1), ds.X_train, ds.y_train, cv=KFold(3))
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    pipe = Pipeline([("scale", StandardScaler()), ("cnn", kren.CNN(N=10, T=0.1, **loc))])
    pipe.fit(ds.X_train, ds.y_train)
    scaler = StandardScaler().fit(ds.X_train)
    direct = kren.CNN(N=10, T=0.1, **loc).fit(scaler.transform(ds.X_train), ds.y_train)
    np.testing.assert_array_equal(pipe.predict(ds.X_test), direct.predict(scaler.transform(ds.X_test)))


# The scikit-learn estimator checks that FC passes (run on FC: the checks generate data with
# their own number of features, which an LCN/CNN's input_shape cannot follow). Not listed:
# check_do_not_raise_errors_in_init_or_set_params (kren's constructors validate on purpose,
# tests/test_estimators.py expects kren.CNN(T=0) to raise), and checks skipped for a missing
# optional dependency (pandas, array API).
PASSING_CHECKS = {
    "check_estimator_cloneable", "check_estimator_repr", "check_no_attributes_set_in_init",
    "check_fit_score_takes_y", "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
    "check_readonly_memmap_input", "check_estimators_unfitted",
    "check_n_features_in_after_fitting", "check_mixin_order", "check_estimators_dtypes",
    "check_complex_data", "check_dtype_object", "check_estimators_empty_data_messages",
    "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimator_sparse_tag",
    "check_estimator_sparse_array", "check_estimator_sparse_matrix", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_regressors_train",
    "check_estimators_partial_fit_n_features", "check_regressors_no_decision_function",
    "check_supervised_y_2d", "check_supervised_y_no_nan", "check_regressors_int",
    "check_non_transformer_estimators_n_iter", "check_parameters_default_constructible",
    "check_methods_sample_order_invariance", "check_methods_subset_invariance",
    "check_fit2d_1sample", "check_fit2d_1feature", "check_get_params_invariance",
    "check_set_params", "check_dict_unchanged", "check_fit_idempotent",
    "check_fit_check_is_fitted", "check_n_features_in", "check_fit1d", "check_fit2d_predict1d",
    "check_requires_y_none",
}


def test_sklearn_estimator_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(kren.FC(N=10.0, T=0.1), on_fail=None, on_skip=None)
    status = {}
    for r in results:
        status.setdefault(r["check_name"], set()).add(r["status"])
    failed = {name for name in PASSING_CHECKS if status.get(name) != {"passed"}}
    assert not failed, {name: status.get(name) for name in failed}
