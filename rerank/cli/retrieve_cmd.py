"""Search an index built by `rerank index` and write a TREC run.

Queries come from a dataset (--dataset) or a topics file (--topics,
'qid<TAB>text'). The output appears atomically when every query is done.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from data.records import Ranking, Run
from data.trec import write_trec_run
from data.tsv import read_topics
from rerank.cli.common import add_data_arguments, dataset_from, print_json

CHUNK = 256  # queries per batch: progress stays visible and memory bounded


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
    parser.add_argument("--tag", default="rerank", help="the run tag column")
    parser.add_argument("--summary", choices=("text", "json"), default="text", help="how to print the summary")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from retrievers.base import IndexMeta
    from retrievers.registry import open_index

    if args.topics:
        queries = read_topics(args.topics)
    elif (dataset := dataset_from(args)) is not None:
        queries = dataset.queries()
    else:
        raise ValueError("give --dataset NAME or --topics FILE")
    if args.k < 1:
        raise ValueError("--k must be at least 1")
    meta = IndexMeta.load(args.index)
    options: dict[str, Any] = {}
    if meta.retriever == "bm25":
        options = {"k1": args.k1, "b": args.b, "threads": args.threads}
    elif meta.retriever == "splade":
        options = {"threads": args.threads}
    elif meta.retriever == "dense":
        options = {"ef_search": args.ef_search}
    retriever = open_index(args.index, **options)
    start = time.perf_counter()
    rankings: list[Ranking] = []
    with tqdm(total=len(queries), unit="query", file=sys.stderr) as bar:
        for first in range(0, len(queries), CHUNK):
            chunk = queries[first : first + CHUNK]
            rankings.extend(retriever.retrieve(chunk, args.k))
            bar.update(len(chunk))
    seconds = time.perf_counter() - start
    run_ = Run.from_rankings(rankings)
    write_trec_run(run_, args.output, tag=args.tag)
    summary = {
        "output": args.output,
        "retriever": meta.retriever,
        "queries": len(queries),
        "candidates": run_.num_candidates(),
        "seconds": round(seconds, 3),
        "queries_per_second": round(len(queries) / seconds, 2) if seconds > 0 else None,
    }
    if args.summary == "json":
        print_json(summary)
    else:
        print(
            f"retrieved {len(queries)} queries with {meta.retriever} in {seconds:.1f}s ({summary['queries_per_second']} queries/s) -> {args.output}"
        )
    return 0
