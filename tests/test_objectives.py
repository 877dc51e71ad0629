"""Objectives: ELBO parts, beta, free bits, KL warm-up, and the IWAE bound's ordering."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.config import Config
from vaekit.models import build_model
from vaekit.parts.objectives import Terms, elbo_loss, iwae_bound, iwae_loss, kl_weight
from vaekit.schema import DataSchema


def _terms(k=4, b=3, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    lp = -torch.rand(k, b, generator=g) * 50
    lq = torch.randn(k, b, generator=g)
    lz = torch.randn(k, b, generator=g)
    kl_dims = torch.rand(b, d, generator=g)
    return Terms(lp, lq, lz, kl_dims.sum(-1), kl_dims)


def test_elbo_loss_parts_and_beta():
    t = _terms()
    out = elbo_loss(t, beta=2.0)
    recon = -t.log_px_z.mean(0).mean()
    assert out.recon.item() == pytest.approx(recon.item())
    assert out.kl.item() == pytest.approx(t.kl.mean().item())
    assert out.loss.item() == pytest.approx((recon + 2.0 * t.kl.mean()).item())
    assert out.elbo.item() == pytest.approx((-recon - t.kl.mean()).item())


def test_free_bits_floors_each_dimension():
    t = _terms(b=2, d=3)
    t.kl_dims = torch.tensor([[0.01, 1.0, 0.2], [0.03, 2.0, 0.4]])
    t.kl = t.kl_dims.sum(-1)
    out = elbo_loss(t, free_bits=0.25)
    per_dim = t.kl_dims.mean(0)  # 0.02, 1.5, 0.3
    expected_pen = 0.25 + 1.5 + 0.3
    assert out.loss.item() == pytest.approx(out.recon.item() + expected_pen, rel=1e-6)
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
    assert iwae_loss(t).loss.item() == pytest.approx(-t.log_weights().mean().item())


def test_model_terms_and_iwae_gradient_flow():
    cfg = Config()
    cfg.model.net.hidden = [32]
    model = build_model(cfg.model, DataSchema.for_shape((1, 8, 8), 17, None))
    x = torch.bernoulli(torch.full((5, 1, 8, 8), 0.3))
    t = model(x, k=6)
    assert t.log_px_z.shape == (6, 5) and t.kl.shape == (5,) and t.kl_dims.shape == (5, 16)
    # the MC estimate of KL from the same samples is close to the analytic one on average
    mc = (t.log_qz - t.log_pz).mean()
    assert abs(mc.item() - t.kl.mean().item()) < 3.0
    iwae_loss(t).loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert math.isfinite(iwae_loss(t).loss.item())
