#!/usr/bin/env bash
# Quality gates, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
"$BIN/ruff" check data eval rerank retrievers tests
"$BIN/ruff" format --check data eval rerank retrievers tests
"$BIN/mypy"
# --durations=30: the 30 slowest tests, so the suite's budget (docs/design.md, "How it is tested") stays visible.
"$BIN/python" -m pytest --durations=30 "$@"
