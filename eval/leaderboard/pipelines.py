"""Pipeline strings of the leaderboard: the one pipeline language of ``rerank.spec``.

``run(name=bm25) % 20 >> first(backend=llama.cpp, model=qwen2.5-coder-0.5b)``: a first stage (a
run the dataset ships, a retriever over an index built from the corpus, or fusion such as
``rrf(bm25 | dense(model=minilm))``), then rerankers. ``% K`` after the first stage is the
candidate depth (100 when omitted); after a reranker, how many it passes on. Pipelines print
canonically, so equal pipelines are one cell.
"""

from __future__ import annotations

from rerank.core.plan import check_pipeline
from rerank.spec import PipelineSpec
from rerank.spec import parse_pipeline as parse


def parse_pipeline(text: str) -> PipelineSpec:
    """Parse and check a pipeline string (every stage's name and parameters); errors name the pipeline."""
    pipeline = parse(text)
    check_pipeline(pipeline)
    return pipeline
