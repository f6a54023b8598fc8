"""Id-and-text TSV files: topics (``qid<TAB>text``) and passage collections (``pid<TAB>text``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from data.errors import ParseError
from data.records import Document, Query
from data.textio import atomic_writer, iter_lines


def iter_id_text(path: str | Path, kind: str = "query") -> Iterator[tuple[str, str]]:
    """``(id, text)`` pairs in file order; blank lines are skipped, repeated ids are an error."""
    first_line: dict[str, int] = {}
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        ident, sep, text = line.partition("\t")
        ident, text = ident.strip(), text.strip()
        if not sep:
            raise ParseError(path, number, f"expected '{kind} id<TAB>text', found no tab", line)
        if not ident or not text:
            raise ParseError(path, number, f"empty {kind} id or {kind} text", line)
        first = first_line.setdefault(ident, number)
        if first != number:
            raise ParseError(path, number, f"duplicate {kind} id {ident!r} (first on line {first})", line)
        yield ident, text


def iter_topics(path: str | Path) -> Iterator[Query]:
    for qid, text in iter_id_text(path, "query"):
        yield Query(qid, text)


def read_topics(path: str | Path) -> list[Query]:
    return list(iter_topics(path))


def iter_tsv_documents(path: str | Path) -> Iterator[Document]:
    for docid, text in iter_id_text(path, "document"):
        yield Document(docid, text)


def write_topics(queries: Iterable[Query], path: str | Path) -> None:
    with atomic_writer(path) as out:
        for query in queries:
            if "\t" in query.qid or any(ch in query.text for ch in "\t\r\n"):
                raise ValueError(f"query {query.qid!r} contains a tab or newline and cannot be written as TSV")
            out.write(f"{query.qid}\t{query.text}\n")
