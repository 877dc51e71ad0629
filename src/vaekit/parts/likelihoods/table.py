"""p(x|z) for a table row: one head per column from the schema, the columns' log-likelihoods summed
into nats per row, so the ELBO, IS-NLL and every objective and prior apply to tables unchanged.

Per column of the encoded row (``vaekit.schema.Column``):
- discrete: a softmax over its categories;
- numeric: a softmax over its modes m and, given the mode, alpha ~ N(a_m(z), s_m) with a learned
  scale per (column, mode); since v = mean_m + 4 std_m alpha, log p(m, v) = log p(m) + log N(alpha) -
  log(4 std_m) is a density of the value itself (nats of the data, not of the encoding). Encoding
  assigns each value its most responsible mode, so this is a lower bound on log sum_m p(m, v);
- missing indicator: a Bernoulli; a missing cell's value block is empty and scores nothing.
All blocks of a kind are scored at once through index tables (no Python loop over columns).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Distribution, constraints

from vaekit.errors import ConfigError
from vaekit.parts.likelihoods.base import Likelihood
from vaekit.registry import register
from vaekit.schema import DataSchema

MIN_LOG_SCALE = math.log(1e-3)  # alpha's scale floor: keeps a spike of equal values from an unbounded density


def _padded(blocks: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Index table [n, K_max] of (start, size) blocks, padding pointing at entry 0, and its valid mask."""
    k = max((size for _, size in blocks), default=1)
    ar = torch.arange(k)
    starts = torch.tensor([s for s, _ in blocks], dtype=torch.long).view(-1, 1)
    sizes = torch.tensor([n for _, n in blocks], dtype=torch.long).view(-1, 1)
    valid = ar < sizes
    return torch.where(valid, starts + ar, torch.zeros_like(starts)), valid


class TableLayout(nn.Module):
    """Where every block of an encoded row and of the decoder's head lies, as index buffers."""

    def __init__(self, schema: DataSchema) -> None:
        super().__init__()
        x_cat, p_cat, x_alpha, p_alpha, x_miss, p_miss, jac, cat_missing = [], [], [], [], [], [], [], []
        alpha_rows: list[int] = []  # each numeric column's mode block among the categorical blocks
        xo = po = 0
        for c in schema.columns:
            if c.value_width:  # the block's missing indicator: its index in x_miss, or -1 for none
                cat_missing.append(len(x_miss) if c.missing else -1)
            if c.discrete:
                x_cat.append((xo, c.value_width))
                p_cat.append((po, c.value_width))
                po += c.value_width
            elif c.numeric:
                m = len(c.modes)
                alpha_rows.append(len(x_cat))
                x_cat.append((xo, m))
                p_cat.append((po, m))
                x_alpha.append(xo + m)
                p_alpha.append((po + m, m))
                jac.append([math.log(4 * s) for _, s in c.modes])
                po += 2 * m
            xo += c.value_width
            if c.missing:
                x_miss.append(xo)
                p_miss.append(po)
                xo += 1
                po += 1
        self.head = po
        for name, blocks in (("x_cat", x_cat), ("p_cat", p_cat), ("p_alpha", p_alpha)):
            self.register_buffer(name, _padded(blocks)[0], persistent=False)
        # which entries of the padded tables are real: the same for a block's data and its logits (and a
        # padded alpha mean is never read: its mode has probability 0 and is never an encoded mode)
        self.register_buffer("block_valid", _padded(x_cat)[1], persistent=False)
        self.register_buffer("x_alpha", torch.tensor(x_alpha, dtype=torch.long), persistent=False)
        self.register_buffer("x_miss", torch.tensor(x_miss, dtype=torch.long), persistent=False)
        self.register_buffer("cat_missing", torch.tensor(cat_missing, dtype=torch.long), persistent=False)
        self.register_buffer("p_miss", torch.tensor(p_miss, dtype=torch.long), persistent=False)
        self.register_buffer("alpha_rows", torch.tensor(alpha_rows, dtype=torch.long), persistent=False)
        width = self.p_alpha.shape[1]
        padded = [j + [0.0] * (width - len(j)) for j in jac] or [[0.0]]
        self.register_buffer("log_jacobian", torch.tensor(padded), persistent=False)
        self.width = xo


class TableDistribution(Distribution):
    """The distribution of encoded rows given decoder output ``params`` [B, head] (see the module)."""

    arg_constraints: dict = {}
    support = constraints.real

    def __init__(self, params: torch.Tensor, layout: TableLayout, log_scale: torch.Tensor) -> None:
        self.layout = layout
        lay = layout
        self.cat_logits = params[:, lay.p_cat].masked_fill(~lay.block_valid, float("-inf"))
        self.alpha_loc = params[:, lay.p_alpha]  # [B, n_numeric, M_max]
        self.alpha_log_scale = log_scale.clamp_min(MIN_LOG_SCALE)  # [n_numeric, M_max]
        self.miss_logits = params[:, lay.p_miss]
        super().__init__(params.shape[:1], torch.Size([lay.width]), validate_args=False)

    def _terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """log p of every categorical / mode block [B, n_blocks], alpha [B, n_numeric] and missing
        indicator [B, n_missing] of encoded rows x (0 for a missing cell's value)."""
        lay = self.layout
        onehot = x[:, lay.x_cat] * lay.block_valid  # [B, n_blocks, K_max]; all 0 where a cell is missing
        logp = F.log_softmax(self.cat_logits.float(), -1).masked_fill(~lay.block_valid, 0.0)
        blocks = (onehot * logp).sum(-1)
        alpha_terms = miss_terms = None
        if lay.x_alpha.numel():
            modes = onehot[:, lay.alpha_rows, : self.alpha_loc.shape[-1]]  # [B, n_numeric, M_max]
            alpha = x[:, lay.x_alpha].unsqueeze(-1)
            scale = self.alpha_log_scale.exp()
            log_n = (-0.5 * ((alpha - self.alpha_loc.float()) / scale) ** 2 - self.alpha_log_scale
                     - 0.5 * math.log(2 * math.pi) - lay.log_jacobian)
            alpha_terms = (modes * log_n).sum(-1)
        if lay.x_miss.numel():
            miss_terms = -F.binary_cross_entropy_with_logits(
                self.miss_logits.float(), x[:, lay.x_miss], reduction="none")
        return blocks, alpha_terms, miss_terms

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per row in nats: the columns' terms summed."""
        return sum(t.sum(-1) for t in self._terms(x) if t is not None)

    def log_prob_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        """The terms placed in x's layout [B, width]: a block's at its first entry, alpha's and the
        indicator's at theirs; summed over the entries of the observed columns, they score exactly
        those columns (what completion and imputation condition on)."""
        lay = self.layout
        blocks, alpha_terms, miss_terms = self._terms(x)
        out = torch.zeros(x.shape[0], lay.width, dtype=blocks.dtype, device=x.device)
        out[:, lay.x_cat[:, 0]] = blocks
        if alpha_terms is not None:
            out[:, lay.x_alpha] = alpha_terms
        if miss_terms is not None:
            out[:, lay.x_miss] = miss_terms
        return out

    @property
    def mean(self) -> torch.Tensor:
        """Category and mode probabilities, the mode-weighted mean alpha and the missing probability."""
        lay = self.layout
        probs = self.cat_logits.softmax(-1)
        alpha = None
        if lay.x_alpha.numel():
            m = probs[:, lay.alpha_rows, : self.alpha_loc.shape[-1]]
            alpha = (m * self.alpha_loc).sum(-1)
        return self._assemble(probs, alpha, torch.sigmoid(self.miss_logits))

    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """Encoded rows drawn column by column: a category or mode, alpha given the mode, missingness (a
        missing cell's value block left at 0)."""
        if tuple(sample_shape):
            raise ValueError("TableDistribution.sample draws one row per batch entry")
        lay = self.layout
        with torch.no_grad():
            b, n, k = self.cat_logits.shape
            codes = torch.distributions.Categorical(logits=self.cat_logits.float().reshape(b * n, k)).sample()
            onehot = F.one_hot(codes.view(b, n), k).to(self.cat_logits.dtype)
            alpha = None
            if lay.x_alpha.numel():
                m = codes.view(b, n)[:, lay.alpha_rows]
                loc = self.alpha_loc.gather(-1, m.unsqueeze(-1)).squeeze(-1)
                scale = self.alpha_log_scale.exp().expand(b, -1, -1).gather(-1, m.unsqueeze(-1)).squeeze(-1)
                alpha = loc + scale * torch.randn_like(loc)
            missing = torch.bernoulli(torch.sigmoid(self.miss_logits.float()))
            return self._assemble(onehot, alpha, missing, blank=True)

    def _assemble(self, blocks: torch.Tensor, alpha: torch.Tensor | None, missing: torch.Tensor,
                  blank: bool = False) -> torch.Tensor:
        """An encoded row from per-block values [B, n_blocks, K_max], alphas [B, n_numeric] and missing
        indicators; with ``blank`` a cell drawn missing gets an all-0 value block, as encoding gives it."""
        lay = self.layout
        b = blocks.shape[0]
        if blank and missing.numel():
            present = F.pad(1 - missing.float(), (0, 1), value=1.0)  # index -1: a column without indicator
            blocks = blocks * present[:, lay.cat_missing].unsqueeze(-1)
            if alpha is not None:
                alpha = alpha * present[:, lay.cat_missing[lay.alpha_rows]]
        out = torch.zeros(b, lay.width, dtype=torch.float32, device=blocks.device)
        out[:, lay.x_cat[lay.block_valid]] = blocks[:, lay.block_valid].float()
        if alpha is not None:
            out[:, lay.x_alpha] = alpha.float()
        if missing.numel():
            out[:, lay.x_miss] = missing.float()
        return out


@register("likelihood", "table")
class TableLikelihood(Likelihood):
    """Per-column heads sized from a table's schema (``data.columns``); see the module docstring."""

    @classmethod
    def build(cls, cfg: Likelihood.Config, schema: DataSchema) -> TableLikelihood:
        if schema.kind != "table" or not schema.columns:
            raise ConfigError(
                f"the table likelihood needs a table whose columns the source describes; the data is "
                f"{schema.kind} of shape {schema.event_shape}",
                "load the table with csv:PATH, parquet:PATH or a pandas DataFrame",
            )
        return cls(schema)

    def __init__(self, schema: DataSchema) -> None:
        super().__init__()
        self.layout = TableLayout(schema)
        self.log_scale = nn.Parameter(torch.full(self.layout.log_jacobian.shape, math.log(0.1)))

    def head_shape(self, schema: DataSchema) -> tuple[int, ...]:
        return (self.layout.head,)

    def forward(self, params: torch.Tensor) -> Distribution:
        return TableDistribution(params, self.layout, self.log_scale)
