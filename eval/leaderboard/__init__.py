"""The leaderboard: a matrix of pipelines over datasets, run once, cached per cell, published as tables.

``python -m eval.leaderboard`` (or ``rerank leaderboard``) reads ``eval/leaderboard/leaderboard.toml``,
computes every cell that is missing or out of date with the pipeline core's executor (``rerank.core``,
through ``cells.py``), and writes ``leaderboard.md``, ``leaderboard.json`` and ``leaderboard.png``
(``report.py``). A second run recomputes nothing and writes the same bytes. ``--status`` lists
every cell as fresh, stale (with the key fields that changed) or missing, computing nothing;
``--recompute GLOB`` forces the matching cells.
"""

from __future__ import annotations

import argparse
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.errors import InvalidSpecError
from eval.leaderboard.pipelines import parse_pipeline
from rerank.cli.common import add_engine_arguments, engine_from
from rerank.spec import PipelineSpec

# The `rerank leaderboard` command, added to the CLI through the rerank.commands entry point `leaderboard`.
HELP = "run the leaderboard matrix (eval/leaderboard/leaderboard.toml) and write its tables"
DEFAULT_CONFIG = Path(__file__).with_name("leaderboard.toml")
DEFAULT_OUTPUT = Path("leaderboard")
QUICK_OUTPUT = Path("out") / "leaderboard-quick"


@dataclass(frozen=True, slots=True)
class DatasetEntry:
    name: str
    pipelines: tuple[PipelineSpec, ...]


@dataclass(frozen=True, slots=True)
class Config:
    datasets: tuple[DatasetEntry, ...]
    quick_queries: int
    quick_pipelines: tuple[str, ...]  # patterns (fnmatch) of the pipelines a quick run keeps
    published: tuple[dict[str, Any], ...]


def load_config(path: str | Path) -> Config:
    """Read and check a leaderboard config; every pipeline string is parsed here, before any work starts."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise InvalidSpecError(f"{path}: {err}") from None
    datasets = []
    for number, entry in enumerate(raw.get("datasets", []), start=1):
        if not isinstance(entry, dict) or "name" not in entry or not isinstance(entry.get("pipelines"), list):
            raise InvalidSpecError(f"{path}: [[datasets]] entry {number} needs name and a list of pipelines")
        pipelines = []
        for text in entry["pipelines"]:
            try:
                pipelines.append(parse_pipeline(text))
            except InvalidSpecError as err:
                raise InvalidSpecError(f"{path}: dataset {entry['name']}: {err}") from None
        datasets.append(DatasetEntry(entry["name"], tuple(pipelines)))
    quick = raw.get("quick", {})
    published = tuple(raw.get("published", []))
    for entry in published:
        missing = {"dataset", "system", "setting", "nDCG@10", "source"} - set(entry)
        if missing:
            raise InvalidSpecError(f"{path}: a [[published]] entry lacks {', '.join(sorted(missing))}")
    return Config(tuple(datasets), int(quick.get("queries", 5)), tuple(quick.get("pipelines", ["*"])), published)


def select(config: Config, datasets: Sequence[str] | None, patterns: Sequence[str] | None) -> list[DatasetEntry]:
    known = {d.name for d in config.datasets}
    unknown = [d for d in datasets or () if d not in known]
    if unknown:
        raise InvalidSpecError(f"dataset {unknown[0]!r} is not in the config; it has: {', '.join(sorted(known))}")
    chosen = []
    for entry in config.datasets:
        if datasets and entry.name not in datasets:
            continue
        keep = tuple(
            p for p in entry.pipelines if not patterns or any(fnmatch.fnmatchcase(str(p), pat) for pat in patterns)
        )
        if keep:
            chosen.append(DatasetEntry(entry.name, keep))
    if not chosen:
        raise InvalidSpecError("no pipeline matches the given --datasets and --pipelines")
    return chosen


def run_leaderboard(
    config: Config,
    output: Path,
    *,
    datasets: Sequence[str] | None = None,
    pipelines: Sequence[str] | None = None,
    quick: bool = False,
    batch_queries: int = 4,
    cache: Path | None = None,
    recompute: Sequence[str] = (),
    engine: Any = None,
) -> tuple[list[Path], list[str]]:
    """Compute what is missing, write the outputs; returns the files written and the cells computed.

    With a ``RayEngine``, the stages to compute are Ray tasks (``distributed.py``), independent ones
    side by side; the tables are then read from the same cells."""
    from data.config import cache_dir
    from eval.leaderboard.cells import CellRunner
    from eval.leaderboard.report import build_table, write_outputs

    patterns = pipelines or (config.quick_pipelines if quick else None)
    selected = select(config, datasets, patterns)
    limit = config.quick_queries if quick else None
    cache = cache or cache_dir()
    runner = CellRunner(
        output, cache, query_limit=limit, batch_queries=batch_queries, recompute=() if engine else recompute
    )
    cells = [(entry.name, pipeline) for entry in selected for pipeline in entry.pipelines]
    on_ray: list[str] = []
    if engine is not None:
        from eval.leaderboard.distributed import CellJob, compute_on_ray

        on_ray = compute_on_ray(runner, cells, engine, CellJob(output, cache, limit, batch_queries), recompute)
    for dataset, pipeline in cells:
        runner.cell(dataset, pipeline)
    # The tables show every pipeline of the config whose cell is up to date (a subset run adds to
    # earlier ones); a quick run shows only what it selected.
    tables = []
    for entry in selected if quick else config.datasets:
        rows, missing = [], []
        for pipeline in entry.pipelines:
            cell = runner.existing(entry.name, pipeline)
            if cell is None:
                missing.append(str(pipeline))
                continue
            first = runner.cell(entry.name, pipeline.prefix(1))
            rows.append((cell, first, tuple(chain(runner, entry.name, pipeline))))
        layout = runner.dataset(entry.name).info.layout
        tables.append(build_table(entry.name, layout, rows, config.published, missing))
    return write_outputs(tables, output, limit), on_ray + runner.computed


def chain(runner: Any, dataset: str, pipeline: PipelineSpec) -> list[Any]:
    """The cells whose work a pipeline includes, each once: each prefix, and a fusion's members with theirs."""
    from rerank.core.plan import fusion_members

    stages = list(pipeline.prefixes())
    stages += [prefix for member in fusion_members(pipeline.prefix(1)) for prefix in member.prefixes()]
    return list({str(stage): runner.cell(dataset, stage) for stage in stages}.values())


def status(config: Config, output: Path, datasets: Sequence[str] | None, patterns: Sequence[str] | None,
           quick: bool = False, cache: Path | None = None) -> list[tuple[str, Any]]:  # fmt: skip
    """Every cell the selected pipelines need, each fresh, stale (what changed) or missing; computes nothing."""
    from data.config import cache_dir
    from eval.leaderboard.cells import CellRunner

    limit = config.quick_queries if quick else None
    runner = CellRunner(output, cache or cache_dir(), query_limit=limit)
    found: dict[tuple[str, str], tuple[str, Any]] = {}
    for entry in select(config, datasets, patterns or (config.quick_pipelines if quick else None)):
        for pipeline in entry.pipelines:
            for stage in runner.status(entry.name, pipeline):
                found.setdefault((entry.name, str(stage.pipeline)), (entry.name, stage))
    return list(found.values())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="the matrix (default: %(default)s)")
    parser.add_argument(
        "--output", help=f"where the tables and cells go (default: {DEFAULT_OUTPUT}, quick: {QUICK_OUTPUT})"
    )
    parser.add_argument("--datasets", nargs="+", action="extend", metavar="NAME",
                        help="dataset names to run (default: all in the config); a,b also works")  # fmt: skip
    parser.add_argument("--pipelines", nargs="+", action="extend", metavar="PATTERN",
                        help="run only pipelines matching these globs, e.g. '*first(*'")  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true", help="a few queries per dataset and the config's quick pipelines"
    )
    parser.add_argument("--batch-queries", type=int, default=4, metavar="N", help="queries per reranker call (4)")
    parser.add_argument("--list", action="store_true", help="print the selected cells and exit")
    parser.add_argument("--status", action="store_true",
                        help="list every cell the selection needs as fresh, stale (what changed) or missing; compute nothing")  # fmt: skip
    parser.add_argument("--recompute", nargs="+", action="extend", metavar="GLOB", default=[],
                        help="compute the cells whose pipeline matches these globs again")  # fmt: skip
    add_engine_arguments(parser)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    datasets = [d.strip() for given in args.datasets for d in given.split(",") if d.strip()] if args.datasets else None
    if args.list:
        patterns = args.pipelines or (config.quick_pipelines if args.quick else None)
        for entry in select(config, datasets, patterns):
            for pipeline in entry.pipelines:
                print(f"{entry.name}\t{pipeline}")
        return 0
    output = Path(args.output) if args.output else (QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT)
    if args.status:
        counts: dict[str, int] = {}
        for dataset, stage in status(config, output, datasets, args.pipelines, args.quick):
            counts[stage.state] = counts.get(stage.state, 0) + 1
            changed = f"  ({', '.join(stage.changed)} changed)" if stage.changed else ""
            print(f"{stage.state:8} {dataset}\t{stage.pipeline}{changed}")
        print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
        return 0
    engine = engine_from(args)
    try:
        written, computed = run_leaderboard(
            config, output, datasets=datasets, pipelines=args.pipelines, quick=args.quick,
            batch_queries=args.batch_queries, recompute=args.recompute, engine=engine,
        )  # fmt: skip
    finally:
        if engine is not None:
            engine.shutdown()
    print(f"{len(computed)} cells computed, the rest up to date; wrote {', '.join(str(p) for p in written)}")
    return 0
