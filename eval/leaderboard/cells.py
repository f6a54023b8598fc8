"""Leaderboard cells: one pipeline on one dataset, computed once by the staged executor and kept with its manifest.

A cell is a stage output of the pipeline core (``rerank.core``): a folder under ``cells/DATASET/`` holding
``run.trec.gz`` and ``manifest.json``, whose ``key`` names what the result depends on (resolved
spec, input digests, weights, library versions, device, dtype, the method's version). A cell whose
key still matches is never recomputed; every prefix of a pipeline is a cell of its own, so
``run(name=bm25) % 20`` is retrieved once for every reranker on top of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data.datasets import Dataset
from data.records import Query
from rerank.core.executor import Executor
from rerank.core.plan import Source
from rerank.core.store import StageOutput, StageStatus
from rerank.spec import PipelineSpec


@dataclass(frozen=True)
class Cell(StageOutput):
    """A stage output with its dataset; ``pipeline`` is as the config writes it."""

    dataset: str = ""


class CellRunner:
    """Computes cells under ``output/cells`` (indexes under ``cache``), reusing every cell whose key matches."""

    def __init__(
        self,
        output: Path,
        cache: Path,
        *,
        query_limit: int | None = None,
        batch_queries: int = 4,
        recompute: Sequence[str] = (),
    ):
        self.output, self.query_limit = output, query_limit
        self.executor = Executor(output / "cells", index_cache=cache, batch_queries=batch_queries, recompute=recompute)
        self._datasets: dict[str, Dataset] = {}
        self._sources: dict[str, Source] = {}

    @property
    def computed(self) -> list[str]:
        return self.executor.computed

    def dataset(self, name: str) -> Dataset:
        import data

        if name not in self._datasets:
            self._datasets[name] = data.load(name)
        return self._datasets[name]

    def queries(self, name: str) -> list[Query]:
        """The judged queries in the dataset's order; with ``query_limit``, the first of them."""
        dataset = self.dataset(name)
        judged = set(dataset.qrels().qids)
        return [q for q in dataset.queries() if q.qid in judged][: self.query_limit]

    def source(self, name: str) -> Source:
        if name not in self._sources:
            dataset = self.dataset(name)
            self._sources[name] = Source(name, tuple(self.queries(name)), dataset.docs(), dataset)
        return self._sources[name]

    def cell(self, dataset: str, pipeline: PipelineSpec) -> Cell:
        """The cell of a pipeline on a dataset, computed (with its prefixes) unless up to date."""
        found = self.executor.output(pipeline, self.source(dataset))
        assert found is not None
        return Cell(pipeline, found.directory, found.manifest, dataset)

    def existing(self, dataset: str, pipeline: PipelineSpec) -> Cell | None:
        """The cell if it and everything it depends on are up to date; nothing is computed."""
        found = self.executor.output(pipeline, self.source(dataset), compute=False)
        return None if found is None else Cell(pipeline, found.directory, found.manifest, dataset)

    def status(self, dataset: str, pipeline: PipelineSpec) -> list[StageStatus]:
        return self.executor.status(pipeline, self.source(dataset))
