"""Bi-encoder reranking: cosine similarity of sentence-transformers embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data.models import resolve_model
from data.optional import optional_import
from rerank.base import PairScores, PointwiseReranker
from rerank.spec import Value


class BiEncoderReranker(PointwiseReranker):
    """Scores a candidate by the cosine of its embedding with the query's.

    Each distinct text of a batch is encoded once (DL queries share many passages).
    """

    method = "bi-encoder"

    def __init__(
        self,
        model: str = "minilm",
        batch_size: int = 32,
        max_length: int | None = None,
        device: str | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
    ):
        st = optional_import("sentence_transformers")
        self.model = model
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self._encoder: Any = st.SentenceTransformer(resolve_model(model), device=device)
        if max_length is not None:
            self._encoder.max_seq_length = max_length

    def params(self) -> dict[str, Value]:
        return {
            "model": self.model,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "device": self.device,
            "query_prefix": self.query_prefix,
            "document_prefix": self.document_prefix,
        }

    def _encode(self, texts: list[str]) -> Any:
        return self._encoder.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

    def score_pairs(self, queries: Sequence[str], texts: Sequence[str]) -> PairScores:
        import numpy as np

        unique_queries = list(dict.fromkeys(queries))
        unique_texts = list(dict.fromkeys(texts))
        q_emb = self._encode([self.query_prefix + q for q in unique_queries])
        d_emb = self._encode([self.document_prefix + t for t in unique_texts])
        q_index = {q: i for i, q in enumerate(unique_queries)}
        d_index = {t: i for i, t in enumerate(unique_texts)}
        qi = np.fromiter((q_index[q] for q in queries), dtype=np.int64, count=len(queries))
        di = np.fromiter((d_index[t] for t in texts), dtype=np.int64, count=len(texts))
        scores = np.einsum("ij,ij->i", q_emb[qi], d_emb[di])
        limit = self._encoder.max_seq_length
        lengths = [len(ids) for ids in self._encoder.tokenizer(unique_texts, verbose=False)["input_ids"]]
        doc_tokens = [min(n, limit) for n in lengths]
        return PairScores(
            scores=[float(s) for s in scores],
            input_tokens=[doc_tokens[d] for d in di.tolist()],
            truncated=[lengths[d] > limit for d in di.tolist()],
            calls=-(-len(unique_queries) // self.batch_size) + -(-len(unique_texts) // self.batch_size),
        )
