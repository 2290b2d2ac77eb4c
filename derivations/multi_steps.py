r"""THEORY §3c: the steps 1–8 of :mod:`derivations.steps` redone for D outputs, and the limits
of THEORY §5.7, in SymPy on explicit small sizes (every entry a Symbol unless stated).

Network f_d(x) = (N n)^{-1/2} Σ_{a,i} v_{a,i,d} φ_{a,i}(x), likelihood
exp(−(1/2T) Σ_{μ,d} (y_d^μ − f_d^μ)²), one conjugate vector s̄_d ∈ R^P per output, stacked
output-major into s̄ ∈ R^{DP} (index (d, μ) → d·P + μ). What changes with D:

* step 2 — every readout weight v_{a,i,d} gives e^{−(s̄_d·φ_{a,i})²/(2λ1Nn)}: the exponent is
  −½ Σ_d s̄_dᵀ K̂ s̄_d with the one-output empirical kernel K̂ (:func:`step2_multi_readout`);
* step 4 — per channel q_a = (s̄_d·φ_{a,i})_{(i,d)} ∈ R^{nD}, and the term of channel a depends
  on its weights only (:func:`step4_multi_factorization`);
* step 5 — E q_(i,d) = s̄_dᵀμ_i, Cov(q_(i,d), q_(j,e)) = s̄_dᵀ(K_ij − μ_iμ_jᵀ)s̄_e (CNN; LCN: δ_ij);
  Gaussian equivalence is the nD-dimensional formula of the one-output step 5
  (:func:`step5_multi_moments`);
* step 6 — Q̄_(i,d),(j,e) = s̄_dᵀ K̃_ij s̄_e/(λ1 N n) with conjugates Q, and the s̄-quadratic form
  is T𝟙_{DP} + K_R with (K_R)_de of THEORY §3c (:func:`step6_multi_order_parameters`);
* steps 7–8 — the s̄ integral over R^{DP} and the action (:func:`step8_multi_action`), equal to
  the explicit action of :mod:`derivations.multi_output`.

Limits (THEORY §5.7, §5.1): :func:`d1_is_single_output` (D = 1 is the one-output action of
:mod:`derivations.action`), :func:`identity_gives_independent_gps` (at Q = 𝟙 the action and
A split into D independent one-output GP problems), :func:`n1_cnn_lcn_fc` (a mask covering the
input: the CNN, LCN and FC D-output actions coincide).
"""
from __future__ import annotations

import sympy as sp

from . import action as ac
from . import multi_output as mo
from . import steps as st
from .steps import N, T, Step, _det, _inv, _require, gaussian_integrate, lambda1

__all__ = ["MultiData", "multi_data", "rational_point", "theory_multi_K_R", "step2_multi_readout",
           "step3_multi_outputs", "step4_multi_factorization", "step5_multi_moments",
           "step6_multi_order_parameters", "step8_multi_action", "d1_is_single_output",
           "identity_gives_independent_gps", "n1_cnn_lcn_fc", "derive_multi"]


class MultiData:
    """Explicit D-output data: the one-output data of :func:`derivations.steps.explicit_data`
    (blocks K_ij, means μ, symbolic), D outputs with labels Y (P×D, Symbols ``y_{d}_{μ}``),
    (nD)×(nD) order parameters Q, Q̄ (symmetric; LCN block-diagonal) of Symbols ``Q_{I}_{J}``."""

    def __init__(self, kind, n, D, P, zero_mean):
        base = st.explicit_data(kind, n, P, zero_mean)
        self.kind, self.n, self.D, self.P, self.zero_mean = kind, n, D, P, zero_mean
        self.K, self.mu = base.K, base.mu
        self.Y = sp.Matrix(P, D, lambda a, d: sp.Symbol(f"y_{d}_{a}", real=True))
        m = n * D

        def sym(name):
            def entry(I, J):
                if kind == "lcn" and I // D != J // D:
                    return sp.S.Zero
                return sp.Symbol(f"{name}_{min(I, J)}_{max(I, J)}", real=True)
            return sp.Matrix(m, m, entry)
        self.Q, self.Qbar = sym("Q"), sym("Qbar")

    @property
    def y(self) -> sp.Matrix:
        """Y stacked output-major: y[d·P + μ] = Y[μ, d] (THEORY §1)."""
        return sp.Matrix([self.Y[a, d] for d in range(self.D) for a in range(self.P)])

    def independent(self, M):
        """(I, J, symbol, weight 2 − δ_IJ) of the independent entries of an order parameter."""
        out = []
        for I in range(self.n * self.D):
            for J in range(I, self.n * self.D):
                if M[I, J] != 0:
                    out.append((I, J, M[I, J], 1 if I == J else 2))
        return out


def multi_data(kind: str, n: int, D: int, P: int, zero_mean: bool) -> MultiData:
    """:class:`MultiData` (FC: n must be 1)."""
    if kind == "fc" and n != 1:
        raise ValueError(f"FC has n = 1, got n = {n}")
    return MultiData(kind, n, D, P, zero_mean)


def theory_multi_K_R(d: MultiData, Q=None, Qbar=None) -> sp.Matrix:
    """THEORY §3c written out: the (DP)×(DP) matrix with blocks
    (K_R)_de = (1/(λ1 n)) Σ_ij [Q_(i,d),(j,e) (K_ij − μ_iμ_jᵀ) + ((𝟙 + Q̄)⁻¹)_(i,d),(j,e) μ_iμ_jᵀ]
    (zero mean: (1/(λ1 n)) Σ_ij Q_(i,d),(j,e) K_ij); the sums run over the blocks the
    architecture has (LCN: i = j)."""
    Q = d.Q if Q is None else Q
    Qbar = d.Qbar if Qbar is None else Qbar
    D, P, n = d.D, d.P, d.n
    R = None if d.zero_mean else _inv(sp.eye(n * D) + Qbar)
    out = sp.zeros(D * P, D * P)
    for dd in range(D):
        for e in range(D):
            blk = sp.zeros(P, P)
            for (i, j), Kij in d.K.items():
                I, J = i * D + dd, j * D + e
                if d.zero_mean:
                    blk += Q[I, J] * Kij
                else:
                    mi, mj = d.mu[i, :].T, d.mu[j, :].T
                    blk += Q[I, J] * (Kij - mi * mj.T) + R[I, J] * mi * mj.T
            out[dd * P:(dd + 1) * P, e * P:(e + 1) * P] = blk
    return out / (lambda1 * n)


def _sbar(P, D):
    return [sp.Matrix(P, 1, lambda m, _: sp.Symbol(f"sbar_{d}_{m}", real=True)) for d in range(D)]


def step2_multi_readout(P: int = 1, n: int = 2, D: int = 2, channels: int = 1) -> Step:
    r"""∫ Π dv_{a,i,d} N(v; 0, 1/λ1) exp(−i Σ_d s̄_dᵀ f_d) = exp(−½ Σ_d s̄_dᵀ K̂ s̄_d),
    K̂ = (1/(λ1 N n)) Σ_{a,i} φ_{a,i} φ_{a,i}ᵀ (the one-output empirical kernel, for every d).

    Explicit: the N·n·D-fold Gaussian integral by :func:`derivations.steps.gaussian_integrate`
    with φ and s̄ symbolic."""
    sb = _sbar(P, D)
    phi = {(a, i): sp.Matrix(P, 1, lambda m, _: sp.Symbol(f"phi_{a}{i}^{m}", real=True))
           for a in range(channels) for i in range(n)}
    vs = {(a, i, d): sp.Symbol(f"v_{a}{i}{d}", real=True)
          for a in range(channels) for i in range(n) for d in range(D)}
    Nn = channels * n
    E = -lambda1 * sum(x ** 2 for x in vs.values()) / 2
    for d in range(D):
        f_d = sum((vs[(a, i, d)] * phi[(a, i)] for a in range(channels) for i in range(n)),
                  sp.zeros(P, 1)) / sp.sqrt(Nn)
        E += -sp.I * (sb[d].T * f_d)[0, 0]
    gi = gaussian_integrate(E, list(vs.values()), pref_sq=(lambda1 / (2 * sp.pi)) ** (Nn * D))
    K_hat = sum((p * p.T for p in phi.values()), sp.zeros(P, P)) / (lambda1 * Nn)
    expected = -sum(((s.T * K_hat * s)[0, 0] for s in sb), sp.S.Zero) / 2
    _require(sp.simplify(gi.pref_sq - 1) == 0, "D-output readout prefactor")
    _require(sp.expand(gi.exponent - expected) == 0, "D-output readout exponent")
    return Step("2D", "Integrate the readout weights (D outputs)",
                r"Each output has its own readout weights $v_{a,i,d}$; their Gaussian integrals "
                r"give the same empirical kernel $\hat K$ for every output.",
                equations=[(sp.Symbol(r"\log\mathbb E_v e^{-i\sum_d\bar s_d^\top f_d}"),
                            sp.Symbol(r"-\tfrac12\sum_d\bar s_d^\top\hat K\bar s_d"))],
                checked=[f"P={P}, n={n}, D={D}, N={channels}: all {Nn * D} weights"],
                derived=gi.exponent, expected=expected)


def step3_multi_outputs(P: int = 1, D: int = 2) -> Step:
    r"""∫ Π df_d^μ exp(−Σ_{μ,d} (y_d^μ − f_d^μ)²/(2T) + i Σ_d s̄_dᵀ f_d)
    = (2πT)^{DP/2} exp(i s̄ᵀy − (T/2) s̄ᵀs̄) with s̄, y stacked output-major: the one-output
    step 3 on R^{DP} (explicit, every symbol free)."""
    sb = _sbar(P, D)
    Y = sp.Matrix(P, D, lambda a, d: sp.Symbol(f"y_{d}_{a}", real=True))
    F = sp.Matrix(P, D, lambda a, d: sp.Symbol(f"f_{d}_{a}", real=True))
    E = sum(-(Y[a, d] - F[a, d]) ** 2 / (2 * T) for a in range(P) for d in range(D)) + \
        sp.I * sum(sb[d][a] * F[a, d] for a in range(P) for d in range(D))
    gi = gaussian_integrate(E, list(F))
    s = sp.Matrix([sb[d][a] for d in range(D) for a in range(P)])
    y = sp.Matrix([Y[a, d] for d in range(D) for a in range(P)])
    expected = sp.I * (s.T * y)[0, 0] - T * (s.T * s)[0, 0] / 2
    _require(sp.simplify(gi.pref_sq - (2 * sp.pi * T) ** (P * D)) == 0, "output prefactor")
    _require(sp.expand(gi.exponent - expected) == 0, "D-output exponent")
    return Step("3D", "Integrate the outputs (D outputs)",
                r"The D·P outputs integrate as one stacked vector.",
                equations=[], checked=[f"P={P}, D={D}"], derived=gi.exponent, expected=expected)


def step4_multi_factorization(kind: str = "cnn", P: int = 1, n: int = 2, D: int = 2,
                              channels: int = 2, M: int = 1) -> Step:
    r"""−½ Σ_d s̄_dᵀK̂s̄_d = Σ_a [−|q_a|²/(2λ1Nn)], q_{a,(i,d)} = s̄_d·φ_{a,i} ∈ R^{nD}, and the term
    of channel a depends on the weights of channel a only (CNN: w_a; LCN: w_{a,i}, and then on
    patch i only through q_{a,(i,·)})."""
    if kind == "fc":
        n = 1
    sigma = sp.Function("sigma")
    x = {(i, m): sp.Matrix(M, 1, lambda k, _: sp.Symbol(f"x_{i}{m}{k}", real=True))
         for i in range(n) for m in range(P)}
    w = {(a, i): sp.Matrix(M, 1, lambda k, _: sp.Symbol(
        f"w_{a}{i}{k}" if kind == "lcn" else f"w_{a}{k}", real=True))
         for a in range(channels) for i in range(n)}
    phi = {(a, i): sp.Matrix(P, 1, lambda m, _: sigma((w[(a, i)].T * x[(i, m)])[0, 0]
                                                      / sp.sqrt(M)))
           for a in range(channels) for i in range(n)}
    sb = _sbar(P, D)
    s = lambda1 * channels * n
    K_hat = sum((p * p.T for p in phi.values()), sp.zeros(P, P)) / s
    total = -sum(((sd.T * K_hat * sd)[0, 0] for sd in sb), sp.S.Zero) / 2
    terms = [-sum(((sb[d].T * phi[(a, i)])[0, 0] ** 2 for i in range(n) for d in range(D)),
                  sp.S.Zero) / (2 * s) for a in range(channels)]
    _require(sp.expand(total - sum(terms)) == 0, "D outputs: sum over channels")
    wsyms = {a: set().union(*[w[(a, i)].free_symbols for i in range(n)])
             for a in range(channels)}
    allw = set().union(*wsyms.values())
    for a, t in enumerate(terms):
        _require((t.free_symbols & allw) == wsyms[a], f"channel {a} depends on other weights")
    return Step("4D", "Factorization over channels (D outputs)",
                r"The exponent is a sum over channels of $-|q_a|^2/(2\lambda_1Nn)$ with the "
                r"$nD$-vector $q_{a,(i,d)}=\bar s_d\cdot\varphi_{a,i}$.",
                equations=[], checked=[f"{kind}: P={P}, n={n}, D={D}, N={channels}"],
                derived=total, expected=sum(terms))


def step5_multi_moments(P: int = 1, n: int = 2, D: int = 2, kind: str = "cnn") -> Step:
    r"""E q_(i,d) = s̄_dᵀμ_i, Cov(q_(i,d), q_(j,e)) = s̄_dᵀ(K_ij − μ_iμ_jᵀ)s̄_e from the definitions
    K_ij = E[φ_iφ_jᵀ], μ_i = E[φ_i] (CNN; LCN: zero for i ≠ j, independent weights per patch).
    The Gaussian-equivalence average of the nD-vector q is then the n-dimensional formula of
    :func:`derivations.steps.step5_gaussian_equivalence` with n → nD (checked there for
    symbolic covariances up to dimension 3); for the LCN it factorizes over patches into
    D-dimensional averages."""
    d = multi_data(kind, n, D, P, zero_mean=False)
    sb = _sbar(P, D)
    phi = {i: sp.Matrix(P, 1, lambda m, _: sp.Symbol(f"phi_{i}^{m}", real=True))
           for i in range(n)}
    count = 0
    for i in range(n):
        for j in range(n):
            if (i, j) not in d.K:
                continue
            for dd in range(D):
                for e in range(D):
                    prod = sp.expand((sb[dd].T * phi[i])[0, 0] * (sb[e].T * phi[j])[0, 0])
                    rule = {phi[i][a] * phi[j][b]: d.K[(i, j)][a, b]
                            for a in range(P) for b in range(P)}
                    Eqq = sp.S.Zero
                    for term in sp.Add.make_args(prod):
                        coeff, rest = term.as_independent(*phi[i], *phi[j])
                        Eqq += coeff * rule[rest]
                    mi, mj = d.mu[i, :].T, d.mu[j, :].T
                    cov = Eqq - (sb[dd].T * mi)[0, 0] * (sb[e].T * mj)[0, 0]
                    want = (sb[dd].T * (d.K[(i, j)] - mi * mj.T) * sb[e])[0, 0]
                    _require(sp.expand(cov - want) == 0, "Cov q_(i,d) q_(j,e)")
                    count += 1
    return Step("5D", "Moments of the projections q (D outputs)",
                r"$\mathrm{Cov}(q_{(i,d)},q_{(j,e)})=\bar s_d^\top(K_{ij}-\mu_i\mu_j^\top)\bar s_e$.",
                equations=[], checked=[f"{kind} P={P} n={n} D={D}: {count} covariances"])


def step6_multi_order_parameters(d: MultiData) -> Step:
    r"""Q̄_(i,d),(j,e) = s̄_dᵀ K̃_ij s̄_e/(λ1 N n) (K̃_ij = K_ij − μ_iμ_jᵀ) imposed by deltas with
    conjugates Q. Checked exactly: (a) N × [−½ mᵀ(s𝟙 + sQ̄)⁻¹m] = −½ s̄ᵀ K_mean s̄ with
    m_(i,d) = s̄_dᵀμ_i, s = λ1Nn, (K_mean)_de = (1/(λ1n)) Σ_ij R_(i,d),(j,e) μ_iμ_jᵀ; (b) the delta
    exponents Σ_{I≤J} (2 − δ_IJ) Q_IJ (N/2)(Q̄_IJ − s̄_dᵀK̃_ij s̄_e/(λ1Nn)) = (N/2)Tr(QQ̄) −
    ½ s̄ᵀK_cov s̄; (c) K_cov + K_mean = K_R of THEORY §3c (:func:`theory_multi_K_R`)."""
    n, D, P = d.n, d.D, d.P
    sb = _sbar(P, D)
    s_stack = sp.Matrix([sb[dd][a] for dd in range(D) for a in range(P)])
    Nn = N
    s = lambda1 * Nn * n
    R = _inv(sp.eye(n * D) + d.Qbar)
    m = sp.Matrix(n * D, 1, lambda I, _: (sb[I % D].T * d.mu[I // D, :].T)[0, 0])
    mean_term = Nn * (-(m.T * _inv(s * sp.eye(n * D) + s * d.Qbar) * m)[0, 0] / 2)
    _, muD = mo.lifted_explicit_data(d.K, d.mu, D)
    K_mean = (muD.T * R * muD) / (lambda1 * n)
    _require(sp.cancel(sp.together(mean_term + (s_stack.T * K_mean * s_stack)[0, 0] / 2)) == 0,
             "D-output mean term")
    Kt = {k: Kij - d.mu[k[0], :].T * d.mu[k[1], :] for k, Kij in d.K.items()}
    lhs = sp.S.Zero
    for I, J, q, wgt in d.independent(d.Q):
        i, dd = divmod(I, D)
        j, e = divmod(J, D)
        if (i, j) not in Kt:
            continue
        lhs += wgt * q * Nn / 2 * (d.Qbar[I, J]
                                   - (sb[dd].T * Kt[(i, j)] * sb[e])[0, 0] / (lambda1 * Nn * n))
    K_cov = sp.zeros(D * P, D * P)
    for (i, j), Kij in Kt.items():
        for dd in range(D):
            for e in range(D):
                K_cov[dd * P:(dd + 1) * P, e * P:(e + 1) * P] += d.Q[i * D + dd, j * D + e] * Kij
    K_cov /= lambda1 * n
    rhs = Nn / 2 * (d.Q * d.Qbar).trace() - (s_stack.T * K_cov * s_stack)[0, 0] / 2
    _require(sp.expand(lhs - rhs) == 0, "D-output delta exponent")
    want = theory_multi_K_R(d)
    _require((K_cov + K_mean - want).applyfunc(lambda e: sp.cancel(sp.together(e)))
             == sp.zeros(D * P, D * P), "D-output K_R assembly (THEORY §3c)")
    return Step("6D", "Order parameters (D outputs)",
                r"$\bar Q_{(i,d),(j,e)}=\bar s_d^\top(K_{ij}-\mu_i\mu_j^\top)\bar s_e/(\lambda_1Nn)$; "
                r"the $\bar s$-quadratic form becomes $T\mathbb 1_{DP}+K_R$ with the blocks of "
                r"THEORY §3c.",
                equations=[], checked=[f"{d.kind} n={n} D={D} P={P}: mean term, deltas, K_R"],
                derived=K_cov + K_mean, expected=want)


def _explicit_action(d: MultiData, zero_mean: bool, at: dict | None = None):
    """S of THEORY §3c written out on the explicit data (zero mean: Q̄ eliminated). ``at``: every
    symbol replaced by its value first (a :func:`rational_point`), so that the determinants and
    inverses are of rational matrices."""
    D, P, n = d.D, d.P, d.n
    sub = (lambda e: e) if at is None else (lambda e: e.xreplace(at))  # noqa: E731
    dd = MultiData.__new__(MultiData)
    dd.__dict__.update(d.__dict__)
    dd.zero_mean = zero_mean
    dd.K = {k: sub(v) for k, v in d.K.items()}
    dd.mu = sp.zeros(n, P) if zero_mean else sub(d.mu)
    Q, Qbar, y = sub(d.Q), sub(d.Qbar), sub(d.y)
    A = sub(T * sp.eye(D * P) + theory_multi_K_R(dd, Q=Q, Qbar=Qbar))
    F = sp.log(_det(A)) + (y.T * _inv(A) * y)[0, 0]
    if zero_mean:
        return sub(Q.trace() - sp.log(_det(Q)) + F / N)
    return sub(-(Q * Qbar).trace() + sp.log(_det(sp.eye(n * D) + Qbar)) + F / N)


def rational_point(d: MultiData, seed: int = 0) -> dict:
    """Random exact rationals for every symbol of ``d`` (kernel blocks from random rational
    features, so K is a valid kernel; Q positive definite and 𝟙 + Q̄ too, both diagonally
    dominant; T, N, λ1): a point at which two expressions can be compared exactly."""
    import random
    rng = random.Random(seed)
    vals = {}
    feats = [sp.Matrix(d.P + 1, d.P, lambda a, b: sp.Rational(rng.randint(-9, 9), 7))
             for _ in range(d.n)]
    for (i, j), Kij in d.K.items():
        blk = feats[i].T * feats[j] / (d.P + 1)
        for a in range(d.P):
            for b in range(d.P):
                vals[Kij[a, b]] = blk[a, b]
    for x in d.mu:
        if isinstance(x, sp.Symbol):
            vals[x] = sp.Rational(rng.randint(1, 9), 10)
    for x in d.Y:
        vals[x] = sp.Rational(rng.randint(-9, 9), 5)
    m = d.n * d.D
    for M, diag in ((d.Q, (8, 14)), (d.Qbar, (-3, 5))):
        for I in range(m):
            for J in range(I, m):
                if isinstance(M[I, J], sp.Symbol):
                    vals[M[I, J]] = (sp.Rational(rng.randint(*diag), 10) if I == J else
                                     sp.Rational(rng.randint(-1, 1), 10 * m))
    vals.update({T: sp.Rational(rng.randint(2, 9), 10), N: sp.Integer(rng.randint(2, 9)),
                 lambda1: sp.Rational(rng.randint(5, 15), 10)})
    return vals


def step8_multi_action(d: MultiData) -> Step:
    r"""Steps 7–8 with D outputs: the s̄ integral over R^{DP} with A = T𝟙 + K_R (the one-output
    step 7 in dimension DP) gives S = −Tr(QQ̄) + log det(𝟙 + Q̄) + (1/N)[log det A + yᵀA⁻¹y];
    checked to equal the explicit action of :func:`derivations.multi_output.multi_program`
    evaluated on the lifted tensor of the same symbols (zero mean: after Q̄ = Q⁻¹ − 𝟙, both
    without the constant −nD)."""
    mine = _explicit_action(d, d.zero_mean)
    lifted, muD = mo.lifted_explicit_data(d.K, d.mu, d.D)
    env = {"K": lifted, "muD": muD, "y": d.y, "T": T, "N": N, "lambda1": lambda1,
           "n": sp.Integer(d.n), "nD": sp.Integer(d.n * d.D), "DP": sp.Integer(d.D * d.P),
           "Q": d.Q, "Qbar": d.Qbar}
    other = ac.explicit(mo.multi_program(d.zero_mean).expanded("S"), env)
    _require(st.symbolic_equal(mine, other, gens=list(d.y)),
             f"{d.kind} n={d.n} D={d.D} P={d.P}: S ≠ derivations.multi_output")
    return Step("8D", "The effective action (D outputs)",
                r"$S=-\mathrm{Tr}(Q\bar Q)+\log\det(\mathbb 1+\bar Q)+\frac1N[\log\det A+"
                r"y^\top A^{-1}y]$, $A=T\mathbb 1_{DP}+K_R$.",
                equations=[], checked=[f"{d.kind} n={d.n} D={d.D} P={d.P} zero_mean="
                                       f"{d.zero_mean}: = derivations.multi_output"],
                derived=mine, expected=other)


def d1_is_single_output(kind: str = "cnn", n: int = 2, P: int = 2, zero_mean: bool = True) -> Step:
    """THEORY §5.7: at D = 1 the D-output action (:func:`derivations.multi_output.multi_program`
    on the lifted tensor, which for D = 1 is the tensor itself) equals the one-output action of
    :mod:`derivations.action` on the same symbols, exactly."""
    if kind == "fc":
        n = 1
    d = multi_data(kind, n, 1, P, zero_mean)
    mine = step8_multi_action(d).expected
    base = st.explicit_data(kind, n, P, zero_mean)
    single_env = {"K": base.K, "mu": base.mu, "y": d.y, "T": T, "N": N, "lambda1": lambda1,
                  "n": sp.Integer(n), "P": sp.Integer(P)}
    if kind == "fc":
        prog = ac.fc_program(zero_mean)
        single_env.update({"K": base.K[(0, 0)], "m0": base.mu.T, "Q": d.Q[0, 0],
                           "Qbar": d.Qbar[0, 0]})
    elif kind == "lcn":
        prog = ac.lcn_program(zero_mean)
        single_env.update({"q": sp.Matrix([d.Q[i, i] for i in range(n)]),
                           "qbar": sp.Matrix([d.Qbar[i, i] for i in range(n)])})
    else:
        prog = ac.cnn_program(zero_mean)
        single_env.update({"Q": d.Q, "Qbar": d.Qbar})
    other = ac.explicit(prog.expanded("S"), single_env)
    _require(st.symbolic_equal(mine, other, gens=list(d.y)), f"{kind}: D = 1 ≠ one output")
    return Step("D=1", "One output", r"At $D=1$ the D-output action is the action of §3.",
                equations=[], checked=[f"{kind} n={n} P={P} zero_mean={zero_mean}"],
                derived=mine, expected=other)


def identity_gives_independent_gps(kind: str = "cnn", n: int = 2, D: int = 2,
                                   P: int = 2) -> Step:
    """THEORY §5.7: at Q = 𝟙 (zero mean; Q̄ = 0) K_R = 𝟙_D ⊗ K_NNGP, K_NNGP = (1/(λ1 n)) Σ_i K_ii,
    so A is block-diagonal over outputs and the data term is the sum over d of the one-output
    GP terms log det(T𝟙 + K_NNGP) + y_dᵀ(T𝟙 + K_NNGP)⁻¹y_d; checked exactly."""
    if kind == "fc":
        n = 1
    d = multi_data(kind, n, D, P, zero_mean=True)
    K_R = theory_multi_K_R(d, Q=sp.eye(n * D))
    K_nngp = sum((d.K[(i, i)] for i in range(n)), sp.zeros(P, P)) / (lambda1 * n)
    want = sp.zeros(D * P, D * P)
    for dd in range(D):
        want[dd * P:(dd + 1) * P, dd * P:(dd + 1) * P] = K_nngp
    _require((K_R - want).applyfunc(sp.expand) == sp.zeros(D * P, D * P),
             "K_R(𝟙) = 𝟙_D ⊗ K_NNGP")
    A = T * sp.eye(D * P) + K_R
    Ad = T * sp.eye(P) + K_nngp
    F = sp.log(_det(A)) + (d.y.T * _inv(A) * d.y)[0, 0]
    G = sum((sp.log(_det(Ad)) + (d.Y[:, dd].T * _inv(Ad) * d.Y[:, dd])[0, 0]
             for dd in range(D)), sp.S.Zero)
    _require(st.symbolic_equal(F, G, gens=list(d.y)), "data term = Σ_d one-output GP terms")
    return Step("Q=1", "Infinite width: D independent GPs",
                r"At $Q=\mathbb 1$, $K_R=\mathbb 1_D\otimes K_{\rm NNGP}$.",
                equations=[], checked=[f"{kind} n={n} D={D} P={P}"], derived=F, expected=G)


def n1_cnn_lcn_fc(D: int = 2, P: int = 2, zero_mean: bool = True) -> Step:
    """THEORY §5.1 with D outputs: with one patch (n = 1) the CNN, LCN and FC D-output actions are
    the same expression (the tensor is the single block K, Q is D×D and the LCN's block-diagonal
    structure is no restriction)."""
    vals = []
    for kind in ("cnn", "lcn", "fc"):
        d = multi_data(kind, 1, D, P, zero_mean)
        vals.append(_explicit_action(d, zero_mean))
    y = list(multi_data("fc", 1, D, P, zero_mean).y)
    _require(st.symbolic_equal(vals[0], vals[1], gens=y) and
             st.symbolic_equal(vals[0], vals[2], gens=y), "n = 1: CNN = LCN = FC")
    return Step("n=1", "One patch: CNN = LCN = FC (D outputs)", "",
                equations=[], checked=[f"D={D} P={P} zero_mean={zero_mean}"],
                derived=vals[0], expected=vals[2])


def derive_multi(kind: str = "cnn", n: int = 1, D: int = 2, P: int = 1,
                 zero_mean: bool = True) -> list:
    """Steps 2–8 for D outputs at explicit sizes, each verifying itself; returns the Steps."""
    if kind == "fc":
        n = 1
    d = multi_data(kind, n, D, P, zero_mean=False)
    steps = [step2_multi_readout(P, n, D), step3_multi_outputs(P, D),
             step4_multi_factorization(kind, P, n, D), step5_multi_moments(P, n, D, kind),
             step6_multi_order_parameters(d), step8_multi_action(multi_data(kind, n, D, P,
                                                                           zero_mean))]
    return steps
