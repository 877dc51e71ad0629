"""Shared fixtures: seeded torch, the real-data folder beside the project."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
MNIST_NPZ = SHARED_DATA / "mnist.npz"


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def mnist_npz() -> Path:
    if not MNIST_NPZ.is_file():
        pytest.skip(f"real MNIST not available at {MNIST_NPZ} (the shared data folder is absent)")
    return MNIST_NPZ


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one thread avoids OpenMP stalls when other processes share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
