"""New data sources: a table of three categorical columns (5, 7 and 8 categories, one-hot encoded as the
schema lays a table row out) and token
sequences from a Markov chain, each with its schema."""

import torch
import torch.nn.functional as F

from vaekit.data import DataSet, Split
from vaekit.registry import register
from vaekit.schema import Column

SIZES = (5, 7, 8)
VOCAB, LENGTH = ("a", "b", "c", "d", "e", "f"), 12


def _splits(x: torch.Tensor) -> tuple[Split, Split, Split]:
    n = len(x)
    return Split(x[: n * 8 // 10]), Split(x[n * 8 // 10 : n * 9 // 10]), Split(x[n * 9 // 10 :])


@register("data", "toy-table")
def toy_table(data_dir=None, seed=0, valid_fraction=0.1, test_fraction=0.1) -> DataSet:
    """Column b copies column a; c is a noisy function of a: a latent code has something to learn."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 5, (600,), generator=g)
    c = (a + torch.randint(0, 2, (600,), generator=g)) % 8
    x = torch.cat([F.one_hot(v, k) for v, k in zip((a, a, c), SIZES, strict=True)], 1).float()  # encoded rows
    columns = tuple(Column(name, "categorical", [str(i) for i in range(k)])
                    for name, k in zip("abc", SIZES, strict=True))
    return DataSet("toy-table", *_splits(x), kind="table", levels=None, columns=columns)


@register("data", "toy-tokens")
def toy_tokens(data_dir=None, seed=0, valid_fraction=0.1, test_fraction=0.1) -> DataSet:
    """Each sequence repeats a step of 1 or 2 tokens from a random start: x_t = x_0 + s t mod 6."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, len(VOCAB), (600, 1), generator=g)
    step = torch.randint(1, 3, (600, 1), generator=g)
    x = ((start + step * torch.arange(LENGTH)) % len(VOCAB)).float()
    return DataSet("toy-tokens", *_splits(x), kind="sequence", levels=None, vocabulary=VOCAB)
