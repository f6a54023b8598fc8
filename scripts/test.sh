#!/usr/bin/env bash
# Quality gates, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
"$BIN/ruff" check data eval rerank retrievers tests
"$BIN/ruff" format --check data eval rerank retrievers tests
"$BIN/mypy"
# --durations=30: the 30 slowest tests, so the suite's budget (docs/design.md, "How it is tested") stays visible.
# Two pytest-xdist workers (RERANK_TEST_WORKERS): while one waits on a subprocess, a server or an import, the
# other computes. --dist loadgroup keeps each server's and the Ray cluster's tests on one worker (tests/conftest.py).
"$BIN/python" -m pytest -n "${RERANK_TEST_WORKERS:-2}" --dist loadgroup --durations=30 "$@"
