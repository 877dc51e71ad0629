"""Shared benchmark plumbing: the machine description and saving results with the command."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results"
# ../shared/data/mnist.npz beside the checkout; VAEKIT_MNIST_NPZ points elsewhere (e.g. a GPU machine's copy)
MNIST_NPZ = Path(os.environ.get("VAEKIT_MNIST_NPZ")
                 or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist.npz")


def machine() -> dict[str, Any]:
    """What ran the benchmark: enough to tell two result files' hardware apart."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def save_result(name: str, payload: dict[str, Any]) -> Path:
    """Write benchmarks/results/<name>.json with the machine, the command and a timestamp."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": "python " + " ".join(sys.argv),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2))
    print(f"saved {path}")
    return path


def require_mnist() -> Path:
    if not MNIST_NPZ.is_file():
        sys.exit(f"real MNIST not found at {MNIST_NPZ}: this benchmark needs ../shared/data/mnist.npz "
                 "(or VAEKIT_MNIST_NPZ=path/to/mnist.npz)")
    return MNIST_NPZ


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """Config overrides from ``KEY=VALUE`` strings (a benchmark's ``--set``), values parsed as in YAML."""
    from vaekit.config import parse_value

    return {key: parse_value(value) for key, value in (kv.split("=", 1) for kv in pairs)}
