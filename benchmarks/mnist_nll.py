"""Test-set -log p(x) on dynamically binarized MNIST next to Burda et al. 2015 (IWAE), Table 1.

Trains each row with vaekit (``vaekit.train``) on the IWAE split of MNIST (50k train / 10k valid /
10k test, ../shared/data/mnist.npz), then estimates -log p(x) on the test set with K importance
samples (K = 5000 as in the paper). Training binarizes every batch afresh (dynamic); the test set is
binarized once, with torch seed 0 (vaekit's ``eval_view``, data.binarize_seed = 0).

Architecture of the paper's one-stochastic-layer models: encoder 784-200-200-(2 x 50), decoder
50-200-200-784, tanh, Bernoulli likelihood. Adam (lr 1e-3, constant) with batch 20; the paper used
batch 20 and 3,280 epochs with lr 1e-3 * 10^(-i/7) for 3^i epochs, i = 0..7. The two-layer rows use
vaekit's top-down hierarchical model (model.name=hierarchical, layers of 50 (top) and 100 units, the
one-layer rows' 200-200 towers, ReLU); the paper's two-layer model is bottom-up (784-100-100-100 |
100-50-50-50, tanh), so those rows compare a different architecture. With tanh the top-down MLP
model is unstable (its validation KL jumps to thousands of nats within 5 epochs), and at width 100
it learns as slowly as a one-layer model of that width.

    python benchmarks/mnist_nll.py --epochs 100                    # all rows, K = 5000
    python benchmarks/mnist_nll.py --epochs 1 --k 50 --subset 1000 --out mnist_nll-smoke   # a check
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from _common import RESULTS, parse_settings, require_mnist, save_result

import vaekit
from vaekit.config import make_config
from vaekit.data import DataSet, load_dataset
from vaekit.data.base import Split
from vaekit.data.transforms import eval_view
from vaekit.errors import VaekitError
from vaekit.evaluation import evaluate_model, save_evaluation_plots
from vaekit.evaluation.likelihood import ROWS_PER_CALL
from vaekit.models import build_model
from vaekit.parts.objectives.iwae import iwae_bound
from vaekit.runs.metrics import read_metrics
from vaekit.runs.report import record_evaluation, render_report
from vaekit.schema import DataSchema

PAPER_EPOCHS = 3280
SPEED_ONLY = {"train.threads"}  # settings that change a row's speed, not its numbers (--reuse ignores them)
BINARIZE_SEED = 0
ONE_LAYER = {"model.net": "mlp", "model.net.hidden": [200, 200], "model.net.activation": "tanh",
             "model.latent_dim": 50}
TWO_LAYER = {"model.name": "hierarchical", "model.latent_dims": [50, 100], "model.net": "mlp",
             "model.net.hidden": [200, 200], "model.net.activation": "relu"}
ROWS: dict[str, dict[str, Any]] = {
    "vae-1": {"label": "VAE (k=1), 1 stochastic layer", "published": 86.76, "arch": ONE_LAYER,
              "objective": {"objective.name": "elbo", "objective.samples": 1}},
    "iwae-1": {"label": "IWAE (k=50), 1 stochastic layer", "published": 84.78, "arch": ONE_LAYER,
               "objective": {"objective.name": "iwae", "objective.samples": 50}},
    "vae-2": {"label": "VAE (k=1), 2 stochastic layers", "published": 85.33, "arch": TWO_LAYER,
              "objective": {"objective.name": "elbo", "objective.samples": 1}},
    "iwae-2": {"label": "IWAE (k=50), 2 stochastic layers", "published": 82.90, "arch": TWO_LAYER,
               "objective": {"objective.name": "iwae", "objective.samples": 50}},
}


def hierarchical_available() -> bool:
    """Whether this vaekit has model.name=hierarchical (the two-layer rows need it)."""
    try:
        build_model(make_config(overrides=TWO_LAYER).model, DataSchema.for_shape((1, 28, 28), 2, None))
    except VaekitError:
        return False
    return True


def subset(data: DataSet, n: int) -> DataSet:
    """The first n examples of each split (a quick check of the script, not a benchmark)."""
    def cut(s: Split) -> Split:
        return Split(s.x[:n], None if s.y is None else s.y[:n])

    return DataSet(data.name, cut(data.train), cut(data.valid), cut(data.test), data.kind, data.levels,
                   data.num_classes)


def config_overrides(row: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    return {
        "data.name": f"npz:{require_mnist()}", "data.binarize": "dynamic",
        "data.binarize_seed": BINARIZE_SEED, "model.likelihood": "bernoulli", **row["arch"],
        **row["objective"], "train.epochs": args.epochs, "train.batch_size": args.batch_size,
        "train.lr": args.lr, "train.seed": args.seed, "train.threads": args.threads,
        "train.device": args.device, "train.max_minutes": args.max_minutes, **parse_settings(args.set),
    }


def probe_seconds(overrides: dict[str, Any], n_train: int, n_test: int, k_eval: int) -> tuple[float, float]:
    """Estimated (training seconds, evaluation seconds) from a few timed steps of the same model."""
    cfg = make_config(overrides=overrides)
    model = build_model(cfg.model, DataSchema.for_shape((1, 28, 28), 2, None))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    xb = torch.bernoulli(torch.full((cfg.train.batch_size, 1, 28, 28), 0.13))
    times = []
    for _ in range(8):
        t0 = time.perf_counter()
        terms = model(xb, None, cfg.objective.samples)
        loss = -(iwae_bound(terms) if cfg.objective.name == "iwae" else terms.elbo).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    step = sorted(times)[len(times) // 2]
    train = step * math.ceil(n_train / cfg.train.batch_size) * cfg.train.epochs
    rows = ROWS_PER_CALL["cpu"]
    x = torch.bernoulli(torch.full((1, 1, 28, 28), 0.13))
    per_row = math.inf
    with torch.no_grad():
        model.eval()
        for _ in range(4):
            t0 = time.perf_counter()
            model(x, None, rows)
            per_row = min(per_row, (time.perf_counter() - t0) / rows)
    return train, per_row * n_test * k_eval


def finished_row(
    out: Path, args: argparse.Namespace, n_test: int, overrides: dict[str, Any]
) -> tuple[dict[str, Any], float, float] | None:
    """(test evaluation, training seconds, evaluation seconds) of a run folder this script already
    finished with the same settings (the row's config overrides), epochs, K and test set, else None."""
    try:
        res = json.loads((out / "evaluation.json").read_text())["test"]
        epochs = read_metrics(out / "metrics.jsonl")
        cfg = json.loads((out / "config.json").read_text())
    except (OSError, KeyError, ValueError):
        return None
    if res.get("K") != args.k or res.get("n") != n_test or not epochs:
        return None
    if epochs[-1]["epoch"] != args.epochs and not args.max_minutes:  # a time-limited run may stop early
        return None
    root = cfg.get("config", cfg)
    for key, value in overrides.items():
        if key in SPEED_ONLY:
            continue
        node = root
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node != value:
            return None
    return res, sum(r["train_time_s"] for r in epochs), res.get("wall_seconds", res.get("seconds"))


def run_row(name: str, row: dict[str, Any], data: DataSet, args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.runs) / name
    done = finished_row(out, args, len(data.test), config_overrides(row, args)) if args.reuse else None
    if done:
        res, train_s, eval_s = done
        print(f"{name}: reusing the finished run in {out}")
    else:
        t0 = time.perf_counter()
        model = vaekit.train(out, data=data, overwrite=True, **config_overrides(row, args))
        train_s = time.perf_counter() - t0
        x_test = eval_view(data.test.x, "dynamic", BINARIZE_SEED)
        t0 = time.perf_counter()
        res = {"split": "test", **evaluate_model(model, x_test, k=args.k, seed=0, levels=2, progress=True)}
        eval_s = time.perf_counter() - t0
        record_evaluation(out, "test", res)
        save_evaluation_plots(out, res)
        render_report(out)
    trained = read_metrics(out / "metrics.jsonl")
    return {
        "row": name, "model": row["label"], "status": "done", "epochs": len(trained),
        "test_nll": res["nll"], "test_nll_sem": res["nll_sem"], "test_elbo": res["elbo"],
        "iwae_bounds": res["iwae_bounds"], "active_units": res["active_units"],
        "published_nll": row["published"], "published_epochs": PAPER_EPOCHS,
        "gap_to_published": res["nll"] - row["published"], "train_seconds": train_s,
        "train_seconds_in_epochs": sum(r["train_time_s"] for r in trained),
        "eval_seconds": eval_s, "run_dir": str(out),
    }


def table(rows: list[dict[str, Any]], k: int) -> str:
    lines = [f"| model | epochs | test NLL, K={k} (nats) | Burda et al. 2015 ({PAPER_EPOCHS} epochs) |",
             "|---|---|---|---|"]
    for r in rows:
        ours = (f"{r['test_nll']:.2f} ± {r['test_nll_sem']:.2f}" if r["status"] == "done" else r["status"])
        epochs = r["epochs"] if r["status"] == "done" else "-"
        lines.append(f"| {r['model']} | {epochs} | {ours} | {r['published_nll']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, required=True, help="training epochs per model (paper: 3280)")
    p.add_argument("--k", type=int, default=5000, help="importance samples for the test NLL")
    p.add_argument("--rows", default="vae-1,iwae-1,vae-2,iwae-2", help=f"which of: {', '.join(ROWS)}")
    p.add_argument("--subset", type=int, default=0, help="use the first N examples of each split (0 = all)")
    p.add_argument("--batch-size", type=int, default=20, help="training batch size (paper: 20)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (constant)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--device", default="auto", help="training device: auto | cpu | cuda")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every row, e.g. --set train.compile=off")
    p.add_argument("--runs", default="runs/mnist_nll", help="folder for the run folders")
    p.add_argument("--out", default="mnist_nll", help=f"result name under {RESULTS}")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="stop each row's training at the first epoch end after this many minutes (0 = off); "
                        "the table states the epochs each row reached")
    p.add_argument("--shared-machine", action="store_true", help="record that other work shared the machine")
    p.add_argument("--eta", action="store_true", help="print the estimated time and stop")
    p.add_argument("--reuse", action="store_true",
                   help="take rows whose run folder in --runs already finished with the same epochs, K and "
                        "test set from there instead of training them again (a long run stopped midway)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in names if r not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    data = load_dataset(f"npz:{require_mnist()}")
    if args.subset:
        data = subset(data, args.subset)
    two_layers = hierarchical_available()
    todo = [n for n in names if two_layers or ROWS[n]["arch"] is not TWO_LAYER]
    estimates = {n: probe_seconds(config_overrides(ROWS[n], args), len(data.train), len(data.test), args.k)
                 for n in todo}
    total = sum(a + b for a, b in estimates.values())
    print(f"{len(data.train)} train / {len(data.test)} test examples, {args.epochs} epochs, K={args.k}")
    for n, (tr, ev) in estimates.items():
        print(f"  ETA {n}: training ~{tr / 60:.1f} min, evaluation ~{ev / 60:.1f} min")
    print(f"  ETA all rows: ~{total / 3600:.2f} h (estimated from a few timed steps)")
    if args.eta:
        return
    results, started = [], time.perf_counter()
    for n in names:
        row = ROWS[n]
        if n not in todo:
            results.append({"row": n, "model": row["label"], "status": "not yet available",
                            "published_nll": row["published"], "published_epochs": PAPER_EPOCHS})
            continue
        results.append(run_row(n, row, data, args))
        done = time.perf_counter() - started
        left = sum(sum(estimates[m]) for m in todo[todo.index(n) + 1 :])
        print(f"{n}: test NLL {results[-1]['test_nll']:.2f} nats after {results[-1]['epochs']} epochs "
              f"(published {row['published']:.2f} after {PAPER_EPOCHS}); {done / 60:.1f} min so far, "
              f"~{left / 60:.1f} min left")
    print(table(results, args.k))
    save_result(args.out, {
        "what": "test -log p(x), dynamically binarized MNIST (IWAE split), vs Burda et al. 2015 Table 1",
        "k": args.k, "epochs": args.epochs, "max_minutes": args.max_minutes or None,
        "batch_size": args.batch_size, "lr": args.lr,
        "subset": args.subset or None, "test_binarization": f"once, torch seed {BINARIZE_SEED}",
        **({"machine_shared": "other processes shared the machine during the run"} if args.shared_machine
           else {}),
        "notes": "constant lr (paper: 3^i-epoch stages with lr 1e-3 * 10^(-i/7)); two-layer rows use "
                 "vaekit's top-down hierarchical model, not the paper's bottom-up one",
        "rows": results, "table": table(results, args.k),
    })


if __name__ == "__main__":
    main()
