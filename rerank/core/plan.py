"""Plan: a pipeline spec checked and resolved once, and the source it runs over.

A pipeline's stages are its prefixes: ``bm25 % 100 >> bi-encoder % 20 >> first`` has three, each
the input of the next; a fusion stage also needs its member pipelines. ``needs`` is the one walk
of that graph (the executor, its status and the Ray leaderboard all use it). Every stage has a
kind, decided here once by its explicit name: ``given`` (a run file), ``retriever``, ``fusion`` or
``reranker``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.docstore import DocumentStore
from data.errors import DatasetNotFoundError, InvalidSpecError, RerankWarning
from data.records import Query, Ranking, RerankRequest, Run
from rerank.spec import MethodSpec, PipelineSpec, StageSpec, Value

DEFAULT_DEPTH = 100
GIVEN = "run"
GIVEN_INDEX = "index_dir"  # a retriever stage over an index built elsewhere (rerank retrieve)
GIVEN_FORMATS = ("trec", "rankllm", "jsonl")
FUSION = ("rrf", "interpolate", "concat")  # concat: the ``A ^ B`` of the pipeline language
KINDS = ("given", "fusion", "retriever", "reranker")


@dataclass(frozen=True)
class Source:
    """What a pipeline runs over: queries, document texts, and a dataset's runs and corpus when there is one."""

    name: str  # the store's folder for this source
    queries: tuple[Query, ...]
    docs: DocumentStore | None = None
    dataset: Any = None  # a data.Dataset: run(name=...), retrievers over its corpus
    corpus_file: Path | None = None  # the documents' file, for the key (the dataset's when None)

    @functools.cached_property
    def queries_digest(self) -> str:
        from rerank.identity import digest_text

        return digest_text(*(f"{q.qid}\t{q.text}" for q in self.queries))

    @functools.cached_property
    def corpus_digest(self) -> str | None:
        from rerank.identity import digest_path

        path = self.corpus_file or dataset_corpus(self.dataset)
        return digest_path(path) if path is not None else None

    def run_file(self, spec: MethodSpec) -> Path:
        return given_run_path(spec, self.dataset)


def given_run_path(spec: MethodSpec, dataset: Any) -> Path:
    """The file of a given run: ``run(name=N)`` of the dataset, or ``run(path=FILE[, format=F])``."""
    params = spec.kwargs
    if set(params) == {"name"} and dataset is not None:
        return Path(dataset.run_path(str(params["name"])))
    if set(params) in ({"path"}, {"path", "format"}):
        path = Path(str(params["path"]))
        if not path.is_file():
            raise DatasetNotFoundError(f"{spec}: no such run file {path}")
        return path
    raise InvalidSpecError(f"{spec}: a given run is run(name=NAME) over a dataset, or run(path=FILE)")


def dataset_corpus(dataset: Any) -> Path | None:
    if dataset is None:
        return None
    from data.beir import find_file

    beir = dataset.info.layout == "beir"
    return Path(find_file(dataset.root if beir else dataset.root.parent, "corpus.jsonl" if beir else "passages.tsv"))


def stage_kind(spec: MethodSpec, first: bool) -> str:
    """given, fusion, retriever or reranker: by the stage's explicit name."""
    from rerank.registry import METHODS
    from retrievers.registry import RETRIEVERS

    if first:
        if spec.name == GIVEN:
            return "given"
        if spec.name in FUSION:
            return "fusion"
        if spec.name in RETRIEVERS:
            return "retriever"
        raise InvalidSpecError(
            f"{spec}: a pipeline starts with run(...), a retriever ({', '.join(RETRIEVERS.names())}) "
            f"or fusion ({', '.join(FUSION)}), not {spec.name!r}"
        )
    if spec.name in METHODS:
        return "reranker"
    raise InvalidSpecError(
        f"unknown reranking method {spec.name!r} in a later stage; known: {', '.join(METHODS.names())}"
    )


def last_kind(pipeline: PipelineSpec) -> str:
    """The kind of a pipeline's last stage."""
    return stage_kind(pipeline.last.spec, len(pipeline.stages) == 1)


def resolve_pipeline(pipeline: PipelineSpec) -> PipelineSpec:
    """The pipeline with the first stage's default depth written out, fusion inputs too."""
    first = pipeline.first
    spec = first.spec
    if spec.inputs:
        spec = MethodSpec(spec.name, spec.params, tuple(resolve_pipeline(p) for p in spec.inputs))
    return PipelineSpec((StageSpec(spec, first.cutoff or DEFAULT_DEPTH), *pipeline.stages[1:]))


def fusion_members(pipeline: PipelineSpec) -> list[PipelineSpec]:
    """The member pipelines a one-stage fusion pipeline fuses (resolved); none for any other pipeline."""
    if len(pipeline.stages) > 1 or pipeline.first.spec.name not in FUSION:
        return []
    return [resolve_pipeline(m) for m in pipeline.first.spec.inputs]


def previous(pipeline: PipelineSpec) -> PipelineSpec | None:
    """The stage before a pipeline's last: its prefix, or None for a one-stage pipeline."""
    return pipeline.prefix(len(pipeline.stages) - 1) if len(pipeline.stages) > 1 else None


def needs(pipeline: PipelineSpec) -> list[PipelineSpec]:
    """The stages the last stage of a (resolved) pipeline reads: its prefix, then a fusion's members."""
    before = previous(pipeline)
    return ([before] if before is not None else []) + fusion_members(pipeline)


def every_stage(pipeline: PipelineSpec) -> Iterator[PipelineSpec]:
    """Every stage a pipeline needs, each once, inputs before what reads them (the pipeline itself last)."""
    seen: set[str] = set()

    def walk(stage: PipelineSpec) -> Iterator[PipelineSpec]:
        if str(stage) in seen:
            return
        for needed in needs(stage):
            yield from walk(needed)
        seen.add(str(stage))
        yield stage

    yield from walk(resolve_pipeline(pipeline))


def check_pipeline(pipeline: PipelineSpec, *, environment: bool = False) -> PipelineSpec:
    """Check every stage's name and parameters before any work starts; returns the resolved pipeline.

    With ``environment``, also that each stage's model and device exist here (for a pipeline about
    to run, not for one only parsed or keyed)."""
    from data.models import check_model
    from data.registry import check_values, constructor_annotations, function_annotations
    from rerank.registry import check_reranker, resolve_spec
    from retrievers.registry import RETRIEVERS

    resolved = resolve_pipeline(pipeline)
    depth: int | None = None
    for position, stage in enumerate(resolved.stages):
        if stage.cutoff is not None:
            if depth is not None and stage.cutoff > depth:
                warnings.warn(
                    f"{resolved}: {stage.spec.name} keeps {stage.cutoff} but gets only {depth} candidates",
                    RerankWarning,
                    stacklevel=2,
                )
            depth = min(stage.cutoff, depth or stage.cutoff)
        kind = stage_kind(stage.spec, position == 0)
        if kind == "reranker":
            (check_reranker if environment else resolve_spec)(stage.spec)
        elif kind == "given":
            if set(stage.spec.kwargs) not in ({"name"}, {"path"}, {"path", "format"}):
                raise InvalidSpecError(f"{stage.spec}: a given run is run(name=NAME) or run(path=FILE[, format=F])")
            if stage.spec.kwargs.get("format", "trec") not in GIVEN_FORMATS:
                raise InvalidSpecError(f"{stage.spec}: format is one of {', '.join(GIVEN_FORMATS)}")
        elif kind == "fusion":
            fusion_params(stage.spec)
            for member in stage.spec.inputs:
                check_pipeline(member, environment=environment)
        elif kind == "retriever":
            retriever = RETRIEVERS.get(stage.spec.name)
            accepted = {*retriever.parameters(), GIVEN_INDEX}
            unknown = sorted(set(stage.spec.kwargs) - accepted)
            if unknown:
                raise InvalidSpecError(
                    f"{stage.spec}: retriever {stage.spec.name!r} has no parameter {unknown[0]!r}; "
                    f"it takes {', '.join(sorted(accepted))}"
                )
            types = {**function_annotations(retriever.build), **constructor_annotations(retriever)}  # type: ignore[attr-defined]
            check_values(stage.spec.kwargs, types, str(stage.spec))
            if environment and isinstance(stage.spec.kwargs.get("model"), str):
                check_model(str(stage.spec.kwargs["model"]), what=f"{stage.spec}: model")
    return resolved


def fusion_params(spec: MethodSpec) -> dict[str, Value]:
    defaults: dict[str, dict[str, Value]] = {
        "rrf": {"k": 60},
        "interpolate": {"weights": None, "normalization": "minmax"},
        "concat": {},
    }
    allowed = defaults[spec.name]
    unknown = set(spec.kwargs) - set(allowed)
    if unknown:
        takes = f"takes {', '.join(sorted(allowed))}" if allowed else "takes no parameters"
        raise InvalidSpecError(f"{spec}: {spec.name} {takes}, not {sorted(unknown)[0]!r}")
    if len(spec.inputs) < 2:
        raise InvalidSpecError(f"{spec}: {spec.name} fuses at least two pipelines: {spec.name}(A | B, ...)")
    return {**allowed, **spec.kwargs}


# -- given runs ---------------------------------------------------------------------------------


def given_format(spec: MethodSpec) -> str:
    return str(spec.kwargs.get("format", "trec"))


def read_given_run(spec: MethodSpec, path: Path) -> Run:
    """A given run: a TREC file, or candidates in RankLLM JSON or JSONL (their order and scores)."""
    if given_format(spec) == "trec":
        from data.trec import read_trec_run

        return read_trec_run(path)
    return Run.from_rankings(Ranking.sorted(r.query.qid, r.candidates) for r in read_given_requests(spec, path))


def read_given_requests(spec: MethodSpec, path: Path | None = None) -> list[RerankRequest]:
    """The candidates (with their texts) of a given run in RankLLM JSON or JSONL."""
    from data.jsonl import read_candidates_jsonl
    from data.rankllm import read_rankllm_requests

    read = read_rankllm_requests if given_format(spec) == "rankllm" else read_candidates_jsonl
    return list(read(str(path or spec.kwargs["path"])))


def given_rankings(spec: MethodSpec, dataset: Any) -> Iterator[Ranking]:
    """The given run's rankings in order of first appearance; a TREC file streams."""
    path = given_run_path(spec, dataset)
    if given_format(spec) == "trec":
        from data.trec import iter_run_groups

        return iter_run_groups(path)
    return iter(read_given_run(spec, path))


def given_query_order(spec: MethodSpec, dataset: Any) -> list[str]:
    """The given run's query ids in order of first appearance; a TREC file is scanned, not held."""
    path = given_run_path(spec, dataset)
    if given_format(spec) == "trec":
        from data.trec import run_query_order

        return run_query_order(path)[0]
    return read_given_run(spec, path).qids


def cut(run: Run, depth: int) -> Run:
    return Run.from_rankings((Ranking(r.qid, r.candidates[:depth]) for r in run), name=run.name)


# -- sources ------------------------------------------------------------------------------------


def source_for_dataset(dataset: Any, queries: Iterable[Query] | None = None, name: str | None = None) -> Source:
    """A dataset as a source: its queries (or the given ones), its document store, runs and corpus."""
    chosen = tuple(queries) if queries is not None else tuple(dataset.queries())
    return Source(name or dataset.name, chosen, dataset.docs(), dataset)


def source_for(
    pipeline: PipelineSpec,
    *,
    dataset: Any = None,
    topics: str | Path | None = None,
    corpus: str | Path | None = None,
    max_queries: int | None = None,
) -> Source:
    """The queries, texts and corpus a pipeline runs over; with a given run, its queries in its order.

    Queries come from a given run's own candidates (RankLLM JSON or JSONL carry texts), ``topics``
    or the dataset; texts from ``corpus``, those candidates or the dataset. Each input is read once.
    """
    from data.corpus import corpus_store
    from data.docstore import MemoryDocumentStore
    from data.tsv import read_topics
    from rerank.identity import digest_text

    first = pipeline.first.spec
    corpus_file: Path | None = Path(corpus) if corpus else None
    docs: DocumentStore | None = corpus_store(str(corpus)) if corpus else (dataset.docs() if dataset else None)
    texts: dict[str, Query]
    order: list[str] | None = None
    if first.name == GIVEN and given_format(first) != "trec":
        requests = read_given_requests(first)
        texts = {r.query.qid: r.query for r in requests}
        order = list(texts)
        docs = MemoryDocumentStore(candidate_documents(requests, str(first.kwargs["path"])))
        corpus_file = Path(str(first.kwargs["path"]))  # the texts are inside the candidates file
    elif topics:
        texts = {q.qid: q for q in read_topics(str(topics))}
    elif dataset is not None:
        texts = {q.qid: q for q in dataset.queries()}
    else:
        raise ValueError("--run without --dataset needs --topics (or --input-format rankllm|jsonl)")
    if first.name == GIVEN:
        order = order if order is not None else given_query_order(first, dataset)
        missing = [qid for qid in order if qid not in texts]
        if missing:
            raise DatasetNotFoundError(f"query {missing[0]!r} of the run has no text in the topics")
        queries = tuple(texts[qid] for qid in order)
    else:
        queries = tuple(texts.values())
    queries = queries[:max_queries]
    if dataset is not None and not (topics or corpus):
        name = dataset.name
    else:  # stages over other files get their own folder in the store
        name = "files-" + digest_text(*(f"{q.qid}\t{q.text}" for q in queries), str(corpus_file))[:10]
    return Source(name, queries, docs, dataset, corpus_file)


def candidate_documents(requests: Sequence[Any], path: str) -> list[Any]:
    """The documents a candidates file holds: a passage retrieved for several queries is one document, and
    one docid with two different texts is an error naming both queries (a store holds one text per docid)."""
    from data.errors import ParseError
    from data.records import Document

    found: dict[str, tuple[str, str]] = {}  # docid: (text, the first query holding it)
    for request in requests:
        for candidate in request.candidates:
            text = candidate.text or ""
            first = found.setdefault(candidate.docid, (text, request.query.qid))
            if first[0] != text:
                raise ParseError(path, None, f"docid {candidate.docid!r} has one text for query {first[1]!r} and "
                                             f"another for query {request.query.qid!r}")  # fmt: skip
    return [Document(docid, text) for docid, (text, _) in found.items()]
