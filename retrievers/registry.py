"""Retrievers by explicit name; an index records the name that built it. Plugins add retrievers
through the ``rerank.retrievers`` entry-point group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data.registry import Registry
from retrievers.base import IndexMeta, Retriever

RETRIEVERS: Registry[type[Retriever]] = Registry("retriever", "rerank.retrievers")
RETRIEVERS.register("bm25", "retrievers.bm25:BM25Retriever")
RETRIEVERS.register("splade", "retrievers.splade:SpladeRetriever")
RETRIEVERS.register("dense", "retrievers.dense:DenseRetriever")


def retriever_class(name: str) -> Any:
    return RETRIEVERS.get(name)


def open_index(index_dir: str | Path, **options: Any) -> Retriever:
    """Load the retriever that built ``index_dir`` (named in its metadata), with search-time options."""
    meta = IndexMeta.load(index_dir)
    retriever: Retriever = retriever_class(meta.retriever).load(index_dir, **options)
    return retriever
