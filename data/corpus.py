"""A corpus file of either layout: BEIR ``corpus.jsonl[.gz]`` or ``docid<TAB>text`` TSV."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from data.beir import iter_beir_corpus
from data.config import cache_dir
from data.docstore import SqliteDocumentStore, cached_store
from data.records import Document
from data.textio import open_binary
from data.tsv import iter_tsv_documents


def iter_corpus_file(path: str | Path) -> Iterator[Document]:
    """Documents of a corpus file: JSON lines when it starts with '{', else TSV."""
    with open_binary(path) as handle:
        first = handle.read(4).lstrip(b"\xef\xbb\xbf")[:1]
    return iter_beir_corpus(path) if first == b"{" else iter_tsv_documents(path)


def corpus_store(path: str | Path) -> SqliteDocumentStore:
    """The document store of a corpus file, built once into the cache directory."""
    return cached_store(Path(path), iter_corpus_file(path), cache_dir())
