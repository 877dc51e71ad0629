"""The evaluation's two figures: the IWAE bound against k, and the KL of each latent dimension."""

from __future__ import annotations

from pathlib import Path
from typing import Any

IWAE_PLOT = "evaluation-iwae.png"
KL_PLOT = "evaluation-kl.png"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_iwae_bounds(result: dict[str, Any], path: str | Path) -> None:
    """IWAE bound L_k against k (log axis) with the ELBO for reference; L_K is the log p(x) estimate."""
    plt = _pyplot()
    ks = sorted(int(j) for j in result["iwae_bounds"])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ks, [result["iwae_bounds"][str(j)] for j in ks], marker="o", label="IWAE bound $L_k$")
    ax.axhline(result["elbo"], color="grey", linestyle="--", label="ELBO (analytic KL where it exists)")
    ax.set_xscale("log")
    ax.set_xlabel("k (importance samples)")
    ax.set_ylabel("nats per example")
    ax.set_title(f"{result.get('split', '')}: log p(x) ≈ {-result['nll']:.3f} with K={result['K']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_kl_per_dim(result: dict[str, Any], path: str | Path) -> None:
    """Bars of the mean KL per latent dimension, coloured by Burda et al.'s active-unit criterion."""
    plt = _pyplot()
    kl = result["kl_per_dim"]
    var = result.get("posterior_mean_variance")
    threshold = result.get("active_threshold", 0.01)
    colors = ["tab:blue" if var is None or var[i] > threshold else "lightgrey" for i in range(len(kl))]
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(kl)), 4))
    ax.bar(range(len(kl)), kl, color=colors)
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL (nats per example)")
    active = "" if result.get("active_units") is None else (
        f", {result['active_units']} active (grey: Cov_x E_q[z_i] <= {threshold})"
    )
    ax.set_title(f"{result.get('split', '')}: KL per dimension{active}")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_evaluation_plots(out: str | Path, result: dict[str, Any]) -> list[Path]:
    """Write the figures that the result supports into folder ``out``; returns their paths."""
    out = Path(out)
    paths = [out / IWAE_PLOT]
    plot_iwae_bounds(result, paths[0])
    if result.get("kl_per_dim"):
        paths.append(out / KL_PLOT)
        plot_kl_per_dim(result, paths[1])
    return paths


__all__ = ["IWAE_PLOT", "KL_PLOT", "plot_iwae_bounds", "plot_kl_per_dim", "save_evaluation_plots"]
