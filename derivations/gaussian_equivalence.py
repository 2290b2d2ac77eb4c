r"""Numerical checks of the Gaussian-equivalence step (THEORY §3, step 5).

The assumption (:data:`derivations.steps.GAUSSIAN_EQUIVALENCE_ASSUMPTION`): for fixed s̄ the
projections q_i = s̄·φ_i(w), i = 1..n, of one channel are jointly Gaussian over the first-layer
weights w, with mean m_i = s̄·μ_i and covariance C_ij = s̄ᵀ(K_ij − μ_iμ_jᵀ)s̄ (CNN; LCN: δ_ij).
Its consequence, derived in :func:`derivations.steps.step5_gaussian_equivalence`:

    E exp(−|q|²/(2s)) = det(𝟙 + C/s)^{-1/2} exp(−½ mᵀ(s𝟙 + C)⁻¹m),   s = λ1 N n.

What this module checks, and what it does not claim:

1. For genuinely Gaussian q the formula is exact: a seeded Monte Carlo average agrees with it
   within its standard error (:func:`mc_gaussian_average`).
2. For the linear activation q is linear in the Gaussian w, hence exactly Gaussian, and the
   average over w agrees with the formula within Monte Carlo error.
3. For erf/relu features q is *not* Gaussian. What is exact is the first order in 1/s: since
   1 − x ≤ e^{−x} ≤ 1 − x + x²/2 for x ≥ 0, and E|q|² = Tr C + |m|² holds for the true q
   (it is the definition of K_ij and μ_i), both averages lie in [1 − E x, 1 − E x + E x²/2],
   x = |q|²/(2s), so  |E_true − E_GE| ≤ max(E_true|q|⁴, E_G|q|⁴)/(8s²)
   (:func:`second_order_bound`). Beyond that the discrepancy is measured, not bounded, by
   :func:`report` (CNN, n = 2–3 patches, x ~ N(0, 𝟙), s̄ ~ N(0, 𝟙/P), s chosen so that
   Tr C/s = 1, 10⁵ weight samples, seed 0). Measured relative errors (true − GE)/GE:

   ====================  ======  ======  ======  ======
   case                  P = 2   P = 8   P = 32  P = 128
   ====================  ======  ======  ======  ======
   linear, M = 4         −0.1%   −0.0%   −0.1%   −0.1%   (exact; MC s.e. 0.1%)
   erf, M = 4            −2.5%   −2.9%   −2.8%   −4.1%
   erf, M = 64           −4.9%   −1.6%   −0.8%   −0.4%
   erf, M = 512          −5.5%   −1.3%   −0.4%   −0.2%
   relu, M = 4           +4.6%   +4.3%   +5.3%   +1.4%
   relu, M = 512         +9.0%   +1.8%   +0.6%   +0.2%
   ====================  ======  ======  ======  ======

   So the approximation improves with P only when the pre-activations of different inputs are
   weakly correlated (large patches M): q is then a sum of P nearly independent terms. With a
   small patch (M = 4) q is a function of only M Gaussian variables and the error stays at a
   few percent at Tr C/s = 1. At fixed P = 8 (erf, M = 4) the error scales like (Tr C/s)²:
   −0.04%, −0.3%, −2.9%, −15% at Tr C/s = 0.1, 0.3, 1, 3 — the second-order term the bound
   above controls. None of this tests the assumption in the proportional limit itself; it only
   shows where the Gaussian replacement is accurate for a single channel.
"""
from __future__ import annotations

import numpy as np

from kren.kernels import train_kernels

__all__ = ["gaussian_average", "gaussian_fourth_moment", "mc_gaussian_average",
           "weight_projections", "true_average", "gaussian_equivalent", "second_order_bound",
           "report"]


def _check_mC(m, C):
    m = np.atleast_1d(np.asarray(m, dtype=float))
    C = np.atleast_2d(np.asarray(C, dtype=float))
    if C.shape != (m.size, m.size):
        raise ValueError(f"C must be ({m.size}, {m.size}) to match m, got {C.shape}")
    if not np.allclose(C, C.T, atol=1e-12 * max(1.0, np.abs(C).max())):
        raise ValueError("C must be symmetric")
    if np.linalg.eigvalsh(C).min() < -1e-12 * max(1.0, np.abs(C).max()):
        raise ValueError("C must be positive semi-definite")
    return m, C


def _check_s(s):
    s = float(s)
    if not np.isfinite(s) or s <= 0:
        raise ValueError(f"s = λ1 N n must be a positive number, got {s}")
    return s


def gaussian_average(m, C, s) -> float:
    """det(𝟙 + C/s)^{-1/2} exp(−½ mᵀ(s𝟙 + C)⁻¹ m): E exp(−|q|²/(2s)) for q ~ N(m, C)
    (THEORY §3 step 5)."""
    m, C = _check_mC(m, C)
    s = _check_s(s)
    k = m.size
    sign, logdet = np.linalg.slogdet(np.eye(k) + C / s)
    quad = m @ np.linalg.solve(s * np.eye(k) + C, m)
    return float(np.exp(-0.5 * logdet - 0.5 * quad))


def gaussian_fourth_moment(m, C) -> float:
    """E|q|⁴ for q ~ N(m, C): (Tr C + |m|²)² + 2 Tr(C²) + 4 mᵀCm."""
    m, C = _check_mC(m, C)
    return float((np.trace(C) + m @ m)**2 + 2 * np.trace(C @ C) + 4 * m @ C @ m)


def mc_gaussian_average(m, C, s, n_samples: int = 200_000, seed: int = 0):
    """Monte Carlo E exp(−|q|²/(2s)), q ~ N(m, C) drawn with ``numpy.random.default_rng(seed)``.
    Returns (estimate, standard error of the mean)."""
    m, C = _check_mC(m, C)
    s = _check_s(s)
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    rng = np.random.default_rng(seed)
    w, V = np.linalg.eigh(C)
    # C = V diag(w) Vᵀ: a square root that tolerates a singular C
    L = V * np.sqrt(np.maximum(w, 0.0))
    q = m + rng.standard_normal((n_samples, m.size)) @ L.T
    f = np.exp(-np.einsum("bi,bi->b", q, q) / (2 * s))
    return float(f.mean()), float(f.std(ddof=1) / np.sqrt(n_samples))


def weight_projections(arch, X, sbar, n_samples: int, seed: int = 0, batch: int = 20_000):
    """Samples of q_i = s̄·σ(w·x_i/√M) over the prior w ~ N(0, 1/λ0) (THEORY §1): one w per
    sample shared by all patches (CNN; FC has n = 1), independent w per patch (LCN).
    Returns an array (n_samples, n)."""
    arch = arch.with_input(X)
    Xc = arch.check_data(X)
    sbar = np.asarray(sbar, dtype=float).ravel()
    if sbar.size != Xc.shape[0]:
        raise ValueError(f"sbar must have P = {Xc.shape[0]} entries, got {sbar.size}")
    patches = arch.geometry.patches(Xc)                          # (P, n, M)
    P, n, M = patches.shape
    rng = np.random.default_rng(seed)
    out = np.empty((n_samples, n))
    scale = 1.0 / np.sqrt(arch.lambda0)
    for start in range(0, n_samples, batch):
        b = min(batch, n_samples - start)
        if arch.kind == "lcn":
            w = rng.standard_normal((b, n, M)) * scale
            h = np.einsum("pnm,bnm->bpn", patches, w) / np.sqrt(M)
        else:
            w = rng.standard_normal((b, M)) * scale
            h = np.einsum("pnm,bm->bpn", patches, w) / np.sqrt(M)
        out[start:start + b] = np.einsum("p,bpn->bn", sbar, arch.act.sigma(h))
    return out


def true_average(arch, X, sbar, s, n_samples: int = 200_000, seed: int = 0) -> dict:
    """Monte Carlo over the prior of w of E exp(−|q|²/(2s)) for the real features, with E|q|²
    and E|q|⁴. Returns dict: value, stderr, q2, q2_stderr, q4, q4_stderr."""
    s = _check_s(s)
    q = weight_projections(arch, X, sbar, n_samples, seed)
    r2 = np.einsum("bi,bi->b", q, q)
    f = np.exp(-r2 / (2 * s))
    se = lambda v: float(v.std(ddof=1) / np.sqrt(v.size))  # noqa: E731
    return {"value": float(f.mean()), "stderr": se(f), "q2": float(r2.mean()), "q2_stderr": se(r2),
            "q4": float((r2**2).mean()), "q4_stderr": se(r2**2)}


def gaussian_equivalent(arch, X, sbar, s) -> dict:
    """The Gaussian-equivalent moments from the kernels of :mod:`kren.kernels`:
    m_i = s̄·μ_i, C_ij = s̄ᵀ(K_ij − μ_iμ_jᵀ)s̄ (CNN; LCN and FC: only i = j), and the closed-form
    average. Returns dict: m, C, value, q2 (= Tr C + |m|²), q4 (Gaussian E|q|⁴)."""
    arch = arch.with_input(X)
    sbar = np.asarray(sbar, dtype=float).ravel()
    n = arch.n
    pairs = np.array([(i, j) for i in range(n) for j in range(i, n)]) if arch.kind == "cnn" \
        else np.array([(i, i) for i in range(n)])
    kt = train_kernels(arch, X, pairs=pairs)
    m = kt.mu @ sbar
    C = np.zeros((n, n))
    for (i, j), blk in zip(kt.pairs, kt.blocks):
        c = sbar @ blk @ sbar - m[i] * m[j]
        C[i, j] = C[j, i] = c
    return {"m": m, "C": C, "value": gaussian_average(m, C, s), "q2": float(np.trace(C) + m @ m),
            "q4": gaussian_fourth_moment(m, C)}


def second_order_bound(q4_true: float, q4_gauss: float, s) -> float:
    """|E_true e^{−x} − E_G e^{−x}| ≤ max(E_true|q|⁴, E_G|q|⁴)/(8 s²), x = |q|²/(2s), valid
    whenever E_true|q|² = E_G|q|² (module docstring)."""
    s = _check_s(s)
    return max(q4_true, q4_gauss) / (8 * s * s)


def report(activation: str = "erf", kind: str = "cnn", Ps=(2, 8, 32), ratio: float = 1.0,
           n_samples: int = 200_000, seed: int = 0, input_shape=(1, 8), mask=4, stride=2):
    """Relative discrepancy between the true average over w and the Gaussian-equivalent one on
    random inputs (seeded), with s chosen so that Tr C/s = ``ratio`` (the regime where the
    average is far from 1). Returns a list of dicts (P, s, true ± stderr, GE, rel_error,
    rel_stderr, bound). Inputs x ~ N(0, 𝟙), s̄ ~ N(0, 𝟙/P) (a generic conjugate vector)."""
    from kren.architecture import Architecture
    arch = Architecture(kind, input_shape=input_shape, mask=mask, stride=stride,
                        activation=activation)
    rng = np.random.default_rng(seed)
    rows = []
    for P in Ps:
        X = rng.standard_normal((P, arch.N0))
        sbar = rng.standard_normal(P) / np.sqrt(P)
        ge0 = gaussian_equivalent(arch, X, sbar, 1.0)
        s = float(np.trace(ge0["C"]) + ge0["m"] @ ge0["m"]) / ratio
        ge = gaussian_equivalent(arch, X, sbar, s)
        tr = true_average(arch, X, sbar, s, n_samples, seed + P)
        rows.append({"P": P, "s": s, "true": tr["value"], "stderr": tr["stderr"],
                     "GE": ge["value"], "rel_error": (tr["value"] - ge["value"]) / ge["value"],
                     "rel_stderr": tr["stderr"] / ge["value"],
                     "bound": second_order_bound(tr["q4"], ge["q4"], s)})
    return rows
