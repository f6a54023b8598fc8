"""Pairwise Ranking Prompting (Qin et al., 2024, "Large Language Models are Effective Text Rankers
with Pairwise Ranking Prompting").

One call per ordered pair: "which of Passage A and Passage B is more relevant?".
Every pair is asked in both orders to cancel position bias, so a comparison is
two calls. With ``scoring=logits`` the preference for the first passage is the
mean of P(A) in one order and P(B) in the other (each normalised over the two
labels); with ``scoring=generate`` each answer is a vote, disagreeing votes are a
tie, and an answer naming neither label is a parse failure that casts no vote.
Ties keep the current order.

Strategies: ``allpairs`` asks all n(n−1) ordered pairs and scores each passage
by its summed preference; ``heapsort`` and ``bubblesort`` find the top ``k``
(``rerank.sorting``) with far fewer calls.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from itertools import permutations

from data.records import RerankRequest
from rerank.base import RerankResult, require_texts, scored_ranking
from rerank.cost import Cost
from rerank.llm.backend import call_cost
from rerank.methods.comparison import ComparisonReranker
from rerank.methods.llm_common import (
    InitialOrder,
    Scoring,
    Variant,
    check_initial_order,
    check_variant,
    ranked_results,
)
from rerank.methods.setwise import first_label, greedy_letters, label_token
from rerank.prompts import load_prompt


class PairwiseReranker(ComparisonReranker):
    method = "pairwise"
    num_child = 1

    def __init__(
        self,
        model: str,
        backend: str = "transformers",
        template: str = "prp",
        strategy: str = "heapsort",
        k: int = 10,
        scoring: Scoring = "logits",
        max_words: int | None = 100,
        max_tokens: int | None = None,
        initial_order: InitialOrder = "given",
        seed: int = 0,
        batch_size: int = 8,
        variant: Variant = "rerank",
    ):
        check_initial_order(initial_order)
        if scoring not in ("logits", "generate"):
            raise ValueError(f"scoring must be logits or generate, not {scoring!r}")
        if k < 1:
            raise ValueError("k must be at least 1")
        self.model, self.backend_name, self.template_name = model, backend, template
        self.strategy, self.k, self.scoring = strategy, k, scoring
        self.initial_order, self.seed, self.batch_size = initial_order, seed, batch_size
        self.variant = check_variant(variant)
        self.prompt = load_prompt(template)
        self.labels: list[str] = list(self.prompt.get("labels", ["A", "B"]))
        if strategy != "allpairs":
            self._algorithm(2)  # validates the strategy
        self._check_cuts(max_words, max_tokens)
        self._load_backend(backend, model, batch_size)

    def _messages(self, query: str, a: str, b: str) -> list[dict[str, str]]:
        user = self.prompt["user"].format(query=self._cut(query, passage=False), a=self._cut(a), b=self._cut(b))
        return [{"role": "user", "content": user}]

    def _preferences(self, pairs: list[tuple[str, str, str]]) -> list[tuple[float, Cost]]:
        """For each (query, x, y): the preference for x over y in [0, 1] (0.5 a tie), from both orders."""
        conversations = []
        for query, x, y in pairs:
            conversations += [self._messages(query, x, y), self._messages(query, y, x)]
        out = []
        if self.variant == "llm-rankers":
            # a side wins only when both orders name it; a conflict or an unreadable answer is a tie
            answers = greedy_letters(self.backend, conversations, self.labels)
            for (xy, xy_cost), (yx, yx_cost) in zip(answers[::2], answers[1::2], strict=True):
                preference = 1.0 if (xy, yx) == (0, 1) else 0.0 if (xy, yx) == (1, 0) else 0.5
                out.append((preference, xy_cost + yx_cost))
            return out
        if self.scoring == "logits":
            first, second = (label_token(self.prompt, label) for label in self.labels)
            answers = self.backend.next_token_scores(
                conversations, [first, second], prefix=self.prompt.get("answer_prefix", "")
            )
            for xy, yx in zip(answers[::2], answers[1::2], strict=True):
                # P(first label) normalised over the two labels, in each order
                p_xy = 1.0 / (1.0 + math.exp(xy.logprobs[second] - xy.logprobs[first]))
                p_yx = 1.0 / (1.0 + math.exp(yx.logprobs[second] - yx.logprobs[first]))
                preference = (p_xy + 1.0 - p_yx) / 2
                failures = int(xy.missing > 0) + int(yx.missing > 0)
                out.append((preference, call_cost(xy) + call_cost(yx) + Cost(parse_failures=failures)))
            return out
        generations = self.backend.generate(conversations, max_new_tokens=8)
        for xy, yx in zip(generations[::2], generations[1::2], strict=True):
            votes = [first_label(xy.text, self.labels), first_label(yx.text, self.labels)]
            for_x = [v == 0 for v in votes[:1] if v is not None] + [v == 1 for v in votes[1:] if v is not None]
            preference = 0.5 if not for_x or len(set(for_x)) > 1 else float(for_x[0])
            failures = sum(v is None for v in votes)
            out.append((preference, call_cost(xy) + call_cost(yx) + Cost(parse_failures=failures)))
        return out

    def _judge(self, query: str, texts: Sequence[str]) -> tuple[int, Cost]:
        return self._judge_many([(query, list(texts))])[0]

    def _judge_many(self, asks: list[tuple[str, list[str]]]) -> list[tuple[int, Cost]]:
        preferences = self._preferences([(query, texts[0], texts[1]) for query, texts in asks])
        return [(0 if p >= 0.5 else 1, cost) for p, cost in preferences]

    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        if self.strategy != "allpairs":
            return super().rerank(requests)
        started = time.perf_counter()
        texts = [require_texts(r) for r in requests]
        asks = [(q, i, j) for q, t in enumerate(texts) for i, j in permutations(range(len(t)), 2) if i < j]
        preferences = self._preferences([(requests[q].query.text, texts[q][i], texts[q][j]) for q, i, j in asks])
        scores = [[0.0] * len(t) for t in texts]
        costs = [Cost() for _ in requests]
        for (q, i, j), (p, cost) in zip(asks, preferences, strict=True):
            scores[q][i] += p
            scores[q][j] += 1.0 - p
            costs[q] = costs[q] + cost
        elapsed = time.perf_counter() - started
        total = sum(c.calls for c in costs) or 1
        if self.variant == "llm-rankers":
            return ranked_results(requests, self._llm_rankers_orders(asks, preferences, texts), costs, elapsed)
        return [
            RerankResult(scored_ranking(r, s), c + Cost(seconds=elapsed * c.calls / total))
            for r, s, c in zip(requests, scores, costs, strict=True)
        ]

    def _llm_rankers_orders(
        self, asks: list[tuple[int, int, int]], preferences: list[tuple[float, Cost]], texts: list[list[str]]
    ) -> list[list[int]]:
        """llm-rankers' allpairs order: the passages that scored, by points, ties in the order they first
        scored (its dict); its top k lead, the rest follow in the given order."""
        scored: list[dict[int, float]] = [{} for _ in texts]
        for (q, i, j), (p, _) in zip(asks, preferences, strict=True):
            for passage, gained in ((i, p), (j, 1.0 - p)):
                if gained:
                    scored[q][passage] = scored[q].get(passage, 0.0) + gained
        orders = []
        for q, found in enumerate(scored):
            top = sorted(found, key=lambda passage: -found[passage])[: self.k]
            chosen = set(top)
            orders.append(top + [i for i in range(len(texts[q])) if i not in chosen])
        return orders
