"""Engines run a job's batches: here in this process, or on a Ray cluster (``rerank.ray_engine``).

What a batch needs is a ``Work``: a small picklable record that loads a model or an index once
(``load``) and gives the function applied to each batch. ``RerankWork`` reranks requests;
``RetrieveWork`` searches queries. An engine takes the batches still to do, as ``(position, items)``
pairs read lazily from the input, and yields ``(position, results)`` as batches finish, in any
order: the job checkpoints each and writes its output in the input's order, so the file is the
same whatever the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rerank.base import Reranker
from rerank.core.loop import Batch, Engine, Finished, LocalEngine, LocalRunner, Runner, Work
from rerank.result import RerankResult
from rerank.spec import MethodSpec, parse_spec

__all__ = [
    "Batch", "Engine", "Finished", "LocalEngine", "LocalRunner", "RerankWork", "RetrieveWork", "Runner", "Work",
    "load_with_cache", "rerank_work", "search",
]  # fmt: skip


@dataclass(frozen=True)
class RerankWork:
    """Rerank batches of requests with the method ``spec``; outputs cached in ``cache`` when given.

    The spec travels parsed (it pickles to Ray workers as it is): nothing downstream parses it again."""

    spec: MethodSpec
    cache: str | None = None

    def load(self) -> Callable[[list[Any]], list[RerankResult]]:
        return load_with_cache(self.spec, self.cache).rerank


@dataclass(frozen=True)
class RetrieveWork:
    """Search batches of queries in the index at ``index`` (search options ``options``), ``depth`` each."""

    index: str
    depth: int
    options: tuple[tuple[str, Any], ...] = field(default=())

    def load(self) -> Callable[[list[Any]], list[RerankResult]]:
        from retrievers.registry import open_index

        retriever = open_index(self.index, **dict(self.options))
        return lambda queries: search(retriever, queries, self.depth)


def rerank_work(spec: MethodSpec | str, cache: str | Path | None) -> RerankWork:
    """The work of reranking with ``spec`` (outputs cached in ``cache`` when given)."""
    return RerankWork(parse_spec(spec) if isinstance(spec, str) else spec, None if cache is None else str(cache))


def search(retriever: Any, queries: list[Any], depth: int) -> list[RerankResult]:
    """Each query's ranking, in the batch's order; a query the index matches nothing for still gets its
    (empty) ranking, so a resumed job does not search it again."""
    from data.records import Ranking
    from rerank.cost import Cost

    found = {r.qid: r for r in retriever.retrieve(queries, depth)}
    return [RerankResult(found.get(q.qid, Ranking(q.qid, ())), Cost()) for q in queries]


def load_with_cache(spec: MethodSpec, cache: str | Path | None) -> Reranker:
    """The method of ``spec``, loaded, with its outputs cached in ``cache`` when given."""
    from rerank.registry import load_reranker

    reranker = load_reranker(spec)
    if cache:
        from rerank.cache import OutputCache

        if not hasattr(reranker, "use_cache"):
            raise ValueError(f"{spec.name} has no output cache")
        reranker.use_cache(OutputCache(cache))
    return reranker
