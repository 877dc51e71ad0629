"""The conv and resnet backbones on any image size: square and not, sides that do not halve evenly,
any channel count; the decoder ends at exactly the input's size; only images too small for the
stages are refused; the hierarchical preset trains, evaluates, samples and loads on 64x64 RGB and
48x48 grayscale image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import vaekit
from vaekit.cli import main
from vaekit.config import make_config, part_config
from vaekit.errors import ConfigError
from vaekit.models import build_model
from vaekit.nets import build_nets, feature_map_size
from vaekit.parts.objectives import elbo_loss
from vaekit.schema import DataSchema

SHAPES = [(3, 64, 64), (1, 48, 48), (1, 40, 56), (3, 30, 30), (1, 45, 37)]
STAGES = {2: [4, 8], 3: [4, 8, 8]}


@pytest.mark.parametrize("net", ["conv", "resnet"])
@pytest.mark.parametrize("stages", [2, 3])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_decoder_restores_the_exact_input_size(net, stages, shape):
    """Head channels C * params_per_dim at every pixel; the decoder's first map is the encoder's last."""
    c, h, w = shape
    cfg = part_config("net", net, {"channels": STAGES[stages], "width": 16})
    enc, dec = build_nets(cfg, DataSchema.for_shape(shape, 256), 5, 7, (2 * c, h, w))
    x = torch.rand(3, *shape)
    _, m = enc.forward_map(x)
    assert enc(x).shape == (3, 7)
    assert dec(torch.randn(3, 5)).shape == (3, 2 * c, h, w)
    side = feature_map_size(shape, STAGES[stages])
    assert m.shape[2:] == side == dec.start[1:]
    assert side == (h >> stages, w >> stages)  # the floor of half, once per stage


@pytest.mark.parametrize("net", ["conv", "resnet"])
@pytest.mark.parametrize("shape", [(3, 30, 30), (1, 40, 56)], ids=["30x30-rgb", "40x56"])
def test_a_vae_on_odd_sizes_fits_a_batch(net, shape):
    torch.manual_seed(0)
    cfg = make_config(overrides={"model.net": net, "model.net.channels": [4, 8], "model.net.width": 16,
                                 "model.latent_dim": 4})
    model = build_model(cfg.model, DataSchema.for_shape(shape, 256, None))
    x = (torch.rand(8, *shape) > 0.7).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = elbo_loss(model(x)).item()
    for _ in range(12):
        loss = elbo_loss(model(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
    # untrained near D ln 2 = 0.69 D nats; 8 steps go most of the way to the pixels' own entropy,
    # D H(0.3) = 0.61 D nats
    d = float(np.prod(shape))
    assert first > 0.68 * d and loss.item() < 0.66 * d, (first, loss.item(), d)


@pytest.mark.parametrize("net", ["conv", "resnet"])
def test_images_too_small_for_the_stages_are_refused(net):
    cfg = part_config("net", net, {"channels": [4, 8, 8], "width": 16})
    with pytest.raises(ConfigError, match=r"at least 8x8 pixels") as err:
        build_nets(cfg, DataSchema.for_shape((1, 7, 20), 256), 4, 4, (1, 7, 20))
    assert "at most 2 entries" in err.value.fix
    build_nets(cfg, DataSchema.for_shape((1, 8, 20), 256), 4, 4, (1, 8, 20))  # a 1x2 map is enough


def _blobs(folder: Path, side: int, mode: str, n: int = 24) -> Path:
    """n images of drawn ellipses on a dark ground, seeded."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        img = Image.new(mode, (side, side), 0 if mode == "L" else (0, 0, 0))
        draw = ImageDraw.Draw(img)
        for _ in range(3):
            x0, y0 = rng.integers(0, side // 2, 2)
            r = rng.integers(side // 8, side // 3)
            rgb = tuple(int(v) for v in rng.integers(64, 256, 3))
            fill = rgb[0] if mode == "L" else rgb
            draw.ellipse([int(x0), int(y0), int(x0 + r), int(y0 + r)], fill=fill)
        img.save(folder / f"img{i:02d}.png")
    return folder


SMALL = ["--model.width", "32", "--model.net.width", "32", "--model.net.channels", "[8,16]",
         "--model.latent_dims", "[4]", "--model.latent_channels", "[2]", "--train.batch_size", "8",
         "--train.epochs", "1", "--train.threads", "1", "--train.device", "cpu"]


@pytest.mark.parametrize(
    "side, mode, extra",
    [
        (64, "RGB", ["--model.likelihood", "logistic-mixture", "--model.likelihood.components", "2",
                     "--data.binarize", "none"]),
        (48, "L", ["--data.binarize", "dynamic"]),
    ],
    ids=["64x64-rgb-logistic-mixture", "48x48-gray-bernoulli"],
)
def test_hierarchical_preset_on_an_image_folder(tmp_path, side, mode, extra):
    data = _blobs(tmp_path / "faces", side, mode)
    out = tmp_path / "run"
    args = ["--quiet", "train", "--preset", "mnist-hierarchical", "--data", f"folder:{data}", *SMALL, *extra]
    assert main([*args, "--out", str(out)]) == 0
    assert main(["--quiet", "evaluate", str(out), "--nll-samples", "10"]) == 0
    assert main(["--quiet", "sample", str(out), "-n", "4", "-o", str(tmp_path / "s.npy")]) == 0
    channels = 3 if mode == "RGB" else 1
    assert np.load(tmp_path / "s.npy").shape[1:] == (channels, side, side)
    model = vaekit.load(out)
    positions = (side // 4) ** 2  # the decoder's first map after two stride-2 stages
    assert model.latent_dims == [4, 2 * positions]
    assert f"2 latent maps ({2 * positions} units)" in (out / "report.md").read_text()


@pytest.mark.parametrize("shape", [(1, 45, 37), (3, 30, 30)], ids=["45x37", "30x30-rgb"])
def test_latent_maps_sit_on_the_true_first_map_of_odd_sizes(shape):
    cfg = make_config(overrides={"model.name": "hierarchical", "model.latent_dims": [3],
                                 "model.latent_channels": [2], "model.width": 16,
                                 "model.net.channels": [4, 8], "model.net.width": 16})
    model = build_model(cfg.model, DataSchema.for_shape(shape, 256, None))
    h, w = feature_map_size(shape, [4, 8])
    assert model.latent_dims == [3, 2 * h * w]
    x = (torch.rand(4, *shape) > 0.5).float()
    out = model(x, k=2)
    assert out.log_px_z.shape == (2, 4) and torch.isfinite(out.kl).all()
    assert model.decode(model.prior.sample(3)).mean.shape == (3, *shape)
