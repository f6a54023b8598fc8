"""RankLLM's request JSON: ``[{"query": str, "hits": [{qid, docid, rank, score, content}]}]``.

Hits keep the file's order. Errors name the line where the offending request
starts (the file is one JSON array, parsed request by request to know where).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from data.errors import ParseError
from data.jsonl import require_score, require_str
from data.records import Candidate, Query, RerankRequest
from data.textio import atomic_writer, read_text

_WHITESPACE = " \t\r\n"


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _iter_array(path: str | Path, text: str) -> Iterator[tuple[int, Any]]:
    """``(line_number, element)`` for each element of a top-level JSON array."""
    decoder = json.JSONDecoder()

    def fail(pos: int, message: str) -> ParseError:
        return ParseError(path, text.count("\n", 0, pos) + 1, message)

    pos = _skip(text, 0)
    if pos >= len(text) or text[pos] != "[":
        raise fail(pos, "expected a JSON array of requests")
    pos = _skip(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        pos = _skip(text, pos + 1)
    else:
        while True:
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as err:
                raise fail(err.pos, f"invalid JSON: {err.msg}") from None
            except (ValueError, RecursionError) as err:  # an integer over 4,300 digits; nesting too deep
                raise fail(pos, f"invalid JSON: {err}") from None
            yield text.count("\n", 0, pos) + 1, value
            pos = _skip(text, end)
            if pos < len(text) and text[pos] == ",":
                pos = _skip(text, pos + 1)
            elif pos < len(text) and text[pos] == "]":
                pos = _skip(text, pos + 1)
                break
            else:
                raise fail(pos, "expected ',' or ']' after a request")
    if pos != len(text):
        raise fail(pos, "unexpected content after the JSON array")


def iter_rankllm_requests(path: str | Path) -> Iterator[RerankRequest]:
    seen_qids: dict[str, int] = {}
    for line, obj in _iter_array(path, read_text(path)):
        if not isinstance(obj, dict):
            raise ParseError(path, line, "expected a request object with 'query' and 'hits'")
        query_text = require_str(path, line, obj, "query", allow_empty=True)
        hits = obj.get("hits")
        if not isinstance(hits, list):
            raise ParseError(path, line, "expected a list for 'hits'")
        qid: str | None = None
        candidates: list[Candidate] = []
        seen_docids: set[str] = set()
        for position, hit in enumerate(hits):
            where = f"hit {position}: "
            if not isinstance(hit, dict):
                raise ParseError(path, line, where + "expected a JSON object")
            try:
                hit_qid = require_str(path, line, hit, "qid")
                docid = require_str(path, line, hit, "docid")
                score = require_score(path, line, hit, "score")
                content = require_str(path, line, hit, "content", allow_empty=True)
            except ParseError as err:
                raise ParseError(path, line, where + err.message) from None
            if qid is None:
                qid = hit_qid
            elif hit_qid != qid:
                raise ParseError(path, line, f"{where}qid {hit_qid!r} differs from the request's {qid!r}")
            if docid in seen_docids:
                raise ParseError(path, line, f"{where}duplicate docid {docid!r}")
            seen_docids.add(docid)
            candidates.append(Candidate(docid, score, content))
        if qid is None:
            # A request without hits has its qid only at request level (our writer puts it there).
            if "qid" not in obj:
                raise ParseError(path, line, "a request without hits must carry a 'qid'")
            qid = require_str(path, line, obj, "qid")
        if seen_qids.setdefault(qid, line) != line:
            raise ParseError(path, line, f"duplicate query id {qid!r} (first on line {seen_qids[qid]})")
        try:
            request = RerankRequest(Query(qid, query_text), tuple(candidates))
        except (TypeError, ValueError) as err:  # a request no reranker can take (a blank query)
            raise ParseError(path, line, str(err)) from None
        yield request


def read_rankllm_requests(path: str | Path) -> list[RerankRequest]:
    return list(iter_rankllm_requests(path))


def write_rankllm_requests(requests: Iterable[RerankRequest], path: str | Path) -> None:
    """Write requests; a candidate without text is an error (RankLLM needs ``content``)."""
    rows: list[dict[str, Any]] = []
    for request in requests:
        hits = []
        for rank, c in enumerate(request.candidates, start=1):
            if c.text is None:
                raise ValueError(f"candidate {c.docid!r} of query {request.query.qid!r} has no text to write")
            hits.append({"content": c.text, "qid": request.query.qid, "docid": c.docid, "rank": rank, "score": c.score})
        row: dict[str, Any] = {"query": request.query.text, "hits": hits}
        if not hits:
            row["qid"] = request.query.qid
        rows.append(row)
    with atomic_writer(path) as out:
        json.dump(rows, out, ensure_ascii=False, indent=2)
        out.write("\n")
