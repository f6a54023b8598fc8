"""Engines run a reranking job's batches: here in this process, or on a Ray cluster (``rerank.ray_engine``).

An engine takes the batches still to do, as ``(position, requests)`` pairs read lazily from the
run, and yields ``(position, results)`` as batches finish, in any order: the job checkpoints each
and writes the output in the run's order, so the file is the same whatever the engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from data.records import RerankRequest
from rerank.base import Reranker, RerankResult
from rerank.spec import MethodSpec

Batch = tuple[int, list[RerankRequest]]
Finished = tuple[int, list[RerankResult]]


class Engine(Protocol):
    def start(self, spec: MethodSpec, *, cache: str | Path | None = None) -> Runner:
        """Load the method wherever batches will run; a model that cannot load fails here, before any batch."""
        ...


class Runner(Protocol):
    def rerank(self, batches: Iterable[Batch]) -> Iterator[Finished]: ...

    def close(self) -> None: ...


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


@dataclass
class LocalEngine:
    """Batches one after another, in this process."""

    def start(self, spec: MethodSpec, *, cache: str | Path | None = None) -> LocalRunner:
        return LocalRunner(load_with_cache(spec, cache))


@dataclass
class LocalRunner:
    reranker: Reranker

    def rerank(self, batches: Iterable[Batch]) -> Iterator[Finished]:
        for position, requests in batches:
            yield position, self.reranker.rerank(requests)

    def close(self) -> None:
        pass
