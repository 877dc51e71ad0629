"""Denoising and completion (inpainting) with a trained VAE, scored against baselines in the same call.

``denoise`` corrupts clean examples with a noise (``vaekit.data.corruption``) and restores them as the
mean of p(x | z = E_q[z | x~]); ``complete_images`` hides the entries a mask marks missing and fills them
in from p(x_mis | x_obs) (``vaekit.models.completion``). Each returns the corrupted, restored and original
examples and a table of numbers per row of the comparison:

- ``mse``: mean squared pixel error against the original, over the scored entries (all entries for
  denoising, the missing ones for completion); ``psnr`` = 10 log10(1 / mse) in dB (data in [0, 1]).
- ``loglik``: log p(x_ref | z = E_q[z | image]) in nats per example, the likelihood the latent of the
  row's image gives the reference entries: the observed entries of the original for completion (a
  completion that conditions on them properly keeps this high), all of the original for denoising.

Rows: ``corrupted`` (the input as given: noisy, or with the missing entries at 0), ``restored``, and for
completion ``posterior-mean`` (the missing entries from a plain reconstruction of the zero-filled input,
the baseline that ignores that the zeros are not data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from vaekit.data.corruption import MaskSpec, Noise
from vaekit.errors import DataError
from vaekit.models.completion import DEFAULT_METHOD, observed_log_prob


@dataclass
class Restoration:
    """What a restoration produced: [N, *event] tensors, the observed-entries mask for completion (True =
    observed; None for denoising), and ``scores``: {row name: {mse, psnr, loglik}}."""

    corrupted: torch.Tensor
    restored: torch.Tensor
    original: torch.Tensor
    observed: torch.Tensor | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)


def _check_unit(x: torch.Tensor) -> None:
    if bool(((x < 0) | (x > 1)).any()):
        raise DataError(
            f"the data spans [{float(x.min()):g}, {float(x.max()):g}]; noise and masks work on values in "
            "[0, 1]",
            "use data scaled to [0, 1] (images), as the built-in data sets and .npz images are",
        )


def latent_loglik(
    model: nn.Module, images: torch.Tensor, reference: torch.Tensor, scored: torch.Tensor,
    y: torch.Tensor | None = None,
) -> torch.Tensor:
    """log p(reference | z = E_q[z | images]) summed over the ``scored`` entries, per example [N]."""
    px = model.decode(model.encode(images, y).mean, y)
    return observed_log_prob(px, reference, scored.to(reference.dtype))


def score(
    model: nn.Module, image: torch.Tensor, original: torch.Tensor, error_at: torch.Tensor,
    loglik_at: torch.Tensor, y: torch.Tensor | None = None,
) -> dict[str, float]:
    """The row's numbers: mse and psnr over the ``error_at`` entries, mean ``latent_loglik`` over the
    ``loglik_at`` entries of the original."""
    weight = error_at.to(original.dtype)
    mse = float(((image - original) ** 2 * weight).sum() / weight.sum().clamp(min=1))
    psnr = 10 * math.log10(1 / mse) if mse > 0 else math.inf
    loglik = float(latent_loglik(model, image, original, loglik_at, y).mean())
    return {"mse": mse, "psnr": psnr, "loglik": loglik}


@torch.no_grad()
def denoise(
    model: nn.Module, x: torch.Tensor, noise: Noise, y: torch.Tensor | None = None, seed: int = 0
) -> Restoration:
    """x [N, *event] in [0, 1] corrupted by ``noise`` (seeded), restored as the mean of
    p(x | z = E_q[z | x~]), scored against the corrupted input."""
    x = model.batch(x)
    _check_unit(x)
    noisy = noise(x, torch.Generator(device=x.device).manual_seed(seed))
    restored = model.reconstruct(noisy, y)
    every = torch.ones_like(x, dtype=torch.bool)
    scores = {name: score(model, image, x, every, every, y)
              for name, image in (("corrupted", noisy), ("restored", restored))}
    return Restoration(noisy, restored, x, None, scores)


@torch.no_grad()
def complete_images(
    model: nn.Module, x: torch.Tensor, mask: MaskSpec, y: torch.Tensor | None = None, seed: int = 0,
    method: str = DEFAULT_METHOD, k: int | None = None, rounds: int | None = None,
) -> Restoration:
    """x [N, *event] in [0, 1] with the entries ``mask`` marks missing hidden (a ``random`` mask drawn
    from ``seed``), filled in by ``model.complete`` (``method``, ``k``, ``rounds``; sampling seeded by
    ``seed``) and scored against the zero-filled input and the posterior-mean fill. Observed entries are
    returned exactly as given."""
    x = model.batch(x)
    _check_unit(x)
    observed = mask(tuple(x.shape[1:]), x.shape[0], torch.Generator().manual_seed(seed)).to(x.device)
    if bool(observed.all()):
        raise DataError(f"the mask {mask.spec!r} leaves no entry missing",
                        "give a mask with black (missing) pixels, or another mask spec")
    hidden = x.masked_fill(~observed, 0.0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        restored = model.complete(hidden, observed, y, k=k, rounds=rounds, method=method)
    recon = model.reconstruct(hidden, y)
    baseline = torch.where(observed, x, recon)
    rows = (("corrupted", hidden), ("posterior-mean", baseline), ("restored", restored))
    scores = {name: score(model, image, x, ~observed, observed, y) for name, image in rows}
    return Restoration(hidden, restored, x, observed, scores)


__all__ = ["Restoration", "complete_images", "denoise", "latent_loglik", "score"]
