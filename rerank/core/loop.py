"""The batch loop: one checkpointed loop for every stage that calls a model or an index.

A stage's input is read lazily in batches of queries at fixed positions. A batch whose queries
are all checkpointed is skipped (what it cost when an earlier run computed it is kept, so a job's
time spans its pieces); the others go to an engine (``rerank.engine``: this process or a Ray
cluster), which loads its work only when there is something to do, and every finished batch is
checkpointed before the next is counted. The output is then written from the checkpoint in the
input's order, so it is the same bytes whatever the engine, the batch order or the interruptions.
Retrieval (queries → rankings) and reranking (rankings → rankings) are the same loop with other work.
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from data.records import Candidate, Query, RerankRequest
from rerank.base import RerankResult
from rerank.cost import Cost
from rerank.spec import MethodSpec

if TYPE_CHECKING:
    from rerank.checkpoint import Checkpoint
    from rerank.engine import Engine, Work
    from rerank.inputs import RunRequests

T = TypeVar("T")
log = logging.getLogger("rerank")


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter), read lazily."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def progress_bar(total: int | None, initial: int = 0, *, show: bool = True) -> Any:
    """A bar of queries on stderr; silenced when the ``rerank`` logger is set above INFO (``--quiet``)."""
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="query", file=sys.stderr, disable=not show or log.level > logging.INFO
    )


@dataclass
class LoopCounts:
    """What one pass of the loop did: queries resumed (and the seconds they cost then), computed, load time."""

    resumed: int = 0
    resumed_seconds: float = 0.0
    computed: int = 0
    load_seconds: float = 0.0


def checkpointed(
    work: Work,
    chunks: Iterable[Sequence[T]],
    checkpoint: Checkpoint | MemoryCheckpoint,
    *,
    qid: Callable[[T], str],
    prepare: Callable[[Sequence[T]], list[Any]],
    engine: Engine | None = None,
    total: int | None = None,
    progress: bool = True,
) -> LoopCounts:
    """Run every batch not yet in ``checkpoint`` through ``work`` on ``engine`` and checkpoint its results.

    ``prepare`` turns a batch of input items into what the work takes (texts fetched per batch, so
    memory holds a few batches, never the input). The work loads only when a batch is left to do;
    one that fails to load leaves no empty checkpoint behind. A backend failure says what was kept.
    ``checkpoint`` is a file (``rerank.checkpoint``) or, for a job without a store, a ``MemoryCheckpoint``.
    """
    from data.errors import BackendError
    from rerank.engine import LocalEngine

    counts = LoopCounts()

    def todo() -> Iterator[tuple[int, list[Any]]]:
        # Batches sit at fixed positions; one only partly checkpointed (a kill mid-write) is redone whole.
        for index, chunk in enumerate(chunks):
            if all(qid(item) in checkpoint for item in chunk):
                counts.resumed_seconds += sum(checkpoint.seconds(qid(item)) for item in chunk)
                counts.resumed += len(chunk)
                continue
            yield index, prepare(chunk)

    pending = todo()
    first = next(pending, None)  # the model (or index) loads only when there is something to do
    if first is None:
        return counts
    try:
        loading = time.perf_counter()
        runner = (engine or LocalEngine()).start(work)
        counts.load_seconds = time.perf_counter() - loading
    except Exception:
        if not len(checkpoint):  # nothing was computed: leave nothing behind to resume
            checkpoint.remove()
        raise
    bar = progress_bar(total, counts.resumed, show=progress)
    try:
        for position, results in runner.run(itertools.chain([first], pending)):
            checkpoint.add(results, position)
            counts.computed += len(results)
            bar.update(len(results))
    except BackendError as err:
        if checkpoint.path is None:  # nothing is kept in memory to resume from
            raise
        raise type(err)(
            f"{err}. The {len(checkpoint)} queries finished are checkpointed in "
            f"{checkpoint.path}; the same command with --resume continues from there"
        ) from err
    finally:
        bar.close()
        runner.close()
    return counts


class MemoryCheckpoint:
    """The loop's checkpoint for a job without a store (Python pipelines, the service): each batch's
    results by its position, so requests sharing a query id stay apart. Nothing in it is resumed."""

    path = None

    def __init__(self) -> None:
        self._batches: dict[int, list[RerankResult]] = {}

    def __contains__(self, qid: object) -> bool:
        return False

    def __len__(self) -> int:
        return sum(len(batch) for batch in self._batches.values())

    def seconds(self, qid: str) -> float:
        raise KeyError(qid)

    def add(self, results: Iterable[RerankResult], position: int = 0) -> None:
        self._batches[position] = list(results)

    def results(self) -> list[RerankResult]:
        """Every result, in the input's order."""
        return [result for position in sorted(self._batches) for result in self._batches[position]]

    def remove(self) -> None:
        self._batches.clear()


@dataclass(frozen=True)
class LiveWork:
    """The work of a reranker already loaded (a live object, not a spec): its ``rerank`` is applied as is."""

    apply: Callable[[list[Any]], list[RerankResult]]

    def load(self) -> Callable[[list[Any]], list[RerankResult]]:
        return self.apply


def rerank_in_memory(
    apply: Callable[[list[Any]], Sequence[Any]],
    requests: Sequence[RerankRequest],
    docs: Any = None,
    *,
    batch_queries: int | None = None,
    progress: bool = True,
) -> list[Any]:
    """Rerank ``requests`` with a live reranker's ``rerank`` in the same batch loop as a stored job, with no
    store: texts attached per batch from ``docs``, results in the requests' order. ``batch_queries``
    None sends every request in one call (the service coalesces its own batches)."""
    from rerank.inputs import attach_texts

    checkpoint = MemoryCheckpoint()
    size = batch_queries or max(1, len(requests))
    checkpointed(
        LiveWork(lambda batch: list(apply(batch))), batches(requests, size), checkpoint, qid=lambda r: r.query.qid,
        prepare=lambda chunk: [RerankRequest(r.query, attach_texts(r.candidates, docs)) for r in chunk],
        total=len(requests), progress=progress,
    )  # fmt: skip
    return checkpoint.results()


def write_results(
    checkpoint: Checkpoint,
    order: Sequence[str],
    output: Path,
    *,
    fmt: str = "trec",
    tag: str = "rerank",
    keep: int | None = None,
    run: RunRequests | None = None,
) -> tuple[Cost, int]:
    """Write every query's checkpointed ranking, in ``order``, cut to ``keep``; returns their total cost and
    the candidates written.

    One query's ranking is in memory at a time (TREC and JSONL); RankLLM's format is a single JSON
    document, so its rows are gathered first. Those formats carry texts, read again from ``run``.
    """
    from data.jsonl import write_candidates_jsonl
    from data.rankllm import write_rankllm_requests
    from data.trec import write_trec_run

    total = Cost()
    written = 0

    def rankings() -> Iterator[RerankResult]:
        nonlocal total, written
        for qid in order:
            result = checkpoint.result(qid)
            total += result.cost
            ranking = result.ranking.cut(keep) if keep is not None else result.ranking
            written += len(ranking)
            yield RerankResult(ranking, result.cost)

    if fmt == "trec":
        write_trec_run((r.ranking for r in rankings()), output, tag=tag)
        return total, written
    assert run is not None, "RankLLM JSON and JSONL outputs carry texts: give the run they come from"

    def reranked() -> Iterator[RerankRequest]:
        results = rankings()
        for chunk in batches(run.rankings(), 256):
            for request in run.requests(chunk):
                texts = {c.docid: c.text for c in request.candidates}  # checkpoints keep ids and scores only
                ranking = next(results).ranking
                yield RerankRequest(request.query, tuple(Candidate(c.docid, c.score, texts[c.docid]) for c in ranking))

    (write_rankllm_requests if fmt == "rankllm" else write_candidates_jsonl)(reranked(), output)
    return total, written


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

    ``job`` (the stage's key) heads the checkpoint: a checkpoint of another job is refused. The
    output appears only when every query is done. ``keep`` cuts each written ranking to its top
    ``keep``. ``total`` is the number of queries, for the progress bar.
    """
    from rerank.checkpoint import open_checkpoint
    from rerank.engine import rerank_work

    checkpoint = open_checkpoint(output, job, resume=resume, fresh=fresh)
    order: list[str] = []
    candidates = 0

    def chunks() -> Iterator[list[Any]]:
        nonlocal candidates
        for chunk in batches(run.rankings(), batch_queries):
            order.extend(r.qid for r in chunk)
            candidates += sum(len(r) for r in chunk)
            yield chunk

    start = time.perf_counter()
    try:
        counts = checkpointed(
            rerank_work(spec, cache), chunks(), checkpoint, qid=lambda r: r.qid, prepare=run.requests,
            engine=engine, total=total,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        cost, _ = write_results(checkpoint, order, output, fmt=output_format, tag=tag, keep=keep, run=run)
        checkpoint.remove()
    finally:
        checkpoint.close()
    return {
        "output": str(output),
        "spec": str(spec),
        "queries": len(order),
        "resumed": counts.resumed,
        "resumed_seconds": round(counts.resumed_seconds, 3),
        "candidates": candidates,
        "seconds": round(elapsed, 3),
        "load_seconds": round(counts.load_seconds, 3),
        "queries_per_second": round(counts.computed / elapsed, 3) if counts.computed and elapsed > 0 else None,
        "cost": cost.as_dict(),
    }


def retrieve_to_file(
    work: Work,
    queries: Sequence[Query],
    output: Path,
    job: dict[str, Any],
    *,
    batch_queries: int | None = None,
    engine: Engine | None = None,
    target: Path | None = None,
    tag: str = "rerank",
    resume: bool = True,
    fresh: bool = False,
) -> tuple[int, int]:
    """Search every query in batches, checkpointing each beside ``output``, then write the run to ``target``
    (``output`` when None) from the checkpoint; returns the candidates written and the queries resumed."""
    from rerank.checkpoint import open_checkpoint

    checkpoint = open_checkpoint(output, job, resume=resume, fresh=fresh)
    try:
        counts = checkpointed(
            work, batches(queries, batch_queries or max(1, len(queries))), checkpoint, qid=lambda q: q.qid,
            prepare=list, engine=engine, total=len(queries),
        )  # fmt: skip
        _, written = write_results(checkpoint, [q.qid for q in queries], target or output, tag=tag)
    finally:
        checkpoint.close()
    checkpoint.remove()
    return written, counts.resumed
