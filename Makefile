# make demo: set up (once) and run the main job.  make test: set up (once) and run every check (what CI runs).
# make check: the fast tier (lint, types, every test but slow and acceptance).
VENV ?= .venv
SHARED_DATA := $(abspath ../shared/datasets)
export RERANK_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
export RERANK_CACHE_DIR ?= $(CURDIR)/.cache/rerank
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export VENV

.PHONY: setup demo test check references

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	@bash scripts/test.sh

check: setup
	@bash scripts/check.sh

# Re-run the reference implementations the fidelity tests' recordings come from (RERANK_RECORD=1 re-records),
# and the full-corpus reproductions of published numbers.
references: setup
	@RERANK_REFERENCES=1 $(VENV)/bin/python -m pytest -m reference tests/test_fidelity.py tests/test_retrievers.py
