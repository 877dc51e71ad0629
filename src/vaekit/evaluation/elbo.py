"""The ELBO and its parts over a split: averaged in float64 over examples, deterministic per seed."""

from __future__ import annotations

from typing import Any

import torch

from vaekit.models.vae import VAE


@torch.no_grad()
def evaluate_elbo(
    model: VAE,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    batch_size: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean ELBO, reconstruction term -E_q log p(x|z) and KL in nats per example (one posterior
    sample per example, drawn under ``seed`` without touching the global RNG); for a hierarchical
    model also ``kl_layers``, the KL per stochastic layer (top first) of the same draws."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    layers: torch.Tensor | None = None
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size].to(device)
            yb = None if y is None else y[i : i + batch_size].to(device)
            t = model(xb, yb)
            recon = -t.log_px_z.mean(0)
            totals += torch.stack([t.elbo.sum(), recon.sum(), t.kl.sum()]).double()
            if "kl_layers" in t.extras:
                part = t.extras["kl_layers"].sum(0).double()
                layers = part if layers is None else layers + part
    model.train(was_training)
    elbo, recon, kl = (totals / x.shape[0]).tolist()
    out: dict[str, Any] = {"elbo": elbo, "recon": recon, "kl": kl, "n": int(x.shape[0])}
    if layers is not None:
        out["kl_layers"] = (layers / x.shape[0]).tolist()
    return out
