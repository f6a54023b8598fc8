"""JSON Lines: the line parser shared by the JSONL formats, and candidate files.

A candidates file holds one query per line::

    {"qid": "q1", "query": "text", "candidates": [{"docid": "d1", "score": 2.5, "text": "…"}]}

``text`` is optional per candidate; candidates keep the order of the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from data.errors import ParseError
from data.records import Candidate, Query, RerankRequest
from data.textio import atomic_writer, iter_lines


def iter_json_objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line_number, object)`` for each non-blank line, which must be a JSON object."""
    for number, text in iter_lines(path):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ParseError(path, number, f"invalid JSON: {err.msg} at column {err.colno}", text) from None
        except (ValueError, RecursionError) as err:  # an integer over 4,300 digits; nesting too deep
            raise ParseError(path, number, f"invalid JSON: {err}", text) from None
        if not isinstance(value, dict):
            raise ParseError(path, number, f"expected a JSON object, found {type(value).__name__}", text)
        yield number, value


def require_str(path: str | Path, line: int, obj: dict[str, Any], key: str, *, allow_empty: bool = False) -> str:
    """A string (or integer id) field; missing, wrongly typed or empty is a parse error."""
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        found = "nothing" if value is None else type(value).__name__
        raise ParseError(path, line, f"expected a string for {key!r}, found {found}")
    text = str(value)
    if not text and not allow_empty:
        raise ParseError(path, line, f"{key!r} is empty")
    return text


def require_score(path: str | Path, line: int, obj: dict[str, Any], key: str) -> float:
    value = obj.get(key)
    try:
        score = None if isinstance(value, bool) or not isinstance(value, (int, float)) else float(value)
    except OverflowError:  # an integer beyond float's range
        score = None
    if score is None or not math.isfinite(score):
        raise ParseError(path, line, f"expected a finite number for {key!r}, found {_short_repr(value)}")
    return score


def _short_repr(value: Any, limit: int = 40) -> str:
    if isinstance(value, int) and value.bit_length() > 128:  # repr() of a huge integer may itself fail
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def iter_candidates_jsonl(path: str | Path) -> Iterator[RerankRequest]:
    seen_qids: dict[str, int] = {}
    for number, obj in iter_json_objects(path):
        qid = require_str(path, number, obj, "qid")
        if seen_qids.setdefault(qid, number) != number:
            raise ParseError(path, number, f"duplicate query id {qid!r} (first on line {seen_qids[qid]})")
        query = Query(qid, require_str(path, number, obj, "query", allow_empty=True))
        items = obj.get("candidates")
        if not isinstance(items, list):
            raise ParseError(path, number, "expected a list for 'candidates'")
        candidates: list[Candidate] = []
        seen_docids: set[str] = set()
        for position, item in enumerate(items):
            where = f"candidate {position}: "
            if not isinstance(item, dict):
                raise ParseError(path, number, where + "expected a JSON object")
            try:
                docid = require_str(path, number, item, "docid")
                score = require_score(path, number, item, "score")
                text = require_str(path, number, item, "text", allow_empty=True) if "text" in item else None
            except ParseError as err:
                raise ParseError(path, number, where + err.message) from None
            if docid in seen_docids:
                raise ParseError(path, number, f"{where}duplicate docid {docid!r} for query {qid!r}")
            seen_docids.add(docid)
            candidates.append(Candidate(docid, score, text))
        try:
            request = RerankRequest(query, tuple(candidates))
        except (TypeError, ValueError) as err:  # a request no reranker can take (a blank query)
            raise ParseError(path, number, str(err)) from None
        yield request


def read_candidates_jsonl(path: str | Path) -> list[RerankRequest]:
    return list(iter_candidates_jsonl(path))


def write_candidates_jsonl(requests: Iterable[RerankRequest], path: str | Path) -> None:
    with atomic_writer(path) as out:
        for request in requests:
            items: list[dict[str, Any]] = []
            for c in request.candidates:
                item: dict[str, Any] = {"docid": c.docid, "score": c.score}
                if c.text is not None:
                    item["text"] = c.text
                items.append(item)
            row = {"qid": request.query.qid, "query": request.query.text, "candidates": items}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
