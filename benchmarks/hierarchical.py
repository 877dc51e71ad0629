"""Issue 6: the hierarchical VAE (two stochastic layers, top-down inference) against one-layer models
at equal budget on MNIST: the same data, epochs, batch size, optimizer and ResNet towers.

Models: ``hierarchical`` (preset mnist-hierarchical: a 32-unit vector layer over 8 latent maps on
the 7x7 feature map), ``one-layer`` (preset mnist-resnet: the plain VAE, one 32-unit layer) and
``one-layer-topdown`` (the hierarchical code with its vector layer only, i.e. the same networks
minus the map layer). Reports test ELBO, test NLL by importance sampling (K samples per example,
stated), KL per layer, parameters and seconds per epoch; dynamic binarization for training, the test
set binarized once (seed 0). With several ``--seeds`` the gains are also paired by seed.

    python benchmarks/hierarchical.py --epochs 5 --k 100
    python benchmarks/hierarchical.py --epochs 5 --k 100 --test-examples 1000 --seeds 0 1 2 \
        --models hierarchical one-layer --name hierarchical_maps_seeds_5ep
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from _common import require_mnist, save_result

import vaekit
from vaekit.api import load_split
from vaekit.models import VAE

MODELS = {
    "hierarchical": ("mnist-hierarchical", {}),
    "one-layer": ("mnist-resnet", {}),
    "one-layer-topdown": ("mnist-hierarchical", {"model.latent_channels": []}),
}


@torch.no_grad()
def nll_per_example(model: VAE, x: torch.Tensor, k: int, batch: int = 100, seed: int = 0) -> torch.Tensor:
    """-log p(x) per example in nats, importance-sampled with k posterior samples."""
    torch.manual_seed(seed)
    return -torch.cat([model.log_likelihood(x[i : i + batch], k).double() for i in range(0, len(x), batch)])


def paired_gain(ours: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """mean(other - ours) over the same examples and its standard error."""
    d = other - ours
    return {"nats": d.mean().item(), "sem": (d.std() / len(d) ** 0.5).item()}


def run_one(
    name: str, out: Path, settings: dict[str, Any], k: int, test_examples: int, data: str
) -> tuple[dict[str, Any], torch.Tensor]:
    """Train one model with the shared ``settings`` and measure it on the (first ``test_examples`` of
    the) test split."""
    preset, overrides = MODELS[name]
    model = vaekit.train(out, preset=preset, data=data, **settings, **overrides)
    x, _ = load_split(out, "test")
    x = x[:test_examples] if test_examples else x
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    test = json.loads((out / "evaluation.json").read_text())["test"]
    seconds = [r["train_time_s"] for r in records]
    nll = nll_per_example(model, x, k)
    result: dict[str, Any] = {
        "preset": preset,
        "overrides": overrides,
        "parameters": sum(p.numel() for p in model.parameters()),
        "test_elbo": test["elbo"],
        "test_kl": test["kl"],
        "nll_examples": len(x),
        "seconds_per_epoch": sum(seconds) / len(seconds),
        "test_nll": nll.mean().item(),
    }
    if test.get("kl_layers"):
        result["kl_layers_top_first"] = test["kl_layers"]
    print(f"{name:>18}  ELBO {result['test_elbo']:9.3f}  NLL(K={k}) {result['test_nll']:9.3f}  "
          f"KL {result['test_kl']:7.3f}  {result['seconds_per_epoch']:6.1f} s/epoch", flush=True)
    return result, nll


def compare(
    epochs: int,
    k: int,
    test_examples: int = 0,
    names: list[str] | None = None,
    threads: int = 0,
    progress: bool = False,
    seeds: list[int] | None = None,
) -> dict[str, Any]:
    """Train each model with the same budget and each training seed; NLL gains of the hierarchical
    model over the others, per seed (paired over test examples) and across seeds (paired by seed)."""
    data = f"npz:{require_mnist()}"
    names = names or list(MODELS)
    seeds = seeds or [0]
    per_seed = []
    for seed in seeds:
        # fp32 for every model: bf16 autocast would apply to the plain VAE only (training/policy.py)
        settings = {"train.epochs": epochs, "train.progress": progress, "train.threads": threads,
                    "train.precision": "fp32", "train.seed": seed}
        with tempfile.TemporaryDirectory() as tmp:
            runs = {n: run_one(n, Path(tmp) / n, settings, k, test_examples, data) for n in names}
        gains = {
            f"nll_gain_over_{n}": paired_gain(runs["hierarchical"][1], runs[n][1])
            for n in names
            if n != "hierarchical" and "hierarchical" in runs
        }
        per_seed.append({"seed": seed, "settings": settings, "models": {n: r[0] for n, r in runs.items()},
                         **gains})
    result = {"epochs": epochs, "k": k, **per_seed[0]}
    if len(seeds) > 1:
        result = {"epochs": epochs, "k": k, "seeds": per_seed, **seed_gains(per_seed, names)}
    return result


def seed_gains(per_seed: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Across seeds: the hierarchical model's mean gain in test NLL and test ELBO over each other model,
    paired by seed, with the standard error of that mean."""
    out = {}
    for n in names:
        if n == "hierarchical" or "hierarchical" not in names:
            continue
        for key, sign in (("test_nll", 1.0), ("test_elbo", -1.0)):
            d = torch.tensor([sign * (r["models"][n][key] - r["models"]["hierarchical"][key])
                              for r in per_seed])
            out[f"{key}_gain_over_{n}_by_seed"] = {
                "nats": d.mean().item(), "sem": (d.std() / len(d) ** 0.5).item(), "per_seed": d.tolist()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5, help="training epochs, the same for every model")
    ap.add_argument("--k", type=int, default=100, help="importance samples per example for the test NLL")
    ap.add_argument("--test-examples", type=int, default=0, help="NLL on the first N test examples (0: all)")
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (gains paired by seed)")
    ap.add_argument("--note", default="", help="recorded in the result, e.g. that the machine was shared")
    ap.add_argument("--progress", action="store_true", help="show the trainer's progress bars")
    ap.add_argument("--name", default="hierarchical_vs_single", help="writes benchmarks/results/NAME.json")
    args = ap.parse_args()
    result = compare(args.epochs, args.k, args.test_examples, args.models, args.threads, args.progress,
                     args.seeds)
    for key, gain in result.items():
        if "gain" in key:
            print(f"{key}: {gain['nats']:+.3f} +- {gain['sem']:.3f} nats (positive: the hierarchical model "
                  "is better; paired standard error over the same test examples, or over seeds)")
    result["what"] = (
        "dynamically binarized MNIST (IWAE 50k/10k/10k split), Bernoulli likelihood, Adam 1e-3, batch 128; "
        "test set binarized once with seed 0; NLL = -mean log p(x), importance-sampled with K samples"
    )
    if args.note:
        result["note"] = args.note
    save_result(args.name, result)


if __name__ == "__main__":
    main()
