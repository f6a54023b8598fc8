"""A reranker as a PyTerrier transformer: ``bm25 % 100 >> reranker.as_pyterrier()``.

It takes PyTerrier's results frames (``qid, query, docno, text``) and returns them reranked: new
``score`` and ``rank`` (0-based) columns, sorted by qid then rank, as PyTerrier's own rerankers do.
"""

from __future__ import annotations

from typing import Any, Protocol

from data.docstore import DocumentStore
from data.optional import optional_dependency

with optional_dependency("pyterrier"):
    import pandas as pd
    import pyterrier as pt


class FrameReranker(Protocol):  # rerank.base.Reranker
    @property
    def spec(self) -> Any: ...

    def rerank_frame(self, frame: pd.DataFrame, docs: DocumentStore | None = None) -> pd.DataFrame: ...


class RerankerTransformer(pt.Transformer):
    """Reranks results frames; with ``docs`` (a document store) the frames need no ``text`` column."""

    def __init__(self, reranker: FrameReranker, docs: DocumentStore | None = None):
        self.reranker = reranker
        self.docs = docs

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        # PyTerrier's own check, so pt.inspect and pipeline validation learn the columns this needs
        pt.validate.result_frame(
            inp, extra_columns=["query"] if self.docs is not None else ["query", "text"], context=self
        )
        return self.reranker.rerank_frame(inp, self.docs)

    def __repr__(self) -> str:
        return f"RerankerTransformer({self.reranker.spec})"
