"""Reranking through an HTTP rerank service: `rerank serve`, Infinity, text-embeddings-inference, Cohere, Jina.

``api=cohere`` posts ``{model, query, documents, top_n}`` to ``/v2/rerank`` and reads
``results[].index/relevance_score`` (Infinity, Jina and vLLM answer the same shape on their own path:
``path=/rerank`` or ``/v1/rerank``); ``api=tei`` posts ``{query, texts, raw_scores: true}`` to ``/rerank``
and reads ``[].index/score``. Each query is one request (split into ``max_documents`` pieces), up to
``concurrency`` in flight, retried with backoff (honouring ``Retry-After``). An answer that misses or
repeats a document raises ``BackendError``: no candidate is ever dropped or ranked twice. The API key
comes from the environment variable ``api_key_env``, never from the spec.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Literal

from data.errors import BackendError
from data.records import RerankRequest
from rerank.base import Reranker, RerankResult, require_texts, scored_ranking
from rerank.cost import Cost
from rerank.http_client import JSONClient

API = Literal["cohere", "tei"]
DEFAULT_PATHS = {"cohere": "/v2/rerank", "tei": "/rerank"}


class RemoteReranker(Reranker):
    """Scores come from the service; the order is ours (score descending, trec_eval's ties)."""

    method = "remote"
    execution_params: ClassVar[frozenset[str]] = frozenset(
        {"concurrency", "max_retries", "timeout", "api_key_env", "max_documents"}
    )

    def __init__(
        self,
        base_url: str,
        api: API = "cohere",
        model: str = "",
        path: str | None = None,
        api_key_env: str = "RERANK_API_KEY",
        concurrency: int = 4,
        max_retries: int = 5,
        timeout: float = 60.0,
        max_documents: int = 1000,
    ):
        if api not in DEFAULT_PATHS:
            raise ValueError(f"api must be one of {', '.join(DEFAULT_PATHS)}, not {api!r}")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// address, not {base_url!r}")
        if concurrency < 1 or max_documents < 1 or max_retries < 0:
            raise ValueError("concurrency and max_documents must be at least 1, max_retries at least 0")
        self.base_url, self.api, self.model = base_url.rstrip("/"), api, model
        self.path = path or DEFAULT_PATHS[api]
        self.concurrency, self.max_documents = concurrency, max_documents
        key = os.environ.get(api_key_env, "")
        self._http = JSONClient(
            self.base_url, headers={"Authorization": f"Bearer {key}"} if key else {}, max_retries=max_retries,
            timeout=timeout, connections=concurrency, what=f"rerank service {self.base_url}",
        )  # fmt: skip

    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        pieces = [
            (n, start, require_texts(request)[start : start + self.max_documents])
            for n, request in enumerate(requests)
            for start in range(0, max(1, len(request.candidates)), self.max_documents)
        ]
        with ThreadPoolExecutor(min(self.concurrency, max(1, len(pieces)))) as pool:
            answers = list(pool.map(lambda p: self._score(requests[p[0]].query.text, p[2]), pieces))
        scores: list[list[float]] = [[] for _ in requests]
        costs = [Cost() for _ in requests]
        for (n, _, _), (piece_scores, cost) in zip(pieces, answers, strict=True):
            scores[n].extend(piece_scores)
            costs[n] = costs[n] + cost
        return [
            RerankResult(scored_ranking(request, request_scores), cost)
            for request, request_scores, cost in zip(requests, scores, costs, strict=True)
        ]

    def _score(self, query: str, texts: list[str]) -> tuple[list[float], Cost]:
        if not texts:
            return [], Cost()
        start = time.perf_counter()
        if self.api == "cohere":
            body: dict[str, Any] = {"query": query, "documents": texts, "top_n": len(texts)}
            if self.model:
                body["model"] = self.model
        else:
            body = {"query": query, "texts": texts, "raw_scores": True, "truncate": True}
        answer = self._http.post(self.path, body)
        items, score_field = (answer.get("results"), "relevance_score") if self.api == "cohere" else (answer, "score")
        if not isinstance(items, list):
            raise BackendError(f"{self.base_url}{self.path}: an answer without a result list: {str(answer)[:200]}")
        scores: dict[int, float] = {}
        for item in items:
            index, score = item.get("index"), item.get(score_field)
            if not isinstance(index, int) or not isinstance(score, (int, float)) or index in scores:
                raise BackendError(f"{self.base_url}{self.path}: a malformed or repeated result {str(item)[:200]}")
            scores[index] = float(score)
        if sorted(scores) != list(range(len(texts))):
            raise BackendError(
                f"{self.base_url}{self.path}: scores for {len(scores)} of {len(texts)} documents; nothing is ranked"
            )
        tokens = _input_tokens(answer)
        cost = Cost(calls=1, input_tokens=tokens, seconds=time.perf_counter() - start)
        return [scores[i] for i in range(len(texts))], cost


def _input_tokens(answer: Any) -> int:
    if not isinstance(answer, dict):
        return 0
    meta = answer.get("meta") or {}
    tokens = (meta.get("tokens") or {}).get("input_tokens") or (answer.get("usage") or {}).get("total_tokens")
    return int(tokens) if isinstance(tokens, (int, float)) else 0
