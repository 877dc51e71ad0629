#!/usr/bin/env bash
# Install (idempotent, fast when already installed), lint, and run the default test suite.
# Slow tests: python3 -m pytest -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
bash scripts/setup.sh
"$PY" -m ruff check src tests benchmarks
# the layers and the no-cycles rule of docs/architecture.md ([tool.importlinter] in pyproject.toml)
"$PY" -c "from importlinter.cli import lint_imports_command; lint_imports_command()"
# the explorer's browser test drives Debian's chromium (it skips, saying why, when it is missing)
if [ ! -x /usr/bin/chromium ]; then
  echo "[test] installing Debian's chromium for tests/test_browser.py" >&2
  if ! { command -v apt-get >/dev/null 2>&1 && apt-get update -qq \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
    echo "[test] warning: could not install chromium; the browser test will be skipped" >&2
  fi
fi
"$PY" -m pytest "$@"
