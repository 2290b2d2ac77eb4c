"""Sampled networks with D outputs (kren.sampling.multi, THEORY §1): the closed-form gradient
the sampler uses equals autograd of L = ½ Σ_{μ,d} (f_d − y_d)², and output d of a D-output
network is the one-output network with readout v_{·,·,d} (same W)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kren  # noqa: E402
from kren.sampling import build_network  # noqa: E402

SPECS = [dict(kind="fc", input_shape=(2, 5), lambda1=0.7),
         dict(kind="cnn", input_shape=(1, 6, 6), mask=2, stride=2),
         dict(kind="lcn", input_shape=(1, 6, 6), mask=2, stride=2),
         dict(kind="cnn", input_shape=(1, 6, 6), mask=2, stride=2, readout="pool")]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["kind"] + s.get("readout", ""))
def test_multi_output_gradient_matches_autograd(spec):
    arch = kren.Architecture(activation="erf", **spec)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(4, arch.N0))
    y = torch.as_tensor(rng.normal(size=(4, 3)))
    net = build_network(arch, 3, dtype=torch.float64, seed=5, chains=2, outputs=3)
    L, f, gW, gv = net.loss_and_grad(net.prepare(X), y)
    out = net(X)
    assert out.shape == (2, 4, 3)
    (0.5 * ((out - y) ** 2).sum()).backward()
    np.testing.assert_allclose(f.numpy(), out.detach().numpy(), rtol=0, atol=1e-13)
    np.testing.assert_allclose(L.numpy(), 0.5 * ((out - y) ** 2).sum((1, 2)).detach().numpy(),
                               rtol=1e-13)
    np.testing.assert_allclose(gW.numpy(), net.W.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(gv.numpy(), net.v.grad.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("spec", SPECS[:3], ids=lambda s: s["kind"])
def test_each_output_is_a_one_output_network(spec):
    arch = kren.Architecture(activation="erf", **spec)
    X = np.random.default_rng(1).normal(size=(5, arch.N0))
    multi = build_network(arch, 4, seed=2, outputs=2)
    out = multi(X).detach().numpy()
    for d in range(2):
        one = build_network(arch, 4, seed=2)
        one.set_weights(multi.W.detach()[0], multi.v.detach()[0][..., d])
        np.testing.assert_allclose(out[:, d], one(X).detach().numpy(), rtol=0, atol=1e-13)
