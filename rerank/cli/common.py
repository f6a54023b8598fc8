"""Helpers shared by subcommands: dataset and run arguments, tables, JSON output."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.datasets import Dataset, load
from data.errors import DatasetNotFoundError
from data.records import Run
from data.trec import read_trec_run


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", metavar="NAME", help="a registered dataset (e.g. msmarco-passage/trec-dl-2019)")
    parser.add_argument("--data-dir", metavar="DIR", help="the dataset folder (default: $RERANK_DATA_DIR)")
    parser.add_argument("--download", action="store_true", help="download the dataset if it is missing (BEIR)")


def dataset_from(args: argparse.Namespace) -> Dataset | None:
    return load(args.dataset, args.data_dir, download=args.download) if args.dataset else None


def read_run_arg(value: str, dataset: Dataset | None) -> Run:
    """A run named by the dataset (``bm25``) when it has one of that name, else a file path."""
    if dataset is not None and value in dataset.runs:
        return dataset.run(value)
    if not Path(value).is_file():
        known = f"; {dataset.name} has runs {', '.join(dataset.runs)}" if dataset else ""
        raise DatasetNotFoundError(f"run {value!r} is neither a file nor a run of the dataset{known}")
    return read_trec_run(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: bool = True) -> None:
    """A plain-text table; the first column is left-aligned, the rest right-aligned when ``numeric``."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]
    for row in (headers, *rows):
        cells = [
            str(cell).rjust(width) if numeric and i > 0 else str(cell).ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def print_json(value: Any, stream: Any = None) -> None:
    stream = stream or sys.stdout
    json.dump(value, stream, indent=2, ensure_ascii=False)
    stream.write("\n")


def add_format_argument(parser: argparse.ArgumentParser, what: str, *, old: str = "") -> None:
    """``--format text|json``, the same in every subcommand; ``old`` is the spelling it replaces
    (kept one release as a deprecated alias)."""
    parser.add_argument("--format", choices=("text", "json"), help=f"how to print {what} (text)")
    if old:
        parser.add_argument(old, dest="old_format", help=argparse.SUPPRESS)


def output_format(args: argparse.Namespace, old: str = "") -> str:
    """The chosen ``--format``, from a deprecated spelling when that was used (with a note saying so)."""
    legacy = getattr(args, "old_format", None)
    if legacy is not None and args.format is None:
        if legacy not in ("text", "table", "json"):
            raise ValueError(f"{old} {legacy!r}: choose text or json (and use --format: {old} is deprecated)")
        deprecated(f"{old} {legacy}", f"--format {'text' if legacy == 'table' else legacy}")
        return "text" if legacy == "table" else legacy
    return str(args.format or "text")


def deprecated(old: str, new: str) -> None:
    print(f"rerank: note: {old} is now {new}; the old spelling goes in the next release", file=sys.stderr)


def add_method_options(group: Any) -> None:
    """``--device`` and ``--batch-size``: parameters of a ``--method`` (a spec writes them inside)."""
    group.add_argument("--device", metavar="D", help="with --method: cpu, cuda, cuda:N or mps")
    group.add_argument("--batch-size", type=int, metavar="N", help="with --method: the model's batch size")


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {k: v for k, v in (("device", args.device), ("batch_size", args.batch_size)) if v is not None}
    if options and not args.method:
        raise ValueError(
            "--device and --batch-size go with --method; in a spec write them inside: bi-encoder(device=cpu, batch_size=64)"
        )
    return options


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where reranking batches run")
    group.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="local: in this process; ray: sharded across model replicas on a Ray cluster (the output is the same)",
    )  # fmt: skip
    group.add_argument("--workers", type=int, metavar="N", help="model replicas for --engine ray (1)")
    group.add_argument(
        "--address", metavar="ADDR",
        help="the Ray cluster to join: auto (the one `ray start --head` runs here) or ray://HOST:PORT; "
        "default: start a local one for this job",
    )  # fmt: skip
    group.add_argument("--gpus-per-worker", type=float, metavar="G", help="GPUs each Ray replica reserves (0)")


def engine_from(args: argparse.Namespace) -> Any:
    """The engine the arguments name, checked before any work: None for local (the executor's default)."""
    ray_only = {"--workers": args.workers, "--address": args.address, "--gpus-per-worker": args.gpus_per_worker}
    if args.engine == "local":
        given = [flag for flag, value in ray_only.items() if value is not None]
        if given:
            raise ValueError(f"{given[0]} goes with --engine ray")
        return None
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, not {args.workers}")
    if args.gpus_per_worker is not None and args.gpus_per_worker < 0:
        raise ValueError(f"--gpus-per-worker must be at least 0, not {args.gpus_per_worker}")
    address = args.address
    if address is not None and address != "auto" and not re.fullmatch(r"(ray://)?[\w.\-]+:\d+", address):
        raise ValueError(f"--address {address!r}: give auto, ray://HOST:PORT or HOST:PORT")
    from data.optional import optional_import
    from rerank.ray_engine import RayEngine

    optional_import("ray")  # a missing extra is reported before any work
    return RayEngine(workers=args.workers or 1, address=address, num_gpus=args.gpus_per_worker or 0.0)


def at_least(low: int, **flags: int | None) -> None:
    """Each given flag's value is at least ``low``; the first that is not is named alone, with its value
    (``at_least(1, top_k=0)`` says ``--top-k must be at least 1, not 0``)."""
    for name, value in flags.items():
        if value is not None and value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be at least {low}, not {value}")
