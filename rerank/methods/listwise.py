"""Listwise reranking with a sliding window (RankGPT: Sun et al., 2023, "Is ChatGPT Good at Search?";
RankZephyr: Pradeep et al., 2023).

The window slides from the bottom of the list to the top: each step asks the
model to order ``window_size`` passages, then moves up by ``stride``, so strong
passages bubble towards the head. ``passes`` repeats the sweep. Windows at the
same step of different queries go to the backend together (batch first).
Synthetic scores: the final position ``r`` (0-based) gets score ``n - r``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from data.records import RerankRequest
from rerank.base import Reranker, RerankResult, require_texts
from rerank.cost import Cost
from rerank.listwise_parsing import parse_permutation
from rerank.llm.backend import call_cost
from rerank.methods.llm_common import InitialOrder, LLMMethodMixin, check_initial_order, ranked_results, start_order
from rerank.prompts import load_prompt


def window_starts(n: int, window: int, stride: int) -> list[int]:
    """Start offsets from the bottom of the list to the top."""
    if n <= window:
        return [0]
    starts = list(range(n - window, 0, -stride))
    if starts[-1] != 0:
        starts.append(0)
    return starts


class ListwiseReranker(LLMMethodMixin, Reranker):
    method = "listwise"

    def __init__(
        self,
        model: str,
        backend: str = "transformers",
        template: str = "rankzephyr",
        window_size: int = 20,
        stride: int = 10,
        passes: int = 1,
        max_words: int = 100,
        initial_order: InitialOrder = "given",
        seed: int = 0,
        batch_size: int = 4,
    ):
        if window_size < 2 or stride < 1 or passes < 1:
            raise ValueError("window_size must be at least 2, stride and passes at least 1")
        check_initial_order(initial_order)
        self.model, self.backend_name, self.template_name = model, backend, template
        self.window_size, self.stride, self.passes, self.max_words = window_size, stride, passes, max_words
        self.initial_order, self.seed, self.batch_size = initial_order, seed, batch_size
        self.prompt = load_prompt(template)
        self._load_backend(backend, model, batch_size)

    def _identifiers(self, n: int) -> list[str]:
        return [str(i) for i in range(1, n + 1)]

    def _messages(self, query: str, passages: Sequence[str]) -> list[dict[str, str]]:
        p = self.prompt
        body = p["prefix"].format(num=len(passages), query=query)
        for ident, passage in zip(self._identifiers(len(passages)), passages, strict=True):
            body += p["passage"].format(id=ident, passage=" ".join(passage.split()[: self.max_words]))
        body += p["suffix"].format(num=len(passages), query=query)
        return [{"role": "system", "content": p["system"]}, {"role": "user", "content": body}]

    def _rank_windows(
        self, conversations: list[list[dict[str, str]]], windows: list[list[int]]
    ) -> list[tuple[list[int], Cost]]:
        """Each window's new order (positions into the window) and what asking for it cost."""
        answers = self.backend.generate(conversations, max_new_tokens=6 * self.window_size)
        out = []
        for window, answer in zip(windows, answers, strict=True):
            parsed = parse_permutation(answer.text, len(window))
            out.append((parsed.order, call_cost(answer) + Cost(parse_failures=int(parsed.failed))))
        return out

    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        start = time.perf_counter()
        texts = [require_texts(r) for r in requests]
        orders = [start_order(r, self.initial_order, self.seed) for r in requests]
        costs = [Cost() for _ in requests]
        # Each query's schedule of window starts; step k of every query is sent together.
        schedules = [window_starts(len(r.candidates), self.window_size, self.stride) * self.passes for r in requests]
        for step in range(max((len(s) for s in schedules), default=0)):
            jobs = [
                (i, schedules[i][step]) for i in range(len(requests)) if step < len(schedules[i]) and len(orders[i]) > 1
            ]
            if not jobs:
                continue
            windows = [orders[i][s : s + self.window_size] for i, s in jobs]
            conversations = [
                self._messages(requests[i].query.text, [texts[i][c] for c in window])
                for (i, _), window in zip(jobs, windows, strict=True)
            ]
            for (i, s), window, (new_order, cost) in zip(
                jobs, windows, self._rank_windows(conversations, windows), strict=True
            ):
                orders[i][s : s + len(window)] = [window[p] for p in new_order]
                costs[i] = costs[i] + cost
        return ranked_results(requests, orders, costs, time.perf_counter() - start)
