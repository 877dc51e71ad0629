"""Backbones mapping tensors to tensors, chosen from the data's shape."""

from __future__ import annotations

import torch.nn as nn

from vaekit.errors import ConfigError
from vaekit.nets.conv import ConvDecoder, ConvEncoder
from vaekit.nets.mlp import ACTIVATIONS, MLPDecoder, MLPEncoder
from vaekit.nets.resnet import ResNetDecoder, ResNetEncoder


def choose_net(net: str, event_shape: tuple[int, ...]) -> str:
    """'auto' picks conv for images of side >= 16 whose sides divide by 4, else mlp."""
    if net == "auto":
        is_image = len(event_shape) == 3
        return "conv" if is_image and min(event_shape[1:]) >= 16 else "mlp"
    return net


def build_nets(
    net: str,
    event_shape: tuple[int, ...],
    latent_dim: int,
    encoder_out: int,
    params_per_dim: int,
    hidden: list[int],
    channels: list[int],
    activation: str,
    cond_dim: int = 0,
    blocks: int = 1,
) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) for the config's backbone; refuse shapes the backbone cannot take."""
    if activation not in ACTIVATIONS:
        raise ConfigError(
            f"unknown activation {activation!r}",
            f"set model.activation to one of: {', '.join(ACTIVATIONS)}",
        )
    kind = choose_net(net, event_shape)
    if kind == "mlp":
        enc = MLPEncoder(event_shape, encoder_out, hidden, activation, cond_dim)
        dec = MLPDecoder(latent_dim, event_shape, params_per_dim, hidden[::-1], activation, cond_dim)
        return enc, dec
    if kind == "conv":
        factor = 2 ** len(channels)
        if len(event_shape) != 3 or event_shape[1] % factor or event_shape[2] % factor:
            raise ConfigError(
                f"the conv backbone needs images whose height and width divide by {factor}; "
                f"the data has shape {tuple(event_shape)}",
                "use model.net=mlp, or fewer model.channels, or resize the images",
            )
        width = hidden[0] if hidden else 256
        enc = ConvEncoder(event_shape, encoder_out, channels, width, activation, cond_dim)
        dec = ConvDecoder(latent_dim, event_shape, params_per_dim, channels, width, activation, cond_dim)
        return enc, dec
    if kind == "resnet":  # the ResNet refuses shapes other than 28x28 and 32x32 itself
        args = (channels, hidden[0] if hidden else 256, activation, cond_dim, blocks)
        return ResNetEncoder(event_shape, encoder_out, *args), ResNetDecoder(
            latent_dim, event_shape, params_per_dim, *args
        )
    raise ConfigError(f"unknown network {net!r}", "set model.net to one of: auto, mlp, conv, resnet")


__all__ = [
    "build_nets", "choose_net", "MLPEncoder", "MLPDecoder", "ConvEncoder", "ConvDecoder", "ResNetEncoder",
    "ResNetDecoder",
]
