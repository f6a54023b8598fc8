#!/usr/bin/env bash
# Quality gates, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
"$BIN/ruff" check data eval rerank retrievers tests
"$BIN/ruff" format --check data eval rerank retrievers tests
"$BIN/mypy"
"$BIN/python" -m pytest "$@"
