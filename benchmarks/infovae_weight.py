"""InfoVAE's MMD weight against the standard VAE on dynamically binarized MNIST: the mnist-mlp preset
and the mnist-infovae preset at several objective.mmd_weight values, same epochs and seed, and per
run

    test ELBO (full test set, binarized once with seed 0), NLL = -log p(x) by importance sampling
    with K samples on the first --test-examples test digits, and how far the aggregate posterior
    q(z) = mean_x q(z|x) is from the prior N(0, I): MMD^2 (RBF, c = 2 d, the penalty's own kernel
    and estimator) between one posterior draw per test digit and as many prior draws (mean of 5
    prior draws), and KL(N(m, S) || N(0, I)) for the mean m and covariance S of those draws.

    python benchmarks/infovae_weight.py --epochs 5 --weights 10,100,1000 --seeds 0,1 --k 200 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
from _common import require_mnist, save_result

import vaekit
from vaekit.data import DataSet, load_dataset
from vaekit.data.transforms import eval_view
from vaekit.parts.objectives import mmd


@torch.no_grad()
def nll(model: torch.nn.Module, x: torch.Tensor, k: int, batch: int = 100) -> float:
    """Mean -log p(x) over x in nats (model.log_likelihood with k samples), seeded."""
    torch.manual_seed(0)
    total = sum(
        model.log_likelihood(x[i : i + batch], k).double().sum().item() for i in range(0, len(x), batch)
    )
    return -total / x.shape[0]


@torch.no_grad()
def aggregate_vs_prior(model: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """MMD^2 (RBF) and Gaussian-moment KL between one posterior draw per example and the prior."""
    torch.manual_seed(0)
    z = model.encode(x).rsample()
    g = torch.Generator().manual_seed(0)
    draws = [mmd(z, model.prior.sample(len(z), generator=g), "rbf").item() for _ in range(5)]
    d = z.shape[1]
    m = z.double().mean(0)
    cov = torch.cov(z.double().T)
    kl = 0.5 * (torch.trace(cov) + m @ m - d - torch.logdet(cov))
    return {"aggregate_mmd_rbf": sum(draws) / len(draws), "aggregate_gauss_kl": kl.item()}


def run(preset: str, weight: float | None, seed: int, data: DataSet, args: argparse.Namespace, out: Path,
        x: torch.Tensor) -> dict[str, Any]:
    overrides = {"train.epochs": args.epochs, "train.seed": seed, "train.progress": False,
                 "train.threads": args.threads}
    if weight is not None:
        overrides["objective.mmd_weight"] = weight
    model = vaekit.train(out, preset=preset, data=data, **overrides)
    test = json.loads((out / "evaluation.json").read_text())["test"]
    sub = x[: args.test_examples]
    return {
        "preset": preset,
        "mmd_weight": weight or 0.0,
        "seed": seed,
        "test_elbo": test["elbo"],
        "test_kl": test["kl"],
        "nll": nll(model, sub, args.k),
        **aggregate_vs_prior(model, x[: args.mmd_examples]),
    }


METRICS = ("test_elbo", "nll", "test_kl", "aggregate_mmd_rbf", "aggregate_gauss_kl")


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per preset and weight: each metric's mean and spread (max - min) over the seeds."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["preset"], r["mmd_weight"]), []).append(r)
    out = []
    for (preset, weight), rs in groups.items():
        row: dict[str, Any] = {"preset": preset, "mmd_weight": weight, "seeds": [r["seed"] for r in rs]}
        for m in METRICS:
            values = [r[m] for r in rs]
            row[m] = statistics.mean(values)
            row[m + "_spread"] = max(values) - min(values)
        out.append(row)
    return out


def markdown(summary: list[dict[str, Any]], k: int, n: int) -> str:
    """Means over the seeds, (max - min) in brackets where there is more than one seed."""
    base = summary[0]

    def cell(r: dict[str, Any], m: str, fmt: str) -> str:
        spread = f" ({r[m + '_spread']:{fmt}})" if len(r["seeds"]) > 1 else ""
        return f"{r[m]:{fmt}}{spread}"

    head = (
        f"| preset | mmd_weight | test ELBO | NLL (K={k}, {n} digits) | NLL vs standard | KL | "
        "aggregate MMD^2 (RBF) | aggregate Gaussian KL |\n|---|---|---|---|---|---|---|---|\n"
    )
    return head + "\n".join(
        f"| {r['preset']} | {r['mmd_weight']:g} | {cell(r, 'test_elbo', '.2f')} | {cell(r, 'nll', '.2f')} | "
        f"{r['nll'] - base['nll']:+.2f} | {cell(r, 'test_kl', '.2f')} | "
        f"{cell(r, 'aggregate_mmd_rbf', '.5f')} | {cell(r, 'aggregate_gauss_kl', '.3f')} |"
        for r in summary
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--weights", default="10,100,1000", help="comma-separated objective.mmd_weight values")
    ap.add_argument("--k", type=int, default=200, help="importance samples per example for the NLL")
    ap.add_argument("--test-examples", type=int, default=2000, help="test digits for the NLL")
    ap.add_argument("--mmd-examples", type=int, default=2000, help="test digits for the aggregate posterior")
    ap.add_argument("--seeds", default="0", help="comma-separated training seeds, every run at each")
    ap.add_argument("--keep", default="", help="keep the run folders under this folder (default: discard)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--name", default="infovae_weight", help="results file: benchmarks/results/NAME.json")
    ap.add_argument("--note", default="", help="free text stored with the results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(f"npz:{require_mnist()}")
    x = eval_view(data.test.x, "dynamic", 0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        runs = [("mnist-mlp", None)] + [("mnist-infovae", float(w)) for w in args.weights.split(",")]
        for preset, weight in runs:
            for seed in (int(s) for s in args.seeds.split(",")):
                print(f"training {preset} (mmd_weight {weight}, seed {seed}) for {args.epochs} epochs ...",
                      flush=True)
                out = root / f"{preset}-w{weight or 0:g}-s{seed}"
                rows.append(run(preset, weight, seed, data, args, out, x))
                print(json.dumps(rows[-1]), flush=True)
    summary = summarize(rows)
    table = markdown(summary, args.k, min(args.test_examples, len(x)))
    print(table)
    save_result(
        args.name,
        {
            "what": "standard VAE (mnist-mlp) vs InfoVAE (mnist-infovae) at several MMD weights on "
            "dynamically binarized MNIST (50k/10k/10k), same epochs and seed; test set binarized once "
            "with seed 0; aggregate posterior from one draw per test digit on the first "
            f"{min(args.mmd_examples, len(x))} digits",
            "epochs": args.epochs,
            "k": args.k,
            "nll_test_examples": min(args.test_examples, len(x)),
            "note": args.note,
            "results": rows,
            "summary": summary,
            "table_markdown": table,
        },
    )


if __name__ == "__main__":
    main()
