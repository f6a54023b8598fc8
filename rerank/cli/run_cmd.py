"""Run a pipeline, or rerank a first-stage run, and write the result (TREC, RankLLM JSON or JSONL).

--pipeline SPEC runs a whole cascade over a dataset (or --topics/--corpus files), e.g.
  'run(name=bm25) % 100 >> bi-encoder(model=minilm) % 20 >> first(model=qwen2.5-coder-0.5b)'
  or 'bm25 % 100 >> ...' (a BM25 index of the corpus, built once). Earlier stages are kept in
  --work-dir and reused while their key (spec, inputs, weights, library versions) is unchanged.

One-stage shorthand:
  --run RUN with --dataset NAME (RUN is one of its runs, e.g. bm25, or a file):
      queries and document texts come from the dataset;
  --run FILE --topics FILE --corpus FILE: any TREC run, topics TSV and corpus
      (BEIR corpus.jsonl[.gz] or a 'docid<TAB>text' TSV);
  --run FILE --input-format rankllm|jsonl: candidates with their texts inside.

The method is --reranker SPEC, or --method NAME with --model M. Only the top
--top-k of each query are reranked; the rest are dropped from the output.

The job checkpoints after every batch of queries (OUTPUT.checkpoint). After an
interruption, the same command with --resume continues it and writes the same
bytes an uninterrupted run writes. The output appears only when complete.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.beir import read_qrels
from data.corpus import corpus_store
from data.datasets import Dataset
from data.docstore import DocumentStore, MemoryDocumentStore
from data.errors import DatasetNotFoundError, RerankWarning
from data.jsonl import read_candidates_jsonl
from data.rankllm import read_rankllm_requests
from data.records import Candidate, Document, Qrels, Query, Ranking, RerankRequest, Run
from data.textio import atomic_writer, is_special_output
from data.trec import iter_run_groups, iter_run_rankings, run_query_order, write_trec_run
from data.tsv import read_topics
from rerank.cli import paths
from rerank.cli.common import (
    add_data_arguments,
    add_engine_arguments,
    add_format_argument,
    add_method_options,
    dataset_from,
    engine_from,
    method_options,
    output_format,
    print_json,
)
from rerank.cli.plugins import command_module
from rerank.engine import rerank_work
from rerank.executor import Executor, Source, StageOutput, check_pipeline, digest_text, given_run_path, stage_kind
from rerank.spec import MethodSpec, PipelineSpec, parse_pipeline, parse_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    method = parser.add_argument_group("what to run (one of)")
    method.add_argument(
        "--pipeline", metavar="SPEC",
        help="a whole cascade, e.g. 'run(name=bm25) %% 100 >> bi-encoder(model=minilm) %% 20 >> first(model=M)'",
    )  # fmt: skip
    method.add_argument(
        "--reranker", metavar="SPEC", help="a method spec, e.g. 'cross-encoder(model=M, max_length=256)'"
    )
    method.add_argument("--method", metavar="NAME", help="a registered method name (with --model)")
    method.add_argument("--model", metavar="M", help="model pack, folder or Hugging Face id for --method")
    add_method_options(method)
    parser.add_argument("--output", required=True, metavar="FILE", help="the reranked run (.gz to compress)")
    parser.add_argument("--output-format", choices=("trec", "rankllm", "jsonl"), default="trec")
    add_data_arguments(parser)
    parser.add_argument("--run", metavar="RUN", help="a dataset run name, a run file, or - for standard input")
    parser.add_argument("--input-format", choices=("trec", "rankllm", "jsonl"), default="trec", help="format of --run")
    parser.add_argument("--topics", metavar="FILE", help="queries as 'qid<TAB>text' (default: the dataset's)")
    parser.add_argument("--corpus", metavar="FILE", help="document texts: BEIR corpus.jsonl[.gz] or 'docid<TAB>text'")
    parser.add_argument("--top-k", "--k", dest="k", type=int, default=100, help="rerank the top K of each query (100)")
    parser.add_argument(
        "--keep-rest", action="store_true",
        help="after the reranked top K, append the run's other candidates in their first-stage order, scored below "
        "them (the full depth, e.g. for a TREC submission)",
    )  # fmt: skip
    parser.add_argument("--batch-queries", type=int, default=8, metavar="N", help="queries per reranker call")
    parser.add_argument(
        "--max-queries", type=int, metavar="N", help="rerank only the run's first N queries (--eval compares those)"
    )
    parser.add_argument("--eval", action="store_true", help="print metrics before and after (needs qrels)")
    parser.add_argument("--qrels", metavar="FILE", help="qrels for --eval (default: the dataset's)")
    parser.add_argument("--cache", metavar="DIR", help="cache model outputs here; re-runs of the same work are free")
    parser.add_argument("--work-dir", metavar="DIR",
                        help="where a pipeline's earlier stages are kept and reused ($RERANK_CACHE_DIR/stages)")  # fmt: skip
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    parser.add_argument("--fresh", action="store_true", help="discard any checkpoint and previous output")
    parser.add_argument("--tag", default="rerank", help="the run tag column")
    add_format_argument(parser, "the summary", old="--summary")
    add_engine_arguments(parser)


def method_spec(args: argparse.Namespace) -> MethodSpec:
    if args.reranker and (args.method or args.model):
        raise ValueError("give --reranker SPEC or --method NAME --model M, not both")
    options = method_options(args)
    if args.reranker:
        return parse_spec(args.reranker)
    if not args.method:
        raise ValueError("give --pipeline SPEC, --reranker SPEC or --method NAME --model M")
    spec = parse_spec(args.method)
    return MethodSpec.of(spec.name, {**spec.kwargs, **({"model": args.model} if args.model else {}), **options})


def pipeline_from(args: argparse.Namespace, dataset: Dataset | None) -> PipelineSpec:
    """``--pipeline SPEC``, or the one-stage shorthand: the given run's top K, then ``--reranker``."""
    if args.pipeline:
        method_options(args)
        if args.reranker or args.method or args.model or args.run:
            raise ValueError("--pipeline holds the whole cascade: give it without --run, --reranker or --method")
        return check_pipeline(parse_pipeline(args.pipeline), environment=True)
    if not args.run:
        raise ValueError("give --pipeline SPEC, or --run RUN with --reranker SPEC")
    spec = method_spec(args)
    if args.input_format == "trec" and dataset is not None and args.run in dataset.runs:
        given = MethodSpec.of("run", {"name": args.run})
    elif not Path(args.run).is_file():
        known = f"; {dataset.name} has runs {', '.join(dataset.runs)}" if dataset else ""
        raise DatasetNotFoundError(f"--run {args.run!r} is neither a file nor a run of the dataset{known}")
    elif args.input_format == "trec":
        given = MethodSpec.of("run", {"path": args.run})
    else:
        given = MethodSpec.of("run", {"path": args.run, "format": args.input_format})
    return check_pipeline(given % args.k >> spec, environment=True)


def source_from(args: argparse.Namespace, dataset: Dataset | None, pipeline: PipelineSpec) -> Source:
    """The queries, texts and corpus a pipeline runs over; with a given run, its queries in its order."""
    first = pipeline.first.spec
    corpus_file: Path | None = Path(args.corpus) if args.corpus else None
    docs: DocumentStore | None = corpus_store(args.corpus) if args.corpus else (dataset.docs() if dataset else None)
    texts: dict[str, Query] | None = None
    if first.name == "run" and first.kwargs.get("format", "trec") != "trec":
        requests = read_given_requests(first)
        texts = {r.query.qid: r.query for r in requests}
        docs = MemoryDocumentStore(Document(c.docid, c.text or "") for r in requests for c in r.candidates)
        corpus_file = Path(str(first.kwargs["path"]))  # the texts are inside the candidates file
    elif args.topics:
        texts = {q.qid: q for q in read_topics(args.topics)}
    elif dataset is not None:
        texts = {q.qid: q for q in dataset.queries()}
    else:
        raise ValueError("--run without --dataset needs --topics (or --input-format rankllm|jsonl)")
    if first.name == "run":
        order = given_query_order(first, dataset)
        missing = [qid for qid in order if qid not in texts]
        if missing:
            raise DatasetNotFoundError(f"query {missing[0]!r} of the run has no text in the topics")
        queries = tuple(texts[qid] for qid in order)
    else:
        queries = tuple(texts.values())
    queries = queries[: args.max_queries]
    if dataset is not None and not (args.topics or args.corpus):
        name = dataset.name
    else:  # stages over other files get their own folder in the store
        name = "files-" + digest_text(*(f"{q.qid}\t{q.text}" for q in queries), str(corpus_file))[:10]
    return Source(name, queries, docs, dataset, corpus_file)


def read_given(spec: MethodSpec, dataset: Dataset | None) -> Run:
    from rerank.executor import given_run_path, read_given_run

    return read_given_run(spec, given_run_path(spec, dataset))


def given_query_order(spec: MethodSpec, dataset: Dataset | None) -> list[str]:
    """The given run's query ids in order of first appearance; a TREC file is scanned, not held."""
    if spec.kwargs.get("format", "trec") == "trec":
        return run_query_order(given_run_path(spec, dataset))[0]
    return read_given(spec, dataset).qids


def read_given_requests(spec: MethodSpec) -> list[RerankRequest]:
    read = read_rankllm_requests if spec.kwargs.get("format") == "rankllm" else read_candidates_jsonl
    return list(read(str(spec.kwargs["path"])))


@dataclass(frozen=True)
class Job:
    """What ``rerank run`` will do: the pipeline, its source, the executor, the input of the last stage and its key."""

    pipeline: PipelineSpec
    source: Source
    executor: Executor
    previous: StageOutput
    key: dict[str, Any]


def plan(args: argparse.Namespace, dataset: Dataset | None, engine: Any = None) -> Job:
    """Check everything, compute (or reuse) every stage but the last, and name the last stage's job."""
    from data.config import cache_dir

    pipeline = pipeline_from(args, dataset)
    if engine is not None and len(pipeline.stages) == 2 and stage_kind(pipeline.first.spec, True) == "given":
        # Nothing before the last stage runs on the engine: its replicas load while the inputs are read.
        engine.warm(rerank_work(pipeline.last.spec, Path(args.cache) if args.cache else None))
    source = source_from(args, dataset, pipeline)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    executor = Executor(
        Path(args.work_dir) if args.work_dir else cache_dir() / "stages", index_cache=cache_dir(),
        batch_queries=args.batch_queries, retrieve_batch=256, output_cache=Path(args.cache) if args.cache else None,
        log=log, engine=engine,
    )  # fmt: skip
    if len(pipeline.stages) == 1 or stage_kind(pipeline.last.spec, False) != "reranker":
        raise ValueError(f"--pipeline {str(pipeline)!r} must end with a reranking method")
    # Every stage but the last comes from the stage store (computed there once, reused after);
    # the last writes OUTPUT, checkpointing beside it.
    previous = executor.output(pipeline.prefix(len(pipeline.stages) - 1), source)
    assert previous is not None
    # The key holds the batch size: batched floating point differs in the last digits across batch
    # shapes, and a resumed job must write the same bytes as an uninterrupted one.
    key = {**executor.stage_key(pipeline, source, previous, []), "format": args.output_format, "tag": args.tag}
    if args.keep_rest:
        key["keep_rest"] = True
    return Job(pipeline, source, executor, previous, key)


def check_paths(args: argparse.Namespace) -> Path:
    """Every path the command was given, before anything loads; returns the output path."""
    output = paths.output_file("--output", args.output)
    if args.run == "-":
        args.run = str(paths.stdin_file("--run"))
    for flag, value in (("--topics", args.topics), ("--corpus", args.corpus), ("--qrels", args.qrels)):
        if value:
            paths.input_file(flag, value)
    for flag, value in (("--cache", args.cache), ("--work-dir", args.work_dir)):
        if value:
            paths.output_folder(flag, value)
    return output


def run(args: argparse.Namespace) -> int:
    if args.batch_queries < 1 or args.k < 1 or (args.max_queries is not None and args.max_queries < 1):
        raise ValueError("--top-k, --batch-queries and --max-queries must be at least 1")
    if args.resume and args.fresh:
        raise ValueError("--resume and --fresh contradict each other")
    fmt = output_format(args, "--summary")
    if args.keep_rest and (args.pipeline or args.output_format != "trec"):
        raise ValueError("--keep-rest goes with --run (one reranking stage) and a TREC --output-format")
    target = check_paths(args)
    if args.eval:
        command_module("eval", needed_by="--eval")  # no package gives the eval command: fail before any work
    engine = engine_from(args)
    dataset = dataset_from(args)
    qrels = eval_qrels(args, dataset) if args.eval else None
    if engine is None:
        return run_job(args, plan(args, dataset), dataset, target, qrels, fmt)
    try:
        engine.connect()  # a wrong --address fails before any work; a local cluster starts meanwhile
        job = plan(args, dataset, engine)
        engine.stop_after_job = True  # the last stage: its cluster stops while the output is written
        return run_job(args, job, dataset, target, qrels, fmt)
    finally:
        engine.shutdown()  # a local cluster this job started; Ctrl-C included


def run_job(
    args: argparse.Namespace, job: Job, dataset: Dataset | None, target: Path, qrels: Qrels | None, fmt: str
) -> int:
    if next(iter_run_rankings(job.previous.run_path), None) is None:
        warnings.warn(f"{job.previous.pipeline} gives no candidates: the output is empty", RerankWarning, stacklevel=1)
    # Standard output, a device or a FIFO gets the finished run copied in; the job (and its
    # checkpoint) works on a file in the cache, never beside a device.
    special = is_special_output(target)
    output = paths.work_file(job.key, args.output_format) if special else target
    manifest_path = output.with_name(output.name + ".manifest.json")
    earlier = read_manifest(manifest_path) if output.is_file() and not args.fresh and not special else None
    if earlier is not None and earlier.get("job") == job.key:
        summary = {**earlier["summary"], "up_to_date": True}
    else:
        _, _, details = job.executor.rerank_stage(
            job.pipeline.last, job.source, job.previous, output, job.key, output=output, resume=args.resume,
            fresh=args.fresh, output_format=args.output_format, tag=args.tag,
        )  # fmt: skip
        summary = {**details["summary"], "pipeline": str(job.pipeline), "output": args.output}
        if args.keep_rest:
            write_trec_run(with_rest(iter_run_rankings(output), given_rankings(job.pipeline.first.spec, dataset)),
                           output, tag=args.tag)  # fmt: skip
        if special:
            copy_out(output, target)
        else:
            with atomic_writer(manifest_path) as out:
                json.dump({"job": job.key, "summary": summary, "stages": [str(job.previous.directory)]}, out, indent=2)
    report = sys.stderr if args.output == "-" else sys.stdout  # standard output carries the run itself
    if fmt == "json":
        print_json(summary, report)
    else:
        print(format_summary(summary), file=report)
    if args.eval:
        assert qrels is not None
        with contextlib.redirect_stdout(report):
            print_before_after(job, dataset, output, args.output_format, qrels)
    if special:
        output.unlink(missing_ok=True)
    return 0


def given_rankings(spec: MethodSpec, dataset: Dataset | None) -> Iterator[Ranking]:
    """The given run's rankings in order of first appearance; a TREC file streams."""
    if spec.kwargs.get("format", "trec") == "trec":
        return iter_run_groups(given_run_path(spec, dataset))
    return iter(read_given(spec, dataset))


def with_rest(reranked: Iterable[Ranking], given: Iterable[Ranking]) -> Iterator[Ranking]:
    """Each reranked ranking, then the given run's other candidates in their order, scored below the
    lowest reranked score (one apart, so their order survives any reader's sort).

    Both runs stream in the same query order (the reranked one holds a subset of the given queries)."""
    rest_of = iter(given)
    for ranking in reranked:
        ranked = ranking.candidates
        done = {c.docid for c in ranked}
        floor = min((c.score for c in ranked), default=0.0)
        original = next((g for g in rest_of if g.qid == ranking.qid), None)
        if original is None:
            raise ValueError(f"query {ranking.qid!r} of the reranked run is not in the given run's order")
        rest = [c for c in original.candidates if c.docid not in done]
        tail = tuple(Candidate(c.docid, floor - 1.0 - i) for i, c in enumerate(rest))
        yield Ranking(ranking.qid, ranked + tail)


def eval_qrels(args: argparse.Namespace, dataset: Dataset | None) -> Qrels:
    """The qrels ``--eval`` compares with, read (and so checked) before any reranking."""
    if args.qrels:
        return read_qrels(args.qrels)
    if dataset is None:
        raise ValueError("--eval needs qrels: give --dataset or --qrels")
    return dataset.qrels()


def copy_out(work: Path, target: Path) -> None:
    from data.textio import open_binary

    with atomic_writer(target) as out, open_binary(work) as source:
        for line in source:  # streamed: the output may be larger than memory
            out.write(line.decode("utf-8"))


def format_summary(summary: dict[str, Any]) -> str:
    if summary.get("up_to_date"):
        return f"{summary['output']} is up to date ({summary['spec']} on the same inputs); --fresh recomputes it"
    cost = summary["cost"]
    per_query = summary["seconds"] / summary["queries"] if summary["queries"] else 0.0
    return (
        f"reranked {summary['queries']} queries ({summary['candidates']} candidates, {summary['resumed']} queries "
        f"from checkpoint) with {summary['spec']} in {summary['seconds']:.1f}s ({per_query:.2f} s/query); "
        f"{cost['calls']:g} model calls, {cost['input_tokens']} input tokens, {cost['output_tokens']} output tokens, "
        f"{cost['truncated']} truncated, {cost['parse_failures']} parse failures -> {summary['output']}"
    )


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) and "job" in value and "summary" in value else None


def print_before_after(job: Job, dataset: Dataset | None, output: Path, output_format: str, qrels: Qrels) -> None:
    """Metrics of the reranked stage's input (its top K) and of the output, read from their files."""
    from data.trec import read_trec_run

    # The metrics, tests and table are the eval command's, found as a plugin (rerank/ does not import eval/).
    evaluator = command_module("eval", needed_by="--eval")
    before_run = read_trec_run(job.previous.run_path, name=f"input (top {job.previous.pipeline.last.cutoff})")
    if output_format == "trec":
        after_run = read_trec_run(output, name="reranked")
    else:
        read = read_rankllm_requests if output_format == "rankllm" else read_candidates_jsonl
        after_run = Run.from_rankings(
            (Ranking.sorted(r.query.qid, r.candidates) for r in read(output)), name="reranked"
        )
    evaluator.print_before_after(before_run, after_run, qrels, dataset.measures if dataset else None)
