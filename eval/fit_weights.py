"""Fit score-interpolation weights for two runs on one dataset, to use them on another.

    python -m eval.fit_weights --dataset msmarco-passage/trec-dl-2020 RUN_A RUN_B [--measure nDCG@10]
                               [--step 0.05] [--normalization minmax]

Weights are a choice made on judged queries: fitted on the queries they are evaluated on, they report
an optimistic number. Fit them here on a development dataset (DL20 for DL19, and back), then write them
into ``fuse(..., method=interpolate, weights=[a, b])`` for the other. The grid tries ``w`` from 0 to 1
in ``--step`` steps (``[1 - w, w]``); ties go to the smaller ``w``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from data.records import Qrels, Run


def fit_interpolation(
    runs: Sequence[Run], qrels: Qrels, measure: str = "nDCG@10", step: float = 0.05, normalization: str = "minmax"
) -> list[tuple[float, float]]:
    """``(w, score)`` for each ``w`` of the grid, where the runs are weighted ``[1 - w, w]``; best first."""
    from eval.metrics import evaluate
    from retrievers.fusion import interpolate

    if len(runs) != 2:
        raise ValueError(f"fit_interpolation takes two runs, not {len(runs)}")
    if not 0 < step <= 1:
        raise ValueError(f"--step must be in (0, 1], not {step}")
    grid = [round(i * step, 10) for i in range(round(1 / step) + 1)]
    scored = []
    for w in grid:
        fused = interpolate(runs, [1 - w, w], normalization)  # type: ignore[arg-type]
        scored.append((w, evaluate(fused, qrels, [measure]).aggregate[measure]))
    return sorted(scored, key=lambda pair: (-pair[1], pair[0]))


def main(argv: Sequence[str] | None = None) -> int:
    from data.errors import RerankError
    from rerank.cli.common import add_data_arguments, dataset_from, read_run_arg
    from rerank.cli.exit_codes import exit_code_for

    parser = argparse.ArgumentParser(prog="python -m eval.fit_weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("runs", nargs=2, metavar="RUN", help="two run files (or the dataset's run names)")
    add_data_arguments(parser)
    parser.add_argument("--measure", default="nDCG@10")
    parser.add_argument("--step", type=float, default=0.05)
    parser.add_argument("--normalization", choices=("minmax", "zscore", "none"), default="minmax")
    args = parser.parse_args(argv)
    if args.dataset is None:
        parser.error("--dataset is required: the weights are fitted on its qrels")
    try:
        dataset = dataset_from(args)
        assert dataset is not None
        runs = [read_run_arg(run, dataset) for run in args.runs]
        ranked = fit_interpolation(runs, dataset.qrels(), args.measure, args.step, args.normalization)
    except (RerankError, ValueError) as error:  # user error: one line, the CLI's exit code
        print(f"fit_weights: error: {error}", file=sys.stderr)
        return int(exit_code_for(error))
    for w, score in sorted(ranked):
        print(f"weights=[{1 - w:.2f}, {w:.2f}]\t{args.measure} {score:.4f}")
    best, score = ranked[0]
    print(f"best on {dataset.name}: weights=[{1 - best:.2f}, {best:.2f}] ({args.measure} {score:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
