"""Issue 9, the fitted state (fixed by helper "core" in issue 8): the three "wrong numbers
without an error" cases, written against the API that existed before issue 8 (a2d8cfb), where
each of them returned a wrong number (predictions near 1e8 after a failed refit; train_error
341.9 instead of 0.173 after set_params(T=5); complex y silently cast to real)."""
import warnings

import numpy as np
import pytest

import kren
from kren.data import load_digits


@pytest.fixture(scope="module")
def ds():
    return load_digits(classes="even-odd", n_train=60, n_test=20, seed=9)


def test_failed_refit_predicts_exactly_as_before(ds):
    m = kren.FC(N=10, T=1e-10).fit(ds.X_train, ds.y_train)
    before = m.predict(ds.X_test)
    X = np.concatenate([ds.X_train, ds.X_train[:5]])
    y = np.concatenate([ds.y_train, -ds.y_train[:5]])         # conflicting duplicates
    with pytest.raises(np.linalg.LinAlgError):
        m.fit(X, y)
    np.testing.assert_array_equal(m.predict(ds.X_test), before)


def test_changed_parameter_without_refit_is_an_error_not_a_number(ds, tmp_path):
    m = kren.CNN(N=50, T=0.1, input_shape=(1, 8, 8), mask=2, stride=2).fit(ds.X_train,
                                                                            ds.y_train)
    err = m.train_error()
    m.set_params(T=5.0)
    with pytest.raises(ValueError, match="T"):                 # StaleFitError is a ValueError
        m.train_error()
    m.set_params(T=0.1, N=5)
    with pytest.raises(ValueError, match="N"):
        m.predict(ds.X_test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = m.save(tmp_path / "fit.json")
    from kren.estimators import load
    loaded = load(path)
    assert loaded.N == 50 and loaded.train_error() == pytest.approx(err, rel=1e-12)


def test_complex_targets_are_rejected(ds):
    with pytest.raises((ValueError, TypeError), match="[Cc]omplex"):
        kren.FC(N=10, T=0.1).fit(ds.X_train, ds.y_train + 1e-3j)
