"""The ResNet backbone: images of any size in and out, residual blocks, clear refusals, and use as
``model.net=resnet`` by the plain VAE and as the hierarchical model's default tower."""

from __future__ import annotations

import pytest
import torch

from vaekit.config import make_config, part_config
from vaekit.errors import ConfigError
from vaekit.models import build_model
from vaekit.nets import build_nets
from vaekit.nets.resnet import ResBlock, ResNetDecoder, ResNetEncoder
from vaekit.parts.objectives import elbo_loss
from vaekit.schema import DataSchema


@pytest.mark.parametrize("shape, channels", [((1, 28, 28), [8, 16]), ((3, 32, 32), [8, 16, 16])])
def test_towers_map_images_to_vectors_and_back(shape, channels):
    enc = ResNetEncoder(shape, 10, channels, hidden=32, cond_dim=4, blocks=2)
    dec = ResNetDecoder(6, shape, 3, channels, hidden=32, cond_dim=4, blocks=2)
    x, c = torch.rand(5, *shape), torch.eye(4)[torch.tensor([0, 1, 2, 3, 0])]
    assert enc(x, c).shape == (5, 10)
    assert dec(torch.randn(5, 6), c).shape == (5, 3 * shape[0], *shape[1:])
    blocks = [m for m in enc.modules() if isinstance(m, ResBlock)]
    assert [b.body[1].in_channels for b in blocks] == [ch for ch in channels for _ in range(2)]
    # the condition changes the output: it is wired in
    assert not torch.allclose(enc(x, c), enc(x, c.roll(1, 0)))


def test_residual_block_is_identity_plus_its_branch():
    block = ResBlock(4)
    x = torch.randn(2, 4, 7, 7)
    assert torch.allclose(block(x), x + block.body(x))
    torch.nn.init.zeros_(block.body[-1].weight)
    torch.nn.init.zeros_(block.body[-1].bias)
    assert torch.equal(block(x), x)


def resnet_pair(shape: tuple[int, ...], channels: list[int], blocks: int = 1):
    """The (encoder, decoder) of a resnet backbone for data of this shape."""
    cfg = part_config("net", "resnet", {"channels": channels, "width": 16, "blocks": blocks})
    return build_nets(cfg, DataSchema.for_shape(shape, 256), 4, 8, shape)


@pytest.mark.parametrize(
    "shape, channels, match",
    [
        ((1, 7, 28), [8, 16, 32], "at least 8x8"),
        ((3, 3, 3), [8, 16], "at least 4x4"),
        ((784,), [8, 16], "image data"),
        ((1, 32, 32), [], "at least one stride-2 stage"),
    ],
)
def test_other_shapes_are_refused_with_a_fix(shape, channels, match):
    with pytest.raises(ConfigError, match=match) as err:
        resnet_pair(shape, channels)
    assert err.value.fix


@pytest.mark.parametrize("shape, channels", [((1, 28, 28), [8, 16, 32]), ((1, 30, 30), [8, 16]),
                                             ((3, 64, 48), [8, 16])])
def test_sizes_the_old_backbone_refused_are_taken(shape, channels):
    enc, dec = resnet_pair(shape, channels)
    assert enc(torch.rand(2, *shape)).shape == (2, 8)
    assert dec(torch.randn(2, 4)).shape == (2, *shape)


def test_plain_vae_with_resnet_backbone_fits_a_batch():
    cfg = make_config(overrides={"model.net": "resnet", "model.net.channels": [4, 8], "model.net.width": 16,
                                 "model.latent_dim": 4, "model.net.blocks": 2})
    model = build_model(cfg.model, DataSchema.for_shape((1, 28, 28), 256, None))
    assert isinstance(model.encoder, ResNetEncoder) and isinstance(model.decoder, ResNetDecoder)
    x = (torch.rand(8, 1, 28, 28) > 0.7).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    first = elbo_loss(model(x)).item()
    for _ in range(15):
        loss = elbo_loss(model(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
    # untrained it sits above 784 ln 2 = 543 nats; the pixels' own entropy is 784 H(0.3) = 479 nats
    assert first > 540 and loss.item() < 500, (first, loss.item())


def test_the_hierarchical_model_takes_the_resnet_by_default():
    cfg = make_config(overrides={"model.name": "hierarchical", "model.latent_dims": [2, 2],
                                 "model.net.channels": [8, 16], "model.net.width": 16, "model.width": 16})
    model = build_model(cfg.model, DataSchema.for_shape((1, 28, 28), 256, None))
    assert isinstance(model.encoder.backbone, ResNetEncoder)


def test_negative_block_count_is_refused():
    with pytest.raises(ConfigError, match="model.net.blocks"):
        resnet_pair((1, 28, 28), [8], blocks=-1)
