#!/usr/bin/env bash
# Distil the best offline teacher (nomic-embed-text-v1.5 on BM25's top DEPTH) into a MiniLM-L6 cross-encoder, with
# synthetic queries over the MS MARCO passages only: no DL19 or DL20 query and no qrels (docs/training.md).
# Every step resumes where it stopped: run it again after an interruption. Then the leaderboard's rows of the
# model: rerank leaderboard --pipelines "*model=$NAME*"
#
# The defaults are the second recipe (4,000 queries, the teacher over BM25's top 100, groups of 16, one epoch).
# The first one, whose rows are minilm-nomic-distilled's:
#   PASSAGES=1000 DEPTH=20 GROUP=8 EPOCHS=3 NAME=minilm-nomic-distilled bash scripts/distill.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${RERANK_DATA_DIR:-../shared/datasets}
OUT=${DISTILL_DIR:-out/distill}
PASSAGES=${PASSAGES:-4000}
DEPTH=${DEPTH:-100}
GROUP=${GROUP:-16}
EPOCHS=${EPOCHS:-1}
NAME=${NAME:-minilm-nomic-distilled-4k}
BIN=${VENV:-.venv}/bin
CORPUS="$DATA/msmarco-passage/passages.tsv.gz"
TEACHER="bm25 % $DEPTH >> bi-encoder(document_prefix=\"search_document: \", encoder=llama.cpp, model=nomic-embed-text-v1.5, query_prefix=\"search_query: \")"
set -x
"$BIN/rerank" generate-queries --corpus "$CORPUS" --output "$OUT/queries-$PASSAGES" --model qwen2.5-coder-0.5b \
    --passages "$PASSAGES" --seed 0 --cache "$OUT/llm-cache" --resume
"$BIN/rerank" train --topics "$OUT/queries-$PASSAGES/topics.tsv" --corpus "$CORPUS" --output "$NAME" \
    --student minilm --teacher "$TEACHER" --loss listnet --temperature 0.05 --group-size "$GROUP" --epochs "$EPOCHS" \
    --learning-rate 5e-5 --batch-size 8 --seed 0 --save-steps 50 --resume
