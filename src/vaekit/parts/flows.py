"""Invertible steps on z with log-det bookkeeping: inverse autoregressive flow (Kingma et al. 2016).

Each step maps z [N, d] (with a context h [N, c] from the encoder) to z' and returns
log|det dz'/dz| per row, so that log q(z') = log q(z) - log|det|.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class MaskedLinear(nn.Linear):
    """y = x (W * M)^T + b with a fixed 0/1 mask M that cuts the connections MADE forbids."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder (Germain et al. 2015): outputs[i] depend only on z[<i] (and the context).

    Two masked hidden layers of ``hidden`` units; the context enters the first one unmasked.
    Returns ``outputs_per_dim`` tensors [N, d].
    """

    def __init__(self, dim: int, hidden: int, context_dim: int = 0, outputs_per_dim: int = 2) -> None:
        super().__init__()
        deg_in = torch.arange(1, dim + 1)
        deg_h = torch.arange(hidden) % max(dim - 1, 1) + 1
        deg_out = deg_in.repeat(outputs_per_dim)
        self.inp = MaskedLinear(deg_h[:, None] >= deg_in[None, :])
        self.mid = MaskedLinear(deg_h[:, None] >= deg_h[None, :])
        self.out = MaskedLinear(deg_out[:, None] > deg_h[None, :])
        self.context = nn.Linear(context_dim, hidden, bias=False) if context_dim else None
        self.outputs_per_dim = outputs_per_dim

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        h = self.inp(z)
        if self.context is not None:
            h = h + self.context(context)
        h = self.mid(F.elu(h))
        return self.out(F.elu(h)).chunk(self.outputs_per_dim, dim=-1)


class IAFStep(nn.Module):
    """One IAF step, the numerically stable form of Kingma et al. 2016:
    [m, s] = MADE(z, h); sigma = sigmoid(s + 2); z' = sigma * z + (1 - sigma) * m; log|det| = sum log sigma.
    The bias of 2 starts every step close to the identity."""

    def __init__(self, dim: int, hidden: int, context_dim: int = 0) -> None:
        super().__init__()
        self.made = MADE(dim, hidden, context_dim)

    def forward(
        self, z: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        m, s = self.made(z, context)
        log_sigma = F.logsigmoid(s + 2.0)
        sigma = log_sigma.exp()
        return sigma * z + (1 - sigma) * m, log_sigma.sum(-1)


class IAF(nn.Module):
    """A stack of IAF steps; the order of z is reversed between steps (a permutation: log-det 0)
    so that every dimension can depend on every other after two steps."""

    def __init__(self, dim: int, steps: int, hidden: int, context_dim: int = 0) -> None:
        super().__init__()
        self.steps = nn.ModuleList(IAFStep(dim, hidden, context_dim) for _ in range(steps))

    def forward(
        self, z: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """z [N, d], context [N, c] -> (f(z) [N, d], log|det df/dz| [N])."""
        log_det = z.new_zeros(z.shape[:-1])
        for i, step in enumerate(self.steps):
            if i:
                z = z.flip(-1)
            z, ld = step(z, context)
            log_det = log_det + ld
        return z, log_det


__all__ = ["IAF", "IAFStep", "MADE", "MaskedLinear"]
