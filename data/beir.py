"""BEIR folders: ``corpus.jsonl[.gz]``, ``queries.jsonl``, ``qrels/<split>.tsv``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from data.errors import DatasetNotFoundError, ParseError
from data.jsonl import iter_json_objects, require_str
from data.records import Document, Qrels, Query
from data.textio import iter_lines
from data.trec import add_judgment, parse_int

QRELS_HEADER = ("query-id", "corpus-id", "score")


def find_file(folder: str | Path, name: str) -> Path:
    """``name`` or ``name.gz`` inside ``folder``."""
    for candidate in (Path(folder) / name, Path(folder) / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetNotFoundError(f"{folder}: no {name} or {name}.gz (not a BEIR folder?)")


def iter_beir_corpus(path: str | Path) -> Iterator[Document]:
    """Documents of a ``corpus.jsonl`` (``_id``, ``title``, ``text``); repeated ids are an error."""
    seen: dict[str, int] = {}
    for number, obj in iter_json_objects(path):
        docid = require_str(path, number, obj, "_id")
        if seen.setdefault(docid, number) != number:
            raise ParseError(path, number, f"duplicate document id {docid!r} (first on line {seen[docid]})")
        title = require_str(path, number, obj, "title", allow_empty=True) if obj.get("title") is not None else ""
        yield Document(docid, require_str(path, number, obj, "text", allow_empty=True), title)


def iter_beir_queries(path: str | Path) -> Iterator[Query]:
    seen: dict[str, int] = {}
    for number, obj in iter_json_objects(path):
        qid = require_str(path, number, obj, "_id")
        if seen.setdefault(qid, number) != number:
            raise ParseError(path, number, f"duplicate query id {qid!r} (first on line {seen[qid]})")
        yield Query(qid, require_str(path, number, obj, "text"))


def read_qrels(path: str | Path) -> Qrels:
    """TREC qrels, or BEIR's TSV when the file starts with its header."""
    from data.trec import read_trec_qrels

    first = next((text for _, text in iter_lines(path) if text.strip()), "")
    if tuple(first.split()) == QRELS_HEADER:
        return read_beir_qrels(path)
    return read_trec_qrels(path)


def read_beir_qrels(path: str | Path) -> Qrels:
    """A BEIR qrels TSV: an optional ``query-id corpus-id score`` header, then 3 columns."""
    judgments: dict[str, dict[str, int]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for number, text in iter_lines(path):
        fields = text.split("\t") if "\t" in text else text.split()
        if not text.strip():
            continue
        if number == 1 and tuple(f.strip() for f in fields) == QRELS_HEADER:
            continue
        if len(fields) != 3:
            raise ParseError(path, number, f"expected 3 tab-separated columns: {' '.join(QRELS_HEADER)}", text)
        qid, docid, score = (f.strip() for f in fields)
        add_judgment(path, number, judgments, first_line, qid, docid, parse_int(path, number, "score", score, text))
    return Qrels(judgments)


def read_beir_queries(folder: str | Path, qrels: Qrels | None = None) -> list[Query]:
    """Queries of a BEIR folder; with ``qrels``, only the judged ones (as BEIR's loader does)."""
    queries = iter_beir_queries(find_file(folder, "queries.jsonl"))
    return [q for q in queries if qrels is None or q.qid in qrels]
