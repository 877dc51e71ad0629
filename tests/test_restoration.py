"""Noise and mask specs (vaekit.data.corruption), the denoise / complete commands and their bad input,
the Gibbs completion methods, and objective.denoise, on scikit-learn's 8x8 digits with tiny runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.cli import main
from vaekit.data.corruption import parse_mask, parse_noise
from vaekit.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("restore") / "run"
    assert main(["--quiet", "train", "--preset", "digits-mlp", "--out", str(out), "--train.epochs", "15",
                 "--train.progress", "false"]) == 0
    return out


@pytest.mark.parametrize("spec, message", [
    ("blur:0.1", "unknown noise"), ("flip", "unknown noise"), ("flip:x", "no number"),
    ("flip:1.5", r"\(0, 1\]"), ("gaussian:0", "> 0"),
])
def test_bad_noise_specs_are_refused(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_noise(spec)


@pytest.mark.parametrize("spec, message", [("middle", "unknown mask"), ("random:1", r"\(0, 1\)")])
def test_bad_mask_specs_are_refused(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_mask(spec)


def test_noises_are_seeded_and_do_what_they_say():
    x = (torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    flipped = parse_noise("flip:0.1")(x, torch.Generator().manual_seed(1))
    assert torch.equal(flipped, parse_noise("flip:0.1")(x, torch.Generator().manual_seed(1)))
    assert 0.08 < float((flipped != x).float().mean()) < 0.12
    salt = parse_noise("saltpepper:0.2")(x, torch.Generator().manual_seed(1))
    assert set(salt.unique().tolist()) <= {0.0, 1.0}
    noisy = parse_noise("gaussian:0.3")(x, torch.Generator().manual_seed(1))
    assert noisy.min() >= 0 and noisy.max() <= 1 and 0.1 < float((noisy - x).abs().mean()) < 0.3


def test_region_masks_hide_the_named_part():
    bottom = parse_mask("bottom")((1, 8, 8), 2)
    assert bottom.shape == (2, 1, 8, 8) and bool(bottom[:, :, :4].all()) and not bool(bottom[:, :, 4:].any())
    center = parse_mask("center")((1, 8, 8), 1)
    assert int((~center).sum()) == 16 and not bool(center[0, 0, 2:6, 2:6].any())
    rand = parse_mask("random:0.5")((3, 8, 8), 4, torch.Generator().manual_seed(0))
    assert torch.equal(rand[:, 0], rand[:, 2])  # a pixel is hidden in all channels
    assert 0.35 < float((~rand).float().mean()) < 0.65


def test_png_masks_white_observed_and_wrong_size_refused(tmp_path):
    plane = np.full((8, 8), 255, np.uint8)
    plane[:, :3] = 0
    Image.fromarray(plane).save(tmp_path / "m.png")
    mask = parse_mask(str(tmp_path / "m.png"))((1, 8, 8), 1)
    assert not bool(mask[..., :3].any()) and bool(mask[..., 3:].all())
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(DataError, match="28x28 pixels.*8x8"):
        parse_mask(str(tmp_path / "big.png"))((1, 8, 8), 1)


def test_complete_command_keeps_observed_entries_and_beats_the_zero_fill(run, tmp_path, capsys):
    out = tmp_path / "c.npy"
    assert main(["complete", str(run), "--mask", "bottom", "--method", "mwg", "-o", str(out), "-n", "50",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["scores"]
    arr = np.load(out)  # [N, 3, 1, 8, 8]: corrupted (NaN = missing), restored, original
    assert arr.shape == (50, 3, 1, 8, 8) and np.isnan(arr[:, 0, :, 4:]).all()
    assert np.array_equal(arr[:, 1, :, :4], arr[:, 2, :, :4])
    assert res["restored"]["mse"] < 0.7 * res["corrupted"]["mse"]
    assert res["restored"]["loglik"] > res["corrupted"]["loglik"]


def test_denoise_command_writes_a_grid_and_bad_input_exits_2(run, tmp_path, capsys):
    png = tmp_path / "d.png"
    args = ["--quiet", "denoise", str(run), "--noise", "saltpepper:0.2", "-o", str(png), "-n", "16"]
    assert main(args) == 0
    assert Image.open(png).size[1] > Image.open(png).size[0] / 8 * 5  # 6 rows of 8 (two blocks of 3)
    capsys.readouterr()
    assert main(["denoise", str(run), "--noise", "flip:7", "-o", str(png)]) == 2
    assert "probability" in capsys.readouterr().err
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "big.png")
    assert main(["complete", str(run), "--mask", str(tmp_path / "big.png"), "-o", str(png)]) == 2
    assert "8x8 pixels" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [(b"not a picture", "cannot be read as an image"),
                                              (None, "not found")])
def test_complete_with_a_mask_file_that_is_no_image_exits_2(run, tmp_path, capsys, content, message):
    mask = tmp_path / "mask.png"
    if content is not None:
        mask.write_bytes(content)
    assert main(["complete", str(run), "--mask", str(mask), "-o", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "c.png").exists()


def test_objective_denoise_trains_and_bad_spec_is_refused(tmp_path, capsys):
    out = tmp_path / "dvae"
    assert main(["--quiet", "train", "--preset", "digits-mlp", "--out", str(out), "--train.epochs", "1",
                 "--objective.denoise", "flip:0.1", "--train.progress", "false"]) == 0
    assert json.loads((out / "config.json").read_text())["config"]["objective"]["denoise"] == "flip:0.1"
    assert main(["train", "--preset", "digits-mlp", "--out", str(tmp_path / "bad"),
                 "--objective.denoise", "blur:1"]) == 2
    assert "unknown noise" in capsys.readouterr().err
