"""``rerank eval --depths``: the sweep of ``eval/depths.py`` as a table, JSON and a plot."""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path
from typing import Any

from data.records import Qrels
from eval.depths import DepthPoint, at_depth, best_depths, check_sweep, parse_depths, plot, pointwise, sweep
from rerank.cli.common import print_json, print_table


def checked_sweep(args: argparse.Namespace) -> tuple[list[int], list[Any]]:
    """The depths and pipelines, each checked (parameters, models) before any work."""
    from rerank.spec import parse_pipeline

    depths = parse_depths(args.depths)
    pipelines = [parse_pipeline(text) for text in args.pipeline]
    for pipeline in pipelines:
        check_sweep(pipeline)
    return depths, pipelines


def depth_report(args: argparse.Namespace, fmt: str, dataset: Any, qrels: Qrels, measures: list[str]) -> int:
    from data.config import cache_dir
    from rerank.core.executor import Executor
    from rerank.core.plan import source_for

    depths, pipelines = checked_sweep(args)
    if dataset is None:
        raise ValueError("--depths runs its pipelines over a dataset's queries: give --dataset NAME")
    source = source_for(at_depth(pipelines[0], depths[0]), dataset=dataset)
    scratch, numbers = tempfile.TemporaryDirectory(prefix="rerank-depths-"), itertools.count()

    def executor(pipeline: Any) -> Executor:
        # A pointwise reranker runs in a store and output cache of the sweep's own: each pair is scored once
        # across the depths, and nothing scored before the sweep (by the leaderboard, another pipeline sharing
        # pairs) makes a depth look cheaper than it is. Other rerankers use the shared store: their stages
        # (LLM windows, hours) resume across sessions and are reused, with the cost recorded when computed.
        if pointwise(pipeline):
            private = Path(scratch.name) / str(next(numbers))
            return Executor(private / "stages", index_cache=cache_dir(), batch_queries=8, retrieve_batch=256,
                            output_cache=private / "outputs")  # fmt: skip
        return Executor(cache_dir() / "stages", index_cache=cache_dir(), batch_queries=8, retrieve_batch=256)

    def progress(point: DepthPoint) -> None:  # one line per point on stderr: a sweep takes minutes
        shown = ", ".join(f"{m} {v:.4f}" for m, v in point.measures.items())
        print(f"depth {point.depth:>4}: {shown} — {point.pipeline}", file=sys.stderr, flush=True)

    with scratch:
        points = sweep(pipelines, depths, executor, source, qrels, measures, on_point=progress)
    best = best_depths(points, measures[0])
    if args.plot:
        plot(points, measures[0], Path(args.plot), dataset.name)
    if fmt == "json":
        print_json(
            {
                "dataset": dataset.name, "measures": measures, "depths": depths,
                "points": [
                    {"pipeline": p.pipeline, "depth": p.depth, "measures": p.measures, "first_stage": p.first_stage,
                     "seconds_per_query": p.seconds_per_query, "calls_per_query": p.calls_per_query,
                     "tokens_per_query": p.tokens_per_query}
                    for p in points
                ],
                "best_depth": {measures[0]: best},
            }
        )  # fmt: skip
        return 0
    rows = [
        [p.pipeline if p.depth == depths[0] else "", str(p.depth), *(f"{p.measures[m]:.4f}" for m in measures),
         f"{p.seconds_per_query:.2f}" if p.seconds_per_query is not None else "—", f"{p.calls_per_query:.1f}",
         f"{p.tokens_per_query:,.0f}"]
        for p in points
    ]  # fmt: skip
    print_table(["pipeline", "depth", *measures, "s/query", "calls/query", "tokens/query"], rows)
    for pipeline, depth in best.items():
        print(f"{measures[0]} peaks at depth {depth}: {pipeline}")
    if args.plot:
        print(f"plot: {args.plot}", file=sys.stderr)
    return 0
