#!/usr/bin/env bash
# Distil the best offline teacher (nomic-embed-text-v1.5 on BM25's top 20) into a MiniLM-L6 cross-encoder, with
# synthetic queries over the MS MARCO passages only: no DL19 or DL20 query and no qrels (docs/training.md).
# Every step resumes where it stopped: run it again after an interruption. Then the leaderboard's
# minilm-nomic-distilled rows: rerank leaderboard --pipelines '*minilm-nomic-distilled*'
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${RERANK_DATA_DIR:-../shared/datasets}
OUT=${DISTILL_DIR:-out/distill}
PASSAGES=${PASSAGES:-1000}
BIN=${VENV:-.venv}/bin
CORPUS="$DATA/msmarco-passage/passages.tsv.gz"
TEACHER='bm25 % 20 >> bi-encoder(document_prefix="search_document: ", encoder=llama.cpp, model=nomic-embed-text-v1.5, query_prefix="search_query: ")'
set -x
"$BIN/rerank" generate-queries --corpus "$CORPUS" --output "$OUT/queries-$PASSAGES" --model qwen2.5-coder-0.5b \
    --passages "$PASSAGES" --seed 0 --cache "$OUT/llm-cache" --resume
"$BIN/rerank" train --topics "$OUT/queries-$PASSAGES/topics.tsv" --corpus "$CORPUS" --output minilm-nomic-distilled \
    --student minilm --teacher "$TEACHER" --loss listnet --temperature 0.05 --group-size 8 --epochs 3 \
    --learning-rate 5e-5 --batch-size 8 --seed 0 --resume
