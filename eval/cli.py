"""Evaluate one or more runs against qrels; later runs are tested against the first.

Each RUN is a file, or with --dataset the name of one of its runs (bm25, …).
Measures default to the dataset's (TREC DL: nDCG@10 RR(rel=2)@10 R(rel=2)@100;
BEIR: nDCG@10 R@100), else nDCG@10 RR@10 R@100. A dagger marks a run that
differs significantly from the first (paired test over shared queries,
Holm-Bonferroni across the runs of each measure).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data.beir import read_qrels
from data.records import Qrels, Run
from data.textio import atomic_writer
from eval.metrics import Evaluation, evaluate  # evaluate: what rerank train's --dev measures with
from eval.significance import TESTS, Comparison
from rerank.cli.common import (
    add_data_arguments,
    add_format_argument,
    dataset_from,
    deprecated,
    print_json,
    print_table,
    read_run_arg,
)

# The `rerank eval` command, added to the CLI through the rerank.commands entry point `eval` (pyproject.toml).
HELP = "evaluate runs against qrels, with significance tests"
DEFAULT_MEASURES = ("nDCG@10", "RR@10", "R@100")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", metavar="RUN", help="run files (TREC format) or dataset run names")
    parser.add_argument("--qrels", metavar="FILE", help="TREC qrels or a BEIR qrels TSV (default: the dataset's)")
    add_data_arguments(parser)
    parser.add_argument("--measures", nargs="+", metavar="M", help="ir-measures names, e.g. nDCG@10 'RR(rel=2)@10'")
    parser.add_argument("--test", choices=TESTS, default="t-test", help="paired test (default: t-test)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level after correction")
    parser.add_argument("--per-query", action="store_true", help="include per-query values (JSON output)")
    add_format_argument(parser, "the results")
    parser.add_argument("--output", metavar="FILE", help="write the results to FILE instead of standard output")
    sweep = parser.add_argument_group("a depth sweep (instead of RUN files; eval/depths.py)")
    sweep.add_argument(
        "--depths", metavar="D,D,...", help="rerank the first stage's top D for each D, e.g. 10,20,50,100"
    )
    sweep.add_argument("--pipeline", action="append", metavar="SPEC",
                       help="a first stage, uncut, then rerankers (repeat for several): 'run(name=bm25) >> X'")  # fmt: skip
    sweep.add_argument("--plot", metavar="FILE", help="draw the measure and the cost against depth (a .png)")


def warn_unjudged(run: Run, qrels: Qrels, source: str) -> None:
    """An empty run, or queries the qrels do not judge (left out of every average), may mislead: say so."""
    import warnings

    from data.errors import RerankWarning

    if not len(run):
        warnings.warn(f"{source} holds no rankings: every measure is 0", RerankWarning, stacklevel=2)
        return
    unjudged = [qid for qid in run.qids if qid not in qrels]
    if unjudged:
        warnings.warn(
            f"{len(unjudged)} of the {len(run)} queries of {source} have no judgments in the qrels "
            f"(first: {unjudged[0]!r}); they are left out of the averages",
            RerankWarning,
            stacklevel=2,
        )


def distinct_names(names: list[str], sources: list[str]) -> list[str]:
    """Row names that tell the runs apart: runs whose names collide (``a/run.trec``, ``b/run.trec``)
    are named by as many trailing parts of their path as it takes; the same file given twice gets ``#2``."""
    clashing = [i for i, name in enumerate(names) if names.count(name) > 1]
    parts = {i: Path(sources[i]).parts for i in clashing}
    depth = 1  # grows until different files get different suffixes (at worst their whole paths)
    while len({parts[i][-depth:] for i in clashing}) < len(set(parts.values())):
        depth += 1
    out = list(names)
    for i in clashing:
        out[i] = "/".join(parts[i][-depth:])
    seen: dict[str, int] = {}
    for i, name in enumerate(out):
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            out[i] = f"{name}#{seen[name]}"
    return out


@dataclass(frozen=True)
class BeforeAfter:
    """What ``rerank.run(eval=True)`` measures: the reranked stage's input and its output, each measure of
    the output tested against the input (paired, Holm-corrected)."""

    before: Evaluation
    after: Evaluation
    tests: dict[str, Comparison]

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {"before": dict(self.before.aggregate), "after": dict(self.after.aggregate)}

    def print(self) -> None:
        """The table of ``rerank run --eval``: a dagger where the output differs significantly from the input."""
        before, after = self.before, self.after
        rows = [[before.run_name, *(f"{before.aggregate[m]:.4f}" for m in before.measures)]]
        marks = {m: "†" if self.tests[m].significant else " " for m in after.measures}
        rows.append([after.run_name, *(f"{after.aggregate[m]:.4f}{marks[m]}" for m in after.measures)])
        print_table(["run", *before.measures], rows)
        print("† significantly different from the input (t-test, Holm-corrected, p < 0.05)")


def before_after(
    before_run: Run, after_run: Run, qrels: Qrels | str | Path, measures: Sequence[str] | None = None
) -> BeforeAfter:
    """Both runs' measures, the second tested against the first. ``qrels`` may be a qrels file;
    ``measures`` default to DEFAULT_MEASURES."""
    from eval.significance import compare

    if not isinstance(qrels, Qrels):
        qrels = read_qrels(qrels)
    measures = DEFAULT_MEASURES if measures is None else measures
    before, after = evaluate(before_run, qrels, measures), evaluate(after_run, qrels, measures)
    return BeforeAfter(before, after, {c.measure: c for c in compare(before, [after])})


def print_before_after(
    before_run: Run, after_run: Run, qrels: Qrels | str | Path, measures: Sequence[str] | None = None
) -> None:
    """The table of ``rerank run --eval`` for two runs."""
    before_after(before_run, after_run, qrels, measures).print()


def run(args: argparse.Namespace) -> int:
    from rerank.cli import paths

    fmt = args.format or "text"
    if args.output in ("table", "json"):  # the old meaning of --output, kept one release
        deprecated(f"--output {args.output}", f"--format {'text' if args.output == 'table' else args.output}")
        fmt, args.output = ("text" if args.output == "table" else args.output), None
    swept = [flag for flag in ("depths", "pipeline", "plot") if getattr(args, flag)]
    if swept and not args.depths:
        raise ValueError(f"--{swept[0].replace('_', '-')} goes with --depths (a depth sweep)")
    if args.depths and args.runs:
        raise ValueError(f"--depths sweeps --pipeline SPEC: give it instead of RUN files ({args.runs[0]})")
    if args.depths and not args.pipeline:
        raise ValueError("--depths needs --pipeline SPEC: a first stage, then a reranker")
    if not args.depths and not args.runs:  # what argparse said when RUN was required: a usage error
        print("rerank eval: error: give RUN files to evaluate, or --depths with --pipeline SPEC "
              "(see rerank eval --help)", file=sys.stderr)  # fmt: skip
        return 2
    if args.depths:
        from eval.depth_report import checked_sweep

        checked_sweep(args)  # depths, specs, parameters and models, before the dataset loads
    if args.plot:
        paths.output_file("--plot", args.plot)
    if args.output:
        paths.output_file("--output", args.output)
        paths.not_an_input(
            ("--output", args.output), [("RUN", value) for value in args.runs] + [("--qrels", args.qrels)]
        )
    for i, value in enumerate(args.runs):
        if not (args.dataset and "/" not in value and "." not in value):  # a dataset's run name is checked later
            args.runs[i] = str(paths.input_file("RUN", value))
    if args.qrels:
        args.qrels = str(paths.input_file("--qrels", args.qrels))
    if args.output:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = report(args, fmt)
        with atomic_writer(args.output) as out:
            out.write(buffer.getvalue())
        return code
    return report(args, fmt)


def report(args: argparse.Namespace, fmt: str) -> int:
    from eval.metrics import evaluate
    from eval.significance import compare

    dataset = dataset_from(args)
    if args.qrels:
        qrels = read_qrels(args.qrels)
    elif dataset is not None:
        qrels = dataset.qrels()
    else:
        raise ValueError("give --qrels FILE or --dataset NAME")
    measures = args.measures or (dataset.measures if dataset else DEFAULT_MEASURES)
    if args.depths:
        from eval.depth_report import depth_report

        return depth_report(args, fmt, dataset, qrels, list(measures))
    runs = [read_run_arg(value, dataset) for value in args.runs]
    for run_, value in zip(runs, args.runs, strict=True):
        warn_unjudged(run_, qrels, value)
    evaluations = [evaluate(r, qrels, measures) for r in runs]
    names = distinct_names([r.name or value for r, value in zip(runs, args.runs, strict=True)], args.runs)
    evaluations = [
        type(e)(e.measures, e.aggregate, e.per_query, name) for e, name in zip(evaluations, names, strict=True)
    ]
    comparisons = compare(evaluations[0], evaluations[1:], args.test, args.alpha) if len(evaluations) > 1 else []
    by_key = {(c.run, c.measure): c for c in comparisons}
    measure_names = evaluations[0].measures

    if fmt == "json":
        rows = []
        for evaluation, path in zip(evaluations, args.runs, strict=True):
            row: dict[str, object] = {
                "run": evaluation.run_name,
                "source": path,
                "num_queries": evaluation.num_queries,
                "aggregate": dict(evaluation.aggregate),
            }
            tests = {
                m: {
                    "p_value": c.p_value,
                    "p_adjusted": c.p_adjusted,
                    "significant": c.significant,
                    "delta": c.delta,
                    "num_queries": c.num_queries,
                }
                for m in measure_names
                if (c := by_key.get((evaluation.run_name, m))) is not None
            }
            if tests:
                row["against_first"] = tests
            if args.per_query:
                row["per_query"] = {m: dict(v) for m, v in evaluation.per_query.items()}
            rows.append(row)
        print_json(
            {
                "measures": list(measure_names),
                "test": args.test,
                "alpha": args.alpha,
                "correction": "holm",
                "runs": rows,
            }
        )
        return 0

    table = []
    for evaluation in evaluations:
        cells = [evaluation.run_name, str(evaluation.num_queries)]
        for m in measure_names:
            c = by_key.get((evaluation.run_name, m))
            mark = "†" if c is not None and c.significant else " "
            cells.append(f"{evaluation.aggregate[m]:.4f}{mark}")
        table.append(cells)
    print_table(["run", "queries", *measure_names], table)
    if comparisons:
        print(
            f"† significantly different from {evaluations[0].run_name} ({args.test}, Holm-corrected, p < {args.alpha})"
        )
    return 0
