"""Retrievers by explicit name; an index records the name that built it."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from data.errors import InvalidSpecError
from retrievers.base import IndexMeta, Retriever

RETRIEVERS = {
    "bm25": "retrievers.bm25:BM25Retriever",
    "splade": "retrievers.splade:SpladeRetriever",
    "dense": "retrievers.dense:DenseRetriever",
}


def retriever_class(name: str) -> Any:
    try:
        module_name, _, class_name = RETRIEVERS[name].partition(":")
    except KeyError:
        raise InvalidSpecError(f"unknown retriever {name!r}; known: {', '.join(sorted(RETRIEVERS))}") from None
    return getattr(importlib.import_module(module_name), class_name)


def open_index(index_dir: str | Path, **options: Any) -> Retriever:
    """Load the retriever that built ``index_dir`` (named in its metadata), with search-time options."""
    meta = IndexMeta.load(index_dir)
    retriever: Retriever = retriever_class(meta.retriever).load(index_dir, **options)
    return retriever
