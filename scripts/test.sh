#!/usr/bin/env bash
# Install (idempotent, fast when already installed), lint, and run the default test suite.
# Slow tests: python3 -m pytest -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
bash scripts/setup.sh
"$PY" -m ruff check src tests benchmarks
"$PY" -m pytest "$@"
