"""The evaluation's posterior noise: the seed rule of ``vaekit.models.importance`` (numbers of an
example's samples depend only on (seed, example, sample)), its distribution, and every kind of model
taking its noise from it, so that the importance-sampled estimate is the same for any chunking."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from vaekit.config import Config
from vaekit.models import build_model
from vaekit.models.importance import NOISE_BLOCK, block_seed, importance_sample, posterior_noise
from vaekit.schema import DataSchema

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_block_seed_is_blake2b_of_the_three_numbers():
    # hashlib.blake2b(b"0,0,0", digest_size=8).digest() read little-endian, written out
    assert block_seed(0, 0, 0) == int.from_bytes(bytes.fromhex("3f3e1c8e57a282fe"), "little")
    seeds = {block_seed(s, i, b) for s in range(3) for i in range(30) for b in range(3)}
    assert len(seeds) == 270 and all(0 <= s < 2**64 for s in seeds)
    assert block_seed(1, 23, 0) != block_seed(12, 3, 0)  # no "1,23" / "12,3" clash: commas separate


def test_the_rule_written_out_for_one_example():
    k, dim = NOISE_BLOCK + 100, 3
    g = torch.Generator().manual_seed(block_seed(7, 5, 1))
    expected = torch.randn(100, dim, generator=g)  # the second block holds the last 100 of K samples
    eps = posterior_noise(7, range(5, 6), NOISE_BLOCK, 100, k, dim)
    assert torch.equal(eps[:, 0], expected)


def test_any_chunk_of_samples_or_examples_gets_the_numbers_of_the_whole():
    k, dim = 2 * NOISE_BLOCK + 300, 4
    whole = posterior_noise(3, range(10, 16), 0, k, k, dim)
    chunks = ((0, 7), (NOISE_BLOCK - 5, 10), (NOISE_BLOCK, NOISE_BLOCK), (2 * NOISE_BLOCK + 290, 10))
    for start, count in chunks:
        part = posterior_noise(3, range(12, 14), start, count, k, dim)
        assert torch.equal(part, whole[start : start + count, 2:4])
    assert not torch.isclose(posterior_noise(4, range(10, 16), 0, k, k, dim), whole).any()


def test_the_noise_is_standard_normal_and_uncorrelated_across_examples_samples_and_blocks():
    k = NOISE_BLOCK + 400
    z = posterior_noise(11, range(30), 0, k, k, 6).double()  # [k, examples, dim]
    assert stats.kstest(z.flatten().numpy(), "norm").pvalue > 1e-3
    assert abs(float(z.mean())) < 4 / z.numel() ** 0.5 and abs(float(z.var()) - 1) < 0.02
    pairs = {
        "next sample": (z[:-1], z[1:]),
        "next example": (z[:, :-1], z[:, 1:]),
        "next dimension": (z[..., :-1], z[..., 1:]),
        "same row of the next block": (z[:400], z[NOISE_BLOCK:]),
    }
    for what, (a, b) in pairs.items():
        r = float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])
        assert abs(r) < 4 / a.numel() ** 0.5, what


MLP = {"net": {"name": "mlp", "hidden": [32]}, "latent_dim": 4}
MODELS = {
    "gaussian posterior, Bernoulli": MLP,
    "IAF posterior": {**MLP, "posterior": {"name": "iaf", "hidden": 16, "context": 8}},
    "mixture prior, Gaussian likelihood": {**MLP, "prior": {"name": "mog", "components": 3},
                                           "likelihood": "gaussian"},
    "VampPrior, logistic mixture": {**MLP, "prior": {"name": "vamp", "components": 3},
                                    "likelihood": {"name": "logistic-mixture", "components": 2}},
    "conditional": {**MLP, "conditional": True},
    "hierarchical": {"name": "hierarchical", "net": {"name": "mlp", "hidden": [32]}, "width": 32,
                     "latent_dims": [3, 2]},
    "hierarchical with map layers": {"name": "hierarchical", "net": {"name": "conv", "channels": [8, 8],
                                     "width": 32}, "width": 32, "latent_dims": [3], "latent_channels": [2]},
}


def _model(options: dict, shape: tuple[int, ...] = (1, 8, 8), levels: int = 2,
           classes: int | None = None):
    schema = DataSchema.for_shape(shape, levels, classes)
    return build_model(Config.from_dict({"model": options}).model, schema)


@pytest.mark.parametrize("options", MODELS.values(), ids=MODELS.keys())
def test_every_kind_of_model_gives_the_same_estimate_for_any_chunking(options):
    torch.manual_seed(0)
    conditional = options.get("conditional", False)
    shape = (1, 28, 28) if options["net"]["name"] == "conv" else (1, 8, 8)
    levels = 256 if "logistic-mixture" in str(options.get("likelihood")) else 2
    model = _model(options, shape, levels, 3 if conditional else None).eval()
    x = torch.bernoulli(torch.full((9, *shape), 0.3))
    y = torch.arange(9) % 3 if conditional else None
    k = NOISE_BLOCK + 30  # two noise blocks
    a = importance_sample(model, x, y, k, batch_size=9, sample_chunk=k, seed=2)
    b = importance_sample(model, x, y, k, batch_size=4, sample_chunk=300, seed=2)
    assert a.chunk_invariant and b.chunk_invariant
    assert (a.log_px - b.log_px).abs().max() < 1e-4  # float32 forward: only rounding differs
    assert (a.recon - b.recon).abs().max() < 1e-3
    other = importance_sample(model, x, y, k, batch_size=9, sample_chunk=k, seed=3)
    assert (other.log_px - a.log_px).abs().max() > 1e-3  # the seed does matter
    # the model's forward with the rule's noise is what the estimator saw: rerun the first example
    eps = posterior_noise(2, range(0, 1), 0, k, k, model.latent_dim)
    with torch.no_grad():
        lw = model(x[:1], None if y is None else y[:1], k, eps).log_weights().double()
    assert abs(float(torch.logsumexp(lw, 0)[0]) - math.log(k) - float(a.log_px[0])) < 1e-4


def test_the_posteriors_map_the_noise_by_their_reparameterization():
    torch.manual_seed(1)
    model = _model(MODELS["gaussian posterior, Bernoulli"]).eval()
    x = torch.bernoulli(torch.full((3, 1, 8, 8), 0.3))
    eps = torch.randn(5, 3, 4)
    q = model.encode(x)
    assert torch.allclose(model(x, None, 5, eps).z, q.loc + q.scale * eps)
    iaf = _model(MODELS["IAF posterior"]).eval()
    q = iaf.encode(x)
    z0 = q.base.loc + q.base.scale * eps
    assert torch.allclose(iaf(x, None, 5, eps).z, q._push(z0)[0])
    deep = _model(MODELS["hierarchical"]).eval()
    eps = torch.randn(5, 3, 5)
    z = deep(x, None, 5, eps).z  # [k, B, 5]: z_2 (3 units) then z_1 (2 units)
    w = deep.encode(x).walk(5, z=z.reshape(15, 5))
    assert torch.allclose((z.reshape(15, 5) - w.z) / w.scale, torch.zeros(15, 5), atol=1e-6)  # walk agrees
    mu_top = deep.encode(x).walk(5, mean=True).z[:, :3]  # the top layer's mean does not depend on noise
    assert torch.allclose(z.reshape(15, 5)[:, :3], mu_top + w.scale[:, :3] * eps.reshape(15, 5)[:, :3],
                          atol=1e-5)
