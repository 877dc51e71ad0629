"""The counter-based generator behind chunk-invariant evaluation: Philox4x32-10 against its published
known-answer vectors, the overflow-free 32-bit multiply against exact integers, and the uniforms and
normals it makes against their distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from vaekit.evaluation.noise import _mulhilo, counter_uniforms, philox4x32

WORD = st.integers(0, 2**32 - 1)

# Random123's kat_vectors for philox4x32 with 10 rounds: (counter words, key words, output words)
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("words", [torch.tensor, np.uint64], ids=["torch", "numpy"])
@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_philox4x32_matches_the_published_known_answers(counter, key, expected, words):
    out = philox4x32(tuple(words(c) for c in counter), key[0] | key[1] << 32)
    assert tuple(int(w) for w in out) == expected


@settings(max_examples=300, deadline=None)
@given(a=WORD, m=WORD)
def test_mulhilo_is_the_exact_64_bit_product(a, m):
    for words in (torch.tensor([a]), np.array([a], dtype=np.uint64)):  # wrapping int64, exact uint64
        hi, lo = _mulhilo(words, m)
        assert (int(hi[0]), int(lo[0])) == divmod(a * m, 2**32)


def test_numpy_and_torch_give_the_same_words():
    grid = [np.arange(n, dtype=np.uint64).reshape(shape) for n, shape in ((3, (3, 1, 1)), (4, (1, 4, 1)))]
    counter = (np.arange(5, dtype=np.uint64), *grid, np.uint64(2**32 - 1))
    key = 0xDEADBEEF12345678
    a = philox4x32(counter, key)
    b = philox4x32(tuple(torch.from_numpy(np.asarray(c).astype(np.int64)) for c in counter), key)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.astype(np.int64), y.numpy())


def _draws(normal: bool, n_examples: int = 50, k: int = 400, m: int = 10) -> torch.Tensor:
    return counter_uniforms(7, 1, range(n_examples), 0, k, m, normal, torch.device("cpu"))


def test_uniforms_are_uniform_and_normals_are_standard_normal():
    u = _draws(False).flatten()
    assert u.dtype == torch.float64 and 0 <= float(u.min()) and float(u.max()) < 1
    assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-3
    z = _draws(True).flatten().double()
    assert stats.kstest(z.numpy(), "norm").pvalue > 1e-3
    assert abs(float(z.mean())) < 4 / len(z) ** 0.5 and abs(float(z.var()) - 1) < 0.02


def test_numbers_of_different_examples_samples_and_positions_are_uncorrelated():
    z = _draws(True, n_examples=40, k=500, m=6).double()  # [k, examples, m]
    pairs = {
        "next sample": (z[:-1], z[1:]),
        "next example": (z[:, :-1], z[:, 1:]),
        "next position": (z[..., :-1], z[..., 1:]),
    }
    for what, (a, b) in pairs.items():
        r = float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])
        assert abs(r) < 4 / a.numel() ** 0.5, what


def test_a_chunk_of_samples_or_examples_gets_the_same_numbers_as_the_whole():
    whole = counter_uniforms(3, 2, range(10, 16), 100, 50, 5, True, torch.device("cpu"))
    part = counter_uniforms(3, 2, range(12, 14), 120, 10, 5, True, torch.device("cpu"))
    assert torch.equal(part, whole[20:30, 2:4])
    other_draw = counter_uniforms(3, 3, range(10, 16), 100, 50, 5, True, torch.device("cpu"))
    assert not torch.isclose(other_draw, whole).any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_gpu_draws_the_same_numbers_as_the_cpu():  # torch's words there, numpy's here
    cpu = counter_uniforms(5, 1, range(8), 0, 64, 9, False, torch.device("cpu"))
    gpu = counter_uniforms(5, 1, range(8), 0, 64, 9, False, torch.device("cuda"))
    assert torch.equal(cpu, gpu.cpu())
