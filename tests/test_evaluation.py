"""The importance-sampled estimator against closed forms: probabilistic PCA (exact log p(x) is a
Gaussian), a discrete-latent model (exact log p(x) is a finite sum), chunk invariance, bits/dim and
the latent diagnostics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import MultivariateNormal, Normal

from vaekit.evaluation import bits_per_dim, evaluate_model, importance_sample, iwae_ks
from vaekit.evaluation.metrics import bpd_convention
from vaekit.models import VAE
from vaekit.nets.mlp import MLPDecoder, MLPEncoder
from vaekit.parts.likelihoods import GaussianLikelihood
from vaekit.parts.output import Output
from vaekit.parts.posteriors import GaussianPosterior
from vaekit.parts.priors import StandardNormal
from vaekit.schema import DataSchema

D, d, SIGMA = 6, 3, 0.5


def log_likelihood(model: nn.Module, x: torch.Tensor, **options) -> torch.Tensor:
    """The per-example estimate, [N] float64."""
    return importance_sample(model, x, **options).log_px
SCALES = torch.tensor([2.0, 1.2, 0.7], dtype=torch.float64)


pytestmark = pytest.mark.usefixtures("one_thread")


def linear_vae(w_mu: torch.Tensor, b_mu: torch.Tensor, std: torch.Tensor, w_dec: torch.Tensor,
               b_dec: torch.Tensor, sigma: float) -> VAE:
    """A VAE from vaekit's parts with linear encoder/decoder (float64): q(z|x) = N(w_mu x + b_mu,
    diag std^2), p(x|z) = N(w_dec z + b_dec, sigma^2 I), p(z) = N(0, I)."""
    dz, dx = w_mu.shape
    enc = MLPEncoder((dx,), 2 * dz, [])
    dec = MLPDecoder(dz, (dx,), [])
    model = VAE(enc, GaussianPosterior(dz), StandardNormal(dz), dec,
                GaussianLikelihood((dx,), "fixed", sigma), (dx,)).double()
    raw = torch.log(torch.expm1(std - 1e-5))  # softplus^-1: DiagonalGaussian adds 1e-5
    with torch.no_grad():
        enc.net[0].weight.copy_(torch.cat([w_mu, torch.zeros_like(w_mu)]))  # nn.Linear: [out, in]
        enc.net[0].bias.copy_(torch.cat([b_mu, raw]))
        dec.net[0].weight.copy_(w_dec)
        dec.net[0].bias.copy_(b_dec)
    return model.eval()


def ppca(mean_scale: float = 1.0, mean_shift: float = 0.0, std_scale: float = 1.0):
    """Probabilistic PCA x = W z + b + sigma eps with orthogonal columns of W, so the exact posterior
    N(M^-1 W^T (x - b), sigma^2 M^-1), M = W^T W + sigma^2 I, is diagonal; the encoder gives it, or a
    distorted version of it. Returns (model, x, exact log p(x))."""
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(D, d, generator=g, dtype=torch.float64))
    w = q * SCALES
    b = torch.randn(D, generator=g, dtype=torch.float64)
    m_diag = SCALES**2 + SIGMA**2
    w_mu = (w / m_diag).T * mean_scale
    b_mu = -w_mu @ b + mean_shift
    std = SIGMA / m_diag.sqrt() * std_scale
    model = linear_vae(w_mu, b_mu, std, w, b, SIGMA)
    z = torch.randn(200, d, generator=g, dtype=torch.float64)
    x = z @ w.T + b + SIGMA * torch.randn(200, D, generator=g, dtype=torch.float64)
    exact = MultivariateNormal(b, w @ w.T + SIGMA**2 * torch.eye(D, dtype=torch.float64)).log_prob(x)
    return model, x, exact


def test_exact_posterior_gives_exact_log_likelihood():
    model, x, exact = ppca()
    for k in (1, 10):
        est = log_likelihood(model, x, k=k, seed=0)
        assert (est - exact).abs().max() < 1e-4, (est - exact).abs().max()
    # the model's own method delegates to the same estimator
    assert (model.log_likelihood(x, k=7, chunk=3).double() - exact).abs().max() < 1e-4


def test_poor_posterior_estimates_rise_towards_exact_and_elbo_stays_below():
    model, x, exact = ppca(mean_scale=0.6, mean_shift=0.4, std_scale=1.8)
    gaps = []
    for k in (1, 10, 1000):
        est = torch.stack([log_likelihood(model, x, k=k, seed=s) for s in range(3)])
        gaps.append(float((exact - est).mean()))
    assert gaps[0] > gaps[1] > gaps[2] > -0.01, gaps
    assert gaps[0] > 0.5 and gaps[2] < 0.1 * gaps[0], gaps  # q is really poor, K=1000 recovers most
    res = evaluate_model(model, x, k=1000, seed=0, batch_size=64)
    assert res["elbo"] < float(exact.mean()) - 0.5
    bounds = [res["iwae_bounds"][str(k)] for k in iwae_ks(1000)]
    assert bounds == sorted(bounds) and bounds[-1] == -res["nll"]
    assert abs(-res["nll"] - float(exact.mean())) < 0.1


class DiscreteToy(nn.Module):
    """z in {0..C-1} with prior pi, x | z ~ prod_i Bernoulli(theta_{z,i}); proposal q(z|x) = (1 - a) *
    p(z|x) + a * uniform (a = 0: exact posterior), sampled by inverse CDF from the uniform Phi(eps) of the
    noise it is handed (one standard normal per sample: latent_dim 1). No analytic KL, no encode."""

    latent_dim = 1

    def __init__(self, classes: int = 5, dims: int = 8, mix: float = 1.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(2)
        self.log_pi = F.log_softmax(2 * torch.randn(classes, generator=g, dtype=torch.float64), 0)
        self.theta = torch.rand(classes, dims, generator=g, dtype=torch.float64) * 0.9 + 0.05
        self.mix = mix

    def joint(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x, z=c) for every class, [B, C]."""
        log_px_c = x @ self.theta.log().T + (1 - x) @ torch.log1p(-self.theta).T
        return log_px_c + self.log_pi

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self.joint(x), -1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, k: int = 1,
                eps: torch.Tensor | None = None) -> Output:
        joint = self.joint(x)
        q = (1 - self.mix) * torch.softmax(joint, -1) + self.mix / joint.shape[-1]
        if eps is None:
            eps = torch.randn(k, x.shape[0], 1, dtype=torch.float64)
        u = torch.special.ndtr(eps[..., 0].double())
        return self.terms(joint, q, (u.unsqueeze(-1) > q.cumsum(-1)).sum(-1).clamp(max=q.shape[-1] - 1))

    def terms(self, joint: torch.Tensor, q: torch.Tensor, z: torch.Tensor) -> Output:
        """The output for the classes z [k, B] drawn from q [B, C]."""
        log_qz = q.log().T.gather(0, z)
        log_pz = self.log_pi[z]
        log_px_z = (joint - self.log_pi).T.gather(0, z)
        return Output(log_px_z, log_qz, log_pz, (log_qz - log_pz).mean(0))


class OwnNoiseToy(DiscreteToy):
    """The toy with a forward that takes no noise: it draws z with ``torch.multinomial`` itself."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, k: int = 1) -> Output:
        joint = self.joint(x)
        q = (1 - self.mix) * torch.softmax(joint, -1) + self.mix / joint.shape[-1]
        return self.terms(joint, q, torch.multinomial(q, k, replacement=True).T)


def toy_data(model: DiscreteToy, n: int = 100) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    c = torch.randint(len(model.log_pi), (n,), generator=g)
    return torch.bernoulli(model.theta[c], generator=g)


def test_discrete_latent_estimate_matches_finite_sum():
    exact_q = DiscreteToy(mix=0.0)
    x = toy_data(exact_q)
    exact = exact_q.exact(x)
    assert (log_likelihood(exact_q, x, k=3) - exact).abs().max() < 1e-9
    uniform_q = DiscreteToy(mix=1.0)
    one = log_likelihood(uniform_q, x, k=1)
    many = log_likelihood(uniform_q, x, k=4000)
    assert float((exact - one).mean()) > 0.5  # a uniform proposal is a poor one
    assert abs(float((many - exact).mean())) < 0.02
    assert (many - exact).abs().max() < 0.2


def test_no_overflow_with_5000_samples_and_tiny_likelihoods():
    model = DiscreteToy(classes=5, dims=2000, mix=1.0)
    x = toy_data(model, 20)
    exact = model.exact(x)
    assert float(exact.max()) < -500  # p(x) itself underflows even float64 exp
    est = log_likelihood(model, x, k=5000, batch_size=7, sample_chunk=900)
    assert torch.isfinite(est).all()
    assert (est - exact).abs().max() < 0.15


def test_same_seed_same_estimate_for_any_chunk_sizes():
    model, x, _ = ppca(mean_scale=0.6, mean_shift=0.4, std_scale=1.8)
    x = x[:60]
    runs = [importance_sample(model, x, k=100, batch_size=b, sample_chunk=c, seed=5)
            for b, c in ((60, 100), (7, 3), (1, 64), (33, 100))]
    for r in runs[1:]:
        assert r.chunk_invariant
        assert (r.log_px - runs[0].log_px).abs().max() < 1e-9
        for k in iwae_ks(100):
            assert (r.bounds[k] - runs[0].bounds[k]).abs().max() < 1e-9
        assert (r.recon - runs[0].recon).abs().max() < 1e-9
    other = importance_sample(model, x, k=100, seed=6)
    assert (other.log_px - runs[0].log_px).abs().max() > 1e-3  # the seed does matter
    # an example gets the same samples in a shorter split with other batch boundaries
    shorter = importance_sample(model, x[:18], k=100, seed=5, batch_size=5, sample_chunk=30)
    assert (shorter.log_px - runs[0].log_px[:18]).abs().max() < 1e-9


def test_chunk_invariance_with_noise_turned_uniform_and_a_real_vae():
    toy = DiscreteToy(mix=1.0)
    x = toy_data(toy, 30)
    a = log_likelihood(toy, x, k=64, batch_size=30, sample_chunk=64, seed=1)
    b = log_likelihood(toy, x, k=64, batch_size=4, sample_chunk=5, seed=1)
    assert (a - b).abs().max() < 1e-12
    from vaekit.config import make_config
    from vaekit.models import build_model

    cfg = make_config(overrides={"model.net.hidden": [32], "model.latent_dim": 4})
    vae = build_model(cfg.model, DataSchema.for_shape((1, 8, 8), 17, None)).eval()
    xb = torch.bernoulli(torch.full((20, 1, 8, 8), 0.3))
    a = log_likelihood(vae, xb, k=50, batch_size=20, sample_chunk=50, seed=2)
    b = log_likelihood(vae, xb, k=50, batch_size=3, sample_chunk=7, seed=2)
    assert (a - b).abs().max() < 1e-4  # float32 forward: only rounding differs


@pytest.mark.parametrize(("k", "n", "probe"), [(5000, 100, (6, 5000)), (50, 10_000, (655, 50)),
                                             (40_000, 3, (1, 32768)), (1, 10, (10, 1))])
def test_gpu_chunks_fill_a_share_of_free_memory_measured_on_a_full_size_probe(monkeypatch, k, n, probe):
    """The arithmetic of gpu_rows, with the GPU's memory counters faked: a probe of about 32,768 rows
    (fewer only when the data has fewer), 40 KB a row, 4 GB free -> a quarter of 4 GB at 40 KB a row,
    but never fewer rows than the probe had."""
    from vaekit.evaluation import likelihood as lk

    calls = []
    monkeypatch.setattr(lk, "forward_chunk", lambda m, xb, yb, first, start, kk, k, seed: calls.append(
        (xb.shape[0], kk)))
    for name in ("synchronize", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 10**9)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 10**9 + 40960 * math.prod(
        calls[-1]))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4 * 2**30, 8 * 2**30))
    rows = lk.gpu_rows(nn.Linear(1, 1), torch.zeros(n, 1), None, k, 0, torch.device("cuda"))
    assert calls == [probe]
    assert rows == max(math.prod(probe), 2**30 // 40960)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_gpu_estimate_equals_the_cpu_estimate_with_its_own_chunk_sizes():
    from vaekit.config import make_config
    from vaekit.models import build_model

    torch.manual_seed(0)
    cfg = make_config(overrides={"model.net.hidden": [32], "model.latent_dim": 4})
    vae = build_model(cfg.model, DataSchema.for_shape((1, 8, 8), 2, None)).eval()
    xb = torch.bernoulli(torch.full((40, 1, 8, 8), 0.3))
    cpu = importance_sample(vae, xb, k=300, seed=3, batch_size=3, sample_chunk=70)
    gpu = importance_sample(vae.cuda(), xb, k=300, seed=3)  # chunk sizes from the GPU's free memory
    assert gpu.chunk_invariant and (gpu.log_px - cpu.log_px).abs().max() < 1e-4


def test_a_model_that_draws_its_own_noise_is_flagged_and_reproducible_per_chunking():
    toy = OwnNoiseToy(mix=1.0)
    x = toy_data(toy, 10)
    state = torch.get_rng_state()
    res = evaluate_model(toy, x, k=20)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is seeded per call, then restored
    assert res["chunk_invariant"] is False and "chunk_invariant" in res["notes"]
    assert evaluate_model(toy, x, k=20)["nll"] == res["nll"]  # the same chunk sizes, the same numbers
    assert evaluate_model(toy, x, k=20, sample_chunk=7)["nll"] != res["nll"]
    assert abs(evaluate_model(toy, x, k=20, sample_chunk=7)["nll"] - res["nll"]) < 1.0


def test_models_without_encoder_or_per_dimension_kl_give_null_not_an_error():
    toy = DiscreteToy(mix=0.5)
    res = evaluate_model(toy, toy_data(toy, 10), k=10)
    assert res["active_units"] is None and res["kl_per_dim"] is None and res["bpd"] is None
    assert {"active_units", "kl_per_dim"} <= set(res["notes"])
    assert res["nll"] > 0 and math.isfinite(res["nll"])


def test_bits_per_dim_conventions():
    dims = 784
    assert bits_per_dim(dims * math.log(2), dims, True, 2) == pytest.approx(1.0)
    assert bits_per_dim(dims * math.log(256), dims, True, 256) == pytest.approx(8.0)
    # a uniform density on [0, 1]^D (nll 0) spreads each value over a bin of width 1/255
    assert bits_per_dim(0.0, dims, False, 256) == pytest.approx(math.log2(255))
    assert bits_per_dim(0.0, dims, False, None) is None
    assert "ln 255" in bpd_convention(False, 256)
    # the convention against exact bin probabilities: a Gaussian density on 8-bit data in [0, 1]
    mu, sd, h = 0.5, 0.2, 0.5 / 255
    values = torch.arange(60, 200, dtype=torch.float64) / 255
    dens = Normal(torch.tensor(mu, dtype=torch.float64), sd)
    exact_bits = -torch.log2(dens.cdf(values + h) - dens.cdf(values - h))
    nll = -dens.log_prob(values)
    bpd = torch.tensor([bits_per_dim(float(v), 1, False, 256) for v in nll], dtype=torch.float64)
    assert (bpd - exact_bits).abs().max() < 1e-3  # a 1/256 bin would be off by log2(256/255) = 0.0056


def test_bpd_in_evaluation_follows_the_likelihood():
    model, x, _ = ppca()
    res = evaluate_model(model, x, k=5, levels=256)
    dims = x.shape[1]
    assert res["bpd"] == pytest.approx((res["nll"] + dims * math.log(255)) / (dims * math.log(2)))
    assert evaluate_model(model, x, k=5)["bpd"] is None  # continuous data: no bits/dim


def test_active_units_and_kl_per_dim_on_a_model_with_known_latent_use():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4000, 4, generator=g, dtype=torch.float64)
    w_mu = torch.zeros(6, 4, dtype=torch.float64)
    # Var_x(E_q z_i) = w_i^2: 1, 0.25, 0.0036 (below 0.01), 0.04, 0, 0
    for i, (j, w) in enumerate(((0, 1.0), (1, 0.5), (2, 0.06), (3, 0.2))):
        w_mu[i, j] = w
    std = torch.tensor([0.3, 0.5, 0.9, 0.7, 1.0, 1.0], dtype=torch.float64)
    model = linear_vae(w_mu, torch.zeros(6, dtype=torch.float64), std,
                       torch.randn(4, 6, generator=g, dtype=torch.float64),
                       torch.zeros(4, dtype=torch.float64), 1.0)
    res = evaluate_model(model, x, k=2)
    assert res["active_units"] == 3
    var = torch.tensor(res["posterior_mean_variance"])
    assert (var - w_mu.pow(2).sum(1)).abs().max() < 0.1 * w_mu.pow(2).sum(1).max()
    mu = x @ w_mu.T
    closed = (0.5 * (mu.pow(2) + std.pow(2) - 1) - std.log()).mean(0)
    assert torch.allclose(torch.tensor(res["kl_per_dim"], dtype=torch.float64), closed, atol=1e-4)
    assert res["kl_per_dim"][4] == pytest.approx(0.0, abs=1e-4)
    assert sum(res["kl_per_dim"]) == pytest.approx(res["kl"], abs=1e-9)
