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
import sys
from pathlib import Path
from typing import Any

from rerank.cli import paths
from rerank.cli.common import (
    add_data_arguments,
    add_engine_arguments,
    add_format_argument,
    add_method_options,
    at_least,
    engine_from,
    method_options,
    output_format,
    print_json,
)
from rerank.spec import MethodSpec, parse_spec


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


def what_to_run(args: argparse.Namespace) -> Any:
    """``--pipeline SPEC``, or the one-stage shorthand's reranker (applied to ``--run``'s top K)."""
    if args.pipeline:
        method_options(args)
        if args.reranker or args.method or args.model or args.run:
            raise ValueError("--pipeline holds the whole cascade: give it without --run, --reranker or --method")
        return args.pipeline
    if not args.run:
        raise ValueError("give --pipeline SPEC, or --run RUN with --reranker SPEC")
    return method_spec(args)


def check_paths(args: argparse.Namespace) -> None:
    """Every path the command was given, before anything loads."""
    paths.output_file("--output", args.output)
    if args.run == "-":
        args.run = str(paths.stdin_file("--run"))
    elif args.run and Path(args.run).exists():  # a file (a dataset's run name is checked with the dataset)
        paths.not_an_input(("--output", args.output), [("--run", args.run)])
        args.run = str(paths.input_file("--run", args.run))
    inputs = [("--topics", "topics"), ("--corpus", "corpus"), ("--qrels", "qrels")]
    for flag, name in inputs:
        if getattr(args, name):
            paths.not_an_input(("--output", args.output), [(flag, getattr(args, name))])
            setattr(args, name, str(paths.input_file(flag, getattr(args, name))))
    for flag, value in (("--cache", args.cache), ("--work-dir", args.work_dir)):
        if value:
            paths.output_folder(flag, value)


def run(args: argparse.Namespace) -> int:
    import rerank

    at_least(1, top_k=args.k, batch_queries=args.batch_queries, max_queries=args.max_queries)
    fmt = output_format(args, "--summary")
    check_paths(args)
    result = rerank.run(
        what_to_run(args), dataset=args.dataset, data_dir=args.data_dir, download=args.download, run=args.run,
        input_format=args.input_format, topics=args.topics, corpus=args.corpus, output=args.output,
        output_format=args.output_format, top_k=args.k, keep_rest=args.keep_rest, batch_queries=args.batch_queries,
        max_queries=args.max_queries, cache=args.cache, work_dir=args.work_dir, resume=args.resume,
        fresh=args.fresh, tag=args.tag, engine=engine_from(args), eval=args.eval, qrels=args.qrels,
    )  # fmt: skip
    summary = {**result.summary, "output": args.output}
    report = sys.stderr if args.output == "-" else sys.stdout  # standard output carries the run itself
    if fmt == "json":
        print_json(summary, report)
    else:
        print(format_summary(summary), file=report)
    if result.metrics is not None:
        with contextlib.redirect_stdout(report):
            result.metrics.print()
    return 0


def format_summary(summary: dict[str, Any]) -> str:
    if summary.get("up_to_date"):
        return f"{summary['output']} is up to date ({summary['spec']} on the same inputs); --fresh recomputes it"
    cost = summary["cost"]
    per_query = summary["seconds"] / summary["queries"] if summary["queries"] else 0.0
    return (
        f"reranked {summary['queries']} queries ({summary['candidates']} candidates, {summary['resumed']} queries "
        f"from checkpoint) with {summary['spec']} in {summary['seconds']:.1f}s ({per_query:.2f} s/query); "
        f"{cost['calls']:g} model calls, {_windows(cost)}{cost['input_tokens']} input tokens, "
        f"{cost['output_tokens']} output tokens, "
        f"{cost['truncated']} truncated, {cost['parse_failures']} parse failures -> {summary['output']}"
    )


def _windows(cost: dict[str, Any]) -> str:
    """How many passages a split reranker scored (said only where documents were split)."""
    return f"{cost['windows']} windows, " if cost.get("windows") else ""
