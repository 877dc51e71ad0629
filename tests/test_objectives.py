"""Objectives: ELBO parts, beta, free bits, KL warm-up, and the IWAE bound's ordering."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.config import Config, ObjectiveConfig
from vaekit.models import build_model
from vaekit.parts.objectives import IWAE, build_objective, elbo_loss, elbo_terms, iwae_bound, kl_weight
from vaekit.parts.output import Output
from vaekit.schema import DataSchema


def _terms(k=4, b=3, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    lp = -torch.rand(k, b, generator=g) * 50
    lq = torch.randn(k, b, generator=g)
    lz = torch.randn(k, b, generator=g)
    kl_dims = torch.rand(b, d, generator=g)
    return Output(lp, lq, lz, kl_dims.sum(-1), kl_dims)


def _model():
    cfg = Config()
    cfg.model.net.hidden = [32]
    return build_model(cfg.model, DataSchema.for_shape((1, 8, 8), 17, None))


def test_elbo_loss_and_named_terms_per_example():
    t = _terms()
    recon = -t.log_px_z.mean(0)
    assert elbo_loss(t, beta=2.0).item() == pytest.approx((recon.mean() + 2.0 * t.kl.mean()).item())
    terms = elbo_terms(t)
    assert list(terms) == ["elbo", "recon", "kl"] and all(v.shape == (3,) for v in terms.values())
    assert torch.allclose(terms["recon"], recon) and torch.equal(terms["kl"], t.kl)
    assert torch.allclose(terms["elbo"], t.elbo) and torch.allclose(terms["elbo"], -recon - t.kl)


def test_the_elbo_objective_warms_the_kl_weight_up_to_beta():
    model = _model()
    objective = build_objective(ObjectiveConfig(beta=3.0, warmup_epochs=2.0), model, 100, 5)  # 10 steps
    out = model(torch.bernoulli(torch.full((4, 1, 8, 8), 0.3)))
    recon, kl = -out.log_px_z.mean(), out.kl.mean()
    for step, weight in ((0, 0.0), (5, 1.5), (10, 3.0), (99, 3.0)):
        loss, terms = objective(out, step)
        assert loss.item() == pytest.approx((recon + weight * kl).item(), rel=1e-6)
        assert terms["elbo"].mean().item() == pytest.approx(out.elbo.mean().item())  # the plain ELBO


def test_free_bits_floors_each_dimension():
    t = _terms(b=2, d=3)
    t.kl_dims = torch.tensor([[0.01, 1.0, 0.2], [0.03, 2.0, 0.4]])
    t.kl = t.kl_dims.sum(-1)
    recon = -t.log_px_z.mean()
    per_dim = t.kl_dims.mean(0)  # 0.02, 1.5, 0.3
    expected_pen = 0.25 + 1.5 + 0.3
    assert elbo_loss(t, free_bits=0.25).item() == pytest.approx(recon.item() + expected_pen, rel=1e-6)
    assert per_dim[0] < 0.25


def test_kl_warmup_is_linear_and_capped():
    assert kl_weight(0, 100) == 0.0
    assert kl_weight(50, 100) == pytest.approx(0.5)
    assert kl_weight(500, 100, beta=4.0) == 4.0
    assert kl_weight(7, 0, beta=0.5) == 0.5


def test_iwae_bound_is_at_least_the_same_samples_elbo():
    # Jensen: log mean_k w_k >= mean_k log w_k for the very same samples
    for seed in range(5):
        t = _terms(k=8, seed=seed)
        mc_elbo = t.log_weights().mean(0)
        assert torch.all(iwae_bound(t) >= mc_elbo - 1e-6)


def test_iwae_with_one_sample_equals_monte_carlo_elbo():
    t = _terms(k=1)
    assert torch.allclose(iwae_bound(t), t.log_weights()[0])
    loss, terms = IWAE(ObjectiveConfig(name="iwae"), None, 10, 1)(t, 0)
    assert loss.item() == pytest.approx(-t.log_weights().mean().item())
    assert list(terms) == ["iwae", "elbo", "recon", "kl"] and torch.equal(terms["iwae"], iwae_bound(t))


def test_model_terms_and_iwae_gradient_flow():
    model = _model()
    x = torch.bernoulli(torch.full((5, 1, 8, 8), 0.3))
    t = model(x, k=6)
    assert t.log_px_z.shape == (6, 5) and t.kl.shape == (5,) and t.kl_dims.shape == (5, 16)
    # the MC estimate of KL from the same samples is close to the analytic one on average
    mc = (t.log_qz - t.log_pz).mean()
    assert abs(mc.item() - t.kl.mean().item()) < 3.0
    objective = build_objective(ObjectiveConfig(name="iwae", samples=6), model, 100, 1)
    assert objective.samples == 6
    loss, _ = objective(t, 0)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert math.isfinite(loss.item())
