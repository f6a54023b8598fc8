#!/usr/bin/env bash
# The inner loop: lint, types, and every test but the slow and acceptance tiers (a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
"$BIN/ruff" check data eval rerank retrievers tests
"$BIN/ruff" format --check data eval rerank retrievers tests
"$BIN/mypy"
"$BIN/python" -m pytest -m "not slow and not acceptance" "$@"
