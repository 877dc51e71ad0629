"""Residual convolutional towers for images of any size (He et al. 2016), the backbone of the
hierarchical VAE as in the IAF paper and NVAE: stride-2 stages each followed by residual blocks.

The encoder and decoder are the conv backbone's with their stages replaced, so the dense heads
(and the condition vector handling) are shared with ``ConvEncoder`` / ``ConvDecoder``, and so is the
shape arithmetic: the residual blocks keep a map's size, the stride-2 stages floor odd sides and the
decoder's transposed convs restore them with output padding (``vaekit.nets.conv``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vaekit.errors import ConfigError
from vaekit.nets.conv import ConvDecoder, ConvEncoder, check_image_size, up_stages, upsample
from vaekit.nets.mlp import ACTIVATIONS


class ResBlock(nn.Module):
    """y = x + conv3x3(act(conv3x3(act(x)))): a pre-activation residual block keeping the shape."""

    def __init__(self, channels: int, activation: str = "relu") -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        self.body = nn.Sequential(
            act(),
            nn.Conv2d(channels, channels, 3, padding=1),
            act(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _blocks(channels: int, n: int, activation: str) -> list[nn.Module]:
    if n < 0:
        raise ConfigError(f"model.net.blocks must be >= 0, got {n}", "set it to e.g. 1")
    return [ResBlock(channels, activation) for _ in range(n)]


class ResNetEncoder(ConvEncoder):
    """x [B, C, H, W] -> per stage: a stride-2 conv and ``blocks`` residual blocks; then the dense head."""

    def __init__(
        self,
        event_shape: tuple[int, ...],
        out_dim: int,
        channels: list[int],
        hidden: int = 256,
        activation: str = "relu",
        cond_dim: int = 0,
        blocks: int = 1,
    ) -> None:
        check_image_size(event_shape, len(channels), "resnet")
        super().__init__(event_shape, out_dim, channels, hidden, activation, cond_dim)
        layers: list[nn.Module] = []
        c = event_shape[0]
        for i, ch in enumerate(channels):
            if i:
                layers.append(ACTIVATIONS[activation]())
            layers += [nn.Conv2d(c, ch, 4, stride=2, padding=1), *_blocks(ch, blocks, activation)]
            c = ch
        self.features = nn.Sequential(*layers, ACTIVATIONS[activation]())


class ResNetDecoder(ConvDecoder):
    """The dense head to the smallest map, then per stage: residual blocks and a stride-2 transposed
    conv up; the last one produces the likelihood parameters [N, C * params_per_dim, H, W]."""

    def __init__(
        self,
        latent_dim: int,
        event_shape: tuple[int, ...],
        params_per_dim: int,
        channels: list[int],
        hidden: int = 256,
        activation: str = "relu",
        cond_dim: int = 0,
        blocks: int = 1,
    ) -> None:
        check_image_size(event_shape, len(channels), "resnet")
        super().__init__(latent_dim, event_shape, params_per_dim, channels, hidden, activation, cond_dim)
        layers: list[nn.Module] = []
        for a, b, size, target in up_stages(channels, event_shape[0] * params_per_dim, event_shape):
            layers += [*_blocks(a, blocks, activation), ACTIVATIONS[activation]()]
            layers.append(upsample(a, b, size, target))
        self.body = nn.Sequential(*layers)


__all__ = ["ResBlock", "ResNetDecoder", "ResNetEncoder"]
