"""Fuzz: mutated checkpoint and model files (bit flips, truncations, header edits, random bytes)
must only ever give a CheckpointError when loaded, never another exception, never a crash."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

import vaekit
from vaekit.config import make_config
from vaekit.errors import CheckpointError
from vaekit.runs import folder as rd
from vaekit.runs.checkpoint import load_tensors
from vaekit.training.trainer import Trainer

TINY = {
    "model.net.hidden": [8],
    "model.latent_dim": 2,
    "train.epochs": 1,
    "train.progress": False,
    "train.threads": 1,
    "train.num_samples": 4,
}
KINDS = ("bit-flip", "truncate", "header-edit", "header-json", "random-bytes", "splice")
N_PER_KIND, SLOW_N_PER_KIND = 40, 1000  # x 6 kinds x 2 files (checkpoint, model) loads


def _header_span(data: bytes) -> tuple[int, int]:
    return 8, 8 + int.from_bytes(data[:8], "little")


def mutate(data: bytes, kind: str, rng: random.Random) -> bytes:
    """One damaged copy of ``data``."""
    b = bytearray(data)
    if kind == "bit-flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == "truncate":
        return bytes(b[: rng.randrange(len(b))])
    if kind == "header-edit":  # overwrite bytes inside the JSON header or its length
        start, end = _header_span(data)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(0, end) if rng.random() < 0.2 else rng.randrange(start, end)
            b[i] = rng.randrange(256)
        return bytes(b)
    if kind == "header-json":  # a well-formed header with one field changed
        start, end = _header_span(data)
        header = json.loads(data[start:end])
        name = rng.choice(sorted(header))
        field = rng.choice(["dtype", "shape", "data_offsets", "drop", "meta"])
        if name == "__metadata__" or field == "meta":
            meta = header.setdefault("__metadata__", {})
            key = rng.choice(sorted(meta) or ["format_version"])
            meta[key] = rng.choice(["", "2", "{}", "[]", "null", meta.get(key, "")[::-1]])
        elif field == "drop":
            del header[name]
        elif field == "dtype":
            header[name]["dtype"] = rng.choice(["F16", "I64", "U8", "BOOL", "F64", "BF16", "XX"])
        elif field == "shape":
            header[name]["shape"] = [rng.choice([0, 1, 3, 10**6, -1]) for _ in range(rng.randint(0, 3))]
        else:
            lo, hi = header[name]["data_offsets"]
            header[name]["data_offsets"] = [lo + rng.randint(-9, 9), hi + rng.randint(-9, 9)]
        text = json.dumps(header).encode()
        text += b" " * ((8 - len(text) % 8) % 8)
        return len(text).to_bytes(8, "little") + text + bytes(b[end:])
    if kind == "random-bytes":
        n = rng.choice([0, 1, 7, 8, 9, 100, len(b)])
        return bytes(rng.randrange(256) for _ in range(n))
    # splice: a piece of the file moved elsewhere (a misdirected write)
    i, j = sorted(rng.sample(range(len(b)), 2))
    k = rng.randrange(len(b) - (j - i))
    b[k : k + j - i] = data[i:j]
    return bytes(b)


def _contents(path: Path) -> tuple[dict[str, bytes], dict]:
    tensors, meta = load_tensors(path)
    return {k: v.numpy().tobytes() for k, v in tensors.items()}, meta


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "run"
    Trainer(make_config(preset="digits-mlp", overrides=TINY), out).fit()
    return out


def fuzz(run: Path, n_per_kind: int, seed: int) -> dict[str, int]:
    """Load mutated copies through resume (checkpoint) and vaekit.load (model); count outcomes."""
    trainer = Trainer.resume(run)
    good = {name: (run / name).read_bytes() for name in (rd.CHECKPOINT, rd.MODEL)}
    reference = {name: _contents(run / name) for name in good}
    rng = random.Random(seed)
    counts = {"refused": 0, "loaded": 0}
    try:
        for kind in KINDS:
            for _ in range(n_per_kind):
                for name, data in good.items():
                    bad = mutate(data, kind, rng)
                    (run / name).write_bytes(bad)
                    try:
                        trainer.load_checkpoint() if name == rd.CHECKPOINT else vaekit.load(run)
                    except CheckpointError as e:
                        assert e.fix and str(run) in e.problem
                        counts["refused"] += 1
                    else:  # only a change that leaves the contents as they were may load
                        assert _contents(run / name) == reference[name], f"damaged {name} ({kind}) loaded"
                        counts["loaded"] += 1
    finally:
        for name, data in good.items():
            (run / name).write_bytes(data)
    return counts


def test_mutated_files_only_ever_give_checkpoint_error(run):
    counts = fuzz(run, N_PER_KIND, seed=0)
    assert counts["refused"] + counts["loaded"] == len(KINDS) * N_PER_KIND * 2
    assert counts["refused"] > 0.95 * len(KINDS) * N_PER_KIND * 2
    model = vaekit.load(run)  # the intact files still load
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow
def test_mutated_files_many(run):
    fuzz(run, SLOW_N_PER_KIND, seed=1)
