"""Search an index built by `rerank index` and write a TREC run.

Queries come from a dataset (--dataset) or a topics file (--topics,
'qid<TAB>text'). The job checkpoints after every chunk of queries
(OUTPUT.checkpoint); after an interruption the same command with --resume
continues it and writes the same bytes an uninterrupted run writes. The output
appears atomically when every query is done.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from data.textio import is_special_output
from data.tsv import read_topics
from rerank.cli.common import (
    add_data_arguments,
    add_engine_arguments,
    add_format_argument,
    at_least,
    dataset_from,
    engine_from,
    output_format,
    print_json,
)

CHUNK = 256  # queries per batch by default: progress stays visible and memory bounded


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, metavar="DIR", help="an index folder from `rerank index`")
    parser.add_argument("--output", required=True, metavar="FILE", help="the TREC run to write (.gz to compress)")
    add_data_arguments(parser)
    parser.add_argument("--topics", metavar="FILE", help="queries as 'qid<TAB>text' (instead of --dataset)")
    parser.add_argument("--k", type=int, default=100, help="candidates per query (default 100)")
    parser.add_argument("--k1", type=float, default=0.9, help="BM25 k1 (default 0.9)")
    parser.add_argument("--b", type=float, default=0.4, help="BM25 b (default 0.4)")
    parser.add_argument("--ef-search", type=int, default=128, help="dense HNSW: query-time search width")
    parser.add_argument("--threads", type=int, default=2, help="Lucene search threads")
    parser.add_argument("--batch-queries", type=int, default=CHUNK, metavar="N",
                        help=f"queries per search call and per checkpoint line batch ({CHUNK})")  # fmt: skip
    parser.add_argument("--tag", default="rerank", help="the run tag column")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    parser.add_argument("--fresh", action="store_true", help="discard any checkpoint of an interrupted run")
    add_format_argument(parser, "the summary", old="--summary")
    add_engine_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from rerank.cli import paths
    from rerank.core.jobs import retrieve_to_file
    from rerank.core.keys import stage_key
    from rerank.core.plan import Source
    from rerank.core.store import work_file
    from rerank.engine import RetrieveWork
    from rerank.spec import MethodSpec, PipelineSpec
    from retrievers.base import IndexMeta

    if args.resume and args.fresh:
        raise ValueError("--resume and --fresh contradict each other")
    fmt = output_format(args, "--summary")
    target = paths.output_file("--output", args.output)
    paths.input_folder("--index", args.index)
    paths.not_an_input(("--output", args.output), [("--topics", args.topics)])
    if args.topics:
        args.topics = str(paths.input_file("--topics", args.topics))
    if args.topics:
        queries = read_topics(args.topics)
    elif (dataset := dataset_from(args)) is not None:
        queries = dataset.queries()
    else:
        raise ValueError("give --dataset NAME or --topics FILE")
    at_least(1, k=args.k, batch_queries=args.batch_queries)
    engine = engine_from(args)
    meta = IndexMeta.load(args.index)
    options: dict[str, Any] = {}
    if meta.retriever == "bm25":
        options = {"k1": args.k1, "b": args.b, "threads": args.threads}
    elif meta.retriever == "splade":
        options = {"threads": args.threads}
    elif meta.retriever == "dense":
        options = {"ef_search": args.ef_search}
    # One stage of the staged executor: its key (the index, its metadata, the options, the queries, the
    # library versions) heads the checkpoint, so a checkpoint of other work is refused.
    stage = MethodSpec.of(meta.retriever, {"index_dir": str(Path(args.index).resolve()), **options}) % args.k
    source = Source("retrieve", tuple(queries))
    key = stage_key(PipelineSpec((stage,)), source, None, [], batch_queries=8, retrieve_batch=args.batch_queries)
    # Standard output, a device or a FIFO gets the finished run copied in; the checkpoint lives in the cache.
    special = is_special_output(target)
    output = work_file(key, "trec") if special else target
    start = time.perf_counter()
    work = RetrieveWork(str(Path(args.index).resolve()), args.k, tuple(options.items()))
    try:
        if engine is not None:
            engine.connect()
        candidates, resumed = retrieve_to_file(
            work, queries, output, key, batch_queries=args.batch_queries, engine=engine, target=target, tag=args.tag,
            resume=args.resume, fresh=args.fresh,
        )  # fmt: skip
    finally:
        if engine is not None:
            engine.shutdown()
    seconds = time.perf_counter() - start
    searched = len(queries) - resumed
    summary = {
        "output": args.output,
        "retriever": meta.retriever,
        "queries": len(queries),
        "resumed": resumed,
        "candidates": candidates,
        "seconds": round(seconds, 3),
        "queries_per_second": round(searched / seconds, 2) if searched and seconds > 0 else None,
    }
    report = sys.stderr if args.output == "-" else sys.stdout  # standard output carries the run itself
    if fmt == "json":
        print_json(summary, report)
    else:
        print(
            f"retrieved {len(queries)} queries ({resumed} from checkpoint) with {meta.retriever} in {seconds:.1f}s "
            f"({summary['queries_per_second']} queries/s) -> {args.output}",
            file=report,
        )
    return 0
