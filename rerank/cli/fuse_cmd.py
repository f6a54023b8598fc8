"""Fuse runs by reciprocal rank fusion (default) or normalised score interpolation.

Each RUN is a file, or with --dataset the name of one of its runs.
"""

from __future__ import annotations

import argparse
import sys

from data.trec import write_trec_run
from rerank.cli.common import add_data_arguments, at_least, dataset_from, read_run_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="runs to fuse")
    parser.add_argument("--output", required=True, metavar="FILE", help="the fused TREC run")
    add_data_arguments(parser)
    parser.add_argument("--method", choices=("rrf", "interpolate"), default="rrf")
    parser.add_argument("--rrf-k", type=int, default=60, help="RRF constant (default 60)")
    parser.add_argument("--depth", type=int, help="RRF: use only the top DEPTH of each run")
    parser.add_argument("--weights", type=float, nargs="+", help="interpolation weights, one per run (default equal)")
    parser.add_argument("--normalization", choices=("minmax", "zscore", "none"), default="minmax")
    parser.add_argument("--k", type=int, default=1000, help="keep the top K of the fused ranking")
    parser.add_argument("--tag", default="rerank-fusion", help="the run tag column")


def run(args: argparse.Namespace) -> int:
    from rerank.cli import paths
    from retrievers.fusion import interpolate, reciprocal_rank_fusion

    paths.output_file("--output", args.output)
    paths.not_an_input(("--output", args.output), [("RUN", value) for value in args.runs])
    at_least(1, k=args.k, depth=args.depth)
    at_least(0, rrf_k=args.rrf_k)
    if args.method == "rrf" and args.weights:
        raise ValueError("--weights are for --method interpolate; reciprocal rank fusion weighs every run alike")
    if args.weights and len(args.weights) != len(args.runs):
        raise ValueError(f"--weights gives {len(args.weights)} weights for {len(args.runs)} runs")
    dataset = dataset_from(args)
    runs = [read_run_arg(value, dataset) for value in args.runs]
    if args.method == "rrf":
        fused = reciprocal_rank_fusion(runs, args.rrf_k, args.depth)
    else:
        fused = interpolate(runs, args.weights, args.normalization)
    write_trec_run(fused.cut(args.k), args.output, tag=args.tag)
    report = sys.stderr if args.output == "-" else sys.stdout  # standard output carries the run itself
    print(f"fused {len(runs)} runs ({fused.name}) over {len(fused)} queries -> {args.output}", file=report)
    return 0
