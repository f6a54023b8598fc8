"""The batch loop: one checkpointed loop for every stage that calls a model or an index, and the
protocol of the engines it runs batches on.

A stage's input is read lazily in batches of queries at fixed positions. A batch whose queries
are all checkpointed is skipped (what it cost when an earlier run computed it is kept, so a job's
time spans its pieces); the others go to an engine (``rerank.engine``: this process or a Ray
cluster), which loads its work only when there is something to do, and every finished batch is
checkpointed before the next is counted. The output is then written from the checkpoint in the
input's order, so it is the same bytes whatever the engine, the batch order or the interruptions.
Retrieval (queries → rankings) and reranking (rankings → rankings) are the same loop with other work
(``rerank.core.jobs`` runs it into files). A pipeline of live objects runs the same loop in memory
(``rerank_in_memory``). This module imports no reranker or registry: ``rerank.compose``, which the
reranker base class builds pipelines with, runs its stages here.
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from data.records import RerankRequest
from rerank.result import RerankResult

if TYPE_CHECKING:
    from rerank.checkpoint import Checkpoint

T = TypeVar("T")
log = logging.getLogger("rerank")

Batch = tuple[int, list[Any]]
Finished = tuple[int, list[RerankResult]]


class Work(Protocol):
    def load(self) -> Callable[[list[Any]], list[RerankResult]]:
        """Load what the batches need (a model, an index) and give the function applied to each."""
        ...


class Engine(Protocol):
    def start(self, work: Work) -> Runner:
        """Load the work wherever batches will run; a model that cannot load fails here, before any batch."""
        ...


class Runner(Protocol):
    def run(self, batches: Iterable[Batch]) -> Iterator[Finished]: ...

    def close(self) -> None: ...


@dataclass
class LocalEngine:
    """Batches one after another, in this process."""

    def start(self, work: Work) -> LocalRunner:
        return LocalRunner(work.load())


@dataclass
class LocalRunner:
    apply: Callable[[list[Any]], list[RerankResult]]

    def run(self, batches: Iterable[Batch]) -> Iterator[Finished]:
        for position, items in batches:
            yield position, self.apply(items)

    def close(self) -> None:
        pass


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
