"""Issue-2 quality bar: the mnist-mlp preset trained with vaekit vs the plain PyTorch loop a user
would write (DataLoader over a TensorDataset, same network, batch size, optimizer), in one run.

Reports test ELBO (nats, dynamically binarized training, test set binarized once with seed 0) and
seconds per training epoch for both, and the ratios.

    python benchmarks/quality_mnist_mlp.py --epochs 10
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from _common import require_mnist, save_result
from torch.utils.data import DataLoader, TensorDataset

import vaekit
from vaekit.data.transforms import eval_view


class PlainVAE(nn.Module):
    """The textbook MLP VAE (784-400-20), written the way a tutorial writes it."""

    def __init__(self, hidden: int = 400, latent: int = 20) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 784))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw = self.enc(x).chunk(2, dim=1)
        sigma = F.softplus(raw) + 1e-5
        z = mu + sigma * torch.randn_like(mu)
        logits = self.dec(z)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        kl = (0.5 * (mu.pow(2) + sigma.pow(2) - 1) - sigma.log()).sum(1)
        return recon, kl


def plain_loop(x_train: torch.Tensor, x_test: torch.Tensor, epochs: int, batch: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = PlainVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x_train), batch_size=batch, shuffle=True)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for (xb,) in loader:
            xb = torch.bernoulli(xb)
            recon, kl = model(xb)
            loss = (recon + kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        elbos = [-(sum(model(xb))) for xb in x_test.split(1000)]
    return {"test_elbo": torch.cat(elbos).double().mean().item(), "epoch_seconds": times}


def vaekit_run(epochs: int, seed: int, out: Path) -> dict:
    vaekit.train(
        out,
        preset="mnist-mlp",
        data=f"npz:{require_mnist()}",
        **{"train.epochs": epochs, "train.seed": seed, "train.progress": False,
           "train.threads": torch.get_num_threads()},
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    test = json.loads((out / "evaluation.json").read_text())["test"]
    return {"test_elbo": test["elbo"], "epoch_seconds": [r["train_time_s"] for r in records]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--seeds", type=int, default=3, help="number of seeds (ELBO differences are seed noise)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads for both (0 = default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    d = np.load(require_mnist())
    x_train = torch.from_numpy(d["x_train"]).float().div(255).view(-1, 784)
    x_test = eval_view(torch.from_numpy(d["x_test"]), "dynamic", 0).view(-1, 784)
    med = lambda v: float(np.median(v))  # noqa: E731
    per_seed = []
    for seed in range(args.seed, args.seed + args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            ours = vaekit_run(args.epochs, seed, Path(tmp) / "run")
        plain = plain_loop(x_train, x_test, args.epochs, 128, seed)
        per_seed.append({"seed": seed, "vaekit": ours, "plain_pytorch_loop": plain})
        print(f"seed {seed}: vaekit ELBO {ours['test_elbo']:.3f} ({med(ours['epoch_seconds']):.2f} s/epoch), "
              f"plain ELBO {plain['test_elbo']:.3f} ({med(plain['epoch_seconds']):.2f} s/epoch)")
    diffs = [r["vaekit"]["test_elbo"] - r["plain_pytorch_loop"]["test_elbo"] for r in per_seed]
    speed = [
        med(r["plain_pytorch_loop"]["epoch_seconds"]) / med(r["vaekit"]["epoch_seconds"]) for r in per_seed
    ]
    mean = lambda v: float(np.mean(v))  # noqa: E731
    result = {
        "what": "mnist-mlp (784-400-20, Bernoulli, dynamic binarization, batch 128, Adam 1e-3)",
        "epochs": args.epochs,
        "threads": torch.get_num_threads(),
        "per_seed": per_seed,
        "vaekit_test_elbo_mean": mean([r["vaekit"]["test_elbo"] for r in per_seed]),
        "plain_test_elbo_mean": mean([r["plain_pytorch_loop"]["test_elbo"] for r in per_seed]),
        "vaekit_s_per_epoch_median": med([t for r in per_seed for t in r["vaekit"]["epoch_seconds"]]),
        "plain_s_per_epoch_median": med(
            [t for r in per_seed for t in r["plain_pytorch_loop"]["epoch_seconds"]]
        ),
        "speedup_vaekit_over_plain": mean(speed),
        "elbo_difference_nats_mean": mean(diffs),
        "elbo_difference_nats_sd": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else None,
    }
    print(f"mean over {args.seeds} seeds: vaekit ELBO {result['vaekit_test_elbo_mean']:.3f}, "
          f"plain {result['plain_test_elbo_mean']:.3f} "
          f"(difference {result['elbo_difference_nats_mean']:+.3f}, "
          f"positive = vaekit better); speed-up {result['speedup_vaekit_over_plain']:.2f}x")
    assert math.isfinite(result["elbo_difference_nats_mean"])
    save_result("quality_mnist_mlp", result)


if __name__ == "__main__":
    main()
