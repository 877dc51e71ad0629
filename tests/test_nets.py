"""The fully connected building blocks."""

from __future__ import annotations

import math

import torch

from vaekit.nets.mlp import Dense


def test_dense_layer_is_a_transposed_linear_layer():
    """Dense computes x W + b with W stored [in, out], initialized from nn.Linear's own scheme."""
    torch.manual_seed(0)
    layer = Dense(7, 5)
    assert layer.weight.shape == (7, 5) and layer.bias.shape == (5,)
    assert layer.weight.abs().max() <= 1 / math.sqrt(7)  # nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    ref = torch.nn.Linear(7, 5)
    with torch.no_grad():
        ref.weight.copy_(layer.weight.t())
        ref.bias.copy_(layer.bias)
    x = torch.randn(4, 3, 7)
    torch.testing.assert_close(layer(x), ref(x))
    torch.testing.assert_close(layer(x[0]), ref(x[0]))
