"""MNIST leave-one-digit-out anomaly detection: vaekit's default recipe (configs/mnist-anomaly.yaml and
its default score) against PyOD's VAE, AutoEncoder, IsolationForest, KNN and ECOD on the same pixels.

For each held-out digit d: every method trains on the same (optionally subsampled) training images of
the other nine digits; the test set is the full MNIST test split with digit d as the anomaly. Reports
AUROC per digit and method (and for vaekit every score of ``vaekit.applications.anomaly.SCORES``),
training seconds per method, saved to benchmarks/results/anomaly.json.

    nice python3 benchmarks/anomaly.py  # 5000 training images, 5 epochs, K=10
    python3 benchmarks/anomaly.py --table  # the README's Markdown table, from the saved result file
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch
from _common import RESULTS, require_mnist, save_result

from vaekit.api import train
from vaekit.applications.anomaly import DEFAULT_SCORE, anomaly_scores, detection_metrics
from vaekit.data import load_dataset
from vaekit.data.base import Split
from vaekit.data.transforms import eval_view


def pyod_detectors(epochs: int) -> dict:
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.models.ecod import ECOD
    from pyod.models.iforest import IForest
    from pyod.models.knn import KNN
    from pyod.models.vae import VAE

    return {
        "pyod_vae": lambda: VAE(epoch_num=epochs, batch_size=128, verbose=0, random_state=0),
        "pyod_autoencoder": lambda: AutoEncoder(epoch_num=epochs, batch_size=128, verbose=0, random_state=0),
        "pyod_iforest": lambda: IForest(random_state=0),
        "pyod_knn": lambda: KNN(),
        "pyod_ecod": lambda: ECOD(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9")
    p.add_argument("--train-subsample", type=int, default=5000,
                   help="training images per digit run (0 = all)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--samples", type=int, default=10, help="importance samples per test example")
    p.add_argument("--out", default="/tmp/vaekit-anomaly-bench")
    p.add_argument("--name", default="anomaly")
    p.add_argument("--table", action="store_true", help="print the Markdown table of the saved result")
    a = p.parse_args()
    if a.table:
        print(markdown_table(json.loads((RESULTS / f"{a.name}.json").read_text())))
        return
    spec = f"npz:{require_mnist()}"
    full = load_dataset(spec)
    x_test = eval_view(full.test.x, "dynamic", 0)
    pixels_test = full.test.x.reshape(len(full.test), -1).float().div(255).numpy()
    y_test = full.test.y.numpy()
    rows: dict[str, dict] = {}
    digits = [int(c) for c in a.digits.split(",")]
    for d in digits:
        data = load_dataset(spec, exclude_classes=[d])
        n = len(data.train) if not a.train_subsample else min(a.train_subsample, len(data.train))
        idx = torch.from_numpy(np.sort(np.random.default_rng(d).permutation(len(data.train))[:n]))
        data = replace(data, train=Split(data.train.x[idx], data.train.y[idx]))
        is_anomaly = y_test == d
        row: dict = {"auroc": {}, "average_precision": {}, "fpr_at_95_recall": {}, "train_s": {}}
        t = time.perf_counter()
        model = train(f"{a.out}/digit{d}", preset="mnist-anomaly", data=data, overwrite=True,
                      **{"train.epochs": a.epochs, "data.exclude_classes": [d]})
        row["train_s"]["vaekit"] = time.perf_counter() - t
        t = time.perf_counter()
        reference = (eval_view(data.train.x, "dynamic", 0), None)  # the normal training images
        scores = anomaly_scores(model, x_test, k=a.samples, reference=reference)
        row["score_s_vaekit"] = time.perf_counter() - t
        for name, s in scores.items():
            key = "vaekit" if name == DEFAULT_SCORE else f"vaekit_{name}"
            for metric, value in detection_metrics(s, is_anomaly).items():
                row[metric][key] = value
        pixels = data.train.x.reshape(n, -1).float().div(255).numpy()
        for name, make in pyod_detectors(a.epochs).items():
            det = make()
            t = time.perf_counter()
            det.fit(pixels)
            row["train_s"][name] = time.perf_counter() - t
            for metric, value in detection_metrics(det.decision_function(pixels_test), is_anomaly).items():
                row[metric][name] = value
        rows[str(d)] = row
        print(d, {k: round(v, 4) for k, v in row["auroc"].items()}, flush=True)
        summarize(a, rows, done=len(rows) == len(digits))  # saved after every digit: a cut run keeps its part


def summarize(a: argparse.Namespace, rows: dict[str, dict], done: bool) -> None:
    """Print the AUROC table and save the result file (``complete`` false while digits are missing)."""
    methods = list(next(iter(rows.values()))["auroc"])
    mean = {m: float(np.mean([r["auroc"][m] for r in rows.values()])) for m in methods}
    wins = {m: sum(r["auroc"]["vaekit"] > r["auroc"][m] for r in rows.values())
            for m in methods if m != "vaekit"}
    print(f"{'method':<22}" + "".join(f"{d:>7}" for d in rows) + "   mean  train s")
    for m in methods:
        secs = [r["train_s"][m] for r in rows.values() if m in r["train_s"]]
        print(f"{m:<22}" + "".join(f"{r['auroc'][m]:7.3f}" for r in rows.values())
              + f"{mean[m]:7.3f}" + (f"{np.mean(secs):8.1f}" if secs else ""))
    save_result(a.name, {
        "complete": done,
        "setup": {"train_subsample": a.train_subsample or "all", "epochs": a.epochs,
                  "importance_samples": a.samples, "test": "full MNIST test split (10000)",
                  "note": "every method trains on the same subsample of the nine normal digits"
                          " (seeded per digit) for the same epochs; pixels in [0, 1] for PyOD, the run's"
                          " binarization for vaekit",
                  "default_score": DEFAULT_SCORE},
        "digits": rows, "mean_auroc": mean, "vaekit_wins_per_method": wins,
    })


def markdown_table(result: dict) -> str:
    """AUROC per held-out digit and mean, and mean training seconds, one row per method."""
    rows = result["digits"]
    digits = list(rows)
    lines = ["| method | " + " | ".join(digits) + " | mean | train s |",
             "|---" * (len(digits) + 3) + "|"]
    for m in result["mean_auroc"]:
        secs = [r["train_s"][m] for r in rows.values() if m in r["train_s"]]
        cells = [f"{rows[d]['auroc'][m]:.3f}" for d in digits]
        default = f"vaekit {result['setup']['default_score']} (default)"
        name = default if m == "vaekit" else m.replace("_", " ")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | **{result['mean_auroc'][m]:.3f}** | "
                     + (f"{np.mean(secs):.1f}" if secs else "") + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
