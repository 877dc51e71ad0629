"""IAF: the autoregressive structure, the log-det against autograd's Jacobian, and the IAF posterior's
log q(z|x) against the change-of-variables formula."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from vaekit.config import part_config
from vaekit.errors import ConfigError
from vaekit.parts.flows import IAF, MADE
from vaekit.parts.posteriors import IAFPosterior, build_posterior
from vaekit.schema import DataSchema


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    """Weights far from the near-identity start, so the test sees a real non-linear map."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_made_outputs_depend_only_on_earlier_inputs(dim):
    made = MADE(dim, hidden=16, context_dim=3)
    _randomize(made)
    z, ctx = torch.randn(dim), torch.randn(3)
    for out in range(2):
        jac = jacobian(lambda v, o=out: made(v[None], ctx[None])[o][0], z)
        # d out_i / d z_j = 0 unless j < i: strictly lower triangular
        assert torch.all(jac.triu() == 0), jac


@pytest.mark.parametrize("steps", [1, 3])
def test_iaf_log_det_matches_autograd_jacobian(steps):
    d = 4
    flow = IAF(d, steps, hidden=24, context_dim=3).double()
    _randomize(flow, seed=steps)
    ctx = torch.randn(6, 3, dtype=torch.float64)
    z = torch.randn(6, d, dtype=torch.float64)
    _, log_det = flow(z, ctx)
    for i in range(z.shape[0]):
        jac = jacobian(lambda v, i=i: flow(v[None], ctx[i : i + 1])[0][0], z[i])
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign.item() == 1.0  # sigma > 0: every step preserves orientation
        assert log_det[i].item() == pytest.approx(logabs.item(), abs=1e-9)


def test_iaf_posterior_log_q_is_the_change_of_variables_density():
    post = IAFPosterior(latent_dim=3, steps=2, hidden=16, context_dim=4).double()
    _randomize(post, seed=5)
    h = torch.randn(2, post.params_dim, dtype=torch.float64)
    q = post(h)
    torch.manual_seed(7)
    z, log_q = post.sample(q, h, k=5)
    assert z.shape == (5, 2, 3) and log_q.shape == (5, 2)
    torch.manual_seed(7)
    z0 = q.base.rsample((5,))  # the same base draws
    # by hand: z = f(z0; h), log q = log N(z0; mu, sigma) - log|det J_f(z0)|
    ctx = h[:, 6:]
    for s in range(5):
        for b in range(2):
            f = lambda v, b=b: post.flow(v[None], ctx[b : b + 1])[0][0]  # noqa: E731
            assert torch.allclose(f(z0[s, b]), z[s, b])
            _, logabs = torch.linalg.slogdet(jacobian(f, z0[s, b]))
            base = torch.distributions.Normal(q.base.loc[b], q.base.scale[b]).log_prob(z0[s, b]).sum()
            assert log_q[s, b].item() == pytest.approx((base - logabs).item(), abs=1e-9)


def test_iaf_posterior_is_normalized():
    """In 1-D the flow is monotone: push a fine grid of z0 through it and integrate q(z) over z."""
    post = IAFPosterior(latent_dim=1, steps=2, hidden=8, context_dim=0).double()
    _randomize(post, seed=3)
    h = torch.tensor([[0.3, 0.2]], dtype=torch.float64)
    q = post(h)
    z0 = torch.linspace(-12, 12, 200_001, dtype=torch.float64)[:, None]
    z, log_det = post.flow(z0, None)
    density = (q.base.log_prob(z0[:, None, :])[:, 0] - log_det).exp()
    mass = torch.trapezoid(density, z[:, 0])
    assert mass.item() == pytest.approx(1.0, abs=1e-6)
    assert torch.all(z[1:, 0] > z[:-1, 0])


def test_flow_posterior_mean_is_deterministic_and_refusals():
    cfg = part_config("posterior", "iaf", {"steps": 1, "hidden": 8, "context": 2})
    post = build_posterior(cfg, DataSchema.for_shape((5,)), 3)
    h = torch.randn(4, post.params_dim)
    assert torch.equal(post(h).mean, post(h).mean)
    assert post(h).rsample((2,)).shape == (2, 4, 3)
    assert not post.analytic_kl and math.isfinite(post(h).mean.sum().item())
    with pytest.raises(ConfigError, match="model.posterior.steps"):
        part_config("posterior", "iaf", {"steps": 0})
    with pytest.raises(ConfigError, match="gaussian, iaf"):
        part_config("posterior", "planar")
