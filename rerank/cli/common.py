"""Helpers shared by subcommands: dataset and run arguments, tables, JSON output."""

from __future__ import annotations

import argparse
import json
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


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
