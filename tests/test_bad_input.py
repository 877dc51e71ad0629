"""Every bad input gets a one-paragraph message naming the problem and the fix, exit code 2 and
no traceback, through the real command line (``vaekit.cli.main``)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import vaekit
from vaekit.cli import main
from vaekit.data import load_dataset
from vaekit.data.base import DataSet, Split
from vaekit.errors import DataError
from vaekit.models.sizes import FLOAT_BYTES, memory_bytes
from vaekit.runs import folder as rd
from vaekit.runs.checkpoint import FORMAT_VERSION, save_tensors

QUICK = (
    "--train.epochs 1 --train.progress false --train.threads 1 --train.device cpu --model.net.hidden [8] "
    "--model.latent_dim 2 --train.num_samples 4"
).split()


def refused(argv: list, capsys, *needles: str) -> str:
    """Run the CLI; it must exit 2 with 'error: ... fix: ...', no traceback, and every needle."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("vaekit: error: ") and "\n  fix: " in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return f"npz:{path}"


def _train(tmp_path: Path, data: str, *extra) -> list:
    return ["train", "--data", data, "--out", tmp_path / "run", *QUICK, *extra]


def _images(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, size in enumerate(sizes):
        Image.new("L", size, color=i * 10).save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bad-input") / "run"
    assert main(["train", "--preset", "digits-mlp", "--out", str(out), *QUICK]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A private copy of a trained run folder."""
    return Path(shutil.copytree(trained, tmp_path / "copy"))


# -- data -------------------------------------------------------------------------------------


def test_nan_and_inf_rows_are_named(tmp_path, capsys):
    x = np.random.default_rng(0).random((40, 8, 8), dtype=np.float32)
    x[3, 1, 1], x[7, 0, 0], x[11, 5, 2] = np.nan, np.inf, -np.inf
    refused(
        _train(tmp_path, _npz(tmp_path / "d.npz", x_train=x)), capsys, "NaN or infinite", "rows [3, 7, 11]"
    )


@pytest.mark.parametrize(
    "arrays, needle",
    [
        ({"x_train": np.zeros(10, np.uint8)}, "expected [N, D]"),
        ({"x_train": np.zeros((4, 2, 3, 4, 5), np.uint8)}, "expected [N, D]"),
        (
            {"x_train": np.zeros((9, 8, 8), np.uint8), "x_valid": np.zeros((3, 7, 7), np.uint8)},
            "x_valid has examples of shape (1, 7, 7) but x_train has (1, 8, 8)",
        ),
        ({"x_train": np.zeros((9, 8, 8, 7), np.uint8)}, "1, 3 or 4 channels"),
    ],
    ids=["1-d", "5-d", "splits-differ", "channels"],
)
def test_wrong_shapes(tmp_path, capsys, arrays, needle):
    refused(_train(tmp_path, _npz(tmp_path / "d.npz", **arrays)), capsys, needle)


def test_mixed_image_sizes_in_a_folder(tmp_path, capsys):
    folder = _images(tmp_path / "imgs", [(8, 8)] * 5 + [(9, 8)])
    refused(
        _train(tmp_path, f"folder:{folder}"), capsys, "images differ in size", "img5.png is 9x8", "resize"
    )


def test_unreadable_and_corrupt_images_are_named(tmp_path, capsys):
    folder = _images(tmp_path / "imgs", [(8, 8)] * 5)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (folder / "notes.jpg").write_text("not an image")
    refused(
        _train(tmp_path, f"folder:{folder}"),
        capsys,
        "2 image file(s) cannot be read",
        "broken.png",
        "notes.jpg",
        "delete or replace",
    )


def test_empty_data_sets(tmp_path, capsys):
    refused(
        _train(tmp_path, _npz(tmp_path / "d.npz", x_train=np.zeros((0, 8, 8), np.uint8))), capsys, "no rows"
    )
    (tmp_path / "empty").mkdir()
    refused(_train(tmp_path, f"folder:{tmp_path / 'empty'}"), capsys, "holds no images")


def test_files_that_are_not_npz_archives_or_not_regular_files(tmp_path, capsys):
    text = tmp_path / "notes.npz"
    text.write_text("x_train = 1, 2, 3\n")
    refused(_train(tmp_path, f"npz:{text}"), capsys, "is not an npz archive", "b'x_trai'")
    pickled = tmp_path / "p.npz"
    pickled.write_bytes(pickle.dumps({"x_train": [1, 2]}))
    err = refused(_train(tmp_path, f"npz:{pickled}"), capsys, "is not an npz archive", "a Python pickle")
    assert "allow_pickle" not in err
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    refused(_train(tmp_path, f"npz:{fifo}"), capsys, "is not a regular file")
    refused(_train(tmp_path, "npz:/dev/zero"), capsys, "/dev/zero is not a regular file")
    refused(["train", "--config", fifo, "--out", tmp_path / "r"], capsys, "is not a regular file")
    refused(["train", "--config", "/dev/zero", "--out", tmp_path / "r"], capsys, "is not a regular file")
    assert not (tmp_path / "run").exists() and not (tmp_path / "r").exists()
    (tmp_path / "mine").mkdir()  # an empty folder the user made is kept when train fails
    refused(["train", "--data", f"npz:{text}", "--out", tmp_path / "mine", *QUICK], capsys, "npz archive")
    assert (tmp_path / "mine").is_dir()


def test_labels_missing_for_a_conditional_model(tmp_path, capsys):
    data = _npz(tmp_path / "d.npz", x_train=np.zeros((30, 8, 8), np.uint8))
    refused(_train(tmp_path, data, "--model.conditional", "true"), capsys, "conditional", "no labels")


def test_values_outside_unit_interval_for_bernoulli(tmp_path, capsys):
    x = np.linspace(0, 2, 30 * 64, dtype=np.float32).reshape(30, 8, 8)
    refused(_train(tmp_path, _npz(tmp_path / "d.npz", x_train=x)), capsys, "[0, 2]", "must lie in [0, 1]")
    # a DataSet built in Python skips the file checks; the trainer still refuses it for Bernoulli
    split = Split(torch.from_numpy(x[:, None] - 1))
    ds = DataSet("shifted", split, split, split, "image", None)
    with pytest.raises(DataError, match=r"Bernoulli likelihood needs values in \[0, 1\]"):
        vaekit.train(tmp_path / "api", data=ds, **{"train.epochs": 1, "train.progress": False})


# -- config -----------------------------------------------------------------------------------


def test_unknown_config_keys_suggest_the_closest(tmp_path, capsys):
    refused(
        ["train", "--out", tmp_path / "r", "--model.latnt_dim", "3"],
        capsys,
        "did you mean '--model.latent_dim'",
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text("modle:\n  latent_dim: 3\n")
    refused(
        ["train", "--config", cfg, "--out", tmp_path / "r"],
        capsys,
        "unknown config key 'modle'",
        "did you mean 'model'",
    )
    cfg.write_text("train:\n  epoch: 3\n")
    refused(["train", "--config", cfg, "--out", tmp_path / "r"], capsys, "did you mean 'train.epochs'")


def test_wrong_value_types_and_ranges(tmp_path, capsys):
    out = ["train", "--out", tmp_path / "r"]
    refused([*out, "--train.epochs", "abc"], capsys, "'train.epochs' expects int, got 'abc'")
    refused([*out, "--train.batch_size", "0"], capsys, "'train.batch_size' must be a finite number >= 1")
    refused([*out, "--train.lr", "nan"], capsys, "'train.lr' must be a finite number")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  lr: fast\n")
    refused(["train", "--config", cfg, *out[1:]], capsys, "'train.lr' expects float, got 'fast'")
    cfg.write_text("model: [1, 2\n")
    refused(["train", "--config", cfg, *out[1:]], capsys, "not valid YAML")


def _alias_bomb(levels: int = 9) -> str:
    """A 'billion laughs' YAML: each level lists the previous one 9 times (9**9 leaves, < 1 KB)."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "model:\n  hidden: *a" + str(levels) + "\n" + "\n".join(lines) + "\n"


def test_yaml_anchors_and_aliases_never_load(tmp_path, capsys):
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(_alias_bomb())
    assert len(cfg.read_bytes()) < 1024
    out = ["--out", tmp_path / "r"]
    refused(["train", "--config", cfg, *out], capsys, str(cfg), "alias *a9 at line 2", "in full")
    cfg.write_text("train:\n  epochs: &e 2\n  num_samples: *e\n")
    refused(["train", "--config", cfg, "--out", tmp_path / "r"], capsys, "anchor &e at line 2")
    refused(["train", "--out", tmp_path / "r", "--model.net.hidden", "[&w 8, *w]"], capsys,
            "command-line value '[&w 8, *w]'", "anchor &w")
    assert not (tmp_path / "r").exists()


OUT_OF_RANGE = [
    ("--objective.samples", "0", "'objective.samples' must be a finite number >= 1, got 0"),
    ("--model.net.hidden", "[-5, 3]", "'model.net.hidden' holds sizes that must each be >= 1, got [-5, 3]"),
    ("--model.net.hidden", "[0]", "'model.net.hidden' holds sizes that must each be >= 1, got [0]"),
    ("--train.seed", "99999999999999999999999", "does not fit in a 64-bit integer"),
    ("--train.seed", "-1", "'train.seed' must be a finite number in [0, 2**63 - 1"),
    ("--model.likelihood", "gaussian --model.likelihood.sigma 0",
     "'model.likelihood.sigma' must be a finite number > 0"),
    ("--objective.beta", "-1", "'objective.beta' must be a finite number >= 0"),
    ("--data.valid_fraction", "1", "'data.valid_fraction' must be a finite number in [0, 1)"),
    ("--model.posterior", "iaf --model.posterior.hidden 0",
     "'model.posterior.hidden' must be a finite number >= 1"),
]


@pytest.mark.parametrize(("key", "value", "needle"), OUT_OF_RANGE)
def test_numbers_out_of_range_are_refused_before_any_work(tmp_path, capsys, key, value, needle):
    refused(["train", "--out", tmp_path / "r", *QUICK, key, *value.split(" --")[0:1],
             *[w for part in value.split(" --")[1:] for w in f"--{part}".split(" ", 1)]], capsys, needle)
    assert not (tmp_path / "r").exists()


def test_a_config_file_that_is_not_a_mapping(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("- train\n- epochs\n")
    out = ["--out", tmp_path / "r"]
    refused(["train", "--config", cfg, *out, "--train.epochs", "1"], capsys, "top level, got list")
    cfg.write_text("5\n")
    refused(["train", "--config", cfg, *out], capsys, "top level, got int")


# -- run folders and checkpoints --------------------------------------------------------------


def test_missing_run_folder_weights_and_checkpoint(run, tmp_path, capsys):
    refused(["evaluate", tmp_path / "nope"], capsys, "does not exist")
    (tmp_path / "plain").mkdir()
    refused(["evaluate", tmp_path / "plain"], capsys, "is not a vaekit run folder")
    (run / rd.MODEL).unlink()
    (run / rd.CHECKPOINT).unlink()
    refused(["evaluate", run], capsys, "holds no weights yet", "vaekit resume")


def test_truncated_checkpoint_and_model(run, capsys):
    data = (run / rd.CHECKPOINT).read_bytes()
    (run / rd.CHECKPOINT).write_bytes(data[: len(data) // 2])
    refused(["resume", run], capsys, "checkpoint.safetensors is truncated", "intact copy")
    data = (run / rd.MODEL).read_bytes()
    (run / rd.MODEL).write_bytes(data[:-100])
    refused(["evaluate", run], capsys, "model.safetensors is truncated")


def test_foreign_safetensors_files(run, capsys):
    save_file({"weight": torch.ones(3)}, run / rd.MODEL)
    refused(["sample", run, "-o", run / "s.png"], capsys, "was not written by vaekit")
    save_file({"weight": torch.ones(3)}, run / rd.CHECKPOINT, metadata={"format_version": "1"})
    refused(["resume", run], capsys, "missing its checksum")


def test_run_folder_from_an_incompatible_version(run, capsys):
    save_tensors(run / rd.MODEL, {"w": torch.ones(1)})
    data = bytearray((run / rd.MODEL).read_bytes())
    at = data.index(f'"format_version":"{FORMAT_VERSION}"'.encode()) + len('"format_version":"')
    data[at : at + 1] = b"7"
    (run / rd.MODEL).write_bytes(bytes(data))
    refused(
        ["evaluate", run], capsys, "incompatible vaekit (file format '7'", "the vaekit version that wrote it"
    )
    doc = json.loads((run / rd.CONFIG).read_text())
    doc["format_version"] = 99
    (run / rd.CONFIG).write_text(json.dumps(doc))
    refused(["resume", run], capsys, "run-folder format 99", "vaekit version that wrote it")


def test_output_folder_holding_a_different_run_or_other_files(run, tmp_path, capsys):
    refused(
        ["train", "--out", run, *QUICK], capsys, "already holds a vaekit run", "--overwrite", "vaekit resume"
    )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("...")
    refused(["train", "--out", tmp_path / "mine", *QUICK], capsys, "already holds other files")
    (tmp_path / "file").write_text("x")
    refused(["train", "--out", tmp_path / "file", *QUICK], capsys, "is a file")


def test_unwritable_output_path(run, tmp_path, capsys):
    refused(
        ["sample", run, "-o", tmp_path / "no" / "such" / "dir" / "s.png"], capsys, "No such file or directory"
    )


def test_oversized_models_and_sample_counts(run, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  latent_dim: 1000000000\n")
    refused(["train", "--config", cfg, "--out", tmp_path / "r", *QUICK[:8]], capsys,
            "a model of ", " parameters for data of shape (1, 8, 8)", "GiB of memory", "model.latent_dim")
    assert not (tmp_path / "r").exists()
    refused(["sample", run, "-n", "0", "-o", tmp_path / "s.png"], capsys, "-n must be >= 1", "got 0")
    refused(["sample", run, "-n", "-1", "-o", tmp_path / "s.png"], capsys, "got -1")
    too_many = memory_bytes() // (8 * 8 * FLOAT_BYTES) + 1
    refused(["sample", run, "-n", too_many, "-o", tmp_path / "s.npy"], capsys, f"{too_many:,} samples",
            "draw fewer samples")
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "s.npy").exists()


def test_a_run_config_with_an_impossible_data_shape(run, tmp_path, capsys):
    doc = json.loads((run / rd.CONFIG).read_text())
    doc["data"]["schema"]["event_shape"] = [1, 1e6, 1e6]
    (run / rd.CONFIG).write_text(json.dumps(doc))
    refused(["sample", run, "-o", tmp_path / "s.png"], capsys, "event_shape=[1, 1000000.0, 1000000.0]")
    doc["data"]["schema"]["event_shape"] = [1, 10**6, 10**6]
    (run / rd.CONFIG).write_text(json.dumps(doc))
    refused(["evaluate", run], capsys, "cannot be loaded", "data of shape (1, 1000000, 1000000)", "GiB")


def test_api_data_with_nan_rows(tmp_path):
    d = load_dataset("digits")
    x = d.train.x.clone()
    x[[2, 5]] = float("nan")
    ds = DataSet("nan", Split(x, d.train.y), d.valid, d.test, "image", 17, 10)
    with pytest.raises(DataError, match=r"train split of 'nan' has NaN or infinite values in rows \[2, 5\]"):
        vaekit.train(tmp_path / "r", data=ds, **{"train.epochs": 1, "train.progress": False})
