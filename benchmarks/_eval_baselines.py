"""Independent per-example importance-sampling baselines for benchmarks/eval_speed.py, on the weights of
a vaekit MLP VAE (Gaussian posterior, N(0, I) prior, Bernoulli likelihood) copied into plain torch nets:

* ``formula_loop``: log p(x) written from the formula with torch.distributions, no vaekit code;
* ``pythae_nll``: pythae's own ``VAE.get_nll`` on a pythae VAE wrapping the same nets.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal


def plain_copy(net: nn.Sequential) -> nn.Sequential:
    """An independent copy of a vaekit net's layers (nn.Linear and activations) in eval mode."""
    return copy.deepcopy(nn.Sequential(*net)).eval()


def plain_nets(model: nn.Module) -> tuple[nn.Sequential, nn.Sequential]:
    """(encoder, decoder) of an unconditional mnist-mlp-style vaekit VAE as plain torch nets on flat x."""
    kinds = (type(model.posterior).__name__, type(model.prior).__name__, type(model.likelihood).__name__)
    if kinds != ("GaussianPosterior", "StandardNormal", "BernoulliLikelihood") or model.num_classes:
        raise SystemExit(f"the baselines need a Gaussian / N(0, I) / Bernoulli MLP VAE, got {kinds}")
    return plain_copy(model.encoder.net), plain_copy(model.decoder.net)


@torch.no_grad()
def formula_loop(enc: nn.Module, dec: nn.Module, x: torch.Tensor, k: int, per_call: int = 1) -> torch.Tensor:
    """log p(x) ~= logsumexp_j log w_j - log K per example, ``per_call`` examples with all K samples each
    in one call (the [K, 784] logits of an example are 16 MB at K = 5000: no chunking), [N] float64.

    q = N(mu, softplus(raw) + 1e-5) as vaekit's DiagonalGaussian.from_params; distributions are built
    with validate_args=False (argument checks are not part of the formula)."""
    zero = torch.zeros((), device=x.device)
    prior = Normal(zero, zero + 1, validate_args=False)
    out = torch.empty(x.shape[0], dtype=torch.float64)
    for i in range(0, x.shape[0], per_call):
        xb = x[i : i + per_call].flatten(1)  # [b, D]
        mu, raw = enc(xb).chunk(2, -1)
        q = Normal(mu, F.softplus(raw) + 1e-5, validate_args=False)
        z = q.rsample((k,))  # [K, b, d]
        log_w = (Bernoulli(logits=dec(z), validate_args=False).log_prob(xb).sum(-1)
                 + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1))
        out[i : i + xb.shape[0]] = torch.logsumexp(log_w.double(), 0) - math.log(k)
    return out


def pythae_vae(enc: nn.Module, dec: nn.Module, event_shape: tuple[int, ...], latent_dim: int) -> nn.Module:
    """A pythae 0.1.2 VAE (reconstruction_loss='bce') whose encoder gives (mu, log sigma^2) and decoder
    sigmoid(logits) from the given nets."""
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = enc

        def forward(self, x: torch.Tensor) -> ModelOutput:
            mu, raw = self.net(x.flatten(1)).chunk(2, -1)
            sigma = F.softplus(raw) + 1e-5
            return ModelOutput(embedding=mu, log_covariance=2 * torch.log(sigma))

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = dec

        def forward(self, z: torch.Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).view(z.shape[0], *event_shape))

    cfg = VAEConfig(input_dim=tuple(event_shape), latent_dim=latent_dim, reconstruction_loss="bce")
    return VAE(cfg, encoder=Encoder(), decoder=Decoder()).eval()


@torch.no_grad()
def pythae_nll(vae: nn.Module, x: torch.Tensor, k: int, batch_size: int = 100) -> float:
    """pythae's own estimate, -VAE.get_nll's mean log p(x) (it loops over examples and re-encodes x for
    every chunk of batch_size samples); run without autograd, as the other systems are."""
    return -float(vae.get_nll(x, n_samples=k, batch_size=batch_size))
