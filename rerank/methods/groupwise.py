"""Groupwise scoring (GroupRank: "A Groupwise Reranking Paradigm", Sun et al., 2025).

The query and a group of passages go into one prompt and the model answers a
score per passage (``[2]: 7`` lines, or JSON such as ``{"2": 7}``). Candidates
are shuffled and regrouped over ``rounds`` rounds, and each passage's scores are
averaged, so no passage's score rests on one group's company. Parsing is
tolerant: the first score given for each id counts, out-of-range ids and values
are ignored, and a passage left without a score gets the neutral middle of the
scale; any answer that does not score its whole group counts as one parse failure.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence

from data.records import RerankRequest
from rerank.base import Reranker, RerankResult, require_texts, scored_ranking
from rerank.cost import Cost
from rerank.llm.backend import call_cost
from rerank.methods.llm_common import LLMMethodMixin, words
from rerank.prompts import load_prompt

_SCORED = re.compile(r"""\[?"?(\d+)"?\]?"?\s*[:=]\s*"?(-?\d+(?:\.\d+)?)""")


def parse_scores(text: str, size: int, max_score: float) -> tuple[list[float | None], bool]:
    """Scores for ids 1..size (None where missing) and whether the answer failed to score every one cleanly."""
    scores: list[float | None] = [None] * size
    anomalies = 0
    for raw_id, raw_score in _SCORED.findall(text):
        position, value = int(raw_id) - 1, float(raw_score)
        if not 0 <= position < size or not 0 <= value <= max_score or scores[position] is not None:
            anomalies += 1
            continue
        scores[position] = value
    return scores, anomalies > 0 or any(s is None for s in scores)


class GroupwiseReranker(LLMMethodMixin, Reranker):
    method = "groupwise"

    def __init__(
        self,
        model: str,
        backend: str = "transformers",
        template: str = "groupwise",
        group_size: int = 5,
        rounds: int = 2,
        max_words: int = 100,
        seed: int = 0,
        batch_size: int = 4,
    ):
        if group_size < 1 or rounds < 1:
            raise ValueError("group_size and rounds must be at least 1")
        self.model, self.backend_name, self.template_name = model, backend, template
        self.group_size, self.rounds, self.max_words = group_size, rounds, max_words
        self.seed, self.batch_size = seed, batch_size
        self.prompt = load_prompt(template)
        self.max_score = float(self.prompt.get("max_score", "10"))
        self._load_backend(backend, model, batch_size)

    def _messages(self, query: str, texts: Sequence[str]) -> list[dict[str, str]]:
        p, num, top = self.prompt, len(texts), f"{self.max_score:g}"
        body = p["prefix"].format(query=query, num=num, max_score=top)
        for i, text in enumerate(texts, start=1):
            body += p["passage"].format(id=i, passage=words(text, self.max_words))
        body += p["suffix"].format(query=query, num=num, max_score=top)
        return [{"role": "system", "content": p["system"]}, {"role": "user", "content": body}]

    def groups(self, request: RerankRequest, round_number: int) -> list[list[int]]:
        """Round 0 groups the given order; later rounds shuffle (seeded by seed, qid and round)."""
        order = list(range(len(request.candidates)))
        if round_number > 0:
            random.Random(f"{self.seed}:{request.query.qid}:{round_number}").shuffle(order)
        return [order[i : i + self.group_size] for i in range(0, len(order), self.group_size)]

    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        started = time.perf_counter()
        texts = [require_texts(r) for r in requests]
        totals = [[0.0] * len(t) for t in texts]
        costs = [Cost() for _ in requests]
        neutral = self.max_score / 2
        for round_number in range(self.rounds):
            jobs = [(q, group) for q, r in enumerate(requests) for group in self.groups(r, round_number)]
            conversations = [self._messages(requests[q].query.text, [texts[q][c] for c in g]) for q, g in jobs]
            answers = self.backend.generate(conversations, max_new_tokens=8 * self.group_size + 8)
            for (q, group), answer in zip(jobs, answers, strict=True):
                scores, failed = parse_scores(answer.text, len(group), self.max_score)
                for candidate, score in zip(group, scores, strict=True):
                    totals[q][candidate] += neutral if score is None else score
                costs[q] = costs[q] + call_cost(answer) + Cost(parse_failures=int(failed))
        elapsed = time.perf_counter() - started
        calls = sum(c.calls for c in costs) or 1
        return [
            RerankResult(
                scored_ranking(r, [s / self.rounds for s in total]), c + Cost(seconds=elapsed * c.calls / calls)
            )
            for r, total, c in zip(requests, totals, costs, strict=True)
        ]
