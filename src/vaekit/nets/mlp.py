"""Fully connected encoder and decoder: any event shape, flattened."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn as nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU, "tanh": nn.Tanh, "silu": nn.SiLU}


class Dense(nn.Module):
    """y = x W + b with W stored [in, out] (nn.Linear stores W^T), initialized as nn.Linear is.

    The layout was a speed trick (under bf16 autocast the weight gradient x^T g comes out [in, out],
    so casting it back to the fp32 weight is a contiguous copy, where nn.Linear's arrives transposed).
    Re-measured at 2.6 % of a CPU step of the MNIST MLP (benchmarks/results/speed-tricks.json), below
    the 5 % bar for tricks; it stays only because it is the saved files' layout (``net.i.weight`` is
    [in, out], and old runs load only into it). Dropping it takes a checkpoint-format migration that
    transposes these weights and their Adam moments in older files. ``linear_layers`` hides the
    layout from init code."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        ref = nn.Linear(in_features, out_features)  # its initialization, transposed
        self.weight = nn.Parameter(ref.weight.detach().t().contiguous())
        self.bias = nn.Parameter(ref.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x, self.weight) if x.dim() == 2 else x @ self.weight + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[0]}, out_features={self.weight.shape[1]}"


def linear_layers(module: nn.Module) -> Iterator[tuple[nn.Module, str]]:
    """Every nn.Linear and Dense layer of ``module``, each with the ``nn.init.kaiming_*`` mode that
    reads its fan-in from its weight ("fan_in" for nn.Linear's [out, in], "fan_out" for Dense's
    [in, out])."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | Dense):
            yield layer, "fan_out" if isinstance(layer, Dense) else "fan_in"


def mlp(sizes: list[int], activation: str = "relu", linear: type[nn.Module] = nn.Linear) -> nn.Sequential:
    """``linear`` layers of the given sizes with an activation between (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(linear(a, b))
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
        self.net = mlp([math.prod(event_shape) + cond_dim, *hidden, out_dim], activation, Dense)

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
        self.net = mlp([latent_dim + cond_dim, *hidden, math.prod(self.out_shape)], activation, Dense)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if c is not None:
            z = torch.cat([z, c], dim=1)
        return self.net(z).view(z.shape[0], *self.out_shape)
