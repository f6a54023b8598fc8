"""A retriever as a PyTerrier transformer: queries frames in (``qid, query``), results frames out.

``retriever.as_pyterrier() % 100`` asks the retriever for 100 documents once the pipeline is
compiled (``fuse_rank_cutoff``), as our own pipelines push a cutoff into a retriever's ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from data.docstore import DocumentStore
from data.frames import frame_queries, retrieved_frame
from data.optional import optional_dependency
from data.records import Query, Run

with optional_dependency("pyterrier"):
    import pandas as pd
    import pyterrier as pt


class QueryRetriever(Protocol):  # retrievers.base.Retriever
    k: int

    def retrieve(self, queries: Sequence[Query], k: int | None = None) -> Run: ...

    def __mod__(self, k: int) -> QueryRetriever: ...


class RetrieverTransformer(pt.Transformer):
    """Retrieves for each query of a frame; with ``docs`` (a document store) results carry a ``text``
    column, for a reranker after it. Further query columns (``query_0`` of a rewrite) are kept."""

    def __init__(self, retriever: QueryRetriever, docs: DocumentStore | None = None):
        self.retriever = retriever
        self.docs = docs

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        pt.validate.query_frame(inp, extra_columns=["query"], context=self)
        queries = [Query(qid, text) for qid, text in frame_queries(inp, repr(self))]
        return retrieved_frame(inp, self.retriever.retrieve(queries), self.docs)

    def fuse_rank_cutoff(self, k: int) -> RetrieverTransformer:
        """This transformer followed by ``% k``: the retriever's own ``k``, never raised."""
        return self if k >= self.retriever.k else RetrieverTransformer(self.retriever % k, self.docs)

    def __repr__(self) -> str:
        return f"RetrieverTransformer({type(self.retriever).__name__}, k={self.retriever.k})"
