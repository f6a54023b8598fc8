"""A reranker as a LangChain document compressor (``ContextualCompressionRetriever`` takes one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data.optional import optional_dependency

with optional_dependency("langchain_core"):
    from langchain_core.callbacks import Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
    from pydantic import ConfigDict, Field


class RerankerDocumentCompressor(BaseDocumentCompressor):
    """Keeps the ``top_n`` documents (all with None) in the reranker's order, each a copy with the
    reranker's score as ``relevance_score`` in its metadata."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reranker: Any = Field(exclude=True)  # a rerank.base.Reranker: anything with rank(query, texts)
    top_n: int | None = Field(default=3, ge=1)

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        if not documents:
            return []
        result = self.reranker.rank(query, [d.page_content for d in documents])
        kept = result.ranking.candidates[: self.top_n]
        # rank() names plain texts by their positions ("0", "1", …): that finds each document again
        return [_scored(documents[int(c.docid)], c.score) for c in kept]


def _scored(document: Document, score: float) -> Document:
    return Document(
        page_content=document.page_content,
        metadata={**document.metadata, "relevance_score": score},
        id=document.id,
    )
