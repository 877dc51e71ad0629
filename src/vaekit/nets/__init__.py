"""Backbones mapping tensors to tensors, sized from the data's schema; each registered as a ``net``.

A net part builds an (encoder, decoder) pair: the encoder maps x [B, *event] (+ a condition) to
``encoder_out`` numbers, the decoder maps z [N, latent_dim] (+ condition) to the likelihood's head
shape. ``build(cfg, schema, latent_dim=, encoder_out=, head_shape=, cond_dim=)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

from vaekit import registry
from vaekit.config import PartConfig, require, require_sizes
from vaekit.errors import ConfigError
from vaekit.nets.conv import ConvDecoder, ConvEncoder, check_image_size, stage_sizes
from vaekit.nets.mlp import ACTIVATIONS, MLPDecoder, MLPEncoder
from vaekit.nets.resnet import ResNetDecoder, ResNetEncoder
from vaekit.registry import register
from vaekit.schema import DataSchema

Pair = tuple[nn.Module, nn.Module]


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r}",
                          f"set model.net.activation to one of: {', '.join(ACTIVATIONS)}")


@register("net", "mlp")
class MLPNet:
    """Fully connected encoder and decoder over the flattened example: any data kind."""

    @dataclass
    class Config(PartConfig):
        hidden: list[int] = field(default_factory=lambda: [512, 256])  # widths of the hidden layers
        activation: str = "relu"  # relu | gelu | elu | silu | tanh

        def __post_init__(self) -> None:
            require_sizes("model.net.hidden", self.hidden)
            _check_activation(self.activation)

    @staticmethod
    def build(cfg: Config, schema: DataSchema, latent_dim: int, encoder_out: int, head_shape: tuple[int, ...],
              cond_dim: int = 0) -> Pair:
        enc = MLPEncoder(schema.event_shape, encoder_out, cfg.hidden, cfg.activation, cond_dim)
        dec = MLPDecoder(latent_dim, head_shape, cfg.hidden[::-1], cfg.activation, cond_dim)
        return enc, dec


def _per_channel(schema: DataSchema, head_shape: tuple[int, ...], net: str) -> int:
    """The likelihood parameters per image channel a convolutional decoder must produce."""
    shape = schema.event_shape
    if not schema.is_image or len(head_shape) != 3 or head_shape[1:] != shape[1:] or head_shape[0] % shape[0]:
        raise ConfigError(
            f"the {net} backbone needs image data [C, H, W] and a likelihood with parameters at each pixel; "
            f"the data has shape {tuple(shape)} ({schema.kind}), the likelihood wants {tuple(head_shape)}",
            "use model.net=mlp",
        )
    return head_shape[0] // shape[0]


@dataclass
class ConvConfig(PartConfig):
    channels: list[int] = field(default_factory=lambda: [32, 64])  # channels of each stride-2 stage
    width: int = 256  # width of the dense head between the feature map and z
    activation: str = "relu"  # relu | gelu | elu | silu | tanh

    def __post_init__(self) -> None:
        require_sizes("model.net.channels", self.channels)
        require("model.net.width", self.width, self.width >= 1, ">= 1")
        _check_activation(self.activation)


@register("net", "conv")
class ConvNet:
    """Stride-2 convolutions down to a small map, a dense head; the decoder mirrors it back to exactly
    the image's H x W, any size of at least 2^stages per side (``vaekit.nets.conv``)."""

    Config = ConvConfig

    @staticmethod
    def build(cfg: ConvConfig, schema: DataSchema, latent_dim: int, encoder_out: int,
              head_shape: tuple[int, ...], cond_dim: int = 0) -> Pair:
        per_channel = _per_channel(schema, head_shape, "conv")
        shape = schema.event_shape
        check_image_size(shape, len(cfg.channels), "conv")
        enc = ConvEncoder(shape, encoder_out, cfg.channels, cfg.width, cfg.activation, cond_dim)
        dec = ConvDecoder(latent_dim, shape, per_channel, cfg.channels, cfg.width, cfg.activation, cond_dim)
        return enc, dec


@register("net", "resnet")
class ResNet:
    """The conv backbone with residual blocks after each stride-2 stage."""

    @dataclass
    class Config(ConvConfig):
        blocks: int = 1  # residual blocks after each stride-2 stage

        def __post_init__(self) -> None:
            super().__post_init__()
            require("model.net.blocks", self.blocks, self.blocks >= 0, ">= 0")

    @staticmethod
    def build(cfg: Config, schema: DataSchema, latent_dim: int, encoder_out: int,
              head_shape: tuple[int, ...], cond_dim: int = 0) -> Pair:
        per_channel = _per_channel(schema, head_shape, "resnet")
        args = (cfg.channels, cfg.width, cfg.activation, cond_dim, cfg.blocks)
        shape = schema.event_shape
        return ResNetEncoder(shape, encoder_out, *args), ResNetDecoder(latent_dim, shape, per_channel, *args)


def feature_map_size(event_shape: tuple[int, ...], channels: list[int]) -> tuple[int, int]:
    """(H, W) of the smallest feature map of a conv or resnet backbone with these stage ``channels`` on
    images [C, H, W]: the decoder's first map, where the hierarchical model's latent maps sit."""
    return stage_sizes(*event_shape[1:], len(channels))[-1]


def build_nets(cfg: PartConfig, schema: DataSchema, latent_dim: int, encoder_out: int,
               head_shape: tuple[int, ...], cond_dim: int = 0) -> Pair:
    """(encoder, decoder) of the net ``cfg.name`` names; refuses data shapes the backbone cannot take."""
    net = registry.lookup("net", cfg.name)
    return net.build(cfg, schema, latent_dim=latent_dim, encoder_out=encoder_out,
                     head_shape=tuple(head_shape), cond_dim=cond_dim)


__all__ = [
    "ConvDecoder", "ConvEncoder", "ConvNet", "MLPDecoder", "MLPEncoder", "MLPNet", "ResNet", "ResNetDecoder",
    "ResNetEncoder", "build_nets", "feature_map_size",
]
