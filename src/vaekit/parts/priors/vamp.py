"""The VampPrior (Tomczak & Welling 2018): a mixture of the encoder's posteriors at learned
pseudo-inputs."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn

from vaekit.errors import ConfigError
from vaekit.parts.distributions import DiagonalGaussian
from vaekit.parts.priors.base import MixturePrior
from vaekit.parts.priors.mog import MixtureConfig
from vaekit.registry import register
from vaekit.schema import DataSchema


@register("prior", "vamp")
class VampPrior(MixturePrior):
    """p(z) = (1/K) sum_k q(z|u_k): the encoder's posterior at K learned pseudo-inputs u_k
    (Tomczak & Welling 2018). u_k = sigmoid(w_k) lies in (0, 1), like the data.

    The prior needs the model's encoder: the VAE calls ``bind(encode)`` when it is built, with
    ``encode`` mapping inputs to the diagonal-Gaussian part of q(z|x) (for a flow posterior, the
    flow's Gaussian base). The encoder is not registered here, so weights are stored once.
    """

    Config = MixtureConfig

    @classmethod
    def build(
        cls, cfg: MixtureConfig, schema: DataSchema, latent_dim: int, conditional: bool = False
    ) -> VampPrior:
        if conditional:
            raise ConfigError(
                "the VampPrior is a mixture of q(z|u_k) over unlabelled pseudo-inputs u_k, but a conditional "
                "model's encoder also needs a label for each u_k",
                "use model.prior=mog (or normal) with model.conditional, or unset model.conditional",
            )
        return cls(latent_dim, cfg.components, schema.event_shape)

    def __init__(self, latent_dim: int, components: int, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.pseudo_logits = nn.Parameter(0.1 * torch.randn(components, *event_shape))
        self._encode: Callable[[torch.Tensor], DiagonalGaussian] | None = None

    def bind(self, encode: Callable[[torch.Tensor], DiagonalGaussian]) -> None:
        self._encode = encode

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        return torch.sigmoid(self.pseudo_logits)

    def components(self) -> DiagonalGaussian:
        if self._encode is None:
            raise RuntimeError("VampPrior.bind(encode) was not called: build the prior inside a VAE")
        return self._encode(self.pseudo_inputs)

    def log_weights(self) -> torch.Tensor:
        k = self.pseudo_logits.shape[0]
        return self.pseudo_logits.new_full((k,), -math.log(k))
