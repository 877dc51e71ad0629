"""Convolutional encoder and decoder for images whose height and width divide by 4."""

from __future__ import annotations

import torch
import torch.nn as nn

from vaekit.nets.mlp import ACTIVATIONS


class ConvEncoder(nn.Module):
    """Two stride-2 conv stages per ``channels`` pair, then a linear map to ``out_dim``."""

    def __init__(
        self,
        event_shape: tuple[int, ...],
        out_dim: int,
        channels: list[int],
        hidden: int = 256,
        activation: str = "relu",
        cond_dim: int = 0,
    ) -> None:
        super().__init__()
        c, h, w = event_shape
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        for ch in channels:
            layers += [nn.Conv2d(c, ch, 4, stride=2, padding=1), act()]
            c, h, w = ch, h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(c * h * w + cond_dim, hidden), act(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_map(x, c)[0]

    def forward_map(
        self, x: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the output vector, the last feature map [B, C, H, W] it was computed from)."""
        m = self.features(x)
        h = m.flatten(1)
        if c is not None:
            h = torch.cat([h, c], dim=1)
        return self.head(h), m


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: linear to a small feature map, stride-2 transposed convs up."""

    def __init__(
        self,
        latent_dim: int,
        event_shape: tuple[int, ...],
        params_per_dim: int,
        channels: list[int],
        hidden: int = 256,
        activation: str = "relu",
        cond_dim: int = 0,
    ) -> None:
        super().__init__()
        c, h, w = event_shape
        act = ACTIVATIONS[activation]
        n = len(channels)
        self.start = (channels[-1], h >> n, w >> n)
        self.head = nn.Sequential(
            nn.Linear(latent_dim + cond_dim, hidden),
            act(),
            nn.Linear(hidden, channels[-1] * (h >> n) * (w >> n)),
            act(),
        )
        layers: list[nn.Module] = []
        rev = channels[::-1]
        for a, b in zip(rev[:-1], rev[1:], strict=True):
            layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), act()]
        layers.append(nn.ConvTranspose2d(rev[-1], c * params_per_dim, 4, stride=2, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if c is not None:
            z = torch.cat([z, c], dim=1)
        return self.body(self.head(z).view(z.shape[0], *self.start))
