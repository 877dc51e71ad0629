"""The VAE variants side by side on dynamically binarized MNIST, every one trained from its preset
with the same epoch budget and seed, in one run:

    test ELBO (nats, full test set, binarized once with seed 0), NLL = -log p(x) by importance
    sampling with K samples (model.log_likelihood) on the first --test-examples test digits, the
    ELBO gap (-ELBO) - NLL on those same digits, active units (Cov_x E_q[z|x] > 0.01, full test
    set), and the median training seconds per epoch; differences and ratios against the standard
    VAE (mnist-mlp) of the same run. The CVAE's numbers are conditional on the label: -log p(x|y).

    python benchmarks/variants.py --epochs 10 --k 5000
    python benchmarks/variants.py --epochs 1 --k 20 --test-examples 200 --name variants-smoke
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import require_mnist, save_result

import vaekit
from vaekit.config import presets
from vaekit.data import DataSet, load_dataset
from vaekit.data.transforms import eval_view
from vaekit.evaluation import active_units, evaluate_elbo, posterior_means

BASELINE = "standard"
# (row name, preset, what it is)
VARIANTS = [
    (BASELINE, "mnist-mlp", "diagonal Gaussian posterior, N(0, I) prior, ELBO"),
    ("cvae", "mnist-cvae", "conditional on the label, 2-D latent (numbers are -log p(x|y))"),
    ("beta-vae", "mnist-beta-vae", "beta = 4"),
    ("beta-tcvae", "mnist-betatc-vae", "ELBO + 5 x total correlation"),
    ("infovae", "mnist-infovae", "ELBO + 100 x MMD (RBF)"),
    ("mog-prior", "mnist-mog-prior", "learned 50-component Gaussian mixture prior"),
    ("vampprior", "mnist-vampprior", "VampPrior, 500 pseudo-inputs"),
    ("iaf", "mnist-iaf", "2 IAF steps on the posterior"),
    ("hierarchical", "mnist-hierarchical", "top-down: 32 units over 8 latent 7x7 maps, ResNet towers"),
    ("resnet", "mnist-resnet", "hierarchical's one-layer baseline (32 units, same towers)"),
]


@torch.no_grad()
def nll(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None, k: int, batch: int) -> float:
    """Mean -log p(x) over x in nats: model.log_likelihood(x, k) on batches of examples, seeded."""
    device = next(model.parameters()).device
    torch.manual_seed(0)
    total = 0.0
    for i in range(0, x.shape[0], batch):
        yb = None if y is None else y[i : i + batch].to(device)
        total += model.log_likelihood(x[i : i + batch].to(device), k, yb).double().sum().item()
    return -total / x.shape[0]


def run_variant(
    preset: str, data: DataSet, args: argparse.Namespace, out: Path, x: torch.Tensor, y: torch.Tensor
) -> dict[str, Any]:
    model = vaekit.train(
        out,
        preset=preset,
        data=data,
        **{
            "train.epochs": args.epochs,
            "train.seed": args.seed,
            "train.progress": False,
            "train.threads": args.threads,
        },
    )
    labels = y if model.num_classes else None
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    test = json.loads((out / "evaluation.json").read_text())["test"]
    sub, sub_y = x[: args.test_examples], None if labels is None else labels[: args.test_examples]
    t0 = time.perf_counter()
    nll_value = nll(model, sub, sub_y, args.k, args.nll_batch)
    nll_seconds = time.perf_counter() - t0
    sub_elbo = evaluate_elbo(model, sub, sub_y, seed=0)["elbo"]
    means = posterior_means(model, x, labels)
    au = active_units(means)[0] if means is not None else None
    return {
        "test_elbo": test["elbo"],
        "test_kl": test["kl"],
        "nll": nll_value,
        "elbo_gap": -sub_elbo - nll_value,
        "active_units": au,
        "latent_dim": int(means.shape[1]) if means is not None else None,
        "epoch_seconds": [r["train_time_s"] for r in records],
        "median_epoch_s": statistics.median(r["train_time_s"] for r in records),
        "nll_seconds": nll_seconds,
    }


def markdown(rows: dict[str, dict[str, Any]], k: int, n: int) -> str:
    base = rows.get(BASELINE, {})
    head = (
        f"| variant | preset | test ELBO | NLL (K={k}, {n} digits) | ELBO gap | NLL vs standard "
        "| active units | s/epoch | time vs standard |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for name, r in rows.items():
        if "missing" in r:
            lines.append(f"| {name} | {r['preset']} | not available ({r['missing']}) | | | | | | |")
            continue
        d_nll = r["nll"] - base["nll"] if "nll" in base else math.nan
        ratio = r["median_epoch_s"] / base["median_epoch_s"] if "median_epoch_s" in base else math.nan
        au = "n/a" if r["active_units"] is None else f"{r['active_units']}/{r['latent_dim']}"
        lines.append(
            f"| {name} | {r['preset']} | {r['test_elbo']:.2f} | {r['nll']:.2f} | {r['elbo_gap']:.2f} "
            f"| {d_nll:+.2f} | {au} | {r['median_epoch_s']:.1f} | {ratio:.2f}x |"
        )
    return head + "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10, help="training epochs for every variant")
    ap.add_argument("--k", type=int, default=5000, help="importance samples per example for the NLL")
    ap.add_argument("--test-examples", type=int, default=10_000, help="test digits for NLL and gap")
    ap.add_argument("--nll-batch", type=int, default=100, help="examples per log_likelihood call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    names = ", ".join(v[0] for v in VARIANTS)
    ap.add_argument("--variants", default="", help=f"comma-separated subset of: {names} (default all)")
    ap.add_argument("--name", default="variants", help="results file: benchmarks/results/NAME.json")
    ap.add_argument("--note", default="", help="free text stored with the results (e.g. 'shared CPU')")
    args = ap.parse_args()
    asked = [a for a in args.variants.split(",") if a]
    if set(asked) - {v[0] for v in VARIANTS}:
        ap.error(f"unknown variants {sorted(set(asked) - {v[0] for v in VARIANTS})}; choose from: {names}")
    chosen = [v for v in VARIANTS if not asked or v[0] in asked]
    data = load_dataset(f"npz:{require_mnist()}")
    x = eval_view(data.test.x, "dynamic", 0)
    n = min(args.test_examples, x.shape[0])
    rows: dict[str, dict[str, Any]] = {}
    available = set(presets())
    with tempfile.TemporaryDirectory() as tmp:
        for name, preset, what in chosen:
            if preset not in available:
                rows[name] = {"preset": preset, "what": what, "missing": f"no preset {preset}"}
                continue
            print(f"training {name} ({preset}) for {args.epochs} epochs ...", flush=True)
            result = run_variant(preset, data, args, Path(tmp) / name, x, data.test.y)
            rows[name] = {"preset": preset, "what": what, **result}
            print(json.dumps({k: v for k, v in rows[name].items() if k != "epoch_seconds"}), flush=True)
    table = markdown(rows, args.k, n)
    print(table)
    save_result(
        args.name,
        {
            "what": "VAE variants on dynamically binarized MNIST (50k/10k/10k), each from its preset, "
            "same epochs and seed; test set binarized once with seed 0",
            "epochs": args.epochs,
            "k": args.k,
            "nll_test_examples": n,
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "note": args.note,
            "results": rows,
            "table_markdown": table,
        },
    )


if __name__ == "__main__":
    main()
