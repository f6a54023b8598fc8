"""MkDocs hooks: the pages whose numbers come from the repository's result files.

Measured numbers live in two places only: ``leaderboard/leaderboard.json`` (with ``leaderboard.md`` and
the figures written from the same cells by ``rerank leaderboard``) and ``benchmarks/RESULTS.md``.
The docs hold markers that this hook fills at build time:

- ``<!-- include: PATH -->`` on a line of its own: the Markdown file ``PATH`` (relative to the repository),
  its title dropped and its headings moved one level down;
- ``<!-- leaderboard-rows: METHOD ... -->``: the leaderboard rows whose last stage is one of the methods
  named, one table per dataset;
- ``<!-- MEASURE: DATASET: PATTERN -->`` inline: a measure (``nDCG@10``, or ``s/query`` for the seconds) of the
  one row of DATASET whose pipeline matches PATTERN (fnmatch, as ``rerank leaderboard --pipelines`` reads
  it), so prose and tables can quote a number that follows the cells.

The figures ``leaderboard/*.png`` and ``leaderboard/depths/*.png`` are added to the site (``depths/`` for the
second).
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LEADERBOARD = REPO / "leaderboard" / "leaderboard.json"
INCLUDE = re.compile(r"^<!-- include: (\S+) -->$", re.MULTILINE)
ROWS = re.compile(r"^<!-- leaderboard-rows: ([\w. -]+?) -->$", re.MULTILINE)
VALUE = re.compile(r"<!-- ([\w@/]+): (\S+): (.+?) -->")
DATASET_TITLES = {
    "msmarco-passage/trec-dl-2019": "TREC DL 2019",
    "msmarco-passage/trec-dl-2020": "TREC DL 2020",
    "beir/scifact": "BEIR scifact",
}


def demoted(markdown: str) -> str:
    """The file without its first-level title, every heading one level lower (code blocks left alone)."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("# "):
            continue
        elif not fenced and line.startswith("#"):
            line = "#" + line
        out.append(line)
    return "\n".join(out).strip("\n")


def include(match: re.Match[str]) -> str:
    path = (REPO / match.group(1)).resolve()
    if REPO not in path.parents or not path.is_file():
        raise ValueError(f"include: {match.group(1)} is not a file of the repository")
    return demoted(path.read_text(encoding="utf-8"))


def number(value: float | None, digits: int = 2) -> str:
    """As leaderboard.md writes it: '—' for nothing measured, no decimals from 100 up."""
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:.{digits}f}"


def last_stage_method(pipeline: str) -> str:
    found = re.match(r"[\w.-]+", pipeline.split(">>")[-1].strip())
    return found.group(0) if found else ""


def leaderboard_rows(methods: list[str], board: dict[str, Any]) -> str:
    parts = []
    for dataset, table in board["datasets"].items():
        rows = [r for r in table["rows"] if ">>" in r["pipeline"] and last_stage_method(r["pipeline"]) in methods]
        if not rows:
            continue
        measure = table["measures"][0]
        lines = [
            f"**{DATASET_TITLES.get(dataset, dataset)}** ({rows[0]['queries']} queries)",
            "",
            f"| pipeline | {measure} | s/query | model calls/query | tokens/query |",
            "|---|---|---|---|---|",
        ]
        for first_stage in dict.fromkeys(r["first_stage"] for r in rows):
            base = first_stage.rsplit("%", 1)[0].strip()
            alone = [
                r
                for r in table["rows"]
                if ">>" not in r["pipeline"] and r["pipeline"].rsplit("%", 1)[0].strip() == base
            ]
            if alone:  # the first stage on its own, for reference (nDCG@10 does not depend on its depth past 10)
                value = f"{alone[0]['measures'][measure]:.4f}" if measure == "nDCG@10" else "—"
                code = "`" + first_stage.replace("|", "\\|") + "`"
                lines.append(f"| {code} (the first stage alone) | {value} | — | — | — |")
        for row in rows:
            significant = row["significance"].get(measure, {}).get("significant", False)
            tokens = None
            if row["input_tokens_per_query"] is not None:
                tokens = row["input_tokens_per_query"] + (row["output_tokens_per_query"] or 0)
            cells = [
                "`" + row["pipeline"].replace("|", "\\|") + "`",
                f"{row['measures'][measure]:.4f}{'†' if significant else ''}",
                number(row["seconds_per_query"]),
                number(row["calls_per_query"], 1),
                number(tokens, 0),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    if not parts:
        raise ValueError(f"leaderboard-rows: no row of {LEADERBOARD.name} ends with the methods {methods}")
    note = (
        "From `leaderboard/leaderboard.json`, generated when this site was built. † marks a significant "
        "difference from the row's first stage (paired t-test, Holm-corrected, p < 0.05). Seconds are per query "
        "on the machine named in each cell's manifest."
    )
    return "\n\n".join([note, *parts])


def value(match: re.Match[str], board: dict[str, Any]) -> str:
    measure, dataset, pattern = match.groups()
    if dataset not in board["datasets"]:
        raise ValueError(f"{match.group(0)}: no dataset {dataset} in {LEADERBOARD.name}")
    rows = [r for r in board["datasets"][dataset]["rows"] if fnmatch.fnmatchcase(r["pipeline"], pattern)]
    if len(rows) != 1 or (measure != "s/query" and measure not in rows[0]["measures"]):
        raise ValueError(f"{match.group(0)}: {len(rows)} rows of {LEADERBOARD.name} match, not one with {measure}")
    if measure == "s/query":
        return number(rows[0]["seconds_per_query"])
    return f"{rows[0]['measures'][measure]:.4f}"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    markdown = INCLUDE.sub(include, markdown)
    if ROWS.search(markdown) or VALUE.search(markdown):
        board = json.loads(LEADERBOARD.read_text(encoding="utf-8"))
        markdown = ROWS.sub(lambda m: leaderboard_rows(m.group(1).split(), board), markdown)
        markdown = VALUE.sub(lambda m: value(m, board), markdown)
    return markdown


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for plot in sorted((REPO / "leaderboard").glob("*.png")):  # a figure per dataset
        files.append(File.generated(config, plot.name, abs_src_path=str(plot)))
    for plot in sorted((REPO / "leaderboard" / "depths").glob("*.png")):  # the depth sweeps
        files.append(File.generated(config, f"depths/{plot.name}", abs_src_path=str(plot)))
    return files
