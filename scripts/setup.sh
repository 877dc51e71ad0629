#!/usr/bin/env bash
# Install vaekit with its test/server extras into the current Python environment.
# PyTorch: an installed torch is kept (bring your own CUDA/ROCm/CPU build first if you want a
# specific one); otherwise torch 2.13.0 is installed, which on this project's CI machines is a
# local CPU wheel and on a GPU machine elsewhere is PyPI's CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing torch==2.13.0" >&2
  "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -e ".[dev]"
echo "[setup] vaekit $("$PY" -c 'import vaekit; print(vaekit.__version__)') ready (torch $("$PY" -c 'import torch; print(torch.__version__)'))" >&2
