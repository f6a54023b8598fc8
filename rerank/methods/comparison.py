"""The shared machinery of methods that rank by repeated "which is best?" judgements (pairwise, setwise).

Subclasses say how to judge a set of candidates; this base runs a top-k sort
(``rerank.sorting``) for every query in lockstep, sends each round's judgements
to the backend together, and keeps the cost record: calls and tokens per query,
answers that named no valid label as parse failures. The top ``k`` come first in
the order found, the rest follow in their starting order; scores are ``n - rank``.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from data.records import RerankRequest
from rerank.base import Reranker, RerankResult, require_texts
from rerank.cost import Cost
from rerank.methods.llm_common import LLMMethodMixin, ranked_results, start_order, words
from rerank.sorting import bubble_top_k, drive, heap_top_k, skipping_bubble_top_k


class ComparisonReranker(LLMMethodMixin, Reranker):
    strategy: str
    k: int
    num_child: int
    initial_order: str
    seed: int
    variant: str = "rerank"
    max_words: int | None
    max_tokens: int | None = None
    # variant=llm-rankers and max_tokens came later; their defaults change nothing, so earlier keys stay valid
    neutral_params = MappingProxyType({"variant": "rerank", "max_tokens": None})

    def _check_cuts(self, max_words: int | None, max_tokens: int | None) -> None:
        if max_words is not None and max_words < 1:
            raise ValueError(f"max_words must be at least 1 (or none: no cut in words), not {max_words}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
        self.max_words, self.max_tokens = max_words, max_tokens
        self._cuts: dict[str, str] = {}

    def _cut(self, text: str, passage: bool = True) -> str:
        """A passage cut to ``max_words`` words (none: whole), then both it and the query to ``max_tokens``
        tokens of the model's tokenizer, as llm-rankers' run.py cuts them before ranking."""
        if passage and self.max_words is not None:
            text = words(text, self.max_words)
        if self.max_tokens is None:
            return text
        if text not in self._cuts:  # a sort shows the same passage many times
            if len(self._cuts) >= 65_536:  # bounded: a streamed run meets every passage of the collection
                self._cuts.clear()
            self._cuts[text] = self.backend.truncate_tokens(text, self.max_tokens)
        return self._cuts[text]

    def _load_backend(self, backend: str, model: str, batch_size: int) -> None:
        super()._load_backend(backend, model, batch_size)
        if self.max_tokens is not None:
            self.backend.truncate_tokens("", 1)  # a backend without a tokenizer says so now, not mid-run

    @abstractmethod
    def _judge(self, query: str, texts: Sequence[str]) -> tuple[int, Cost]: ...

    def _judge_many(self, asks: list[tuple[str, list[str]]]) -> list[tuple[int, Cost]]:
        """Each ask's winner (an index into its texts) and cost; override to batch."""
        return [self._judge(query, texts) for query, texts in asks]

    def _algorithm(self, n: int) -> Any:
        reference = self.variant == "llm-rankers"
        if self.strategy == "heapsort":
            # one judgement sees a parent and its children; pairwise judges two at a time in a binary heap,
            # and so does setwise with one child, except as llm-rankers runs it (a chain)
            arity = self.num_child if reference and self.method == "setwise" else max(2, self.num_child)
            return heap_top_k(n, self.k, arity, set_size=self.num_child + 1, sift_after_last=not reference)
        if self.strategy == "bubblesort":
            return (skipping_bubble_top_k if reference else bubble_top_k)(n, self.k, self.num_child)
        raise ValueError(f"strategy must be heapsort or bubblesort, not {self.strategy!r}")

    def _sorted(self, requests: Sequence[RerankRequest]) -> tuple[list[list[int]], list[Cost]]:
        texts = [require_texts(r) for r in requests]
        starts = [start_order(r, self.initial_order, self.seed) for r in requests]
        costs = [Cost() for _ in requests]

        def judge(asked: list[tuple[int, tuple[int, ...]]]) -> list[int]:
            asks = [(requests[q].query.text, [texts[q][starts[q][p]] for p in positions]) for q, positions in asked]
            out = []
            for (q, _), (winner, cost) in zip(asked, self._judge_many(asks), strict=True):
                costs[q] = costs[q] + cost
                out.append(winner)
            return out

        positions = drive([self._algorithm(len(r.candidates)) for r in requests], judge)
        orders = [[start[p] for p in found] for start, found in zip(starts, positions, strict=True)]
        return orders, costs

    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        started = time.perf_counter()
        orders, costs = self._sorted(requests)
        return ranked_results(requests, orders, costs, time.perf_counter() - started)
