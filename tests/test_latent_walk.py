"""Walking the latent space: interpolation paths, traversal codes and their KL order (closed forms),
and the interpolate / traverse commands on a tiny digits run."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit
from vaekit.api import load_split
from vaekit.applications import latent_walk as lw
from vaekit.cli import main
from vaekit.config import make_config
from vaekit.errors import ConfigError
from vaekit.evaluation import dimension_activity
from vaekit.models import build_model
from vaekit.parts.priors import MixtureOfGaussians, Prior
from vaekit.schema import DataSchema
from vaekit.viz import grid_image

TINY = {"train.epochs": 2, "train.progress": False, "model.net.hidden": [32]}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A digits-mlp run (8 x 8 digits, latent 8) trained for 2 epochs."""
    out = tmp_path_factory.mktemp("walk") / "digits"
    vaekit.train(out, preset="digits-mlp", **TINY)
    return out


# ---- interpolation ------------------------------------------------------------------------------


def test_linear_path_is_evenly_spaced_with_the_midpoint_halfway():
    a, b = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([3.0, 2.0, -1.0])
    z = lw.interpolate_latents(a, b, 5, "linear")
    np.testing.assert_allclose(z[[0, -1]], torch.stack([a, b]), atol=1e-6)
    np.testing.assert_allclose(z[2], (a + b) / 2, atol=1e-6)
    np.testing.assert_allclose(z.diff(dim=0), ((b - a) / 4).expand(4, 3), atol=1e-6)


def test_slerp_keeps_the_ends_and_the_norm_of_equal_norm_ends():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, generator=g), torch.randn(64, generator=g)
    b = b * a.norm() / b.norm()
    z = lw.interpolate_latents(a, b, 11, "slerp")
    np.testing.assert_allclose(z[[0, -1]], torch.stack([a, b]), atol=1e-5)
    np.testing.assert_allclose(z.norm(dim=1), a.norm().expand(11), rtol=1e-5)
    # closed form on a circle: the angle to a grows linearly in t
    omega = math.acos(float(a @ b / (a.norm() * b.norm())))
    angles = torch.arccos((z @ a / (z.norm(dim=1) * a.norm())).clamp(-1, 1))
    np.testing.assert_allclose(angles, np.linspace(0, omega, 11), atol=1e-3)
    # the straight line cuts the corner: its midpoint is shorter by cos(omega / 2)
    mid = lw.interpolate_latents(a, b, 3, "linear")[1]
    assert float(mid.norm()) == pytest.approx(float(a.norm()) * math.cos(omega / 2), rel=1e-5)


def test_slerp_falls_back_to_the_line_without_a_great_circle():
    a = torch.tensor([1.0, 0.0])
    for b in (torch.tensor([3.0, 0.0]), torch.zeros(2)):  # parallel, or a zero end
        np.testing.assert_allclose(lw.interpolate_latents(a, b, 3, "slerp"),
                                   lw.interpolate_latents(a, b, 3, "linear"))


@pytest.mark.parametrize("steps,path,needle", [(1, "linear", "at least 2"), (4, "cubic", "unknown path")])
def test_interpolation_refuses_bad_paths(steps, path, needle):
    with pytest.raises(ConfigError, match=needle):
        lw.interpolate_latents(torch.zeros(2), torch.ones(2), steps, path)


# ---- traversal ----------------------------------------------------------------------------------


def test_traversal_codes_move_only_the_chosen_unit():
    axes = lw.Axes(4, torch.tensor([0.0, 1.0, -2.0, 0.5], dtype=torch.float64),
                   torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=torch.float64), "test")
    base = torch.tensor([0.3, -0.7, 1.1, 2.0], dtype=torch.float64)
    codes = lw.traversal_codes(base, [2, 1], axes, 3.0, 7)
    assert codes.shape == (2, 7, 4)
    t = torch.linspace(-3, 3, 7, dtype=torch.float64)
    for r, d in enumerate([2, 1]):
        np.testing.assert_allclose(codes[r, :, d], axes.center[d] + t * axes.scale[d])
        others = [i for i in range(4) if i != d]
        np.testing.assert_allclose(codes[r][:, others], base[others].expand(7, 3))


def test_dims_ordered_by_kl_descending():
    kl = torch.tensor([0.1, 2.0, 0.0, 1.5, 2.0, 0.7])
    assert lw.order_dims(kl, "top:4") == [1, 4, 3, 5]  # ties in unit order
    assert lw.order_dims(kl, "top:99") == [1, 4, 3, 5, 0, 2]
    assert lw.order_dims(kl, "5, 0,2") == [5, 0, 2]


@pytest.mark.parametrize("spec,needle", [("top:0", "no unit"), ("0,6", "units \\[6\\]"), ("1,1", "twice"),
                                         ("first", "neither")])
def test_bad_dims_are_refused(spec, needle):
    with pytest.raises(ConfigError, match=needle):
        lw.order_dims(torch.ones(6), spec)


@torch.no_grad()
def test_mixture_prior_axes_are_its_marginal_moments():
    prior = MixtureOfGaussians(3, 4)
    axes = lw.prior_axes(SimpleNamespace(prior=prior, latent_dim=3))
    z = prior.sample(200_000, generator=torch.Generator().manual_seed(0)).double()
    np.testing.assert_allclose(axes.center, z.mean(0), atol=0.02)
    np.testing.assert_allclose(axes.scale, z.std(0), rtol=0.02)


class ShiftedPrior(Prior):
    """N(2, 0.5^2) per unit: a prior with no closed-form moments known to the traversal."""

    latent_dim = 2

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return 2 + 0.5 * torch.randn(n, 2, generator=generator)


def test_other_priors_axes_are_moments_of_seeded_draws():
    prior = ShiftedPrior()
    axes = lw.prior_axes(SimpleNamespace(prior=prior, latent_dim=2, parameters=prior.parameters))
    np.testing.assert_allclose(axes.center, [2, 2], atol=0.02)
    np.testing.assert_allclose(axes.scale, [0.5, 0.5], rtol=0.03)
    again = lw.prior_axes(SimpleNamespace(prior=prior, latent_dim=2, parameters=prior.parameters))
    assert torch.equal(axes.center, again.center) and f"{lw.MOMENT_DRAWS:,} draws" in axes.meaning


@torch.no_grad()
def test_hierarchical_traverses_the_top_layer_with_the_layers_below_following():
    cfg = make_config(overrides={"model.name": "hierarchical", "model.width": 16, "model.latent_dims": [3, 2],
                                 "model.net": "mlp", "model.net.hidden": [16]})
    model = build_model(cfg.model, DataSchema.for_shape((1, 8, 8), 256, None)).eval()
    axes = lw.prior_axes(model)
    assert axes.units == 3 and axes.center.tolist() == [0, 0, 0] and axes.scale.tolist() == [1, 1, 1]
    z, images = lw.traverse(model, [1], lw.base_point(model, axes), axes, 2.0, 5)
    assert z.shape == (1, 5, 5) and images.shape == (1, 5, 1, 8, 8)
    np.testing.assert_allclose(z[0, :, 1], np.linspace(-2, 2, 5), atol=1e-6)
    top, second = model.prior.layers
    below = second.prior(top.update(torch.zeros(5, 16), z[0, :, :3])).loc  # p(z_1 | z_2)'s mean
    np.testing.assert_allclose(z[0, :, 3:], below, atol=1e-6)
    assert not torch.allclose(z[0, 0, 3:], z[0, -1, 3:])  # the layer below follows the top
    at_zero = model.prior.walk(1, mean=True).z  # the prior's own mean path: the middle step
    np.testing.assert_allclose(z[0, 2], at_zero[0], atol=1e-6)


# ---- the commands ------------------------------------------------------------------------------


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float64)


def test_interpolate_writes_one_row_with_the_originals_at_the_ends(run_dir, tmp_path):
    png, npy = tmp_path / "i.png", tmp_path / "i.npy"
    args = [str(run_dir), "--from", "3", "--to", "7", "--steps", "6", "--path", "slerp"]
    assert main(["--quiet", "interpolate", *args, "-o", str(png)]) == 0
    assert main(["--quiet", "interpolate", *args, "-o", str(npy)]) == 0
    decoded = torch.from_numpy(np.load(npy))
    assert decoded.shape == (6, 1, 8, 8)
    x, _ = load_split(run_dir, "test")
    expected = grid_image(torch.cat([x[3:4], decoded, x[7:8]]), nrow=8)
    assert Image.open(png).size == (8 * 10 * 4 + 8, 10 * 4 + 8)  # 8 images of 8 px, 2 px gaps, x4
    np.testing.assert_array_equal(pixels(png), np.asarray(expected, dtype=np.float64))
    model = vaekit.load(run_dir)
    za, zb = model.encode(x[3:4]).mean[0], model.encode(x[7:8]).mean[0]
    path = lw.interpolate_latents(za, zb, 6, "slerp")
    np.testing.assert_allclose(decoded, model.decode(path).mean.detach(), atol=1e-6)


def test_traverse_writes_a_labelled_grid_ordered_by_kl(run_dir, tmp_path):
    png, npy = tmp_path / "t.png", tmp_path / "t.npy"
    args = [str(run_dir), "--dims", "top:3", "--steps", "5", "--range", "2", "--from", "4"]
    assert main(["--quiet", "traverse", *args, "-o", str(png)]) == 0
    assert main(["--quiet", "traverse", *args, "-o", str(npy)]) == 0
    rows = torch.from_numpy(np.load(npy))
    assert rows.shape == (3, 5, 1, 8, 8)
    model = vaekit.load(run_dir)
    x, _ = load_split(run_dir, "test")
    kl, kind = dimension_activity(model, x)
    assert kind == "kl"
    dims = [int(i) for i in torch.argsort(-kl, stable=True)[:3]]
    base = model.encode(x[4:5]).mean[0].detach()
    for r, d in enumerate(dims):
        z = base.expand(5, 8).clone()
        z[:, d] = torch.linspace(-2, 2, 5)
        np.testing.assert_allclose(rows[r], model.decode(z).mean.detach(), atol=1e-5)
    # the grid on the right, the labels in a margin on the left
    grid = np.asarray(grid_image(rows.flatten(0, 1), nrow=5), dtype=np.float64)
    image = pixels(png)
    assert image.shape[0] == grid.shape[0] == 3 * 40 + 8 and image.shape[1] > grid.shape[1]
    np.testing.assert_array_equal(image[:, -grid.shape[1]:], grid)
    assert image[:, : image.shape[1] - grid.shape[1]].min() < 128  # dark text was written


@pytest.mark.parametrize(
    "command,args,needle",
    [
        ("interpolate", ["--from", "0", "--to", "100000"], "--to 100000: the test split has examples 0.."),
        ("interpolate", ["--from", "0", "--to", "1", "--steps", "1"], "--steps must be >= 2"),
        ("interpolate", ["--from", "0", "--to", "1", "-o", "out.txt"], "cannot write"),
        ("interpolate", ["--from", "0", "--to", "1", "--label", "2"], "not conditional"),
        ("traverse", ["--dims", "0,8"], "traversable units are 0..7"),
        ("traverse", ["--range", "-1"], "--range must be a positive number"),
        ("traverse", ["--from", "-1"], "--from -1"),
        ("traverse", ["--dims", "top:x"], "neither top:N"),
    ],
)
def test_bad_input_exits_2_with_a_message(run_dir, tmp_path, capsys, command, args, needle):
    out = ["-o", str(tmp_path / "x.png")] if "-o" not in args else []
    assert main([command, str(run_dir), *args, *out]) == 2
    err = capsys.readouterr().err
    assert needle in err and "fix:" in err and "Traceback" not in err


def test_walks_refuse_table_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "table.npz", x_train=rng.random((60, 5)).astype(np.float32))
    run = tmp_path / "table-run"
    vaekit.train(run, preset="digits-mlp", **{**TINY, "data.name": f"npz:{tmp_path / 'table.npz'}",
                                              "data.binarize": "none", "model.likelihood": "gaussian"})
    assert main(["traverse", str(run), "-o", str(tmp_path / "t.npy")]) == 2
    assert "traverse works on images" in capsys.readouterr().err
    assert main(["interpolate", str(run), "--from", "0", "--to", "1", "-o", str(tmp_path / "i.npy")]) == 2
    assert "interpolate works on images" in capsys.readouterr().err


def test_conditional_runs_decode_the_class_asked_for(tmp_path, capsys):
    run = tmp_path / "cond"
    vaekit.train(run, preset="digits-mlp", **{**TINY, "model.conditional": True})
    npy = tmp_path / "t.npy"
    assert main(["traverse", str(run), "-o", str(npy)]) == 2
    assert "give --label C (or --from I)" in capsys.readouterr().err
    assert main(["--quiet", "traverse", str(run), "--dims", "2", "--steps", "3", "--label", "3",
                 "-o", str(npy)]) == 0
    model = vaekit.load(run)
    z = torch.zeros(3, 8)
    z[:, 2] = torch.tensor([-3.0, 0.0, 3.0])
    expected = model.decode(z, torch.full((3,), 3)).mean.detach()
    np.testing.assert_allclose(np.load(npy)[0], expected, atol=1e-6)
    x, y = load_split(run, "test")
    assert main(["--quiet", "interpolate", str(run), "--from", "0", "--to", "1", "--steps", "2",
                 "-o", str(npy)]) == 0  # decoded with example 0's class, each end encoded with its own
    za, zb = model.encode(x[:1], y[:1]).mean, model.encode(x[1:2], y[1:2]).mean
    expected = model.decode(torch.cat([za, zb]), y[:1].expand(2)).mean.detach()
    np.testing.assert_allclose(np.load(npy), expected, atol=1e-6)
