"""Denoising on MNIST: a plain VAE against denoising VAEs (objective.denoise, Im et al. 2017) trained with the
same budget, each noise restored as the mean of p(x | z = E_q[z | x~]) (vaekit.applications.restoration):
MSE and PSNR against the clean test image, and log p(x_clean | z = E_q[z | image]), for the corrupted input
and each model's restoration, beside each model's reconstruction of the clean image (its floor). One DVAE
per noise (``matched``), and the first noise's DVAE on every noise (``cross``: trained on one noise, tested
on the others).

    python benchmarks/denoise.py                                  # MNIST, 10 epochs each, all 10k test images
    python benchmarks/denoise.py --epochs 5 --train-examples 20000 --threads 1   # on a busy shared CPU
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from _common import require_mnist, save_result

import vaekit
from vaekit.api import load_split
from vaekit.applications.restoration import denoise, score
from vaekit.data.corruption import parse_noise

NOISES = ("flip:0.1", "gaussian:0.3", "saltpepper:0.1")


def training_data(train_examples: int | None) -> str:
    """The MNIST spec to train on: the shared file, or an .npz of its first ``train_examples`` training
    images (validation and test splits unchanged)."""
    path = require_mnist()
    if train_examples is None:
        return f"npz:{path}"
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    for key in ("x_train", "y_train"):
        arrays[key] = arrays[key][:train_examples]
    sub = tempfile.mkdtemp() + "/mnist-sub.npz"
    np.savez(sub, **arrays)
    return f"npz:{sub}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train-examples", type=int, default=None, help="first N training images (default all)")
    p.add_argument("-n", type=int, default=None, help="test examples (default all)")
    p.add_argument("--threads", type=int, default=None, help="train.threads (default: the preset's)")
    p.add_argument("--name", default="denoise")
    a = p.parse_args()
    data = training_data(a.train_examples)
    settings = {"train.epochs": a.epochs, "train.progress": False}
    if a.threads is not None:
        settings["train.threads"] = a.threads
    models, train_s = {}, {}
    for name, noise in [("plain", "none")] + [(f"dvae {n}", n) for n in NOISES]:
        out = tempfile.mkdtemp()
        start = time.perf_counter()
        overrides = {**settings, "objective.denoise": noise}
        models[name] = vaekit.train(out, preset="mnist-mlp", data=data, **overrides)
        train_s[name] = time.perf_counter() - start
        print(f"trained {name} in {train_s[name]:.0f} s")
    x, _ = load_split(out, "test")
    x = x[: a.n]
    every = torch.ones_like(x, dtype=torch.bool)
    with torch.no_grad():  # each model's floor: its reconstruction of the clean images
        clean = {name: score(model, model.reconstruct(x), x, every, every) for name, model in models.items()}
    print("clean", {k: round(v["mse"], 5) for k, v in clean.items()})
    rows = {}
    for spec in NOISES:
        noise = parse_noise(spec)
        plain = denoise(models["plain"], x, noise, seed=0).scores
        row = {"corrupted": {"mse": plain["corrupted"]["mse"], "psnr": plain["corrupted"]["psnr"],
                             "loglik_plain": plain["corrupted"]["loglik"]},
               "plain": plain["restored"]}
        for label, model in (("cross", f"dvae {NOISES[0]}"), ("matched", f"dvae {spec}")):
            res = denoise(models[model], x, noise, seed=0).scores
            row[label] = {**res["restored"], "model": model}
        rows[spec] = row
        print(spec, {k: round(v["mse"], 5) for k, v in row.items()})
    save_result(a.name, {"data": "mnist (binarized test split, binarize_seed 0)", "preset": "mnist-mlp",
                         "epochs": a.epochs, "train_examples": a.train_examples or 50_000, "n": x.shape[0],
                         "train_seconds": train_s, "noise_seed": 0, "clean": clean, "results": rows})


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
