#!/usr/bin/env bash
# Quality gates, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
"$BIN/ruff" check data eval rerank retrievers tests
"$BIN/ruff" format --check data eval rerank retrievers tests
"$BIN/mypy"
# --durations=30: the 30 slowest tests, so the suite's budget (docs/design.md, "How it is tested") stays visible.
# One process by default. RERANK_TEST_WORKERS=N runs N pytest-xdist workers (--dist loadgroup keeps each
# server's and the Ray cluster's tests on one worker, tests/conftest.py): worth it with cores to spare, not on
# 2 cores, where llama.cpp's and OpenMP's spinning threads fight (43.6 minutes with 2 workers against 29 in
# one process, docs/design.md).
workers=()
if [ "${RERANK_TEST_WORKERS:-0}" != 0 ]; then
  workers=(-n "$RERANK_TEST_WORKERS" --dist loadgroup)
fi
# langsmith (the langchain extra) registers a pytest plugin that costs 1.5 s a start and is not used here.
"$BIN/python" -m pytest -p no:langsmith_plugin "${workers[@]}" --durations=30 "$@"
# The vllm backend's tests, in the environment vLLM pins (scripts/setup.sh builds it on x86-64); in the one
# above they are skipped.
VLLM_BIN=${VLLM_VENV:-.venv-vllm}/bin
if [ -x "$VLLM_BIN/python" ]; then
  "$VLLM_BIN/python" -m pytest --durations=10 -p no:cacheprovider tests/test_vllm.py
fi
