"""Fully connected encoder and decoder: any event shape, flattened."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU, "tanh": nn.Tanh, "silu": nn.SiLU}


def legacy_transposed(model: nn.Module) -> list[str]:
    """The parameter names of the MLP nets' weights, which weight files of format 1 stored [in, out]
    (a speed trick, ``Dense``, measured at 2.6 % of a CPU step and removed): what loading such a file
    transposes to nn.Linear's [out, in]."""
    return [f"{name}.net.{i}.weight".lstrip(".") for name, module in model.named_modules()
            if isinstance(module, MLPEncoder | MLPDecoder)
            for i, layer in enumerate(module.net) if isinstance(layer, nn.Linear)]


def mlp(sizes: list[int], activation: str = "relu") -> nn.Sequential:
    """Linear layers of the given sizes with an activation between (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """x [B, *event] (+ condition c [B, k]) -> [B, out_dim]."""

    def __init__(
        self,
        event_shape: tuple[int, ...],
        out_dim: int,
        hidden: list[int],
        activation: str = "relu",
        cond_dim: int = 0,
    ) -> None:
        super().__init__()
        self.net = mlp([math.prod(event_shape) + cond_dim, *hidden, out_dim], activation)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        if c is not None:
            h = torch.cat([h, c], dim=1)
        return self.net(h)


class MLPDecoder(nn.Module):
    """z [N, d] (+ c [N, k]) -> likelihood parameters [N, *out_shape] (the likelihood's head shape)."""

    def __init__(
        self,
        latent_dim: int,
        out_shape: tuple[int, ...],
        hidden: list[int],
        activation: str = "relu",
        cond_dim: int = 0,
    ) -> None:
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.net = mlp([latent_dim + cond_dim, *hidden, math.prod(self.out_shape)], activation)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if c is not None:
            z = torch.cat([z, c], dim=1)
        return self.net(z).view(z.shape[0], *self.out_shape)
