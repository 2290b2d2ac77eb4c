"""kren.DeepFC (THEORY §3d): the scikit-learn estimator of deep FC networks.

L = 1 is kren.FC (Q and predictions to 1e-10); N = ∞ is GP regression with the deep NNGP kernel
of an independent implementation (tests/nngp_reference.py) to 1e-10, for every activation; the
fixed-point map and Anderson reach Newton's solution; the interface is FC's (errors naming the
parameter, stale fits, immutable state, save/load, clone, GridSearchCV, the renormalized kernel
as a scikit-learn kernel). Saddle points against closed forms and deepbays: test_deep_saddle.py.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.model_selection import GridSearchCV

import kren
from kren import deep_kernels as dk
from kren.data import load_digits
from kren.deep_architecture import DeepArchitecture
from kren.saddle import solve
from kren.saddle.deep import deep_problem

from nngp_reference import deep_nngp_fc

T = 0.1


@pytest.fixture(scope="module")
def ds():
    return load_digits(classes="even-odd", n_train=80, n_test=40, seed=3)


def _rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.mark.parametrize("form", ["product", "nested"])
@pytest.mark.parametrize("activation", ["erf", "linear"])
def test_one_layer_is_kren_fc(ds, form, activation):
    """L = 1 (THEORY §5.9): Q, the predictor mean and variance, the training error and K_R over
    the training set equal kren.FC's (its own kernels, problem and solver path) to 1e-10."""
    kw = dict(N=37.0, T=T, lambda0=0.8, activation=activation, tol=1e-13)
    fc = kren.FC(lambda1=1.3, **kw).fit(ds.X_train, ds.y_train)
    m = kren.DeepFC(L=1, lambdas=1.3, form=form, **kw).fit(ds.X_train, ds.y_train)
    assert m.Q_.shape == (1,) and abs(m.Q_[0] - fc.Q_) < 1e-10 and abs(fc.Q_ - 1) > 1e-2
    mean, var = m.predict(ds.X_test, return_var=True)
    fmean, fvar = fc.predict(ds.X_test, return_var=True)
    assert np.abs(mean - fmean).max() < 1e-10 and np.abs(var - fvar).max() < 1e-10
    assert abs(m.train_error() - fc.train_error()) < 1e-10
    assert np.abs(m.K_R_ - fc.K_R_).max() < 1e-10
    assert m.Qbar_[0] == pytest.approx(fc.Qbar_, abs=1e-10)


@pytest.mark.parametrize("activation,form", [("erf", "product"), ("erf", "nested"),
                                             ("relu", "nested"), ("tanh", "product"),
                                             ("linear", "nested")])
@pytest.mark.parametrize("L", [2, 3])
def test_infinite_width_is_gp_regression_with_the_deep_nngp_kernel(ds, L, activation, form):
    """N = inf: Q_l = 1 and the predictor is GP regression with K^{(L)}/λ_L and noise T, here
    computed from the joint Gram matrix of tests/nngp_reference.py (independent recursion) and
    dense solves: mean and variance to 1e-10. relu and tanh are accepted at N = ∞ (no saddle
    point to solve). tanh: the reference's Gauss–Legendre quadrature costs ~0.1 s per entry, so
    its kernels come from kren.deep_kernels (checked against the reference for erf and relu in
    test_deep_kernels.py; the tanh kernel itself in test_tanh.py) and the check is the GP
    regression of the estimator's path."""
    lams = [1.3, 0.7, 1.1][:L]
    m = kren.DeepFC(L=L, N=float("inf"), T=T, lambda0=0.9, lambdas=lams, activation=activation,
                    form=form).fit(ds.X_train, ds.y_train)
    assert np.array_equal(m.Q_, np.ones(L)) and m.result_.converged
    X, Xt, y = ds.X_train, ds.X_test, ds.y_train
    if activation == "tanh":
        def ref(A, B, *args):
            return dk.deep_nngp_cross(A, B, *args)
    else:
        ref = deep_nngp_fc
    K = ref(X, X, L, activation, 0.9, lams)
    Kx = ref(Xt, X, L, activation, 0.9, lams)
    Kd = np.diag(ref(Xt, Xt, L, activation, 0.9, lams))
    A = K + T * np.eye(len(y))
    mean = Kx @ np.linalg.solve(A, y)
    var = Kd - np.einsum("ij,ji->i", Kx, np.linalg.solve(A, Kx.T))
    got_mean, got_var = m.predict(Xt, return_var=True)
    assert np.abs(got_mean - mean).max() < 1e-10 * max(1.0, np.abs(mean).max())
    assert np.abs(got_var - var).max() < 1e-10 * max(1.0, np.abs(var).max())
    assert _rel(m.renormalized_kernel(X), K) < 1e-12


@pytest.mark.parametrize("form", ["product", "nested"])
def test_anderson_on_the_printed_map_reaches_newtons_solution(ds, form):
    """The driver's Anderson stage iterates the printed map Q_l ← 1/(∂S/∂Q_l/ν_l + 1/Q_l)
    (derivations.deep.layer_fixed_point_program) and reaches the Newton solution; the map's
    image at that solution is the solution (its fixed points are the roots of ∇S); unequal
    widths enter through ν_l."""
    arch = DeepArchitecture(3, 64, lambda0=1.0, lambdas=[1.2, 0.9, 1.1])
    kernels = arch.train_kernels(ds.X_train)
    widths = (60.0, 20.0, 45.0)
    sols = {}
    for method in ("newton", "anderson"):
        p = deep_problem(form, kernels, ds.y_train, T, widths, arch.lambdas, arch.act)
        sols[method] = solve(p, tol=1e-11, method=method, max_iter=500)
        assert sols[method].result.converged, sols[method].result.message
    assert np.abs(sols["newton"].Q - sols["anderson"].Q).max() < 1e-9
    p = deep_problem(form, kernels, ds.y_train, T, widths, arch.lambdas, arch.act)
    ev = p.evaluate(sols["newton"].Q)
    assert np.abs(ev.image - ev.x).max() < 1e-10
    assert np.ptp(sols["newton"].Q) > 1e-3            # unequal widths: unequal Q_l


def test_renormalized_kernel_object(ds):
    """DeepRenormalizedKernel: K_R(X_train) = the fit's K_R over the training set, its diagonal is
    diag(K_R(X, X)), cross and symmetric calls agree, and as a scikit-learn kernel in
    GaussianProcessRegressor(alpha=T, optimizer=None) it reproduces predict (THEORY §4)."""
    for form in ("product", "nested"):
        m = kren.DeepFC(L=2, N=50, T=T, lambdas=[0.9, 1.2], form=form).fit(ds.X_train,
                                                                            ds.y_train)
        K_R = m.renormalized_kernel()
        assert np.abs(K_R(ds.X_train) - m.K_R_).max() < 1e-12
        Kt = K_R(ds.X_test)
        assert np.abs(np.diag(Kt) - K_R.diag(ds.X_test)).max() < 1e-12
        assert np.abs(K_R(ds.X_test, ds.X_train) - m.renormalized_kernel(ds.X_test,
                                                                          ds.X_train)).max() == 0
        gp = GaussianProcessRegressor(kernel=K_R, alpha=T, optimizer=None,
                                      normalize_y=False).fit(ds.X_train, ds.y_train)
        gm, gs = gp.predict(ds.X_test, return_std=True)
        mean, var = m.predict(ds.X_test, return_var=True)
        assert np.abs(gm - mean).max() < 1e-9 and np.abs(gs ** 2 - var).max() < 1e-9
    # the forms differ (erf, L = 2): the nested K_R is not a rescaled NNGP kernel
    p = kren.DeepFC(L=2, N=50, T=T, form="product").fit(ds.X_train, ds.y_train)
    n = kren.DeepFC(L=2, N=50, T=T, form="nested").fit(ds.X_train, ds.y_train)
    assert _rel(n.K_R_, p.K_R_) > 1e-3
    assert p.equivalent_prior_ == pytest.approx(1.0 / np.prod(p.Q_), rel=1e-14)
    assert n.equivalent_prior_ is None


@pytest.mark.parametrize("kw,match", [
    (dict(activation="relu"), "unit mean of relu is not zero.*Q̄_l"),
    (dict(activation="tanh", form="nested"), "partial derivatives.*tanh"),
    (dict(lambdas=[1.0, 2.0, 3.0]), "L = 2 priors"),
    (dict(N=[10, 20, 30]), "L = 2 widths"),
    (dict(N=[10, float("inf")]), "mixes finite and infinite"),
    (dict(N=-3), "'N' parameter"),
    (dict(form="deep"), "'form' parameter"),
    (dict(L=0), "'L' parameter"),
    (dict(dtype="float32"), "float64"),
    (dict(activation="sigmoid"), "activation"),
])
def test_bad_parameters_raise_clear_errors(kw, match):
    args = dict(L=2, N=20, T=T)
    args.update(kw)
    with pytest.raises(kren.InvalidParameterError, match=match):
        kren.DeepFC(**args)


def test_interface_of_kren_fc(ds, tmp_path):
    """Stale parameters, unconverged fits, failed refits, immutable state, save/load (.json and
    .npz), clone and GridSearchCV: the behaviour of kren.FC (tests/test_sklearn.py)."""
    m = kren.DeepFC(L=2, N=(30, 60), T=T, lambdas=[1.1, 0.8], form="nested").fit(ds.X_train,
                                                                                    ds.y_train)
    mean, var = m.predict(ds.X_test, return_var=True)
    assert m.widths_ == (30.0, 60.0) and m.alpha_ == pytest.approx(80 / 60)
    for a in (m.Q_, m.Qbar_, m.y_train_, m.z_, m.cho_[0], m.K_R_):
        assert not a.flags.writeable
    with pytest.raises(AttributeError):
        m.fit_.T = 5.0
    err = m.test_error(ds.X_test, ds.y_test)
    assert err.total == pytest.approx(err.bias2 + err.variance, rel=1e-14)
    assert m.score(ds.X_test, ds.y_test) == pytest.approx(
        1 - np.sum((ds.y_test - mean) ** 2) / np.sum((ds.y_test - ds.y_test.mean()) ** 2))
    # stale parameters are reported, never mixed in
    m.set_params(form="product")
    with pytest.raises(kren.StaleFitError, match="form"):
        m.predict(ds.X_test)
    m.set_params(form="nested")
    # save and load
    for suffix in (".json", ".npz"):
        path = m.save(tmp_path / f"deep{suffix}")
        back = kren.estimators.load(path)
        assert isinstance(back, kren.DeepFC) and np.array_equal(back.Q_, m.Q_)
        bm, bv = back.predict(ds.X_test, return_var=True)
        assert np.abs(bm - mean).max() < 1e-12 and np.abs(bv - var).max() < 1e-12
    # an unconverged fit warns and refuses to predict; a warm start finishes it
    with pytest.warns(kren.ConvergenceWarning, match="not converged.*To fix"):
        u = kren.DeepFC(L=2, N=(30, 60), T=T, lambdas=[1.1, 0.8], form="nested",
                        max_iter=1).fit(ds.X_train, ds.y_train)
    with pytest.raises(kren.UnconvergedError):
        u.predict(ds.X_test)
    u.set_params(max_iter=1000)
    assert np.abs(u.fit(ds.X_train, ds.y_train, Q0=u.Q_).Q_ - m.Q_).max() < 1e-8
    # a failed refit (NaN inputs) leaves the previous fit
    fit = m.fit_
    with pytest.raises(kren.InvalidDataError):
        m.fit(np.full_like(ds.X_train, np.nan), ds.y_train)
    assert m.fit_ is fit
    # clone and a grid search over N and the form
    c = clone(m)
    assert "fit_" not in vars(c) and c.get_params() == m.get_params()
    gs = GridSearchCV(kren.DeepFC(L=2, N=20, T=T), {"N": [20, 200], "form": ["product",
                                                                              "nested"]},
                      cv=2).fit(ds.X_train, ds.y_train)
    assert set(gs.best_params_) == {"N", "form"}


def test_sklearn_estimator_checks():
    """scikit-learn's own estimator checks that kren.FC passes (tests/test_sklearn.py)."""
    from sklearn.utils.estimator_checks import check_estimator
    from test_sklearn import PASSING_CHECKS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(kren.DeepFC(L=2, N=10.0, T=0.1), on_fail=None, on_skip=None)
    status = {}
    for r in results:
        status.setdefault(r["check_name"], set()).add(r["status"])
    failed = {name for name in PASSING_CHECKS if status.get(name) != {"passed"}}
    assert not failed, {name: status.get(name) for name in failed}


def test_load_checks_the_deep_saddle_point(ds, tmp_path):
    """A saved DeepFC is trusted only after the checks of kren.estimators.fitfile_deep: a Q moved
    off the saddle point (×1.2: the relative gradient becomes ~0.1, far above the 10·tol load
    limit), a Q̄ that is not 1/Q − 1, or a Q of the wrong length is a FitFileError naming the
    field; N = inf round-trips with Q_l = 1 exactly."""
    import json
    m = kren.DeepFC(L=2, N=40, T=T, form="product", tol=1e-10).fit(ds.X_train, ds.y_train)
    path = m.save(tmp_path / "p.json")
    back = kren.estimators.load(path)
    assert np.abs(back.predict(ds.X_test) - m.predict(ds.X_test)).max() < 1e-12
    d = json.loads(path.read_text())
    for field, value, match in (("Q", [q * 1.2 for q in d["Q"]], "saddle-point"),
                                ("Qbar", [0.0, 0.0], "1/Q"),
                                ("Q", d["Q"][:1], "one per layer")):
        bad = dict(d, **{field: value})
        if field == "Q" and match != "one per layer":
            bad["Qbar"] = [1 / q - 1 for q in value]
        p = tmp_path / "bad.json"
        p.write_text(json.dumps(bad))
        with pytest.raises(kren.FitFileError, match=match):
            kren.estimators.load(p)
    inf = kren.DeepFC(L=3, N=float("inf"), T=T, activation="relu").fit(ds.X_train, ds.y_train)
    back = kren.estimators.load(inf.save(tmp_path / "inf.npz"))
    assert np.array_equal(back.Q_, np.ones(3))
    assert np.abs(back.predict(ds.X_test) - inf.predict(ds.X_test)).max() < 1e-12
