"""Data-parallel training: 2 CPU ranks (gloo) give the single-process run's parameters, only rank 0
writes, and a distributed run resumes exactly."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from vaekit.config import make_config
from vaekit.data import DataSet, Split
from vaekit.parts.posteriors import GaussianPosterior
from vaekit.runs.checkpoint import load_tensors
from vaekit.training import distributed
from vaekit.training.guard import DivergenceGuard
from vaekit.training.trainer import Trainer

BATCH = 16
SETTINGS = {
    "data.binarize": "none", "model.net": "mlp", "model.net.hidden": [24], "model.latent_dim": 3,
    "train.batch_size": BATCH, "train.epochs": 2, "train.progress": False, "train.threads": 1,
    "train.precision": "fp32", "train.compile": "off", "train.num_samples": 4,
}


def tiny_data() -> DataSet:
    """96 training images of 1x4x4 in [0, 1]: 6 global batches of 16 per epoch."""
    g = torch.Generator().manual_seed(5)
    split = lambda n: Split(torch.rand(n, 1, 4, 4, generator=g))  # noqa: E731
    return DataSet("tiny", split(96), split(32), split(32), kind="image", levels=None)


def mean_posterior(self, q, h, k, eps=None):
    """z = E_q[z]: no sampling noise, so gradients are a function of the data order alone."""
    z = q.loc.expand(k, *q.loc.shape)
    return z, q.log_prob(z)


def train(out: Path, deterministic: bool, **overrides) -> Trainer:
    if deterministic:
        GaussianPosterior.sample = mean_posterior
    trainer = Trainer(make_config(overrides=SETTINGS | overrides), out, data=tiny_data())
    trainer.fit()
    return trainer


def params(run: Path) -> dict[str, torch.Tensor]:
    return load_tensors(run / "model.safetensors")[0]


def _worker(rank: int, port: int, root: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    root = Path(root)
    world = distributed.world_from_env()
    # with noise: straight through 2 epochs, and 1 epoch then resumed to 2
    train(root / "noisy-straight", False)
    train(root / "noisy-resumed", False, **{"train.epochs": 1})
    if world.main:
        path = root / "noisy-resumed" / "config.json"
        doc = json.loads(path.read_text())
        doc["config"]["train"]["epochs"] = 2
        path.write_text(json.dumps(doc))
    world.barrier()
    Trainer.resume(root / "noisy-resumed", data=tiny_data()).fit()
    # without noise, to compare with one process
    train(root / "ddp", True)
    distributed.teardown()


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(port, str(root)), nprocs=2, join=True)
    return root


def test_two_ranks_match_one_process_with_the_same_global_batch(ddp_runs, tmp_path, monkeypatch):
    monkeypatch.setattr(GaussianPosterior, "sample", mean_posterior)
    single = train(tmp_path / "single", True)
    assert single.world.size == 1
    ddp, one = params(ddp_runs / "ddp"), params(tmp_path / "single")
    assert ddp.keys() == one.keys()
    for k in one:
        torch.testing.assert_close(ddp[k], one[k], rtol=1e-5, atol=1e-6, msg=k)
    # and the training really moved the weights (the comparison is not of two initial states)
    init = Trainer(make_config(overrides=SETTINGS), tmp_path / "init", data=tiny_data()).model.state_dict()
    assert max((init[k] - one[f"model.{k}"]).abs().max().item() for k in init) > 1e-3


def test_rank_zero_alone_writes_the_run_folder(ddp_runs):
    run = ddp_runs / "ddp"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]  # one line per epoch, not one per rank
    for name in ("config.json", "checkpoint.safetensors", "report.md", "evaluation.json"):
        assert (run / name).is_file(), name
    ckpt, meta = load_tensors(run / "checkpoint.safetensors")
    assert {"rng.cpu.rank0", "rng.cpu.rank1"} <= ckpt.keys()
    assert not torch.equal(ckpt["rng.cpu.rank0"], ckpt["rng.cpu.rank1"])  # each rank its own noise
    assert meta["state"]["step"] == 2 * 96 // BATCH


def test_a_distributed_run_resumes_exactly(ddp_runs):
    straight, resumed = params(ddp_runs / "noisy-straight"), params(ddp_runs / "noisy-resumed")
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
    metrics = lambda run: [  # noqa: E731
        {k: v for k, v in json.loads(line).items() if k != "train_time_s"}
        for line in (ddp_runs / run / "metrics.jsonl").read_text().splitlines()
    ]
    assert metrics("noisy-straight") == metrics("noisy-resumed")


@pytest.mark.parametrize("n", [16, 15, 7, 1])
def test_shards_partition_each_global_batch_in_order(n):
    idx = torch.randperm(40)[:n]
    parts = [distributed.World(rank=r, size=3).shard(idx) for r in range(3)]
    assert torch.equal(torch.cat(parts), idx)
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1
    assert torch.equal(distributed.World().shard(idx), idx)


def test_world_from_torchrun_environment(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert distributed.world_from_env() == distributed.World(0, 1, 0)
    assert not distributed.setup(torch.device("cpu")).active  # a plain run starts no process group
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = distributed.world_from_env()
    assert (world.rank, world.size, world.local_rank, world.main, world.active) == (3, 4, 1, False, True)
    assert type(distributed.make_guard(world, 5, 1, 0.5)) is distributed.SyncedGuard
    assert type(distributed.make_guard(distributed.World(), 5, 1, 0.5)) is DivergenceGuard
    monkeypatch.setenv("RANK", "x")
    from vaekit.errors import ConfigError

    with pytest.raises(ConfigError, match="torchrun"):
        distributed.world_from_env()
