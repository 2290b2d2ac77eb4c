r"""THEORY §3 for the CNN with a pooled readout (THEORY §1, §3b), in SymPy.

    f(x) = N^{-1/2} Σ_a v_a φ̄_a(x),   φ̄_a = (1/n) Σ_i φ_{a,i},   φ_{a,i} = σ(w_a · x_i/√M)

One readout weight per channel (global average pooling before the readout). The steps of
:mod:`derivations.steps` are redone where they differ from the local readout:

* step 2 — the readout integral gives the empirical kernel K̂ = (1/(λ1 N)) Σ_a φ̄_a φ̄_aᵀ
  = (1/(λ1 N n²)) Σ_a Σ_ij φ_{a,i} φ_{a,j}ᵀ: every cross-patch product enters, uniformly weighted
  (:func:`step2_pooled_readout`);
* step 4 — the exponent is a sum over channels of −q_a²/(2λ1N) with the *scalar* q_a = s̄·φ̄_a,
  each term depending on w_a only (:func:`step4_pooled_factorization`);
* step 5 — E q = s̄ᵀμ̄, Var q = s̄ᵀ(K_pool − μ̄μ̄ᵀ)s̄ with K_pool = (1/n²) Σ_ij K_ij and
  μ̄ = (1/n) Σ_i μ_i (:func:`step5_pooled_moments`); Gaussian equivalence for one scalar, with
  s = λ1 N instead of λ1 N n (:func:`step5_pooled_gaussian_equivalence`);
* steps 6–8 — one scalar order parameter Q̄ = s̄ᵀ(K_pool − μ̄μ̄ᵀ)s̄/(λ1N) and its conjugate Q: the
  action is the FC action with K → K_pool, μ → μ̄ (:func:`step6_pooled_order_parameters`,
  :func:`step8_pooled_action`).

Steps 1, 3 and 7 do not involve the readout structure and are those of :mod:`derivations.steps`.
Sizes and symbols as in :mod:`derivations.steps` (explicit small n and P, every kernel entry a
Symbol named ``K{i}{j}_{a}{b}``, means ``mu_{i}{a}``). The pooled order parameters are the FC
Symbols ``Q``, ``Qbar``.

:func:`pooling_program` holds the pooling maps the code generator prints
(``kren/generated/pool.py``): K_pool from the stored i ≤ j blocks, the pooled means, and the
pooled test×train kernel and test diagonal.
"""
from __future__ import annotations

import sympy as sp
from sympy import MatrixSymbol, OneMatrix

from . import steps as st
from .steps import N, DerivationError, ExplicitData, Step, _require, lambda1

__all__ = [
    "PooledData", "pooled_data", "step2_pooled_readout", "step4_pooled_factorization",
    "step5_pooled_moments", "step5_pooled_gaussian_equivalence",
    "step6_pooled_order_parameters", "step8_pooled_action", "eliminate_Qbar_pooled",
    "pooled_K_R_blocks", "pooling_program", "verify_pooling_program", "derive",
    "DerivationError",
]


# ------------------------------------------------------------------------------------------
# Explicit data: the CNN blocks and their pooled combinations
# ------------------------------------------------------------------------------------------

class PooledData:
    """The explicit CNN data (``cnn``: every block K_ij, means μ_i, symbolic) and the pooled
    objects built from them: ``K_pool`` = (1/n²) Σ_ij K_ij (P×P, symmetric), ``mu_bar`` =
    (1/n) Σ_i μ_i (1×P), and ``fc``: an FC :class:`~derivations.steps.ExplicitData` (n = 1) with
    K = K_pool, μ = μ̄ and the scalar order parameters Q, Q̄ — the data the steps of
    :mod:`derivations.steps` act on after step 5."""

    def __init__(self, cnn: ExplicitData, K_pool: sp.Matrix, mu_bar: sp.Matrix,
                 fc: ExplicitData):
        self.cnn, self.K_pool, self.mu_bar, self.fc = cnn, K_pool, mu_bar, fc

    @property
    def n(self):
        return self.cnn.n

    @property
    def P(self):
        return self.cnn.P


def pooled_data(n: int = 2, P: int = 2, zero_mean: bool = False) -> PooledData:
    """Explicit CNN data of :func:`derivations.steps.explicit_data` and its pooled kernel and
    means; the FC order parameters Q, Q̄ (Symbols ``Q``, ``Qbar``) replace the n×n ones."""
    dc = st.explicit_data("cnn", n, P, zero_mean)
    K_pool = sum((dc.K[(i, j)] for i in range(n) for j in range(n)), sp.zeros(P, P)) / n**2
    mu_bar = sum((dc.mu[i, :] for i in range(n)), sp.zeros(1, P)) / n
    _require((K_pool - K_pool.T).applyfunc(sp.expand) == sp.zeros(P, P), "K_pool symmetric")
    df = st.explicit_data("fc", 1, P, zero_mean)
    fc = ExplicitData("fc", 1, P, zero_mean, {(0, 0): K_pool}, mu_bar, dc.y, df.Q, df.Qbar)
    return PooledData(dc, K_pool, mu_bar, fc)


def _sbar(P):
    return sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"sbar_{mu}", real=True))


# ------------------------------------------------------------------------------------------
# Step 2: the readout integral
# ------------------------------------------------------------------------------------------

def step2_pooled_readout(P: int = 2, n: int = 2, channels: int = 2) -> Step:
    r"""∫ Π_a dv_a N(v_a; 0, 1/λ1) exp(−i s̄ᵀf_θ) = exp(−½ s̄ᵀK̂s̄),
    f_θ^μ = N^{-1/2} Σ_a v_a φ̄_a^μ,  φ̄_a = (1/n) Σ_i φ_{a,i},  K̂ = (1/(λ1 N)) Σ_a φ̄_a φ̄_aᵀ.

    Explicit (φ symbolic, N = ``channels`` readout weights): the N-fold Gaussian integral by
    :func:`derivations.steps.gaussian_integrate`. Checked:
    K̂ = (1/(λ1 N n²)) Σ_a Σ_ij φ_{a,i}φ_{a,j}ᵀ, and (n ≥ 2) the exponent holds the cross-patch
    products φ_{a,i}^μ φ_{a,j}^ν, i ≠ j, which the local readout's
    K̂ = (1/(λ1Nn)) Σ_{a,i} φ_{a,i}φ_{a,i}ᵀ (:func:`derivations.steps.step2_readout`) lacks.
    """
    sbar = _sbar(P)
    phi = {(a, i): sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"phi_{a}{i}^{mu}", real=True))
           for a in range(channels) for i in range(n)}
    phibar = {a: sum((phi[(a, i)] for i in range(n)), sp.zeros(P, 1)) / n
              for a in range(channels)}
    vs = [sp.Symbol(f"v_{a}", real=True) for a in range(channels)]
    f_theta = sum((vs[a] * phibar[a] for a in range(channels)), sp.zeros(P, 1)) / sp.sqrt(channels)
    E = -lambda1 * sum(v**2 for v in vs) / 2 - sp.I * (sbar.T * f_theta)[0, 0]
    gi = st.gaussian_integrate(E, vs, pref_sq=(lambda1 / (2 * sp.pi))**channels)
    K_hat = sum((phibar[a] * phibar[a].T for a in range(channels)), sp.zeros(P, P)) / \
        (lambda1 * channels)
    expected = -(sbar.T * K_hat * sbar)[0, 0] / 2
    _require(sp.simplify(gi.pref_sq - 1) == 0, "pooled readout prefactor")
    _require(sp.expand(gi.exponent - expected) == 0, "pooled readout exponent")
    K_pairs = sum((phi[(a, i)] * phi[(a, j)].T for a in range(channels) for i in range(n)
                   for j in range(n)), sp.zeros(P, P)) / (lambda1 * channels * n**2)
    _require((K_hat - K_pairs).applyfunc(sp.expand) == sp.zeros(P, P), "K̂ = Σ_ij φ_i φ_jᵀ/n²")
    checked = [f"all {channels} readout weights at P={P}, n={n}, φ symbolic",
               "K̂ = (1/(λ1 N n²)) Σ_a Σ_ij φ_{a,i} φ_{a,j}ᵀ"]
    if n >= 2 and P >= 2:
        cross = phi[(0, 0)][0] * phi[(0, 1)][1]
        _require(sp.expand(gi.exponent).coeff(cross) != 0, "no cross-patch product")
        local = st.step2_readout(P, n, channels)
        _require(sp.expand(local.derived).coeff(cross) == 0, "local readout has cross products")
        checked.append("cross-patch products φ_{a,i}φ_{a,j}, i ≠ j, present (absent for the "
                       "local readout)")
    return Step(
        "2p", "Pooled readout: integrate the readout weights",
        r"One readout weight per channel multiplies the patch average "
        r"$\bar\varphi_a=\frac1n\sum_i\varphi_{a,i}$; its Gaussian integral leaves the empirical "
        r"kernel of the pooled features, in which every pair of patches enters:",
        equations=[(sp.Symbol(r"\log\mathbb E_v e^{-i\bar s^\top f_\theta}"),
                    sp.Symbol(r"-\tfrac12\bar s^\top\hat K\bar s")),
                   (sp.Symbol(r"\hat K"),
                    sp.Symbol(r"\frac{1}{\lambda_1 N}\sum_a\bar\varphi_a\bar\varphi_a^\top="
                              r"\frac{1}{\lambda_1 N n^2}\sum_a\sum_{ij}\varphi_{a,i}"
                              r"\varphi_{a,j}^\top"))],
        checked=checked, derived=gi.exponent, expected=expected)


# ------------------------------------------------------------------------------------------
# Step 4: channel factorization with a scalar q_a
# ------------------------------------------------------------------------------------------

def step4_pooled_factorization(P: int = 2, n: int = 2, channels: int = 2, M: int = 2) -> Step:
    r"""−½ s̄ᵀK̂s̄ = Σ_a [−q_a²/(2λ1N)],  q_a = s̄·φ̄_a a *scalar*, and term a depends on w_a only,
    so E_W Π_a e^{t_a} = (E_w e^{−q²/(2λ1N)})^N.

    Explicit: φ_{a,i}^μ = σ(w_a·x_i^μ/√M) with an undefined function σ, one w_a shared by all
    patches (weight sharing), symbolic weights and inputs.
    """
    sigma = sp.Function("sigma")
    x = {(i, mu): sp.Matrix(M, 1, lambda k, _: sp.Symbol(f"x_{i}{mu}{k}", real=True))
         for i in range(n) for mu in range(P)}
    w = {a: sp.Matrix(M, 1, lambda k, _: sp.Symbol(f"w_{a}{k}", real=True))
         for a in range(channels)}
    sbar = _sbar(P)
    phibar = {a: sp.Matrix(P, 1, lambda mu, _: sum(
        sigma((w[a].T * x[(i, mu)])[0, 0] / sp.sqrt(M)) for i in range(n)) / n)
        for a in range(channels)}
    K_hat = sum((phibar[a] * phibar[a].T for a in range(channels)), sp.zeros(P, P)) / \
        (lambda1 * channels)
    total = -(sbar.T * K_hat * sbar)[0, 0] / 2
    q = {a: (sbar.T * phibar[a])[0, 0] for a in range(channels)}
    terms = [-q[a]**2 / (2 * lambda1 * channels) for a in range(channels)]
    _require(sp.expand(total - sum(terms)) == 0, "sum over channels")
    allw = set().union(*[w[a].free_symbols for a in range(channels)])
    for a, t in enumerate(terms):
        _require((t.free_symbols & allw) == w[a].free_symbols,
                 f"channel {a} term depends on other weights")
    return Step(
        "4p", "Pooled readout: factorization over channels, scalar q",
        r"The exponent is a sum over channels of the square of one scalar per channel, "
        r"$q_a=\bar s\cdot\bar\varphi_a$, which involves only that channel's filter $w_a$:",
        equations=[(sp.Symbol(r"-\tfrac12\bar s^\top\hat K\bar s"),
                    sp.Symbol(r"-\sum_{a=1}^N\frac{q_a^2}{2\lambda_1N},\quad "
                              r"q_a=\bar s\cdot\bar\varphi_a=\frac1n\sum_i\bar s\cdot"
                              r"\varphi_{a,i}")),
                   (sp.Symbol(r"\mathbb E_W e^{-\frac12\bar s^\top\hat K\bar s}"),
                    sp.Pow(sp.Symbol(r"\mathbb E_w\,e^{-q^2/(2\lambda_1N)}"), N))],
        checked=[f"exponent = Σ_a −q_a²/(2λ1N) (P={P}, n={n}, N={channels}, M={M})",
                 "each channel term depends only on its own filter"],
        derived=total, expected=sum(terms))


# ------------------------------------------------------------------------------------------
# Step 5: moments of the scalar q and Gaussian equivalence
# ------------------------------------------------------------------------------------------

def step5_pooled_moments(P: int = 2, n: int = 2) -> Step:
    r"""q = s̄·φ̄ = (1/n) Σ_i q_i with q_i = s̄·φ_i:  E q = s̄ᵀμ̄,  E q² = s̄ᵀK_pool s̄,
    Var q = s̄ᵀ(K_pool − μ̄μ̄ᵀ)s̄ = (1/n²) Σ_ij Cov(q_i, q_j),
    K_pool = (1/n²) Σ_ij K_ij,  μ̄ = (1/n) Σ_i μ_i.

    Explicit: q² expanded into monomials s̄_μ s̄_ν φ_i^μ φ_j^ν and E applied term by term
    (E φ_i^μ φ_j^ν = K_ij^{μν}, E φ_i^μ = μ_i^μ). The last identity says that the pooled q is the
    average of the CNN's q_i: under the CNN's Gaussian-equivalence assumption (q_i jointly
    Gaussian) it is exactly Gaussian, so the pooled assumption is implied by (is weaker than)
    the local one.
    """
    pdat = pooled_data(n, P, zero_mean=False)
    d = pdat.cnn
    sbar = _sbar(P)
    phi = {i: sp.Matrix(P, 1, lambda mu, _: sp.Symbol(f"phi_{i}^{mu}", real=True))
           for i in range(n)}
    qi = [(sbar.T * phi[i])[0, 0] for i in range(n)]
    q = sum(qi) / n
    # E on monomials: linear in φ → μ; quadratic φ_i^μ φ_j^ν → K_ij^{μν}
    lin = {phi[i][a]: d.mu[i, a] for i in range(n) for a in range(P)}
    quad = {}
    for i in range(n):
        for j in range(n):
            for a in range(P):
                for b in range(P):
                    quad[phi[i][a] * phi[j][b]] = d.K[(i, j)][a, b]
    allphi = [x for i in range(n) for x in phi[i]]

    def expect(expr):
        out = sp.S.Zero
        for term in sp.Add.make_args(sp.expand(expr)):
            coeff, rest = term.as_independent(*allphi)
            out += coeff * (lin[rest] if rest in lin else quad[rest])
        return out

    Eq = expect(q)
    Eq2 = expect(q**2)
    mb = pdat.mu_bar.T
    _require(sp.expand(Eq - (sbar.T * mb)[0, 0]) == 0, "E q = s̄ᵀμ̄")
    _require(sp.expand(Eq2 - (sbar.T * pdat.K_pool * sbar)[0, 0]) == 0, "E q² = s̄ᵀK_pool s̄")
    var = Eq2 - Eq**2
    want = (sbar.T * (pdat.K_pool - mb * mb.T) * sbar)[0, 0]
    _require(sp.expand(var - want) == 0, "Var q")
    cov = sum(((sbar.T * (d.K[(i, j)] - d.mu_vec(i) * d.mu_vec(j).T) * sbar)[0, 0]
               for i in range(n) for j in range(n)), sp.S.Zero) / n**2
    _require(sp.expand(var - cov) == 0, "Var q = (1/n²) Σ Cov(q_i, q_j)")
    return Step(
        "5p", "Pooled readout: moments of the scalar q",
        r"$q$ is the patch average of the CNN projections $q_i=\bar s\cdot\varphi_i$, so its "
        r"moments are those of step 5 summed over all pairs of patches:",
        equations=[(sp.Symbol(r"\mathbb E\,q"), sp.Symbol(r"\bar s^\top\bar\mu,\quad"
                                                           r"\bar\mu=\frac1n\sum_i\mu_i")),
                   (sp.Symbol(r"\mathrm{Var}\,q"),
                    sp.Symbol(r"\bar s^\top(K_{\rm pool}-\bar\mu\bar\mu^\top)\bar s=\frac1{n^2}"
                              r"\sum_{ij}\mathrm{Cov}(q_i,q_j),\quad K_{\rm pool}="
                              r"\frac1{n^2}\sum_{ij}K_{ij}"))],
        checked=[f"P={P}, n={n}: E q, E q², Var q, and Var q = (1/n²) Σ_ij Cov(q_i, q_j)"],
        derived=var, expected=want)


def step5_pooled_gaussian_equivalence() -> Step:
    r"""Gaussian equivalence for the one scalar q ~ N(m, C), m = s̄ᵀμ̄, C = s̄ᵀ(K_pool − μ̄μ̄ᵀ)s̄:

        E exp(−q²/(2s)) = (1 + C/s)^{-1/2} exp(−m²/(2(s + C))),   s = λ1 N

    (the n = 1 case of :func:`derivations.steps.step5_gaussian_equivalence`, whose s is
    symbolic; the pooled readout scale is s = λ1N, not the local readout's λ1Nn).
    """
    base = st.step5_gaussian_equivalence(1, diagonal=False)
    s = sp.Symbol("s", positive=True)
    m = sp.Symbol("m_0", real=True)
    Lam = sp.Symbol("Lambda_00", real=True)
    C = 1 / Lam
    pref_sq, expo = base.derived
    _require(sp.cancel(pref_sq - 1 / (1 + C / s)) == 0, "scalar GE prefactor")
    _require(sp.cancel(sp.together(expo + m**2 / (2 * (s + C)))) == 0, "scalar GE exponent")
    return Step(
        "5pe", "Pooled readout: Gaussian equivalence for one scalar",
        st.GAUSSIAN_EQUIVALENCE_ASSUMPTION + r" For the pooled readout there is one projection "
        r"per channel, $q=\bar s\cdot\bar\varphi$, and its average is a one-dimensional Gaussian "
        r"integral ($s=\lambda_1N$):",
        equations=[(sp.Symbol(r"\mathbb E_{q\sim\mathcal N(m,C)}\,e^{-q^2/(2s)}"),
                    sp.Symbol(r"(1+C/s)^{-1/2}\exp\!\left(-\frac{m^2}{2(s+C)}\right)"))],
        checked=["n = 1 Gaussian integral with symbolic s, m, C"],
        derived=base.derived, expected=base.expected)


# ------------------------------------------------------------------------------------------
# Steps 6–8: scalar order parameters, the action
# ------------------------------------------------------------------------------------------

def pooled_K_R_blocks(pdat: PooledData, Q=None, Qbar=None) -> sp.Matrix:
    r"""THEORY §3b written in the CNN blocks: K_R = (1/(λ1 n²)) Σ_ij [Q (K_ij − μ_iμ_jᵀ)
    + μ_iμ_jᵀ/(1 + Q̄)] (zero mean: (Q/(λ1 n²)) Σ_ij K_ij)."""
    d = pdat.cnn
    Q = pdat.fc.Q[0, 0] if Q is None else Q
    Qbar = pdat.fc.Qbar[0, 0] if Qbar is None else Qbar
    out = sp.zeros(d.P, d.P)
    for i in range(d.n):
        for j in range(d.n):
            mm = d.mu_vec(i) * d.mu_vec(j).T
            out += Q * (d.K[(i, j)] - mm)
            if not d.zero_mean:
                out += mm / (1 + Qbar)
    return out / (lambda1 * d.n**2)


def step6_pooled_order_parameters(n: int = 2, P: int = 2) -> Step:
    r"""Scalar order parameter Q̄ = s̄ᵀ(K_pool − μ̄μ̄ᵀ)s̄/(λ1N) and its conjugate Q:
    :func:`derivations.steps.step6_order_parameters` on the FC data K = K_pool, μ = μ̄ (n = 1,
    s = λ1N), giving K_R = (1/λ1)[Q(K_pool − μ̄μ̄ᵀ) + μ̄μ̄ᵀ/(1 + Q̄)]; checked equal, entry by
    entry, to the same expression written in the CNN blocks (:func:`pooled_K_R_blocks`)."""
    pdat = pooled_data(n, P, zero_mean=False)
    base = st.step6_order_parameters(pdat.fc)
    blocks = pooled_K_R_blocks(pdat)
    _require((base.derived - blocks).applyfunc(lambda e: sp.cancel(sp.together(e)))
             == sp.zeros(P, P), "K_R(Q, Q̄) in blocks")
    return Step(
        "6p", "Pooled readout: scalar order parameters",
        r"The single-channel average depends on $\bar s$ only through the scalar "
        r"$C=\bar s^\top(K_{\rm pool}-\bar\mu\bar\mu^\top)\bar s$: one order parameter "
        r"$\bar Q=C/(\lambda_1N)$ with conjugate $Q$, exactly as for the FC network with "
        r"$K\to K_{\rm pool}$, $\mu\to\bar\mu$:",
        equations=[(sp.Symbol("K_R"),
                    sp.Symbol(r"\frac1{\lambda_1}\Big[Q\big(K_{\rm pool}-\bar\mu\bar\mu^\top\big)"
                              r"+\frac{\bar\mu\bar\mu^\top}{1+\bar Q}\Big]=\frac{1}{\lambda_1n^2}"
                              r"\sum_{ij}\Big[Q\big(K_{ij}-\mu_i\mu_j^\top\big)+\frac{\mu_i"
                              r"\mu_j^\top}{1+\bar Q}\Big]"))],
        checked=base.checked + [f"n={n} P={P}: = (1/(λ1 n²)) Σ_ij [...] in the CNN blocks"],
        derived=base.derived, expected=blocks)


def step8_pooled_action(n: int = 2, P: int = 2, zero_mean: bool = False) -> Step:
    r"""The pooled action: :func:`derivations.steps.step8_action` on the pooled FC data, i.e.

        S(Q, Q̄) = −Q Q̄ + log(1 + Q̄) + (1/N)[log det A + yᵀA⁻¹y],  A = T𝟙 + K_R,

    K_R of :func:`step6_pooled_order_parameters` (THEORY §3b). For ``zero_mean`` Q̄ is
    eliminated (:func:`eliminate_Qbar_pooled`): S(Q) = Q − log Q + (1/N)[...], K_R = Q K_pool/λ1.

    Checked against the FC action of THEORY §3 written with generic kernel and mean symbols,
    then K → K_pool, μ → μ̄ substituted. Both actions are S0(Q, Q̄) + F(T𝟙 + K_R)/N with the same
    S0 and the same F(A) = log det A + yᵀA⁻¹y (step 8 verifies the derived S has this form for a
    generic symmetric A), so they are equal iff their K_R agree; the K_R are compared entry by
    entry in exact rational arithmetic, and S is then written through the FC formula.
    """
    pdat = pooled_data(n, P, zero_mean)
    step = eliminate_Qbar_pooled(pdat) if zero_mean else st.step8_action(pdat.fc)
    fc = st.explicit_data("fc", 1, P, zero_mean)
    sub = {}
    for a in range(P):
        for b in range(P):
            sub[fc.K[(0, 0)][a, b]] = pdat.K_pool[a, b]
        if not zero_mean:
            sub[fc.mu[0, a]] = pdat.mu_bar[0, a]
    sub[fc.Q[0, 0]] = pdat.fc.Q[0, 0]
    sub[fc.Qbar[0, 0]] = pdat.fc.Qbar[0, 0]
    KR_fc = st.theory_K_R(fc).xreplace(sub)
    KR_pool = st.theory_K_R(pdat.fc)
    _require((KR_fc - KR_pool).applyfunc(lambda e: sp.cancel(sp.together(e))) == sp.zeros(P, P),
             "pooled K_R ≠ FC K_R on K_pool")
    _require((KR_pool - pooled_K_R_blocks(pdat)).applyfunc(lambda e: sp.cancel(sp.together(e)))
             == sp.zeros(P, P), "pooled K_R ≠ its block form")
    S_fc = (st.theory_action_zero_mean if zero_mean else st.theory_action)(fc)
    return Step(
        "8p", "Pooled readout: the action is the FC action on the pooled kernel",
        r"Steps 6–8 are those of the FC network with $K\to K_{\rm pool}$ and $\mu\to\bar\mu$ "
        r"(THEORY §3b): the pooled CNN renormalizes its kernel globally, by scalars, like the FC.",
        equations=[(sp.Symbol(r"S_{\rm pool}(Q,\bar Q)"),
                    sp.Symbol(r"S_{\rm FC}(Q,\bar Q)\big|_{K\to K_{\rm pool},\ \mu\to\bar\mu}")),
                   (sp.Symbol(r"K_{\rm pool}"), sp.Symbol(r"\frac1{n^2}\sum_{ij}K_{ij}"))],
        checked=step.checked + [f"n={n} P={P} zero_mean={zero_mean}: K_R = THEORY FC K_R with "
                                "K → K_pool, μ → μ̄ (entrywise), = block form"],
        derived=step.derived, expected=S_fc.xreplace(sub))


def eliminate_Qbar_pooled(pdat: PooledData) -> Step:
    """Zero mean (μ = 0): Q̄ = 1/Q − 1 by :func:`derivations.steps.eliminate_Qbar` on the pooled
    FC data, S(Q) = Q − log Q + (1/N)[log det A + yᵀA⁻¹y], K_R = Q K_pool/λ1."""
    if not pdat.fc.zero_mean:
        raise ValueError("eliminate_Qbar_pooled needs zero-mean data (pooled_data(..., "
                         "zero_mean=True))")
    return st.eliminate_Qbar(pdat.fc)


# ------------------------------------------------------------------------------------------
# The pooling maps the code generator prints
# ------------------------------------------------------------------------------------------

def pooling_program():
    r"""The pooling maps of THEORY §3b as a :class:`derivations.action.Program`:

        Wpool   = 𝟙𝟙ᵀ/n²                    (n×n; Σ_ij Wpool_ij X_ij = (1/n²) Σ_ij X_ij)
        K_pool  = Σ_ij Wpool_ij K_ij          over the stored i ≤ j train blocks (PairSum)
        mu_pool = (1/n) 𝟙ᵀ μ                  (1×P: the pooled unit means μ̄)
        Kx_pool = Σ_ij Wpool_ij Kx_ij         test×train blocks, full (n, n, P1, P2) tensor
        Kd_pool = Σ_ij Wpool_ij Kd_ij         test diagonal K_ij(x0, x0), (n, n, P0) tensor
    """
    from .action import FullSum, P, P0, P1, P2, PairSum, Program, K, Kd, Kx, n
    mu = MatrixSymbol("mu", n, P)
    prog = Program(inputs={"mu": mu})
    W = prog.add(MatrixSymbol("Wpool", n, n), OneMatrix(n, n) / n**2)
    prog.add(MatrixSymbol("K_pool", P, P), PairSum(W, K, P, P))
    prog.add(MatrixSymbol("mu_pool", 1, P), OneMatrix(1, n) * mu / n)
    prog.add(MatrixSymbol("Kx_pool", P1, P2), FullSum(W, Kx, P1, P2))
    prog.add(MatrixSymbol("Kd_pool", P0, 1), FullSum(W, Kd, P0, 1))
    return prog


def verify_pooling_program(n: int = 2, P: int = 2, P0: int = 2) -> int:
    """Evaluate :func:`pooling_program` on explicit symbolic blocks and check every output
    against its definition: Wpool = 𝟙𝟙ᵀ/n²; K_pool = (1/n²)[Σ_i K_ii + Σ_{i<j}(K_ij + K_ijᵀ)]
    (from the i ≤ j blocks of a symmetric tensor); μ̄ = (1/n) Σ_i μ_i; Kx_pool = (1/n²) Σ_ij Kx_ij
    over all n² ordered blocks (K_ij(x0, x) ≠ K_ji(x0, x)ᵀ); Kd_pool = (1/n²) Σ_ij Kd_ij.
    Returns the number of entries compared."""
    from .action import explicit
    from .action import n as n_sym
    from .action import P as P_sym
    prog = pooling_program()
    pdat = pooled_data(n, P, zero_mean=False)
    ones = sp.ones(n, n) / n**2
    _require(_evaluate(prog["Wpool"], {}, {n_sym: n}) == ones, "Wpool = 𝟙𝟙ᵀ/n²")
    mu_pool = _evaluate(prog["mu_pool"], {prog.inputs["mu"]: pdat.cnn.mu}, {n_sym: n, P_sym: P})
    _require((mu_pool - pdat.mu_bar).applyfunc(sp.expand) == sp.zeros(1, P), "mu_pool")
    count = n * n + P
    # PairSum over the stored pairs i ≤ j of a symmetric tensor: explicit() sums W_ij K_ij over
    # the blocks it is given, so both orders are given (K_ji = K_ijᵀ), as the tensor implies
    Kx = {(i, j): sp.Matrix(P0, P, lambda a, b: sp.Symbol(f"Kx{i}{j}_{a}{b}", real=True))
          for i in range(n) for j in range(n)}
    Kd = {(i, j): sp.Matrix(P0, 1, lambda a, _: sp.Symbol(f"Kd{i}{j}_{a}", real=True))
          for i in range(n) for j in range(n)}
    env = {"Wpool": ones, "K": pdat.cnn.K, "Kx": Kx, "Kd": Kd, "n": sp.Integer(n),
           "P": sp.Integer(P), "P0": sp.Integer(P0), "P1": sp.Integer(P0), "P2": sp.Integer(P)}
    stored = {k: v for k, v in pdat.cnn.K.items() if k[0] <= k[1]}
    want = sp.zeros(P, P)
    for (i, j), blk in stored.items():
        want += blk if i == j else blk + blk.T
    got = explicit(prog["K_pool"], env)
    _require((got - want / n**2).applyfunc(sp.expand) == sp.zeros(P, P), "K_pool")
    _require((got - pdat.K_pool).applyfunc(sp.expand) == sp.zeros(P, P), "K_pool = (1/n²)Σ_ij")
    count += P * P
    for name, T_, rows, cols in (("Kx_pool", Kx, P0, P), ("Kd_pool", Kd, P0, 1)):
        got = explicit(prog[name], env)
        want = sum((T_[(i, j)] for i in range(n) for j in range(n)), sp.zeros(rows, cols)) / n**2
        _require((got - want).applyfunc(sp.expand) == sp.zeros(rows, cols), name)
        count += rows * cols
    return count


def _evaluate(expr, matrices: dict, sizes: dict) -> sp.Matrix:
    """A matrix expression with its MatrixSymbols replaced by explicit matrices and its symbolic
    sizes by integers, evaluated (covers OneMatrix, which derivations.action.explicit does not)."""
    e = expr.xreplace({k: sp.ImmutableMatrix(v) for k, v in matrices.items()})
    e = e.xreplace({k: sp.Integer(v) for k, v in sizes.items()})
    return sp.Matrix(e.doit().as_explicit())


# ------------------------------------------------------------------------------------------
# Everything in order
# ------------------------------------------------------------------------------------------

def derive(zero_mean: bool = True, n: int = 2, P: int = 2) -> list[Step]:
    """The pooled-readout steps (2, 4, 5, 6, 8; 1, 3, 7 as for the local readout) at explicit
    sizes; every step verifies itself. Returns the Step records."""
    steps = [st.step1_fourier_delta(), step2_pooled_readout(P, n, 2), st.step3_outputs(P),
             step4_pooled_factorization(P, n, 2), step5_pooled_moments(P, n),
             step5_pooled_gaussian_equivalence(), step6_pooled_order_parameters(n, P),
             st.step7_sbar_integral(P), step8_pooled_action(n, P, zero_mean=False)]
    if zero_mean:
        steps.append(step8_pooled_action(n, P, zero_mean=True))
    steps.append(st.saddle_point_equations(pooled_data(n, P, zero_mean).fc))
    return steps
