"""The files a trained model leaves for a person: sample and reconstruction grids, the test-set ELBO,
curves, and the report rendered from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vaekit.config import Config
from vaekit.data import DataSet
from vaekit.data.transforms import eval_view
from vaekit.evaluation.elbo import evaluate_elbo
from vaekit.models import VAE
from vaekit.runs import folder as rd
from vaekit.runs.metrics import read_metrics
from vaekit.runs.report import record_evaluation, render_report
from vaekit.viz import save_curves, save_grid, save_pairs


def sample_images(model: VAE, n: int, seed: int, num_classes: int | None) -> torch.Tensor:
    """n samples (likelihood means) under a fixed seed; per class, in rows, for a conditional model."""
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    y = None
    if model.num_classes:
        y = torch.arange(n, device=g.device) % model.num_classes
    return model.sample(n, y=y, generator=g)


def write_outputs(out: Path, model: VAE, cfg: Config, data: DataSet, device: torch.device) -> None:
    """Samples, reconstructions, test-set ELBO, curves and report for a trained model."""
    out = Path(out)
    samples = sample_images(model, cfg.train.num_samples, cfg.train.seed, data.num_classes)
    x_test = eval_view(data.test.x, cfg.data.binarize, cfg.data.binarize_seed)
    y_test = data.test.y
    if data.kind == "image":
        save_grid(samples, out / "samples.png")
        shown, labels = x_test, y_test
        if not len(data.test):  # vaekit.VAE (the estimator) holds out a validation split only
            shown, labels = eval_view(data.valid.x, cfg.data.binarize, cfg.data.binarize_seed), data.valid.y
        xs = shown[:32].to(device)
        ys = None if labels is None else labels[:32].to(device)
        if len(xs):
            save_pairs(xs, model.reconstruct(xs, ys), out / "reconstructions.png", n=32)
    elif data.columns:  # a table: rows drawn from p(x|z), decoded into the table's columns
        from vaekit.data.table_codec import decode

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.train.seed)
            rows = model.sample(cfg.train.num_samples, mean=False)
        decode(rows.cpu().numpy(), data.columns).to_csv(out / "samples.csv", index=False)
    else:
        np.save(out / "samples.npy", samples.cpu().numpy())
    if len(data.test):
        test = evaluate_elbo(model, x_test, y_test, cfg.train.eval_batch_size, cfg.data.binarize_seed)
        record_evaluation(out, "test", test)
    records = read_metrics(out / rd.METRICS) if (out / rd.METRICS).is_file() else []
    if records:
        save_curves(records, out / "curves.png")
    render_report(out)
