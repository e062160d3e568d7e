#!/usr/bin/env bash
# Install with test extras (first run only) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh test
exec .venv/bin/python -m pytest -q "$@"
