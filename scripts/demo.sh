#!/usr/bin/env bash
# The main job: rerank a first-stage run with the MiniLM bi-encoder and print metrics before and after.
# TREC DL 2019 BM25 top 100 when the data directory has it, else the example collection in data/example.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${VENV:-.venv}/bin/python

if "$PY" -c "import data; data.load('msmarco-passage/trec-dl-2019')" 2>/dev/null; then
  dataset=msmarco-passage/trec-dl-2019
else
  echo "TREC DL 2019 not found in the data directory (\$RERANK_DATA_DIR); using the example collection" >&2
  dataset=example
fi
out="${DEMO_OUT:-out}/$dataset/bm25.bi-encoder-minilm.trec"  # DEMO_OUT: where the run goes
set -x
"$PY" -m rerank.cli run --dataset "$dataset" --run bm25 --top-k 100 --method bi-encoder --model minilm --output "$out" --eval
