"""Rerank a first-stage run with a method spec and write a TREC run.

Inputs, one of:
  --run RUN with --dataset NAME (RUN is one of its runs, e.g. bm25, or a file):
      queries and document texts come from the dataset;
  --run FILE --topics FILE --corpus FILE: any TREC run, topics TSV and corpus
      (BEIR corpus.jsonl[.gz] or a 'docid<TAB>text' TSV);
  --candidates FILE: RankLLM request JSON or JSONL candidates, texts included.

The job checkpoints after every batch of queries (OUTPUT.checkpoint); run the
same command again to resume after an interruption. The output file appears
only when complete, and is identical whether or not the job was resumed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from data.beir import iter_beir_corpus
from data.config import cache_dir
from data.docstore import DocumentStore, cached_store
from data.jsonl import read_candidates_jsonl
from data.rankllm import read_rankllm_requests
from data.records import RerankRequest, Run
from data.textio import atomic_writer, open_binary
from data.trec import write_trec_run
from data.tsv import iter_tsv_documents, read_topics
from rerank.base import RerankResult
from rerank.cli.common import add_data_arguments, dataset_from, print_json, read_run_arg
from rerank.cost import Cost
from rerank.spec import MethodSpec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reranker", required=True, metavar="SPEC", help="e.g. 'bi-encoder(model=minilm)'")
    parser.add_argument("--output", required=True, metavar="FILE", help="the reranked TREC run (.gz to compress)")
    add_data_arguments(parser)
    parser.add_argument("--run", metavar="RUN", help="a dataset run name or a TREC run file")
    parser.add_argument("--topics", metavar="FILE", help="queries as 'qid<TAB>text' (default: the dataset's)")
    parser.add_argument("--corpus", metavar="FILE", help="document texts: BEIR corpus.jsonl[.gz] or 'docid<TAB>text'")
    parser.add_argument("--candidates", metavar="FILE", help="RankLLM request JSON or JSONL candidates with texts")
    parser.add_argument("--k", type=int, default=100, help="rerank the top K of each query (default 100)")
    parser.add_argument("--batch-queries", type=int, default=8, metavar="N", help="queries per reranker call")
    parser.add_argument("--tag", default="rerank", help="the run tag column")
    parser.add_argument("--fresh", action="store_true", help="ignore and replace an existing checkpoint")
    parser.add_argument("--summary", choices=("text", "json"), default="text", help="how to print the summary")


def corpus_store(path: str) -> DocumentStore:
    """A document store for a corpus file, built once into the cache."""
    source = Path(path)
    with open_binary(source) as handle:
        first = handle.read(1)
    documents = iter_beir_corpus(source) if first == b"{" else iter_tsv_documents(source)
    return cached_store(source, documents, cache_dir())


def read_candidate_file(path: str) -> list[RerankRequest]:
    """RankLLM JSON (a top-level array) or JSONL candidates (one object per line)."""
    with open_binary(path) as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return read_rankllm_requests(path) if head.startswith(b"[") else read_candidates_jsonl(path)


def gather_requests(args: argparse.Namespace) -> list[RerankRequest]:
    from rerank.inputs import requests_from_run

    if args.candidates:
        if args.run:
            raise ValueError("give either --candidates or --run, not both")
        return [RerankRequest(r.query, r.candidates[: args.k]) for r in read_candidate_file(args.candidates)]
    if not args.run:
        raise ValueError("give --run (with --dataset, or with --topics and --corpus) or --candidates")
    dataset = dataset_from(args)
    run: Run = read_run_arg(args.run, dataset)
    if args.topics:
        queries = {q.qid: q for q in read_topics(args.topics)}
    elif dataset is not None:
        queries = {q.qid: q for q in dataset.queries()}
    else:
        raise ValueError("--run without --dataset needs --topics")
    store: DocumentStore | None
    if args.corpus:
        store = corpus_store(args.corpus)
    elif dataset is not None:
        store = dataset.docs()
    else:
        store = None
    return list(requests_from_run(run, queries, store, args.k))


def batches(items: Sequence[RerankRequest], size: int) -> Iterable[list[RerankRequest]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def run(args: argparse.Namespace) -> int:
    from rerank.inputs import fingerprint
    from rerank.spec import parse_spec

    if args.batch_queries < 1 or args.k < 1:
        raise ValueError("--k and --batch-queries must be at least 1")
    spec = parse_spec(args.reranker)
    requests = gather_requests(args)
    output = Path(args.output)
    # The batch size is part of the job: batched floating point differs in the last digits across batch shapes,
    # and a resumed job must write the same bytes as an uninterrupted one.
    job = {
        "spec": str(spec),
        "inputs": fingerprint(requests),
        "k": args.k,
        "tag": args.tag,
        "batch": args.batch_queries,
    }
    manifest_path = output.with_name(output.name + ".manifest.json")
    previous = read_manifest(manifest_path) if output.is_file() and not args.fresh else None
    if previous is not None and previous.get("job") == job:
        summary = {**previous["summary"], "up_to_date": True}
    else:
        summary = rerank_job(args, spec, requests, output, job)
        with atomic_writer(manifest_path) as out:
            json.dump({"job": job, "summary": summary}, out, indent=2)
    if args.summary == "json":
        print_json(summary)
    else:
        print(format_summary(summary))
    return 0


def format_summary(summary: dict[str, Any]) -> str:
    if summary.get("up_to_date"):
        return f"{summary['output']} is up to date ({summary['spec']} on the same inputs); --fresh recomputes it"
    rate = f", {summary['queries_per_second']} queries/s" if summary["queries_per_second"] else ""
    cost = summary["cost"]
    return (
        f"reranked {summary['queries']} queries ({summary['resumed']} from checkpoint) with {summary['spec']} "
        f"in {summary['seconds']:.1f}s{rate}; {cost['calls']:g} model calls, {cost['truncated']} truncated inputs "
        f"-> {summary['output']}"
    )


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) and "job" in value and "summary" in value else None


def rerank_job(
    args: argparse.Namespace, spec: MethodSpec, requests: list[RerankRequest], output: Path, job: dict[str, Any]
) -> dict[str, Any]:
    """Rerank every request (resuming from a checkpoint), write the run, return the summary."""
    from tqdm import tqdm

    from rerank.checkpoint import Checkpoint
    from rerank.registry import load_reranker

    checkpoint_path = output.with_name(output.name + ".checkpoint")
    if args.fresh:
        checkpoint_path.unlink(missing_ok=True)
    checkpoint = Checkpoint(checkpoint_path, job).open()
    try:
        # Batches sit at fixed positions; one only partly checkpointed (a kill mid-write) is redone whole.
        todo = [b for b in batches(requests, args.batch_queries) if any(r.query.qid not in checkpoint.done for r in b)]
        resumed = len(requests) - sum(len(b) for b in todo)
        start = time.perf_counter()
        if todo:
            reranker = load_reranker(spec)
            with tqdm(total=len(requests), initial=resumed, unit="query", file=sys.stderr) as bar:
                for batch in todo:
                    checkpoint.add(reranker.rerank(batch))
                    bar.update(len(batch))
        elapsed = time.perf_counter() - start
        results: list[RerankResult] = [checkpoint.done[r.query.qid] for r in requests]
        write_trec_run((result.ranking for result in results), output, tag=args.tag)
        checkpoint.remove()
    finally:
        checkpoint.close()
    total = sum((r.cost for r in results), Cost())
    return {
        "output": str(output),
        "spec": str(spec),
        "queries": len(requests),
        "resumed": resumed,
        "candidates": sum(len(r.candidates) for r in requests),
        "seconds": round(elapsed, 3),
        "queries_per_second": round((len(requests) - resumed) / elapsed, 3) if todo and elapsed > 0 else None,
        "cost": total.as_dict(),
    }
