"""TREC run files (6 columns) and qrels (4 columns), read streaming and written atomically.

Runs are written in trec_eval's reading order (score descending, then docid
descending by bytes), with ranks 1..n in that order, so the rank column and what
trec_eval computes always agree. Scores are written with ``repr`` (shortest
exact round trip).
"""

from __future__ import annotations

import heapq
import math
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from data.errors import ParseError
from data.records import Candidate, Qrels, Ranking, Run
from data.textio import atomic_writer, iter_lines

RUN_FORMAT = "6 whitespace-separated columns: qid Q0 docid rank score tag"
QRELS_FORMAT = "4 whitespace-separated columns: qid iteration docid relevance"


@dataclass(frozen=True, slots=True)
class RunLine:
    qid: str
    docid: str
    rank: int
    score: float
    tag: str
    line: int


def parse_score(path: str | Path, line: int, field: str, text: str) -> float:
    try:
        score = float(field)
    except ValueError:
        raise ParseError(path, line, f"score {field!r} is not a number", text) from None
    if not math.isfinite(score):
        raise ParseError(path, line, f"score {field!r} is not finite", text)
    return score


def parse_int(path: str | Path, line: int, name: str, field: str, text: str) -> int:
    try:
        return int(field)
    except ValueError:
        raise ParseError(path, line, f"{name} {field!r} is not an integer", text) from None


def iter_run_lines(path: str | Path) -> Iterator[RunLine]:
    """Every line of a run file, validated; blank lines are skipped."""
    for number, text in iter_lines(path):
        row = _parse_run_line(path, number, text)
        if row is not None:
            yield row


JSON_RUN = (
    "this is JSON (a RankLLM request list or JSONL candidates), not a TREC run: "
    "rerank run reads it with --input-format rankllm or --input-format jsonl"
)


def _parse_run_line(path: str | Path, number: int, text: str) -> RunLine | None:
    fields = text.split()
    if not fields:
        return None
    if fields[0][0] in "[{":  # a JSON file where a TREC run belongs: say so, not "7 columns" or a qid '[{"'
        raise ParseError(path, number, JSON_RUN, text)
    if len(fields) != 6:
        raise ParseError(path, number, f"expected {RUN_FORMAT}, found {len(fields)} columns", text)
    qid, _, docid, rank, score, tag = fields
    return RunLine(
        qid, docid, parse_int(path, number, "rank", rank, text), parse_score(path, number, score, text), tag, number
    )


def run_query_order(path: str | Path) -> tuple[list[str], bool]:
    """The run's query ids in order of first appearance, and whether each query's lines are contiguous.

    A quick pass over the first column only: the lines are validated when the rankings are read.
    """
    order: list[str] = []
    seen: set[str] = set()
    grouped = True
    current: str | None = None
    for number, text in iter_lines(path):
        qid = text.split(None, 1)[0] if text.strip() else None
        if qid is not None and qid[0] in "[{":
            raise ParseError(path, number, JSON_RUN, text)
        if qid is None or qid == current:
            continue
        if qid in seen:
            grouped = False
        else:
            seen.add(qid)
            order.append(qid)
        current = qid
    return order, grouped


def iter_run_groups(path: str | Path, *, sort_lines: int = 200_000) -> Iterator[Ranking]:
    """Every query's ranking in order of first appearance, as ``read_trec_run`` gives them, streaming.

    A run grouped by query is read as it is; one whose queries are interleaved is grouped by a sort
    on disk (``sort_lines`` lines per sorted chunk), so memory never holds more than one chunk and
    one query's candidates, whatever the run's size.
    """
    order, grouped = run_query_order(path)
    if grouped:
        yield from iter_run_rankings(path)
        return
    position = {qid: i for i, qid in enumerate(order)}
    del order
    with tempfile.TemporaryDirectory(prefix="rerank-run-sort-") as folder:
        chunks: list[Path] = []
        pending: list[tuple[int, int, str]] = []
        for number, text in iter_lines(path):
            if text.strip():
                pending.append((position[text.split(None, 1)[0]], number, text))
            if len(pending) >= sort_lines:
                chunks.append(_spill(pending, Path(folder) / f"{len(chunks)}.tsv"))
                pending = []
        chunks.append(_spill(pending, Path(folder) / f"{len(chunks)}.tsv"))
        merged = heapq.merge(*(_read_spilled(chunk) for chunk in chunks))
        rows = (_parse_run_line(path, number, text) for _, number, text in merged)
        yield from _group_rankings(path, (row for row in rows if row is not None))


def _spill(rows: list[tuple[int, int, str]], path: Path) -> Path:
    rows.sort()
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(f"{position}\t{number}\t{text}\n" for position, number, text in rows)
    return path


def _read_spilled(path: Path) -> Iterator[tuple[int, int, str]]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            position, number, text = line.rstrip("\n").split("\t", 2)
            yield int(position), int(number), text


def iter_run_rankings(path: str | Path) -> Iterator[Ranking]:
    """Rankings one query at a time, for runs grouped by query (as every TREC tool writes them).

    Memory holds one query's candidates. A query that reappears after another
    began is an error: use ``iter_run_groups`` for ungrouped files.
    """
    return _group_rankings(path, iter_run_lines(path))


def _group_rankings(path: str | Path, rows: Iterable[RunLine]) -> Iterator[Ranking]:
    finished: set[str] = set()
    qid: str | None = None
    seen: dict[str, int] = {}
    candidates: list[Candidate] = []
    for row in rows:
        if row.qid != qid:
            if qid is not None:
                finished.add(qid)
                yield Ranking.sorted(qid, candidates)
            if row.qid in finished:
                raise ParseError(
                    path,
                    row.line,
                    f"query {row.qid!r} appears again after other queries; the run is not grouped by query",
                )
            qid, seen, candidates = row.qid, {}, []
        _check_duplicate(path, row, seen)
        candidates.append(Candidate(row.docid, row.score))
    if qid is not None:
        yield Ranking.sorted(qid, candidates)


def read_trec_run(path: str | Path, name: str | None = None) -> Run:
    """A whole run file; lines of one query need not be adjacent."""
    seen: dict[str, dict[str, int]] = {}
    candidates: dict[str, list[Candidate]] = {}
    for row in iter_run_lines(path):
        _check_duplicate(path, row, seen.setdefault(row.qid, {}))
        candidates.setdefault(row.qid, []).append(Candidate(row.docid, row.score))
    rankings = (Ranking.sorted(qid, cands) for qid, cands in candidates.items())
    return Run.from_rankings(rankings, name=Path(path).name if name is None else name)


def _check_duplicate(path: str | Path, row: RunLine, seen: dict[str, int]) -> None:
    first = seen.setdefault(row.docid, row.line)
    if first != row.line:
        raise ParseError(path, row.line, f"duplicate docid {row.docid!r} for query {row.qid!r} (first on line {first})")


def format_run_lines(ranking: Ranking, tag: str) -> Iterator[str]:
    """The lines of one ranking in trec_eval order."""
    for rank, candidate in enumerate(Ranking.sorted(ranking.qid, ranking.candidates), start=1):
        yield f"{ranking.qid} Q0 {candidate.docid} {rank} {candidate.score!r} {tag}\n"


def write_trec_run(run: Run | Iterable[Ranking], path: str | Path, tag: str = "rerank") -> None:
    """Write rankings atomically (gzip if the path ends in ``.gz``)."""
    _check_token("tag", tag)
    with atomic_writer(path) as out:
        for ranking in run:
            _check_token("qid", ranking.qid)
            for candidate in ranking.candidates:
                _check_token("docid", candidate.docid)
            out.writelines(format_run_lines(ranking, tag))


def _check_token(name: str, value: str) -> None:
    if not value or any(ch.isspace() for ch in value):
        raise ValueError(f"{name} {value!r} cannot be written to a TREC file: it is empty or contains whitespace")


def read_trec_qrels(path: str | Path) -> Qrels:
    """TREC qrels; a repeated (qid, docid) judgment is an error."""
    judgments: dict[str, dict[str, int]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for number, text in iter_lines(path):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 4:
            raise ParseError(path, number, f"expected {QRELS_FORMAT}, found {len(fields)} columns", text)
        qid, _, docid, relevance = fields
        add_judgment(
            path, number, judgments, first_line, qid, docid, parse_int(path, number, "relevance", relevance, text)
        )
    return Qrels(judgments)


def add_judgment(
    path: str | Path,
    line: int,
    judgments: dict[str, dict[str, int]],
    first_line: dict[tuple[str, str], int],
    qid: str,
    docid: str,
    relevance: int,
) -> None:
    """Record one judgment, refusing empty ids and repeats (shared by the qrels readers)."""
    if not qid or not docid:
        raise ParseError(path, line, "empty query id or document id")
    first = first_line.setdefault((qid, docid), line)
    if first != line:
        raise ParseError(path, line, f"duplicate judgment for query {qid!r}, docid {docid!r} (first on line {first})")
    judgments.setdefault(qid, {})[docid] = relevance


def write_trec_qrels(qrels: Qrels, path: str | Path) -> None:
    with atomic_writer(path) as out:
        for qid, docs in qrels.judgments.items():
            for docid, relevance in docs.items():
                out.write(f"{qid} 0 {docid} {relevance}\n")
