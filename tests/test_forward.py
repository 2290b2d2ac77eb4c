"""NumPy forward pass of the THEORY §1 networks (kren.forward)."""
import numpy as np
import pytest
from scipy.special import erf

from kren.architecture import Architecture
from kren.forward import (empirical_kernel, features, forward, init_weights, preactivations,
                          weight_shapes)


def _X(P, shape, seed):
    return np.random.default_rng(seed).standard_normal((P, int(np.prod(shape))))


# ----------------------------------------------------------------- shapes and prior
def test_weight_shapes_and_prior_scales():
    cnn = Architecture("cnn", input_shape=(2, 6, 6), mask=(3, 3), stride=(3, 3),
                       lambda0=4.0, lambda1=0.25)
    lcn = Architecture("lcn", input_shape=(2, 6, 6), mask=(3, 3), stride=(3, 3))
    fc = Architecture("fc", input_shape=(2, 6, 6))
    assert (cnn.n, cnn.M) == (4, 18)
    assert weight_shapes(fc, 5) == {"W": (5, 72), "v": (5,)}
    assert weight_shapes(cnn, 5) == {"W": (5, 18), "v": (5, 4)}
    assert weight_shapes(lcn, 5) == {"W": (5, 4, 18), "v": (5, 4)}
    p = init_weights(cnn, 4000, 0)
    # W ~ N(0, 1/λ0 = 0.25), v ~ N(0, 1/λ1 = 4): 72000 and 16000 draws, the sample variance has
    # relative standard error √(2/k) ≤ 0.011; 5 standard errors → 6 % tolerance.
    assert p["W"].var() == pytest.approx(0.25, rel=0.06)
    assert p["v"].var() == pytest.approx(4.0, rel=0.06)
    # seeds are deterministic, and a Generator is accepted
    q = init_weights(cnn, 4000, np.random.default_rng(0))
    np.testing.assert_array_equal(p["W"], q["W"])
    np.testing.assert_array_equal(p["v"], q["v"])
    assert not np.array_equal(init_weights(cnn, 3, 1)["W"], init_weights(cnn, 3, 2)["W"])


# ----------------------------------------------------------------- exact values
def test_fc_forward_equals_hand_written_loop():
    arch = Architecture("fc", input_shape=7, lambda0=2.0, lambda1=3.0)
    X = _X(5, (7,), 1)
    params = init_weights(arch, 6, 3)
    W, v = params["W"], params["v"]
    expected = np.zeros(5)
    for mu in range(5):
        s = 0.0
        for a in range(6):
            h = sum(W[a, k] * X[mu, k] for k in range(7)) / np.sqrt(7)
            s += v[a] * erf(h)
        expected[mu] = s / np.sqrt(6)
    np.testing.assert_allclose(forward(arch, X, params), expected, rtol=1e-13, atol=1e-15)
    # v given as (N, 1) is the same network
    np.testing.assert_allclose(forward(arch, X, {"W": W, "v": v[:, None]}), expected, rtol=1e-13)
    # FC without input_shape takes N0 from the data
    np.testing.assert_allclose(forward(Architecture("fc"), X, params), expected, rtol=1e-13)


@pytest.mark.parametrize("kind", ["cnn", "lcn"])
@pytest.mark.parametrize("activation", ["erf", "relu", "linear"])
def test_local_forward_equals_hand_written_loop(kind, activation):
    """Overlapping 1D patches (mask 3, stride 2) on a 2-channel signal, explicit index loops."""
    arch = Architecture(kind, input_shape=(2, 9), mask=3, stride=2, activation=activation)
    n, M = arch.n, arch.M
    assert (n, M) == (4, 6)
    X = _X(4, (2, 9), 2)
    params = init_weights(arch, 3, 5)
    W, v = params["W"], params["v"]
    sig = {"erf": erf, "relu": lambda h: max(h, 0.0), "linear": lambda h: h}[activation]
    img = X.reshape(4, 2, 9)
    expected = np.zeros(4)
    for mu in range(4):
        s = 0.0
        for a in range(3):
            for i in range(n):
                patch = [img[mu, c, 2 * i + k] for c in range(2) for k in range(3)]
                w = W[a] if kind == "cnn" else W[a, i]
                h = sum(w[m] * patch[m] for m in range(M)) / np.sqrt(M)
                s += v[a, i] * sig(h)
        expected[mu] = s / np.sqrt(3 * n)
    np.testing.assert_allclose(forward(arch, X, params), expected, rtol=1e-12, atol=1e-14)
    h = preactivations(arch, X, W)
    assert h.shape == (4, 3, n)
    np.testing.assert_allclose(features(arch, X, W), np.vectorize(sig)(h), rtol=1e-14, atol=0)


def test_cnn_with_full_mask_equals_fc():
    shape = (2, 4, 5)
    cnn = Architecture("cnn", input_shape=shape, mask=(4, 5), activation="relu",
                       lambda0=0.5, lambda1=2.0)
    lcn = Architecture("lcn", input_shape=shape, mask=(4, 5), activation="relu")
    fc = Architecture("fc", input_shape=shape, activation="relu")
    assert (cnn.n, cnn.M) == (1, 40)
    X = _X(6, shape, 3)
    p = init_weights(fc, 7, 4)
    f_fc = forward(fc, X, p)
    # one patch covering the input, channels-first ordering inside it = the flat input ordering
    np.testing.assert_allclose(forward(cnn, X, {"W": p["W"], "v": p["v"][:, None]}), f_fc,
                               rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(forward(lcn, X, {"W": p["W"][:, None, :], "v": p["v"][:, None]}),
                               f_fc, rtol=1e-13, atol=1e-15)


def test_lcn_with_tied_weights_equals_cnn():
    shape = (3, 6, 6)
    cnn = Architecture("cnn", input_shape=shape, mask=(3, 3), stride=(1, 1))
    lcn = Architecture("lcn", input_shape=shape, mask=(3, 3), stride=(1, 1))
    X = _X(5, shape, 4)
    p = init_weights(cnn, 4, 6)
    W_lcn = np.repeat(p["W"][:, None, :], cnn.n, axis=1)   # w_{a,i} = w_a for every patch
    np.testing.assert_allclose(forward(lcn, X, {"W": W_lcn, "v": p["v"]}), forward(cnn, X, p),
                               rtol=1e-13, atol=1e-15)
    # and the inputs may be given unflattened
    np.testing.assert_allclose(forward(cnn, X.reshape(5, *shape), p), forward(cnn, X, p),
                               rtol=0, atol=0)


def test_forward_chunking_does_not_change_results(monkeypatch):
    import kren.forward as fw
    arch = Architecture("cnn", input_shape=(1, 6, 6), mask=2, stride=2)
    X = _X(37, (1, 6, 6), 5)
    p = init_weights(arch, 5, 7)
    full = forward(arch, X, p)
    monkeypatch.setattr(fw, "_CHUNK_ELEMENTS", 2 * 5 * arch.n + 1)   # 2 samples per chunk
    np.testing.assert_allclose(forward(arch, X, p), full, rtol=1e-14, atol=1e-15)


def test_empirical_kernel_is_readout_average():
    """K̂ = (1/(λ1 N n)) Σ φφᵀ; with relu features it matches the explicit sum."""
    arch = Architecture("cnn", input_shape=(1, 6, 6), mask=3, stride=3, activation="relu",
                        lambda1=2.0)
    X1, X2 = _X(4, (1, 6, 6), 6), _X(3, (1, 6, 6), 7)
    W = init_weights(arch, 5, 8)["W"]
    F1, F2 = features(arch, X1, W), features(arch, X2, W)
    expected = np.einsum("pai,qai->pq", F1, F2) / (2.0 * 5 * arch.n)
    np.testing.assert_allclose(empirical_kernel(arch, X1, W, X2), expected, rtol=1e-13)
    K = empirical_kernel(arch, X1, W)
    np.testing.assert_allclose(K, np.einsum("pai,qai->pq", F1, F1) / (2.0 * 5 * arch.n),
                               rtol=1e-13)


# ----------------------------------------------------------------- Monte Carlo vs NNGP
MC_CASES = [
    ("fc", "erf"), ("fc", "relu"),
    ("cnn", "erf"), ("cnn", "relu"),
    ("lcn", "erf"), ("lcn", "relu"),
]


@pytest.mark.parametrize("kind,activation", MC_CASES)
def test_prior_output_covariance_is_nngp_kernel(kind, activation):
    """E[f(x) f(x')] over the prior equals arch.nngp_kernel at every width (THEORY §2).

    Averaging over v ~ N(0, 1/λ1) gives E_v[f f'] = (1/(λ1 N n)) Σ_{a,i} σ(h_{a,i}) σ(h'_{a,i});
    averaging then over W gives (1/(λ1 n)) Σ_i K_ii (uncentered, relu included). S independent
    seeded prior draws of width N = 2 estimate it; every entry must lie within 5 standard errors
    of the sample mean of f(x)f(x') (a two-sided 5σ event has probability 6e-7 per entry).
    """
    shape = (1, 6, 6)
    kw = {} if kind == "fc" else {"mask": (3, 3), "stride": (2, 2)}   # overlapping patches
    arch = Architecture(kind, input_shape=shape, activation=activation, lambda0=1.5,
                        lambda1=0.7, **kw)
    X = _X(4, shape, 11)
    X[1] = 0.8 * X[0] + 0.6 * X[1]          # a strongly correlated pair
    # S independent prior draws of width N, drawn as one width-S·N network whose units are split
    # into S consecutive blocks (units are i.i.d. under the prior, so the blocks are independent
    # networks); forward() is checked to give exactly the block sums on the first blocks.
    S, N = 40000, 2
    p = init_weights(arch, S * N, 1234)
    phi = features(arch, X, p["W"])                                        # (P, S·N, n)
    v = p["v"].reshape(S * N, arch.n)
    F = np.einsum("psi,si->ps", phi.reshape(4, S, N * arch.n),
                  v.reshape(S, N * arch.n)).T / np.sqrt(N * arch.n)         # (S, P)
    for s in range(3):
        block = {"W": p["W"][s * N:(s + 1) * N], "v": p["v"][s * N:(s + 1) * N]}
        np.testing.assert_allclose(forward(arch, X, block), F[s], rtol=1e-12, atol=1e-14)
    prod = F[:, :, None] * F[:, None, :]
    mean = prod.mean(0)
    se = prod.std(0, ddof=1) / np.sqrt(S)
    K = arch.nngp_kernel(X)
    # the test has power: the standard errors are small against the kernel entries
    assert np.max(se) < 0.02 * np.max(np.abs(K))
    z = np.abs(mean - K) / se
    assert np.all(z < 5.0), f"max deviation {z.max():.2f} standard errors\n{mean}\n{K}"


# ----------------------------------------------------------------- errors
def test_wrong_weight_shapes_raise():
    cnn = Architecture("cnn", input_shape=(1, 6, 6), mask=3, stride=3)
    lcn = Architecture("lcn", input_shape=(1, 6, 6), mask=3, stride=3)
    fc = Architecture("fc", input_shape=(1, 6, 6))
    X = _X(2, (1, 6, 6), 0)
    with pytest.raises(ValueError, match=r"W must have shape \(N, M\) = \(N, 9\)"):
        preactivations(cnn, X, np.zeros((3, 4, 9)))
    with pytest.raises(ValueError, match=r"W must have shape \(N, n, M\) = \(N, 4, 9\)"):
        preactivations(lcn, X, np.zeros((3, 9)))
    with pytest.raises(ValueError, match=r"W must have shape \(N, N0\) = \(N, 36\)"):
        preactivations(fc, X, np.zeros((3, 35)))
    W = np.zeros((3, 9))
    with pytest.raises(ValueError, match=r"readout v must have shape \(N, n\) = \(3, 4\)"):
        forward(cnn, X, {"W": W, "v": np.zeros(3)})
    with pytest.raises(ValueError, match=r"readout v must have shape \(3,\) or \(3, 1\)"):
        forward(fc, X, {"W": np.zeros((3, 36)), "v": np.zeros(4)})
    with pytest.raises(TypeError, match="keys 'W' and 'v'"):
        forward(cnn, X, {"W": W})
    with pytest.raises(ValueError, match="NaN or inf"):
        forward(cnn, X, {"W": np.full((3, 9), np.nan), "v": np.zeros((3, 4))})
    with pytest.raises(ValueError, match="expected"):
        forward(cnn, _X(2, (1, 5, 5), 0), {"W": W, "v": np.zeros((3, 4))})
    with pytest.raises(ValueError, match="N .* must be >= 1"):
        init_weights(cnn, 0, 0)
    with pytest.raises(TypeError, match="positive int"):
        init_weights(cnn, 2.5, 0)
    with pytest.raises(TypeError, match="explicit seed"):
        init_weights(cnn, 2, None)
    with pytest.raises(ValueError, match="no input_shape"):
        init_weights(Architecture("fc"), 2, 0)
