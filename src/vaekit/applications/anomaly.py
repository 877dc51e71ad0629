"""Per-example anomaly scores of a trained VAE (in nats; higher = more anomalous) and the detection
metrics that compare them with known anomaly labels.

Scores, all from one set of K posterior samples of ``vaekit.evaluation.likelihood.importance_sample``:

- ``neg_elbo``: -ELBO = E_q[-log p(x|z)] + KL(q(z|x) || p(z)).
- ``nll``: the importance-sampled -log p(x) = -log (1/K) sum_k p(x, z_k) / q(z_k|x).
- ``complexity``: the input-complexity correction of Serra et al. (2020), S(x) = -log p(x) - L(x) with
  L(x) the zlib-compressed length of x's 8-bit pixels in nats (bits x ln 2): simple inputs (few strokes,
  e.g. the digit 1) get a high likelihood under any model, and subtracting what a generic compressor
  already explains leaves what is specific to the training distribution.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from vaekit.errors import ConfigError
from vaekit.evaluation.likelihood import importance_sample

SCORES = ("neg_elbo", "nll", "complexity")
DEFAULT_SCORE = "complexity"


def compressed_nats(x: torch.Tensor) -> np.ndarray:
    """L(x): zlib (level 9) length of each example's values as 8-bit bytes, in nats (8 ln 2 per byte)."""
    u8 = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).reshape(x.shape[0], -1).numpy()
    return np.array([len(zlib.compress(row.tobytes(), 9)) * 8 * math.log(2) for row in u8])


def anomaly_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, k: int = 100,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Every score of ``SCORES`` per example of ``x`` (as the model sees it), from K posterior samples."""
    s = importance_sample(model, x, y, k=k, seed=seed)
    nll = (-s.log_px).numpy()
    return {"neg_elbo": (s.recon + s.kl).numpy(), "nll": nll, "complexity": nll - compressed_nats(x)}


def fpr_at_recall(scores: np.ndarray, is_anomaly: np.ndarray, recall: float = 0.95) -> float:
    """The share of normal examples flagged by the highest threshold that flags ``recall`` of the
    anomalies (FPR at 95 % TPR for the default)."""
    fpr, tpr, _ = roc_curve(is_anomaly, scores)
    return float(fpr[np.searchsorted(tpr, recall, side="left")])


def detection_metrics(scores: np.ndarray, is_anomaly: np.ndarray) -> dict[str, float]:
    """AUROC, average precision (anomalies are the positive class) and FPR at 95 % recall."""
    is_anomaly = np.asarray(is_anomaly, dtype=bool)
    if is_anomaly.all() or not is_anomaly.any():
        raise ConfigError("detection metrics need both normal examples and anomalies in the data",
                          "mark some but not all examples as anomalies (e.g. --anomaly-classes)")
    return {"auroc": float(roc_auc_score(is_anomaly, scores)),
            "average_precision": float(average_precision_score(is_anomaly, scores)),
            "fpr_at_95_recall": fpr_at_recall(scores, is_anomaly)}


def calibrate(normal_scores: np.ndarray, fpr: float) -> float:
    """The threshold above which a share ``fpr`` of the given normal scores lies (the (1 - fpr)
    quantile): examples scoring above it are flagged."""
    if not 0 < fpr < 1:
        raise ConfigError(f"--fpr must be in (0, 1), got {fpr}", "pass e.g. --fpr 0.01")
    return float(np.quantile(normal_scores, 1 - fpr, method="higher"))


THRESHOLD_FILE = "anomaly-threshold.json"  # in the run folder, beside (never replacing) its evaluation


def save_threshold(run_dir: Path, score: str, threshold: float, fpr: float, n_normal: int) -> Path:
    """Record a calibrated threshold in the run folder (``THRESHOLD_FILE``)."""
    path = Path(run_dir) / THRESHOLD_FILE
    path.write_text(json.dumps({"score": score, "threshold": threshold, "fpr": fpr,
                                "calibrated_on": "valid", "n_normal": n_normal}, indent=2) + "\n")
    return path


def read_threshold(run_dir: Path) -> dict | None:
    """The run's calibrated threshold, or None when it has none."""
    path = Path(run_dir) / THRESHOLD_FILE
    return json.loads(path.read_text()) if path.exists() else None


def save_plot(path: Path, scores: np.ndarray, is_anomaly: np.ndarray, name: str) -> None:
    """ROC curve and the score histograms of normal examples and anomalies, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr, _ = roc_curve(is_anomaly, scores)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    a.plot(fpr, tpr)
    a.plot([0, 1], [0, 1], "k:", lw=0.8)
    a.set(xlabel="false positive rate", ylabel="true positive rate",
          title=f"ROC, AUROC {roc_auc_score(is_anomaly, scores):.3f}")
    bins = np.histogram_bin_edges(scores, 50)
    b.hist(scores[~is_anomaly], bins, alpha=0.6, density=True, label="normal")
    b.hist(scores[is_anomaly], bins, alpha=0.6, density=True, label="anomaly")
    b.set(xlabel=f"{name} score (nats)", ylabel="density")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
