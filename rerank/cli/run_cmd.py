"""Rerank a first-stage run and write the result (TREC, RankLLM JSON or JSONL).

Inputs:
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
import json
from pathlib import Path
from typing import Any

from data.corpus import corpus_store
from data.datasets import Dataset
from data.docstore import DocumentStore
from data.jsonl import read_candidates_jsonl
from data.rankllm import read_rankllm_requests
from data.records import Qrels, Ranking, RerankRequest, Run
from data.textio import atomic_writer
from data.tsv import read_topics
from rerank.base import RerankResult
from rerank.cli.common import add_data_arguments, dataset_from, print_json, read_run_arg
from rerank.spec import MethodSpec, parse_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    method = parser.add_argument_group("method (one of)")
    method.add_argument(
        "--reranker", metavar="SPEC", help="a method spec, e.g. 'cross-encoder(model=M, max_length=256)'"
    )
    method.add_argument("--method", metavar="NAME", help="a registered method name (with --model)")
    method.add_argument("--model", metavar="M", help="model pack, folder or Hugging Face id for --method")
    parser.add_argument("--output", required=True, metavar="FILE", help="the reranked run (.gz to compress)")
    parser.add_argument("--output-format", choices=("trec", "rankllm", "jsonl"), default="trec")
    add_data_arguments(parser)
    parser.add_argument("--run", required=True, metavar="RUN", help="a dataset run name or a run file")
    parser.add_argument("--input-format", choices=("trec", "rankllm", "jsonl"), default="trec", help="format of --run")
    parser.add_argument("--topics", metavar="FILE", help="queries as 'qid<TAB>text' (default: the dataset's)")
    parser.add_argument("--corpus", metavar="FILE", help="document texts: BEIR corpus.jsonl[.gz] or 'docid<TAB>text'")
    parser.add_argument("--top-k", "--k", dest="k", type=int, default=100, help="rerank the top K of each query (100)")
    parser.add_argument("--batch-queries", type=int, default=8, metavar="N", help="queries per reranker call")
    parser.add_argument(
        "--max-queries", type=int, metavar="N", help="rerank only the run's first N queries (--eval compares those)"
    )
    parser.add_argument("--eval", action="store_true", help="print metrics before and after (needs qrels)")
    parser.add_argument("--qrels", metavar="FILE", help="qrels for --eval (default: the dataset's)")
    parser.add_argument("--cache", metavar="DIR", help="cache model outputs here; re-runs of the same work are free")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    parser.add_argument("--fresh", action="store_true", help="discard any checkpoint and previous output")
    parser.add_argument("--tag", default="rerank", help="the run tag column")
    parser.add_argument("--summary", choices=("text", "json"), default="text", help="how to print the summary")


def method_spec(args: argparse.Namespace) -> MethodSpec:
    if args.reranker and (args.method or args.model):
        raise ValueError("give --reranker SPEC or --method NAME --model M, not both")
    if args.reranker:
        return parse_spec(args.reranker)
    if not args.method:
        raise ValueError("give --reranker SPEC or --method NAME --model M")
    spec = parse_spec(args.method)
    return MethodSpec.of(spec.name, {**spec.kwargs, "model": args.model} if args.model else spec.kwargs)


def gather_requests(args: argparse.Namespace, dataset: Dataset | None) -> list[RerankRequest]:
    from rerank.inputs import requests_from_run

    if args.input_format != "trec":
        read = read_rankllm_requests if args.input_format == "rankllm" else read_candidates_jsonl
        return [RerankRequest(r.query, r.candidates[: args.k]) for r in read(args.run)]
    run: Run = read_run_arg(args.run, dataset)
    if args.topics:
        queries = {q.qid: q for q in read_topics(args.topics)}
    elif dataset is not None:
        queries = {q.qid: q for q in dataset.queries()}
    else:
        raise ValueError("--run without --dataset needs --topics (or --input-format rankllm|jsonl)")
    store: DocumentStore | None = corpus_store(args.corpus) if args.corpus else (dataset.docs() if dataset else None)
    return list(requests_from_run(run, queries, store, args.k))


def run(args: argparse.Namespace) -> int:
    from rerank.inputs import fingerprint
    from rerank.jobs import rerank_to_file

    if args.batch_queries < 1 or args.k < 1 or (args.max_queries is not None and args.max_queries < 1):
        raise ValueError("--top-k, --batch-queries and --max-queries must be at least 1")
    if args.resume and args.fresh:
        raise ValueError("--resume and --fresh contradict each other")
    spec = method_spec(args)
    dataset = dataset_from(args)
    requests = gather_requests(args, dataset)[: args.max_queries]
    output = Path(args.output)
    # The batch size is part of the job: batched floating point differs in the last digits across batch
    # shapes, and a resumed job must write the same bytes as an uninterrupted one.
    job = {
        "spec": str(spec), "inputs": fingerprint(requests), "k": args.k, "tag": args.tag,
        "batch": args.batch_queries, "format": args.output_format,
    }  # fmt: skip
    manifest_path = output.with_name(output.name + ".manifest.json")
    previous = read_manifest(manifest_path) if output.is_file() and not args.fresh else None
    if previous is not None and previous.get("job") == job:
        summary = {**previous["summary"], "up_to_date": True}
        results = None
    else:
        summary, results = rerank_to_file(
            spec,
            requests,
            output,
            job,
            batch_queries=args.batch_queries,
            resume=args.resume,
            fresh=args.fresh,
            cache=args.cache,
            output_format=args.output_format,
            tag=args.tag,
        )
        with atomic_writer(manifest_path) as out:
            json.dump({"job": job, "summary": summary}, out, indent=2)
    if args.summary == "json":
        print_json(summary)
    else:
        print(format_summary(summary))
    if args.eval:
        print_before_after(args, dataset, requests, output, results)
    return 0


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


def print_before_after(
    args: argparse.Namespace,
    dataset: Dataset | None,
    requests: list[RerankRequest],
    output: Path,
    results: list[RerankResult] | None,
) -> None:
    from eval.metrics import evaluate
    from eval.significance import compare
    from rerank.cli.common import print_table
    from rerank.cli.eval_cmd import DEFAULT_MEASURES, read_qrels_file

    qrels: Qrels
    if args.qrels:
        qrels = read_qrels_file(args.qrels)
    elif dataset is not None:
        qrels = dataset.qrels()
    else:
        raise ValueError("--eval needs qrels: give --dataset or --qrels")
    measures = dataset.measures if dataset else DEFAULT_MEASURES
    before_run = Run.from_rankings(
        (Ranking.sorted(r.query.qid, r.candidates) for r in requests), name=f"input (top {args.k})"
    )
    if results is None:
        from data.trec import read_trec_run

        after_run = read_trec_run(output, name="reranked") if args.output_format == "trec" else None
        if after_run is None:
            raise ValueError("--eval of an up-to-date non-TREC output: rerun with --fresh")
    else:
        after_run = Run.from_rankings((r.ranking for r in results), name="reranked")
    before, after = evaluate(before_run, qrels, measures), evaluate(after_run, qrels, measures)
    tests = {c.measure: c for c in compare(before, [after])}
    rows = [[before_run.name, *(f"{before.aggregate[m]:.4f}" for m in before.measures)]]
    rows.append(
        [after_run.name, *(f"{after.aggregate[m]:.4f}{'†' if tests[m].significant else ' '}" for m in after.measures)]
    )
    print_table(["run", *before.measures], rows)
    print("† significantly different from the input (t-test, Holm-corrected, p < 0.05)")
