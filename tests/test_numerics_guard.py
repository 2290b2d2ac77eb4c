"""No traceback from inside NumPy/SciPy (issue 9): overflowing inputs are named errors at the
door, the NNGP kernel and the test diagonal check memory first, and a numerical failure escaping
the public API becomes a kren error with advice.

Fails on the code before issue 8 (a2d8cfb): inputs scaled by 1e100 ended in
``LinAlgError: Eigenvalues did not converge`` after hundreds of RuntimeWarnings, and
``nngp_kernel(X1, X2)`` skipped the memory check.
"""
import warnings

import numpy as np
import pytest

import kren
from kren.data import load_digits

SHAPE = (1, 8, 8)
LOC = dict(input_shape=SHAPE, mask=2, stride=2)


@pytest.fixture(scope="module")
def ds():
    return load_digits(classes=(0, 1), n_train=30, n_test=10, seed=3)


@pytest.mark.parametrize("scale", [1e100, 1e160])
@pytest.mark.parametrize("make", [
    lambda: kren.CNN(N=20, T=0.1, **LOC),
    lambda: kren.FC(N=20, T=0.1, activation="relu"),
    lambda: kren.LCN(N=20, T=0.1, activation="relu", **LOC),
    lambda: kren.CNN(N=20, T=0.1, readout="pool", **LOC),
], ids=["cnn-erf", "fc-relu", "lcn-relu", "cnn-pool"])
def test_huge_inputs_are_a_named_error_without_warnings(ds, make, scale):
    """Local variances |x_i|²/(λ0 M) ~ scale²: at 1e100 the closed forms overflow
    ((1 + 2a)(1 + 2b) or ab > 1.8e308), at 1e160 the variances themselves do. Either way one
    InvalidDataError naming X and advising to standardize, before any kernel is built."""
    m = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # not a single RuntimeWarning
        with pytest.raises(kren.InvalidDataError, match=r"^X: .*standardize"):
            m.fit(ds.X_train * scale, ds.y_train)


def test_huge_test_inputs_are_a_named_error(ds):
    """(Between a huge and an ordinary input the erf kernel stays finite and is computed:
    the overflow is K(x0, x0), which predict and K_R(X0, X0) need.)"""
    m = kren.CNN(N=20, T=0.1, **LOC).fit(ds.X_train, ds.y_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(kren.InvalidDataError, match="standardize"):
            m.predict(ds.X_test * 1e100)
        with pytest.raises(kren.InvalidDataError, match="standardize"):
            m.renormalized_kernel(ds.X_test * 1e100)
        with pytest.raises(kren.InvalidDataError, match="standardize"):
            kren.Architecture("cnn", SHAPE, mask=2, stride=2).nngp_kernel(ds.X_test * 1e100)


def test_float32_overflow_is_caught_at_its_own_threshold(ds):
    """float32 kernels overflow near variances 1e19 (ab > 3.4e38), float64 ones do not: the
    same inputs are refused in float32 (advising float64) and computed in float64."""
    arch = kren.Architecture("fc", activation="relu")
    X = ds.X_train * 1e10                                  # variances ~ 1e20
    with pytest.raises(kren.InvalidDataError, match="float64"):
        arch.nngp_kernel(X, dtype=np.float32)
    K = arch.nngp_kernel(X)
    # relu is positively homogeneous of degree 1 in the variance: K(sx) = s² K(x)
    np.testing.assert_allclose(K, 1e20 * arch.nngp_kernel(ds.X_train), rtol=1e-12)


def test_tiny_inputs_give_the_exact_small_limit(ds):
    """Scale 1e-100 is not an error: K = O(scale²) and the posterior mean is K y/T to
    leading order (A = T𝟙 + K_R ≈ T𝟙)."""
    m = kren.FC(N=20, T=0.1).fit(ds.X_train * 1e-100, ds.y_train)
    K = m.renormalized_kernel(ds.X_test * 1e-100, ds.X_train * 1e-100)
    np.testing.assert_allclose(m.predict(ds.X_test * 1e-100), K @ ds.y_train / 0.1, rtol=1e-12)


def test_nngp_kernel_of_two_sets_checks_memory(ds):
    arch = kren.Architecture("cnn", SHAPE, mask=2, stride=2)
    with pytest.raises(kren.MemoryBudgetError, match="NNGP kernel"):
        arch.nngp_kernel(ds.X_train, ds.X_test, memory_budget=1000)
    from kren.kernels import nngp_kernel, test_diagonal
    with pytest.raises(kren.MemoryBudgetError):
        nngp_kernel(arch, ds.X_train, ds.X_test, memory_budget=1000)
    with pytest.raises(kren.MemoryBudgetError, match="test diagonal"):
        test_diagonal(arch, ds.X_train, memory_budget=1000)
    K = nngp_kernel(arch, ds.X_train, ds.X_test)           # within the default budget
    assert K.shape == (30, 10)


def test_numerical_failures_escaping_the_api_become_kren_errors(ds, monkeypatch):
    """A LinAlgError, FloatingPointError or a ValueError raised inside NumPy/SciPy that escapes
    a public call is a NumericalError (a KrenError) naming the call, with advice; kren's own
    errors pass unchanged."""
    from kren.guard import guarded
    from kren.exceptions import NumericalError

    @guarded("demo_call")
    def eig_fails():
        return np.linalg.eigvalsh(np.full((3, 3), np.nan))

    @guarded("demo_call")
    def fpe():
        with np.errstate(over="raise"):
            return np.exp(np.array([1e4]))

    @guarded("demo_call")
    def scipy_value_error():
        import scipy.linalg
        return scipy.linalg.cholesky(np.array([[1.0, np.inf], [np.inf, 1.0]]))

    for call in (eig_fails, fpe, scipy_value_error):
        with pytest.raises(NumericalError, match="demo_call: numerical failure.*standardize"):
            call()

    @guarded("demo_call")
    def own():
        raise kren.InvalidDataError("X: bad")
    with pytest.raises(kren.InvalidDataError, match="^X: bad$"):
        own()

    @guarded("demo_call")
    def bug():
        raise ValueError("a bug in kren itself")          # not from NumPy/SciPy: unchanged
    with pytest.raises(ValueError, match="^a bug in kren itself$"):
        bug()

    # at the estimator API: an eigen-decomposition that fails inside the solver
    def broken_eigh(*a, **k):
        raise np.linalg.LinAlgError("Eigenvalues did not converge")
    monkeypatch.setattr(np.linalg, "eigh", broken_eigh)
    with pytest.raises(NumericalError, match="FC.fit: .*Eigenvalues did not converge"):
        kren.FC(N=10, T=0.1).fit(ds.X_train, ds.y_train)


def test_not_positive_definite_names_the_cure(ds):
    """Conflicting duplicates at T = 1e-10: A = T𝟙 + K_R is numerically singular; the error
    says what to change."""
    X = np.concatenate([ds.X_train, ds.X_train[:5]])
    y = np.concatenate([ds.y_train, -ds.y_train[:5]])
    with pytest.raises(kren.exceptions.KrenError, match="raise T"):
        m = kren.FC(N=10, T=1e-10).fit(X, y)
        m.predict(ds.X_test)


def test_deep_kernels_refuse_overflowing_inputs(ds):
    """The deep NNGP recursion (kren.deep_kernels) used to return NaN kernels (with overflow
    warnings) for inputs scaled by 1e100; now a named error before the first layer."""
    from kren import deep_kernels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for act in ("erf", "relu"):
            with pytest.raises(kren.InvalidDataError, match="standardize"):
                deep_kernels.deep_nngp_kernel(ds.X_train * 1e100, 2, activation=act)
            with pytest.raises(kren.InvalidDataError, match="standardize"):
                deep_kernels.deep_nngp_cross(ds.X_test * 1e100, ds.X_train * 1e100, 2,
                                             activation=act)
            with pytest.raises(kren.InvalidDataError, match="standardize"):
                deep_kernels.deep_nngp_diagonal(ds.X_test * 1e100, 2, activation=act)
