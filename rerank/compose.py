"""Pipelines: ``bm25 % 100 >> cross_encoder % 20 >> listwise``.

``%`` after a retriever sets the retriever's own ``k`` (no wasted retrieval);
after a reranker it keeps that many of its reranked candidates for the next
stage. ``>>`` chains; ``a ^ b`` concatenates (PyTerrier's operator: a's ranking,
then b's candidates a lacks, below them). A pipeline is called on queries (its first stage a
retriever), or on a run or requests to rerank. Candidates without text get it
from ``docs``, a document store; candidates that carry text (RankLLM JSON) keep it.

The retrievers package does not know about pipelines: ``retriever >> reranker``
works through the reranker side's ``__rrshift__``. Nor does this module import
``rerank.base`` (whose operators build pipelines): a reranker is any object with
a callable ``rerank`` and a ``spec``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Union

from data.docstore import DocumentStore
from data.records import Query, Ranking, RerankRequest, Run
from rerank.cost import Cost
from rerank.spec import MethodSpec, PipelineSpec, StageSpec


class RerankerLike(Protocol):
    """What a pipeline needs of a reranker (``rerank.base.Reranker`` is one)."""

    @property
    def spec(self) -> Any: ...

    def rerank(self, requests: Sequence[RerankRequest]) -> Sequence[Any]: ...  # results with .ranking, .cost


def is_reranker(component: object) -> bool:
    """A callable ``rerank`` and a ``spec`` (looked up on the class first: a spec property is not evaluated)."""
    return callable(getattr(component, "rerank", None)) and (
        hasattr(type(component), "spec") or hasattr(component, "spec")
    )


@dataclass(frozen=True, slots=True)
class RerankStage:
    """A reranker, optionally followed by a cutoff of its output."""

    reranker: RerankerLike
    keep: int | None = None

    def __mod__(self, k: int) -> RerankStage:
        return RerankStage(self.reranker, _check_cutoff(k))

    def __rshift__(self, other: Any) -> Pipeline:
        return Pipeline((self,)) >> other

    def __rrshift__(self, other: Any) -> Pipeline:
        return Pipeline.of(other) >> self

    def __xor__(self, other: Any) -> Concatenation:
        return Pipeline((self,)) ^ other

    def __str__(self) -> str:
        return str(self.spec)

    @property
    def spec(self) -> StageSpec:
        return StageSpec(self.reranker.spec, self.keep)

    def __call__(
        self,
        inputs: Run | Sequence[RerankRequest],
        docs: DocumentStore | None = None,
        queries: Sequence[Query] | None = None,
    ) -> Run:
        return Pipeline((self,))(inputs, docs, queries)


def _retriever_spec(retriever: Any) -> StageSpec:
    params = {
        name: getattr(retriever, name) for name in getattr(retriever, "search_params", ()) if hasattr(retriever, name)
    }
    if getattr(retriever, "index_dir", None) is not None:
        params["index_dir"] = str(retriever.index_dir)  # the stage parameter that searches a built index
    return MethodSpec.of(retriever.name, params) % retriever.k


def _check_cutoff(k: object) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"a cutoff must be a positive integer, not {k!r}")
    return k


Stage = Union["RerankStage", Any]  # a RerankStage or a retriever (anything with retrieve(queries, k))


def _as_stage(component: Any) -> Stage:
    if is_reranker(component):
        return RerankStage(component)
    if isinstance(component, RerankStage) or hasattr(component, "retrieve"):
        return component
    raise TypeError(f"cannot put {type(component).__name__} in a pipeline: expected a retriever or a reranker")


@dataclass(frozen=True, slots=True)
class Pipeline:
    stages: tuple[Stage, ...]

    @classmethod
    def of(cls, component: Any) -> Pipeline:
        return component if isinstance(component, Pipeline) else cls((_as_stage(component),))

    def __post_init__(self) -> None:
        for position, stage in enumerate(self.stages):
            if position > 0 and not isinstance(stage, RerankStage):
                raise TypeError("only the first stage of a pipeline can be a retriever")

    def __rshift__(self, other: Any) -> Pipeline:
        extra = other.stages if isinstance(other, Pipeline) else (_as_stage(other),)
        return Pipeline(self.stages + extra)

    def __rrshift__(self, other: Any) -> Pipeline:
        return Pipeline.of(other) >> self

    def __mod__(self, k: int) -> Pipeline:
        last = self.stages[-1]
        cut = last % k  # a retriever takes it as its k; a rerank stage as its cutoff
        return Pipeline((*self.stages[:-1], cut))

    def __xor__(self, other: Any) -> Concatenation:
        return Concatenation((self, *Concatenation.of(other).members))

    def __rxor__(self, other: Any) -> Concatenation:
        return Concatenation((*Concatenation.of(other).members, self))

    def __str__(self) -> str:
        return str(self.spec)

    @property
    def spec(self) -> PipelineSpec:
        """The pipeline in the one pipeline language: a retriever stage names its index and search settings."""
        return PipelineSpec(tuple(s.spec if isinstance(s, RerankStage) else _retriever_spec(s) for s in self.stages))

    def __call__(
        self,
        inputs: Sequence[Query] | Run | Sequence[RerankRequest],
        docs: DocumentStore | None = None,
        queries: Sequence[Query] | None = None,
        *,
        batch_queries: int | None = None,
    ) -> Run:
        return self.run_with_cost(inputs, docs, queries, batch_queries=batch_queries)[0]

    def run_with_cost(
        self,
        inputs: Sequence[Query] | Run | Sequence[RerankRequest],
        docs: DocumentStore | None = None,
        queries: Sequence[Query] | None = None,
        *,
        batch_queries: int | None = None,
    ) -> tuple[Run, list[Cost]]:
        """The final run and the total cost of each rerank stage.

        Each rerank stage runs in the core's batch loop without a store, with a progress bar:
        ``batch_queries`` queries per call (None: all in one call)."""
        stages = list(self.stages)
        requests: list[RerankRequest]
        if isinstance(inputs, Run):
            if queries is None:
                raise ValueError("reranking a run needs the queries' texts: pass queries=")
            by_qid = {q.qid: q for q in queries}
            missing = [qid for qid in inputs.qids if qid not in by_qid]
            if missing:
                raise ValueError(f"no text for query {missing[0]!r} of the run")
            requests = [RerankRequest(by_qid[r.qid], r.candidates) for r in inputs]
        elif inputs and all(isinstance(x, RerankRequest) for x in inputs):
            requests = list(inputs)  # type: ignore[arg-type]
        else:
            query_list = [q for q in inputs if isinstance(q, Query)]
            if len(query_list) != len(inputs):
                raise TypeError("a pipeline takes queries, a run, or rerank requests")
            first = stages.pop(0) if stages else None
            if first is None or isinstance(first, RerankStage):
                raise ValueError("queries alone need a pipeline that starts with a retriever")
            run = first.retrieve(query_list)
            by_qid = {q.qid: q for q in query_list}
            requests = [RerankRequest(by_qid[r.qid], r.candidates) for r in run]
        if stages and not isinstance(stages[0], RerankStage):
            raise ValueError("this pipeline starts with a retriever: call it on queries")
        requests, per_stage = _through(stages, requests, docs, batch_queries=batch_queries, progress=True)
        costs = [sum((result.cost for result in results), Cost()) for results in per_stage]
        rankings = [Ranking(r.query.qid, r.candidates) for r in requests]
        return Run.from_rankings(rankings, name=str(self)), costs

    def rerank(self, requests: Sequence[RerankRequest]) -> list[PipelineResult]:
        """A pipeline of rerankers used as one: each request's final ranking and its cost over every stage.

        Candidates a stage's cutoff drops are not in the final ranking (as in a written run).
        """
        if any(not isinstance(stage, RerankStage) for stage in self.stages):
            raise ValueError("this pipeline starts with a retriever: call it on queries")
        final, per_stage = _through(list(self.stages), list(requests), None, batch_queries=None, progress=False)
        totals = [sum((results[n].cost for results in per_stage), Cost()) for n in range(len(final))]
        return [PipelineResult(Ranking(r.query.qid, r.candidates), c) for r, c in zip(final, totals, strict=True)]


@dataclass(frozen=True, slots=True)
class Concatenation:
    """``a ^ b ^ ...`` of live pipelines (PyTerrier's concatenation, ``retrievers.fusion.concatenate``): the first
    member's ranking, then each next member's candidates not ranked yet, scored below everything before them.

    Called like a pipeline (on queries, a run or requests) it runs every member on the same input; ``rerank``
    serves members that are all rerankers. To rerank a concatenation further, run its spec:
    ``rerank.run((a ^ b).spec >> c)``, where each member stage is kept in the store.
    """

    members: tuple[Pipeline, ...]

    @classmethod
    def of(cls, component: Any) -> Concatenation:
        return component if isinstance(component, Concatenation) else cls((Pipeline.of(component),))

    def __xor__(self, other: Any) -> Concatenation:
        return Concatenation((*self.members, *Concatenation.of(other).members))

    def __rxor__(self, other: Any) -> Concatenation:
        return Concatenation((*Concatenation.of(other).members, *self.members))

    def __str__(self) -> str:
        return str(self.spec)

    @property
    def spec(self) -> PipelineSpec:
        from rerank.spec import concatenate

        return concatenate(*(member.spec for member in self.members))

    def __call__(
        self,
        inputs: Sequence[Query] | Run | Sequence[RerankRequest],
        docs: DocumentStore | None = None,
        queries: Sequence[Query] | None = None,
        *,
        batch_queries: int | None = None,
    ) -> Run:
        from retrievers.fusion import concatenate

        runs = [member(inputs, docs, queries, batch_queries=batch_queries) for member in self.members]
        return concatenate(runs, name=str(self))

    def rerank(self, requests: Sequence[RerankRequest]) -> list[PipelineResult]:
        """Every member reranks the same requests; each request's concatenated ranking and the members' cost."""
        from retrievers.fusion import concatenate

        per_member = [member.rerank(requests) for member in self.members]
        results = []
        for n, request in enumerate(requests):
            rankings = [Run.from_rankings([results[n].ranking]) for results in per_member]
            joined = concatenate(rankings)
            ranking = joined[request.query.qid] if request.query.qid in joined else Ranking(request.query.qid, ())
            results.append(PipelineResult(ranking, sum((r[n].cost for r in per_member), Cost())))
        return results


@dataclass(frozen=True, slots=True)
class PipelineResult:
    """What ``Pipeline.rerank`` gives per request (the shape of ``rerank.base.RerankResult``)."""

    ranking: Ranking
    cost: Cost


def _through(
    stages: Sequence[RerankStage],
    requests: list[RerankRequest],
    docs: DocumentStore | None,
    *,
    batch_queries: int | None,
    progress: bool,
) -> tuple[list[RerankRequest], list[Sequence[Any]]]:
    """Every stage in turn, each in the core's batch loop run without a store (``rerank.core.loop``): what
    the last leaves (each cut to its ``keep``), and each stage's results."""
    from rerank.core.loop import rerank_in_memory

    per_stage: list[Sequence[Any]] = []
    for stage in stages:
        results = rerank_in_memory(
            stage.reranker.rerank, requests, docs, batch_queries=batch_queries, progress=progress
        )
        requests = [
            RerankRequest(request.query, result.ranking.candidates[: stage.keep])
            for request, result in zip(requests, results, strict=True)
        ]
        per_stage.append(results)
    return requests, per_stage
