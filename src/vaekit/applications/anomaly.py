"""Per-example anomaly scores of a trained VAE (in nats; higher = more anomalous) and the detection
metrics that compare them with known anomaly labels.

Scores, all from one set of K posterior samples of ``vaekit.evaluation.likelihood.importance_sample``:

- ``neg_elbo``: -ELBO = E_q[-log p(x|z)] + KL(q(z|x) || p(z)).
- ``nll``: the importance-sampled -log p(x) = -log (1/K) sum_k p(x, z_k) / q(z_k|x).
- ``complexity``: the input-complexity correction of Serra et al. (2020), S(x) = -log p(x) - L(x) with
  L(x) the zlib-compressed length of x's 8-bit pixels in nats (bits x ln 2): simple inputs (few strokes,
  e.g. the digit 1) get a high likelihood under any model, and subtracting what a generic compressor
  already explains leaves what is specific to the training distribution.
- ``latent_density`` (with reference examples, e.g. the training split): -log r(mu(x)), r a Gaussian
  mixture (``LATENT_COMPONENTS`` components, full covariance) fitted to the posterior means of the
  reference; it asks whether x's code lies where the normal data's codes do, which the pixel-level
  likelihood of a simple input does not (Nalisnick et al. 2019). The default: best mean AUROC of these
  scores on the MNIST leave-one-digit-out benchmark (benchmarks/results/anomaly.json).
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

SCORES = ("neg_elbo", "nll", "complexity", "latent_density")
DEFAULT_SCORE = "latent_density"
LATENT_COMPONENTS = 10
REFERENCE_EXAMPLES = 10_000  # reference codes the latent density is fitted to (seeded subsample)


def compressed_nats(x: torch.Tensor) -> np.ndarray:
    """L(x): zlib (level 9) length of each example's values as 8-bit bytes, in nats (8 ln 2 per byte)."""
    u8 = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).reshape(x.shape[0], -1).numpy()
    return np.array([len(zlib.compress(row.tobytes(), 9)) * 8 * math.log(2) for row in u8])


@torch.no_grad()
def posterior_means(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
                    batch_size: int = 1000) -> np.ndarray:
    """E_q[z|x] per example (for a hierarchical model: all layers, one row per example)."""
    was_training = model.training
    model.eval()
    rows = [model.encode(x[i:i + batch_size], None if y is None else y[i:i + batch_size]).mean
            for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(rows).double().cpu().numpy()


def reference_subsample(x: torch.Tensor, y: torch.Tensor | None = None, n: int = REFERENCE_EXAMPLES,
                        seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """At most ``n`` examples of ``x`` (and their labels), drawn without replacement, seeded."""
    if len(x) <= n:
        return x, y
    idx = torch.from_numpy(np.sort(np.random.default_rng(seed).permutation(len(x))[:n]))
    return x[idx], None if y is None else y[idx]


class LatentDensity:
    """r(z): a Gaussian mixture fitted to the posterior means of normal (reference) examples."""

    def __init__(self, codes: np.ndarray, components: int = LATENT_COMPONENTS, seed: int = 0):
        from sklearn.mixture import GaussianMixture

        n = len(codes)
        if n < 2:
            raise ConfigError(f"the latent density needs reference examples, got {n}",
                              "score a run whose training split has examples, or pick another --score")
        self.mixture = GaussianMixture(min(components, n // 2), covariance_type="full", reg_covar=1e-4,
                                       random_state=seed).fit(codes)

    def nll(self, codes: np.ndarray) -> np.ndarray:
        """-log r(z) per row, in nats."""
        return -self.mixture.score_samples(codes)

    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted mixture as named arrays (weights, means, covariances; to save as safetensors)."""
        m = self.mixture
        return {"weights": m.weights_, "means": m.means_, "covariances": m.covariances_,
                "precisions_cholesky": m.precisions_cholesky_}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> LatentDensity:
        """The density that ``arrays()`` described, without refitting."""
        from sklearn.mixture import GaussianMixture

        density = cls.__new__(cls)
        m = GaussianMixture(len(arrays["weights"]), covariance_type="full")
        m.weights_, m.means_ = arrays["weights"], arrays["means"]
        m.covariances_, m.precisions_cholesky_ = arrays["covariances"], arrays["precisions_cholesky"]
        m.n_features_in_ = m.means_.shape[1]
        density.mixture = m
        return density


def anomaly_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, k: int = 100,
                   seed: int = 0, reference: tuple[torch.Tensor, torch.Tensor | None] | None = None,
                   density: LatentDensity | None = None) -> dict[str, np.ndarray]:
    """Every score of ``SCORES`` per example of ``x`` (as the model sees it), from K posterior samples.

    ``latent_density`` needs normal examples ``reference = (x_ref, y_ref)`` (the training split) or a
    ``density`` already fitted to them; without either it is left out.
    """
    s = importance_sample(model, x, y, k=k, seed=seed)
    nll = (-s.log_px).numpy()
    out = {"neg_elbo": (s.recon + s.kl).numpy(), "nll": nll, "complexity": nll - compressed_nats(x)}
    if density is None and reference is not None:
        density = LatentDensity(posterior_means(model, *reference), seed=seed)
    if density is not None:
        out["latent_density"] = density.nll(posterior_means(model, x, y))
    return out


def anomaly_score(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, k: int = 100,
                  seed: int = 0, density: LatentDensity | None = None) -> np.ndarray:
    """One score of ``SCORES`` per example, computing only what it needs: ``latent_density`` (which
    needs ``density``) the posterior means, the others one pass of K posterior samples."""
    if name not in SCORES:
        raise ConfigError(f"unknown anomaly score {name!r}", f"use one of: {', '.join(SCORES)}")
    if name == "latent_density":
        if density is None:
            raise ConfigError("the latent_density score needs a density fitted to normal examples",
                              "fit a LatentDensity to the posterior means of the training split")
        return density.nll(posterior_means(model, x, y))
    return anomaly_scores(model, x, y, k, seed)[name]

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
