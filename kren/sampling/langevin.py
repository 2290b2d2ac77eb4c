"""Langevin sampling of the Bayesian posterior of a finite network (THEORY §1).

Posterior ∝ exp(−(λ0/2)|W|² − (λ1/2)|v|²) · exp(−L/T),  L = ½ Σ_μ (f(x^μ) − y^μ)².
It is the stationary law of dθ = −(∇L + Tλθ) dt + √(2T) dB, discretised (full batch) as

    θ ← θ − η (∇_θ L + T λ θ) + √(2ηT) ξ,      ξ ~ N(0, 1),   λ = λ0 (first layer), λ1 (readout).

Any network that lists its parameters with their priors (``net.prior_pairs()``: [(parameter, λ)],
first layer first) and returns its loss and gradients (``net.loss_and_grad(x, y)`` → (L, f,
∂L/∂θ_1, …)) is sampled the same way: the one-hidden-layer networks ((W, λ0), (v, λ1)) and the
deep FC networks of :mod:`kren.sampling.deep` ((W^1, λ0), (W^{l+1}, λ_l), (v, λ_L), THEORY §1),
whose every layer's empirical kernel is recorded too.

This unadjusted update (ULA) has an O(η) bias in the sampled law; ``metropolis=True`` turns the
same update into a proposal accepted with the Metropolis–Hastings probability
min(1, exp(−(U' − U)/T − (|θ − θ' + η∇U'|² − |θ' − θ + η∇U|²)/(4ηT))),  U = L + (T/2) Σ λ θ²,
(MALA), which samples the posterior exactly for any η.

Several independent chains (independent prior draws and noise) advance together, batched on the
chain axis. After ``burn_in`` steps every ``thin``-th state is kept: its test predictions, its
training predictions and loss, and (optionally) the empirical kernel K̂ of THEORY §3 step 2
averaged over kept draws. :class:`SamplingResult` turns these into posterior predictive means,
variances and test errors with Monte-Carlo standard errors, and into the diagnostics of
:mod:`kren.sampling.diagnostics`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..architecture import check_positive
from .diagnostics import RHAT_THRESHOLD, diagnose, effective_sample_size, split_chains
from .networks import build_network, resolve_device, resolve_dtype


def mala_log_ratio(L0, L1, theta0, theta1, g0, g1, lam, eta: float, T: float):
    """log of the MALA acceptance ratio per chain (module docstring), float64 (C,):

        log α = −(U' − U)/T − (|θ − θ' + η∇U'|² − |θ' − θ + η∇U|²)/(4ηT)
              = (L − L')/T − ½ Σ λ d (2θ + d) − Σ η(g' + g)(η(g' − g) − 2d)/(4ηT),

    d = θ' − θ, g = ∇U(θ), g' = ∇U(θ'), U = L + (T/2) Σ λθ². The second form is the first with
    each difference of squares factored (a² − b² = (a − b)(a + b)) before the sum, which is
    accumulated in float64: the separate sums ½Σλθ² and |·|² are ~n/2 for n parameters, so
    float32 totals (relative round-off ~1e-7 per addition) would leave an error of order
    n·1e-7 in log α, O(0.1–1) at the ~10⁶ parameters of a deep network of width 800, where
    the factored terms are each O(√(ηT)) and their rounding is negligible.
    ``L0``, ``L1`` (C,); ``theta0``, ``theta1``, ``g0``, ``g1`` (C, n); ``lam`` (n,).
    """
    f64 = torch.float64
    d = theta1 - theta0
    prior = (lam * d * (2.0 * theta0 + d)).sum(dim=1, dtype=f64)
    prop = ((g1 + g0) * (eta * (g1 - g0) - 2.0 * d)).sum(dim=1, dtype=f64)
    data = (L0.to(f64) - L1.to(f64)) / T
    return data - 0.5 * prior - prop / (4.0 * T)


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {value}")
    return int(value)


@dataclass
class TestError:
    """ε = (1/P0) Σ_0 ⟨(y0 − f0)²⟩ = bias² + variance (THEORY §4), with its Monte-Carlo error.

    ``total`` is the mean over draws of e_s = (1/P0) Σ_0 (y0 − f0_s)²; ``bias2`` =
    (1/P0) Σ_0 (y0 − f̄0)², ``variance`` = (1/P0) Σ_0 (1/S) Σ_s (f0_s − f̄0)², so total = bias2 +
    variance exactly; ``se`` = sd(e)/√ESS(e) (ESS of the per-draw test error over all chains).
    """

    total: float
    bias2: float
    variance: float
    se: float
    ess: float


@dataclass
class SamplingResult:
    """Draws of one Langevin run and the statistics built from them.

    Arrays (NumPy, float64): ``loss_trace`` (C, steps) training loss L at every step;
    ``test_predictions`` (C, S, P0) f(x0) at the kept draws; ``train_predictions`` (C, S, P);
    ``kernel`` (P_K, P_K) or None: K̂ averaged over all kept draws and chains;
    ``kernel_chains`` (C, P_K, P_K): the same per chain; ``acceptance`` (C,) MALA acceptance
    rates (1 for ULA); ``layer_kernels`` (deep networks) [K̂_1, …, K̂_L], every layer's
    K̂_l = (1/(λ_l N_l)) Σ_a φ^l_a φ^lᵀ_a averaged over kept draws and chains (the last one is
    ``kernel``), or None, and ``layer_kernel_chains`` the same per chain ((C, P_K, P_K) each);
    ``test_conditional_var`` (C, S, P0) or None: with the readout integrated
    out (``readout="integrated"``, :mod:`kren.sampling.integrated`) every kept draw carries the
    conditional mean m (``test_predictions``) and variance s² of f0 given the hidden weights, the
    predictive variance is then mean(s²) + var(m) and the per-draw error mean((y0 − m)² + s²);
    ``loss_trace`` then holds U = (T/2)[log det A + yᵀA⁻¹y] and ``train_predictions`` the
    conditional means.
    """

    N: int
    T: float
    step_size: float
    steps: int
    burn_in: int
    thin: int
    chains: int
    metropolis: bool
    loss_trace: np.ndarray
    train_predictions: np.ndarray
    test_predictions: np.ndarray | None
    y_train: np.ndarray | None
    y_test: np.ndarray | None
    kernel: np.ndarray | None
    kernel_chains: np.ndarray | None
    acceptance: np.ndarray
    wall_time: float
    arch: object = field(repr=False, default=None)
    network: object = field(repr=False, default=None)
    rhat_threshold: float = RHAT_THRESHOLD
    min_ess: float = 100.0
    layer_kernels: list | None = field(repr=False, default=None)
    layer_kernel_chains: list | None = field(repr=False, default=None)
    test_conditional_var: np.ndarray | None = field(repr=False, default=None)

    # ----------------------------------------------------------------- draws
    @property
    def draws(self) -> int:
        """Kept draws per chain S."""
        return int(self.train_predictions.shape[1])

    def _pred(self, which):
        if which == "test":
            if self.test_predictions is None:
                raise ValueError("no test set was given to the sampler (X_test=None)")
            return self.test_predictions, self.y_test
        if which == "train":
            return self.train_predictions, self.y_train
        raise ValueError(f"which must be 'test' or 'train', got {which!r}")

    def predictive_mean(self, which: str = "test"):
        """Posterior predictive mean ⟨f0⟩ per input and its Monte-Carlo standard error."""
        from .diagnostics import mcse_mean
        F, _ = self._pred(which)
        return F.mean(axis=(0, 1)), mcse_mean(F)

    def predictive_var(self, which: str = "test", return_se: bool = False):
        """Posterior variance of f0 per input (and output), (1/(CS)) Σ (f0 − ⟨f0⟩)² over all
        draws.

        ``return_se=True`` also returns its Monte-Carlo standard error (that of the mean of
        (f0 − ⟨f0⟩)², from its effective sample size).
        """
        from .diagnostics import mcse_mean
        F, _ = self._pred(which)
        cond = self.test_conditional_var if which == "test" else None
        var = F.reshape((-1,) + F.shape[2:]).var(axis=0)
        if cond is not None:
            var = var + cond.reshape((-1,) + cond.shape[2:]).mean(axis=0)
        if not return_se:
            return var
        dev = (F - F.mean(axis=(0, 1))) ** 2
        return var, mcse_mean(dev if cond is None else dev + cond)

    def per_draw_error(self, which: str = "test") -> np.ndarray:
        """e_s = (1/P0) Σ_0 (y0 − f0_s)², shape (C, S); with D outputs also averaged over the
        outputs, (1/(P0 D)) Σ_{0,d} (THEORY §4)."""
        F, y = self._pred(which)
        if y is None:
            raise ValueError(f"no {which} targets were given")
        cond = self.test_conditional_var if which == "test" else None
        return ((F - y) ** 2 + (0.0 if cond is None else cond)).mean(
            axis=tuple(range(2, F.ndim)))

    def error(self, which: str = "test") -> TestError:
        """Test (or training) error with bias²/variance split and standard error (see TestError)."""
        F, y = self._pred(which)
        e = self.per_draw_error(which)
        mean = F.mean(axis=(0, 1))
        bias2 = float(((y - mean) ** 2).mean())
        var = float(self.predictive_var(which).mean())
        total = float(e.mean())
        sd = float(np.sqrt(split_chains(e).var(ddof=1))) if e.size > 1 else 0.0
        ess = float(effective_sample_size(e)) if e.shape[1] >= 4 else 1.0
        return TestError(total, bias2, var, sd / math.sqrt(ess), ess)

    def test_error(self) -> TestError:
        return self.error("test")

    def train_error(self) -> TestError:
        return self.error("train")

    def diagnostics(self):
        """:class:`~kren.sampling.diagnostics.Diagnostics` of the kept draws (split-R̂, τ, ESS).

        Uses the test predictions (training predictions when there is no test set), the
        training loss at the kept draws, and the per-draw test error when test targets exist.
        """
        F = self.test_predictions if self.test_predictions is not None else self.train_predictions
        kept = self.loss_trace[:, self.burn_in + self.thin - 1::self.thin][:, :self.draws]
        te = None
        if self.test_predictions is not None and self.y_test is not None:
            te = self.per_draw_error("test")
        return diagnose(F, kept, te, rhat_threshold=self.rhat_threshold, min_ess=self.min_ess)

    def summary(self) -> dict:
        """Plain-number summary (JSON-ready)."""
        d = {"N": self.N, "T": self.T, "step_size": self.step_size, "steps": self.steps,
             "burn_in": self.burn_in, "thin": self.thin, "chains": self.chains,
             "draws_per_chain": self.draws, "metropolis": self.metropolis,
             "acceptance": [float(a) for a in self.acceptance], "wall_time_s": self.wall_time}
        if self.test_predictions is not None and self.y_test is not None:
            te = self.test_error()
            d["test_error"] = {"total": te.total, "se": te.se, "bias2": te.bias2,
                               "variance": te.variance, "ess": te.ess}
        if self.y_train is not None:
            tr = self.train_error()
            d["train_error"] = {"total": tr.total, "se": tr.se}
        d["diagnostics"] = self.diagnostics().as_dict()
        return d


class LangevinSampler:
    """Full-batch Langevin sampler of the posterior of a width-N ``arch`` network at temperature T
    (``arch``: a :class:`kren.Architecture`, or a :class:`kren.DeepArchitecture` with N one width
    or L widths).

    Parameters: ``step_size`` η; ``chains`` independent chains (each started from its own prior
    draw); ``dtype`` float32 (default) or float64; ``device`` "cpu" (default), "cuda" or "auto";
    ``seed`` fixes the prior draws and every noise increment; ``metropolis`` turns ULA into MALA;
    ``train_first_layer=False`` freezes W at its prior draw (then the readout posterior is
    exactly GP regression with kernel K̂(W) — used by the tests). ``readout="integrated"``
    (deep architectures): the readout is integrated out exactly and Langevin runs on the hidden
    weights of the marginal posterior, with Rao–Blackwellized predictions
    (:mod:`kren.sampling.integrated`).
    """

    def __init__(self, arch, N: int, T: float, step_size: float, chains: int = 4,
                 dtype=torch.float32, device="cpu", seed: int = 0, metropolis: bool = False,
                 train_first_layer: bool = True, readout: str = "sampled",
                 outputs: int | None = None):
        self.T = check_positive(T, "T")
        self.step_size = check_positive(step_size, "step_size")
        self.chains = _check_int(chains, "chains", 1)
        self.seed = _check_int(seed, "seed", 0)
        self.dtype = resolve_dtype(dtype)
        self.device = resolve_device(device)
        self.metropolis = bool(metropolis)
        self.train_first_layer = bool(train_first_layer)
        if readout not in ("sampled", "integrated"):
            raise ValueError(f"readout must be 'sampled' or 'integrated', got {readout!r}")
        self.readout = readout
        self.outputs = None if outputs is None else _check_int(outputs, "outputs", 1)
        if self.outputs is not None and readout == "integrated":
            raise ValueError("readout='integrated' serves one output; D outputs (outputs="
                             f"{self.outputs}) sample the readout (readout='sampled')")
        self.arch = arch
        self.N = N
        self.network = None
        if arch.geometry is not None:
            self.network = self._build()

    def _build(self):
        ss = np.random.SeedSequence(self.seed)
        init_seed, noise_seed = (int(s.generate_state(1)[0]) for s in ss.spawn(2))
        if self.outputs is None:    # the architecture's own network (one-hidden-layer or deep)
            net = self.arch.network(self.N, dtype=self.dtype, device=self.device,
                                    seed=init_seed, chains=self.chains)
        else:
            net = build_network(self.arch, self.N, dtype=self.dtype, device=self.device,
                                seed=init_seed, chains=self.chains, outputs=self.outputs)
        if self.readout == "integrated":
            from .integrated import IntegratedReadout
            net = IntegratedReadout(net, self.T)
        self._gen = torch.Generator(device=net.device)
        self._gen.manual_seed(noise_seed)
        return net

    # ------------------------------------------------------------------ run
    def run(self, X=None, y=None, steps: int = 1000, burn_in: int | None = None, thin: int = 10,
            X_test=None, y_test=None, X_kernel="train", progress=None) -> SamplingResult:
        """Run every chain ``steps`` steps; keep every ``thin``-th state after ``burn_in``.

        ``X``/``y``: training set ((P, N0) or (P, *input_shape); y (P,), or (P, D) for a sampler
        made with ``outputs=D``). ``X=None`` samples the
        prior (L = 0). ``X_test``/``y_test``: inputs whose predictions are recorded (y_test
        optional). ``X_kernel``: inputs of the averaged K̂ ("train" (default), None to skip, or
        an array). ``burn_in`` defaults to steps // 2. ``progress``: a callable(step, loss) called
        every ``max(1, steps // 20)`` steps (e.g. for printing), or None.
        A second ``run`` continues every chain from its last state with fresh noise.
        """
        steps = _check_int(steps, "steps", 1)
        burn_in = steps // 2 if burn_in is None else _check_int(burn_in, "burn_in", 0)
        thin = _check_int(thin, "thin", 1)
        if burn_in >= steps:
            raise ValueError(f"burn_in ({burn_in}) must be smaller than steps ({steps})")
        S = (steps - burn_in) // thin
        if S < 1:
            raise ValueError(f"no draws are kept: (steps − burn_in) // thin = 0 "
                             f"(steps={steps}, burn_in={burn_in}, thin={thin})")
        arch = self.arch
        if X is not None and arch.geometry is None:
            arch = self.arch = arch.with_input(X)
        if self.network is None:
            if arch.geometry is None:
                raise ValueError("FC without input_shape needs training data X to fix N0")
            self.network = self._build()
        net = self.network
        dev, dt = net.device, net.dtype
        T, eta = self.T, self.step_size
        C = self.chains

        oshape = tuple(net.output_shape)
        if X is None:
            if y is not None:
                raise ValueError("y given without X")
            x = torch.zeros((net.n, 0, net.M), dtype=dt, device=dev)
            yt = torch.zeros((0,) + oshape, dtype=dt, device=dev)
            y_np = None
        else:
            x = net.prepare(X)
            y_np = np.asarray(y, dtype=np.float64) if y is not None else None
            if y_np is None or y_np.shape != (x.shape[1],) + oshape:
                raise ValueError(f"y must have shape {(x.shape[1],) + oshape} to match X, got "
                                 f"{None if y_np is None else y_np.shape}")
            if not np.all(np.isfinite(y_np)):
                raise ValueError("y contains NaN or inf")
            yt = torch.as_tensor(y_np, dtype=dt, device=dev)
        xt = None
        yt_np = None
        if X_test is None and y_test is not None:
            raise ValueError("y_test given without X_test")
        if X_test is not None:
            xt = net.prepare(X_test, "X_test")
            if y_test is not None:
                yt_np = np.asarray(y_test, dtype=np.float64)
                if yt_np.shape != (xt.shape[1],) + oshape:
                    raise ValueError(f"y_test must have shape {(xt.shape[1],) + oshape}, got "
                                     f"{yt_np.shape}")
        if isinstance(X_kernel, str):
            if X_kernel != "train":
                raise ValueError(f"X_kernel must be 'train', None or an array, got {X_kernel!r}")
            xk = x if x.shape[1] > 0 else None
        elif X_kernel is None:
            xk = None
        else:
            xk = net.prepare(X_kernel, "X_kernel")

        gen = self._gen
        noise = math.sqrt(2.0 * eta * T)

        P = x.shape[1]
        loss_trace = torch.empty((steps, C), dtype=dt, device=dev)
        train_pred = torch.empty((S, C, P) + oshape, dtype=dt, device=dev)
        test_pred = (torch.empty((S, C, xt.shape[1]) + oshape, dtype=dt, device=dev)
                     if xt is not None else None)
        rao_blackwell = xt is not None and getattr(net, "rao_blackwell", False)
        test_cvar = torch.empty_like(test_pred) if rao_blackwell else None
        ksum = (torch.zeros((C, xk.shape[1], xk.shape[1]), dtype=torch.float64, device=dev)
                if xk is not None else None)
        # networks with several layers also record every layer's empirical kernel
        layered = xk is not None and hasattr(net, "layer_kernel_sums")
        lsum = [torch.zeros_like(ksum) for _ in range(net.L)] if layered else None
        accepted = torch.zeros(C, dtype=torch.float64, device=dev)

        # All parameters of a chain live in one flat row θ of a (C, D) tensor, in the order of the
        # network's (parameter, prior) pairs (one hidden layer: (W, λ0), (v, λ1); deep: every
        # W^l, then v); each parameter becomes a view of it, so each update below is one tensor
        # operation. DW counts the first layer's entries (frozen by train_first_layer=False).
        pairs = net.prior_pairs()
        sizes = [p[0].numel() for p, _ in pairs]
        DW = sizes[0]
        theta = torch.cat([p.detach().reshape(C, -1) for p, _ in pairs], dim=1)
        start = 0
        for (p, _), size in zip(pairs, sizes):
            p.data = theta[:, start:start + size].view(p.shape)
            start += size
        lam = torch.cat([torch.full((size,), float(lp), dtype=dt, device=dev)
                         for (_, lp), size in zip(pairs, sizes)])
        lamT = lam * T
        frozen = not self.train_first_layer

        def evaluate():
            """(L, f, ∇U) at the current θ, ∇U = ∇L + Tλθ (zero on a frozen first layer)."""
            L, f, *grads = net.loss_and_grad(x, yt)
            g = torch.cat([gr.reshape(C, -1) for gr in grads], dim=1).addcmul_(theta, lamT)
            if frozen:
                g[:, :DW] = 0.0
            return L, f, g

        L, f, g = evaluate()
        every = max(1, steps // 20)
        t0 = time.perf_counter()
        k = 0
        with torch.no_grad():
            for t in range(steps):
                # Gaussian noise is drawn in float32 (several times faster than float64 on
                # the CPU) and cast: its rounding (~1e-7 relative) is far below anything sampled.
                xi = torch.randn(theta.shape, generator=gen, dtype=torch.float32, device=dev)
                if frozen:
                    xi[:, :DW] = 0.0
                if self.metropolis:
                    theta0 = theta.clone()
                theta.add_(g, alpha=-eta).add_(xi.to(dt), alpha=noise)
                L1, f1, g1 = evaluate()
                if self.metropolis:
                    log_alpha = mala_log_ratio(L, L1, theta0, theta, g, g1, lam, eta, T)
                    u = torch.rand(C, generator=gen, dtype=torch.float64, device=dev)
                    acc = torch.log(u) < log_alpha
                    accepted += acc
                    a1 = acc[:, None]
                    theta.copy_(torch.where(a1, theta, theta0))
                    L = torch.where(acc, L1, L)
                    f = torch.where(acc.view((C,) + (1,) * (f.ndim - 1)), f1, f)
                    g = torch.where(a1, g1, g)
                else:
                    L, f, g = L1, f1, g1
                loss_trace[t] = L
                if t >= burn_in and (t - burn_in + 1) % thin == 0 and k < S:
                    train_pred[k] = f
                    if rao_blackwell:
                        test_pred[k], test_cvar[k] = net._predict(xt)
                    elif xt is not None:
                        test_pred[k] = net._predict(xt)
                    if layered:
                        for acc, part in zip(lsum, net.layer_kernel_sums(xk)):
                            acc += part.to(torch.float64)
                        ksum += part.to(torch.float64)          # the readout's: the last layer
                    elif ksum is not None:
                        ksum += net._kernel_sum(xk).to(torch.float64)
                    k += 1
                if progress is not None and (t + 1) % every == 0:
                    progress(t + 1, float(L.mean()))
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        wall = time.perf_counter() - t0
        if not torch.isfinite(loss_trace).all():
            raise FloatingPointError(
                f"the Langevin dynamics diverged (non-finite loss) with step size η = {eta}; "
                "use a smaller step size")
        norm = net.kernel_scale
        kernel_chains = (ksum * norm / S).cpu().numpy() if ksum is not None else None
        layer_chains = ([(a * c / S).cpu().numpy() for a, c in zip(lsum, net.layer_kernel_scales)]
                        if layered else None)
        return SamplingResult(
            N=net.N, T=T, step_size=eta, steps=steps, burn_in=burn_in, thin=thin, chains=C,
            metropolis=self.metropolis,
            loss_trace=loss_trace.T.cpu().double().numpy(),
            train_predictions=train_pred.transpose(0, 1).cpu().double().numpy(),
            test_predictions=(test_pred.transpose(0, 1).cpu().double().numpy()
                              if test_pred is not None else None),
            y_train=y_np, y_test=yt_np,
            kernel=kernel_chains.mean(axis=0) if kernel_chains is not None else None,
            kernel_chains=kernel_chains,
            acceptance=(accepted / steps).cpu().numpy() if self.metropolis else np.ones(C),
            wall_time=wall, arch=arch, network=net,
            layer_kernels=[k.mean(axis=0) for k in layer_chains] if layered else None,
            layer_kernel_chains=layer_chains,
            test_conditional_var=(test_cvar.transpose(0, 1).cpu().double().numpy()
                                  if test_cvar is not None else None))


def _act(net, h):
    return net.act.sigma_torch(h)


def sample_posterior(arch, N: int, X, y, T: float, step_size: float, steps: int,
                     burn_in: int | None = None, thin: int = 10, chains: int = 4, X_test=None,
                     y_test=None, X_kernel="train", dtype=torch.float32, device="cpu",
                     seed: int = 0, metropolis: bool = False, progress=None,
                     readout: str = "sampled", outputs: int | None = None) -> SamplingResult:
    """One call: build a :class:`LangevinSampler` and run it (arguments as there; ``outputs``
    D for a network with D outputs, y then (P, D))."""
    sampler = LangevinSampler(arch, N, T, step_size, chains=chains, dtype=dtype, device=device,
                              seed=seed, metropolis=metropolis, readout=readout, outputs=outputs)
    return sampler.run(X, y, steps=steps, burn_in=burn_in, thin=thin, X_test=X_test,
                       y_test=y_test, X_kernel=X_kernel, progress=progress)


def suggest_step_size(arch, N: int, X, T: float, fraction: float = 0.1, seed: int = 0,
                      chains: int = 4, outputs: int | None = None) -> float:
    """η = fraction / h_max, h_max the largest curvature of U = L + (T/2) Σ λθ² at prior draws.

    h_max = max over ``chains`` prior draws of the top eigenvalue of the Gauss–Newton (neural
    tangent) matrix Θ = J Jᵀ (P×P, J = ∂f/∂θ at the training inputs), plus T·max(λ0, λ1).
    Θ = c² Φ Φᵀ (readout) + G Gᵀ (first layer) with c = (Nn)^{-1/2},
    G^μ_{a,m} = c Σ_i v_{a,i} σ'(h^μ_{a,i}) x^μ_{i,m}/√M (CNN, FC) or G^μ_{a,i,m} = c v_{a,i}
    σ'(h^μ_{a,i}) x^μ_{i,m}/√M (LCN). Pooled readout: c = N^{-1/2}, Φ holds the patch averages
    φ̄_a and v_{a,i} is replaced by v_a/n. ULA is stable for η < 2/h_max; its relative error on the
    variance of the stiffest direction is about η h_max / 2 (= fraction/2). With D outputs
    (``outputs``) Θ is (P·D)×(P·D): c² ΦΦᵀ ⊗ 𝟙_D plus G Gᵀ with one G per output d (v_{a,i,d}).
    """
    from ..deep_architecture import DeepArchitecture
    if isinstance(arch, DeepArchitecture):
        from .deep import suggest_deep_step_size
        return suggest_deep_step_size(arch, N, X, T, fraction, seed, chains)
    fraction = check_positive(fraction, "fraction")
    arch = arch.with_input(X)
    net = build_network(arch, N, dtype=torch.float64, seed=seed, chains=chains, outputs=outputs)
    x = net.patches(X)                                             # (P, n, M)
    with torch.no_grad():
        h = net.preactivations(X)                                  # (C, P, N, n)
        c = net.scale
        phi = _act(net, h)                                         # (C, P, N, n)
        if net.readout == "pool":
            phi = phi.mean(dim=3, keepdim=True)                    # φ̄_a
        phi = phi.flatten(2)
        theta = c * c * torch.einsum("cpk,cqk->cpq", phi, phi)
        u = net.v / net.n if net.readout == "pool" else net.v      # ∂f/∂φ_{a,i} / c
        if outputs is not None:                                    # (C, P·D, P·D), (μ, d)
            D = int(outputs)
            theta = torch.kron(theta, torch.eye(D, dtype=theta.dtype))
            g = net.act.sigma_prime_torch(h)[..., None] * u[:, None] * (c / math.sqrt(net.M))
            if net.kind == "lcn":
                G = torch.einsum("cpaid,pim->cpdaim", g, x).flatten(3).flatten(1, 2)
            else:
                G = torch.einsum("cpaid,pim->cpdam", g, x).flatten(3).flatten(1, 2)
        else:
            g = net.act.sigma_prime_torch(h) * u[:, None] * (c / math.sqrt(net.M))
            if net.kind == "lcn":
                G = torch.einsum("cpai,pim->cpaim", g, x).flatten(2)
            else:
                G = torch.einsum("cpai,pim->cpam", g, x).flatten(2)
        theta += torch.einsum("cpk,cqk->cpq", G, G)
        h_max = float(torch.linalg.eigvalsh(theta)[:, -1].max())
    h_max += T * max(arch.lambda0, arch.lambda1)
    return fraction / h_max
