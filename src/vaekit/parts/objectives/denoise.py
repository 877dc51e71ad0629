"""The denoising criterion (Im et al. 2017): the encoder sees a corrupted copy x~ ~ p(x~ | x) of each
training batch and the likelihood scores the clean x,

    L_dvae = E_{p(x~|x)} E_{q(z|x~)} [log p(x|z) + log p(z) - log q(z|x~)],

so the trained model maps noisy inputs to clean reconstructions. Any objective can be made denoising
(``objective.denoise``, e.g. ``flip:0.1``): the wrapper carries the noise, and the training loop corrupts
each batch before the forward pass and hands the clean batch as the likelihood's target."""

from __future__ import annotations

import torch

from vaekit.data.corruption import Noise
from vaekit.parts.objectives.base import Objective
from vaekit.parts.output import Output


class Denoising(Objective):
    """``base`` trained on corrupted inputs: its loss and terms unchanged, ``noise`` the p(x~ | x) the
    loop applies to each batch's encoder input."""

    def __init__(self, base: Objective, noise: Noise) -> None:
        self.base, self.noise = base, noise
        self.samples, self.steady_from = base.samples, base.steady_from

    def __call__(self, out: Output, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.base(out, step)


__all__ = ["Denoising"]
