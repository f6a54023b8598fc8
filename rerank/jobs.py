"""A reranking job over many requests: checkpointed per batch of queries, resumable, written atomically."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from data.jsonl import write_candidates_jsonl
from data.rankllm import write_rankllm_requests
from data.records import Candidate, RerankRequest
from data.trec import write_trec_run
from rerank.base import RerankResult
from rerank.cost import Cost
from rerank.inputs import RunRequests
from rerank.spec import MethodSpec

if TYPE_CHECKING:
    from rerank.checkpoint import Checkpoint
    from rerank.engine import Engine

T = TypeVar("T")


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter), read lazily."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def write_results(
    checkpoint: Checkpoint, run: RunRequests, order: Sequence[str], output: Path, fmt: str, tag: str, keep: int | None
) -> Cost:
    """Write every query's checkpointed ranking, in the run's order, cut to ``keep``; returns their total cost.

    One query's ranking is in memory at a time (TREC and JSONL); RankLLM's format is a single JSON
    document, so its rows are gathered first.
    """
    total = Cost()

    def rankings() -> Iterator[RerankResult]:
        nonlocal total
        for qid in order:
            result = checkpoint.result(qid)
            total += result.cost
            yield RerankResult(result.ranking.cut(keep) if keep is not None else result.ranking, result.cost)

    if fmt == "trec":
        write_trec_run((r.ranking for r in rankings()), output, tag=tag)
        return total

    def reranked() -> Iterator[RerankRequest]:
        results = rankings()
        for chunk in batches(run.rankings(), 256):
            for request in run.requests(chunk):
                texts = {c.docid: c.text for c in request.candidates}  # checkpoints keep ids and scores only
                ranking = next(results).ranking
                yield RerankRequest(request.query, tuple(Candidate(c.docid, c.score, texts[c.docid]) for c in ranking))

    (write_rankllm_requests if fmt == "rankllm" else write_candidates_jsonl)(reranked(), output)
    return total


def rerank_to_file(
    spec: MethodSpec,
    run: RunRequests,
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
    engine: Engine | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    """Rerank every query of ``run`` (resuming from ``OUTPUT.checkpoint``), write the output, return the summary.

    The run streams: rankings are read batch by batch, texts fetched per batch, results checkpointed
    per batch and written from the checkpoint at the end, so memory holds a few batches, never the
    run. ``job`` describes the work; a checkpoint of another job is refused. The output appears only
    when every query is done. ``keep`` cuts each written ranking to its top ``keep``. ``engine`` runs
    the batches (``LocalEngine`` when None); ``total`` is the number of queries, for the progress bar.
    """
    from tqdm import tqdm

    from data.errors import BackendError
    from rerank.checkpoint import open_checkpoint
    from rerank.engine import LocalEngine, rerank_work

    engine = engine or LocalEngine()
    checkpoint = open_checkpoint(output, job, resume=resume, fresh=fresh)
    order: list[str] = []
    counts = {"resumed": 0, "candidates": 0, "computed": 0}
    resumed_seconds = 0.0
    load_seconds = 0.0  # waiting for the engine: the model loaded (on Ray, the replicas, perhaps warmed before)

    progress = tqdm(total=total, unit="query", file=sys.stderr, disable=True)  # shown once work starts

    def todo() -> Iterator[tuple[int, list[RerankRequest]]]:
        # Batches sit at fixed positions; one only partly checkpointed (a kill mid-write) is redone whole.
        nonlocal resumed_seconds
        for index, chunk in enumerate(batches(run.rankings(), batch_queries)):
            order.extend(r.qid for r in chunk)
            counts["candidates"] += sum(len(r) for r in chunk)
            if all(r.qid in checkpoint for r in chunk):
                # what the resumed queries cost when an earlier run computed them, so a job's time spans its pieces
                resumed_seconds += sum(checkpoint.seconds(r.qid) for r in chunk)
                counts["resumed"] += len(chunk)
                progress.update(len(chunk))
                continue
            yield index, run.requests(chunk)

    start = time.perf_counter()
    try:
        pending = todo()
        first = next(pending, None)  # the model loads only when there is something to do
        if first is not None:
            try:
                loading = time.perf_counter()
                runner = engine.start(rerank_work(spec, cache))
                load_seconds = time.perf_counter() - loading
            except Exception:
                if not len(checkpoint):  # nothing was computed: leave nothing behind to resume
                    checkpoint.remove()
                raise
            progress = tqdm(total=total, initial=counts["resumed"], unit="query", file=sys.stderr)
            try:
                for _position, results in runner.run(itertools.chain([first], pending)):
                    checkpoint.add(results)
                    counts["computed"] += len(results)
                    progress.update(len(results))
            except BackendError as err:
                raise type(err)(
                    f"{err}. The {len(checkpoint)} queries finished are checkpointed in "
                    f"{checkpoint.path}; the same command with --resume continues from there"
                ) from err
            finally:
                progress.close()
                runner.close()
        elapsed = time.perf_counter() - start
        cost = write_results(checkpoint, run, order, output, output_format, tag, keep)
        checkpoint.remove()
    finally:
        checkpoint.close()
    queries = len(order)
    computed = counts["computed"]
    return {
        "output": str(output),
        "spec": str(spec),
        "queries": queries,
        "resumed": counts["resumed"],
        "resumed_seconds": round(resumed_seconds, 3),
        "candidates": counts["candidates"],
        "seconds": round(elapsed, 3),
        "load_seconds": round(load_seconds, 3),
        "queries_per_second": round(computed / elapsed, 3) if computed and elapsed > 0 else None,
        "cost": cost.as_dict(),
    }
