"""Completion methods compared (importance sampling, Metropolis-within-Gibbs, pseudo-Gibbs) against the
zero-filled input and the posterior-mean fill, on bottom and center masks: missing-part MSE, observed
log-likelihood given each image's latent (vaekit.applications.restoration), wall and CPU time (the
process's, all threads: with --threads 1 on a CPU shared with other jobs the steadier of the two).

    python benchmarks/completion.py                       # MNIST (../shared/data/mnist.npz), 5 epochs
    python benchmarks/completion.py --threads 1           # on a busy shared CPU
    python benchmarks/completion.py --data digits --epochs 30 --name completion-digits
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from _common import require_mnist, save_result

import vaekit
from vaekit.api import load_split
from vaekit.applications.restoration import complete_images
from vaekit.data.corruption import parse_mask
from vaekit.models.completion import METHODS


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=None, help="data spec (default: MNIST from ../shared/data)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("-n", type=int, default=500, help="test examples")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for training and completion")
    p.add_argument("--name", default="completion")
    a = p.parse_args()
    settings = {"train.epochs": a.epochs, "train.progress": False}
    if a.threads is not None:
        torch.set_num_threads(a.threads)
        settings["train.threads"] = a.threads
    data = a.data or f"npz:{require_mnist()}"
    preset = "digits-mlp" if data == "digits" else "mnist-mlp"
    out = tempfile.mkdtemp()
    start = time.perf_counter()
    model = vaekit.train(out, preset=preset, data=data, **settings)
    train_s = time.perf_counter() - start
    x, y = load_split(out, "test")
    x = x[: a.n]
    rows = {}
    for mask in ("bottom", "center"):
        for method in METHODS:
            t, cpu = time.perf_counter(), time.process_time()
            res = complete_images(model, x, parse_mask(mask), None, 0, method)
            rows[f"{mask}/{method}"] = {**res.scores, "seconds": time.perf_counter() - t,
                                        "cpu_seconds": time.process_time() - cpu}
            print(mask, method, {k: round(v["mse"], 5) for k, v in res.scores.items()})
    save_result(a.name, {"data": data, "preset": preset, "epochs": a.epochs, "n": x.shape[0],
                         "train_seconds": train_s, "budget": METHODS, "results": rows})


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
