"""An autoregressive likelihood over token sequences: p(x|z) = prod_t p(x_t | x_<t, z) by a GRU
whose first state comes from the decoder; ``log_prob`` reads x itself (teacher forcing)."""

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Distribution, constraints

from vaekit.config import PartConfig
from vaekit.errors import ConfigError
from vaekit.parts.likelihoods import Likelihood
from vaekit.registry import register


class TokenSequence(Distribution):
    arg_constraints: dict = {}
    support = constraints.real

    def __init__(self, state: torch.Tensor, net: "GRULikelihood") -> None:
        self.state, self.net = state, net
        super().__init__(state.shape[:-1], torch.Size([net.length]), validate_args=False)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.long()
        start = torch.full_like(tokens[:, :1], self.net.vocab)  # a start token before x_1
        logits = self.net.step(torch.cat([start, tokens[:, :-1]], 1), self.state)
        return F.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1).sum(-1)

    def _decode(self, pick) -> torch.Tensor:
        token = torch.full((self.state.shape[0], 1), self.net.vocab, device=self.state.device)
        h, out = torch.tanh(self.state).unsqueeze(0).contiguous(), []
        for _ in range(self.net.length):
            y, h = self.net.gru(self.net.embed(token), h)
            token = pick(self.net.head(y[:, -1])).unsqueeze(-1)
            out.append(token)
        return torch.cat(out, 1).float()

    @property
    def mean(self) -> torch.Tensor:  # greedy decoding
        return self._decode(lambda logits: logits.argmax(-1))

    def sample(self, sample_shape=()) -> torch.Tensor:
        return self._decode(lambda logits: torch.distributions.Categorical(logits=logits).sample())


@register("likelihood", "gru")
class GRULikelihood(Likelihood):
    discrete = True

    @dataclass
    class Config(PartConfig):
        hidden: int = 32  # GRU state size

    @classmethod
    def build(cls, cfg, schema):
        if schema.kind != "sequence":
            raise ConfigError("the gru likelihood models token sequences", "use sequence data")
        return cls(len(schema.vocabulary), schema.event_shape[0], cfg.hidden)

    def __init__(self, vocab: int, length: int, hidden: int) -> None:
        super().__init__()
        self.vocab, self.length, self.hidden = vocab, length, hidden
        self.embed = nn.Embedding(vocab + 1, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def step(self, inputs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Logits of x_t for every t given the inputs x_<t (teacher forcing)."""
        y, _ = self.gru(self.embed(inputs), torch.tanh(state).unsqueeze(0).contiguous())
        return self.head(y)

    def head_shape(self, schema) -> tuple[int, ...]:
        return (self.hidden,)

    def forward(self, params: torch.Tensor) -> Distribution:
        return TokenSequence(params, self)
