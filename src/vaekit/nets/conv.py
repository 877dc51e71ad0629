"""Convolutional encoder and decoder for images of any height and width, and the shape arithmetic of
their stride-2 stages (``stage_sizes``, ``check_image_size``), the one place it is done.

Each encoder stage is a 4x4 convolution with stride 2 and padding 1, which maps a side s to
floor((s + 2 - 4) / 2) + 1 = floor(s / 2): an odd side loses its last row or column. Each decoder
stage is the transposed convolution with the same kernel, stride and padding, which maps s to 2 s, plus
its ``output_padding`` (0 or 1, no parameters): the decoder pads by the side the encoder floored, so
stage by stage it restores the encoder's map sizes in reverse and ends at exactly H x W. Output padding,
not a final crop, because it keeps every intermediate map the size of the encoder's (the hierarchical
model's latent maps and any skip between the towers line up), wastes no computation, and is 0 on sides
that halve evenly, so those models are the same modules with the same parameters as before.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vaekit.errors import ConfigError
from vaekit.nets.mlp import ACTIVATIONS


def stage_sizes(height: int, width: int, stages: int) -> list[tuple[int, int]]:
    """The feature-map sizes (H, W) from the image through each stride-2 stage: ``stages`` + 1 sizes,
    each side the floor of half the one before; the last is the smallest map (the decoder's start)."""
    sizes = [(height, width)]
    for _ in range(stages):
        h, w = sizes[-1]
        sizes.append((h // 2, w // 2))
    return sizes


def check_image_size(event_shape: tuple[int, ...], stages: int, net: str) -> None:
    """Refuse images too small for ``stages`` stride-2 stages: the smallest map must keep at least one
    position per side (a side below 2 cannot be halved by the 4x4 convolution), so each side needs at
    least 2^stages pixels; and at least one stage."""
    if stages < 1:
        raise ConfigError(f"the {net} backbone needs at least one stride-2 stage; model.net.channels is "
                          "empty", "give model.net.channels one entry per stage, e.g. [32, 64]")
    least = 2 ** stages
    _, h, w = event_shape
    if min(h, w) < least:
        raise ConfigError(
            f"the {net} backbone with {stages} stride-2 stages needs images of at least {least}x{least} "
            f"pixels (each stage halves a side; the smallest map must keep one position); the data has "
            f"shape {tuple(event_shape)}",
            f"give model.net.channels at most {max(min(h, w).bit_length() - 1, 0)} entries, "
            "or use model.net=mlp, or enlarge the images",
        )


class ConvEncoder(nn.Module):
    """One stride-2 conv stage per ``channels`` entry, then a linear map to ``out_dim``."""

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
        c = event_shape[0]
        h, w = stage_sizes(*event_shape[1:], len(channels))[-1]
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        for ch in channels:
            layers += [nn.Conv2d(c, ch, 4, stride=2, padding=1), act()]
            c = ch
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


def upsample(a: int, b: int, size: tuple[int, int], target: tuple[int, int]) -> nn.ConvTranspose2d:
    """The stride-2 transposed conv from a map of ``size`` to one of ``target`` (each side twice the
    size's, or one more: the output padding the encoder's floor took away)."""
    pad = tuple(t - 2 * s for s, t in zip(size, target, strict=True))
    return nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, output_padding=pad)


Stage = tuple[int, int, tuple[int, int], tuple[int, int]]


def up_stages(channels: list[int], out_channels: int, event_shape: tuple[int, ...]) -> list[Stage]:
    """(in channels, out channels, map size, target size) of each decoder stage, smallest map first:
    channels reversed, then ``out_channels``; each stage restores the encoder's map size one stage up,
    the last one the image's H x W."""
    sizes = stage_sizes(*event_shape[1:], len(channels))[::-1]
    rev = channels[::-1]
    outs = [*rev[1:], out_channels]
    return [(a, b, sizes[i], sizes[i + 1]) for i, (a, b) in enumerate(zip(rev, outs, strict=True))]


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: linear to the smallest feature map (``start``, C x H x W), stride-2
    transposed convs up to the image's size."""

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
        act = ACTIVATIONS[activation]
        h, w = stage_sizes(*event_shape[1:], len(channels))[-1]
        self.start = (channels[-1], h, w)
        self.head = nn.Sequential(
            nn.Linear(latent_dim + cond_dim, hidden),
            act(),
            nn.Linear(hidden, channels[-1] * h * w),
            act(),
        )
        stages = up_stages(channels, event_shape[0] * params_per_dim, event_shape)
        ups = [upsample(*stage) for stage in stages]
        layers: list[nn.Module] = []
        for up in ups[:-1]:
            layers += [up, act()]
        self.body = nn.Sequential(*layers, ups[-1])

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if c is not None:
            z = torch.cat([z, c], dim=1)
        return self.body(self.head(z).view(z.shape[0], *self.start))


__all__ = ["ConvDecoder", "ConvEncoder", "check_image_size", "stage_sizes", "up_stages", "upsample"]
