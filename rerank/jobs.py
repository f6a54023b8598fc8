"""A reranking job over many requests: checkpointed per batch of queries, resumable, written atomically."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from data.jsonl import write_candidates_jsonl
from data.rankllm import write_rankllm_requests
from data.records import Candidate, Ranking, RerankRequest
from data.trec import write_trec_run
from rerank.base import RerankResult
from rerank.cost import Cost
from rerank.spec import MethodSpec


def batches(items: Sequence[RerankRequest], size: int) -> Iterable[list[RerankRequest]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def write_results(results: list[RerankResult], requests: list[RerankRequest], output: Path, fmt: str, tag: str) -> None:
    if fmt == "trec":
        write_trec_run((r.ranking for r in results), output, tag=tag)
        return
    reranked = []
    for request, result in zip(requests, results, strict=True):
        texts = {c.docid: c.text for c in request.candidates}  # checkpoints keep ids and scores only
        candidates = tuple(Candidate(c.docid, c.score, texts[c.docid]) for c in result.ranking.candidates)
        reranked.append(RerankRequest(request.query, candidates))
    (write_rankllm_requests if fmt == "rankllm" else write_candidates_jsonl)(reranked, output)


def rerank_to_file(
    spec: MethodSpec,
    requests: list[RerankRequest],
    output: Path,
    job: dict[str, Any],
    *,
    batch_queries: int = 8,
    resume: bool = False,
    fresh: bool = False,
    cache: str | Path | None = None,
    output_format: str = "trec",
    tag: str = "rerank",
    keep: int | None = None,
) -> tuple[dict[str, Any], list[RerankResult]]:
    """Rerank every request (resuming from ``OUTPUT.checkpoint``), write the output, return the summary and results.

    ``job`` describes the work; a checkpoint of another job is refused. The output appears only when
    every query is done. ``keep`` cuts each written ranking to its top ``keep`` (the returned
    results are whole).
    """
    from tqdm import tqdm

    from data.errors import BackendError
    from rerank.checkpoint import open_checkpoint
    from rerank.registry import load_reranker

    checkpoint = open_checkpoint(output, job, resume=resume, fresh=fresh)
    try:
        # Batches sit at fixed positions; one only partly checkpointed (a kill mid-write) is redone whole.
        todo = [b for b in batches(requests, batch_queries) if any(r.query.qid not in checkpoint.done for r in b)]
        resumed = len(requests) - sum(len(b) for b in todo)
        pending = {r.query.qid for b in todo for r in b}
        # what the resumed queries cost when an earlier run computed them, so a job's time spans its pieces
        resumed_seconds = sum(checkpoint.done[r.query.qid].cost.seconds for r in requests if r.query.qid not in pending)
        start = time.perf_counter()
        if todo:
            try:
                reranker = load_reranker(spec)
            except Exception:
                if not checkpoint.done:  # nothing was computed: leave nothing behind to resume
                    checkpoint.remove()
                raise
            if cache:
                from rerank.cache import OutputCache

                if not hasattr(reranker, "use_cache"):
                    raise ValueError(f"{spec.name} has no output cache")
                reranker.use_cache(OutputCache(cache))
            with tqdm(total=len(requests), initial=resumed, unit="query", file=sys.stderr) as bar:
                for batch in todo:
                    try:
                        checkpoint.add(reranker.rerank(batch))
                    except BackendError as err:
                        raise BackendError(
                            f"{err}. The {len(checkpoint.done)} queries finished are checkpointed in "
                            f"{checkpoint.path}; the same command with --resume continues from there"
                        ) from err
                    bar.update(len(batch))
        elapsed = time.perf_counter() - start
        results: list[RerankResult] = [checkpoint.done[r.query.qid] for r in requests]
        written = [RerankResult(Ranking(r.ranking.qid, r.ranking.candidates[:keep]), r.cost) for r in results]
        write_results(written, requests, output, output_format, tag)
        checkpoint.remove()
    finally:
        checkpoint.close()
    total = sum((r.cost for r in results), Cost())
    summary = {
        "output": str(output),
        "spec": str(spec),
        "queries": len(requests),
        "resumed": resumed,
        "resumed_seconds": round(resumed_seconds, 3),
        "candidates": sum(len(r.candidates) for r in requests),
        "seconds": round(elapsed, 3),
        "queries_per_second": round((len(requests) - resumed) / elapsed, 3) if todo and elapsed > 0 else None,
        "cost": total.as_dict(),
    }
    return summary, results
