"""Groupwise scoring (GroupRank: "A Groupwise Reranking Paradigm", Sun et al., 2025).

The query and a group of passages go into one prompt and the model answers a
score per passage (``[2]: 7`` lines, or JSON such as ``{"2": 7}``). Candidates
are shuffled and regrouped over ``rounds`` rounds, and each passage's scores are
averaged, so no passage's score rests on one group's company. Parsing is
tolerant: the first score given for each id counts, out-of-range ids and values
are ignored, and a passage left without a score gets the neutral middle of the
scale; any answer that does not score its whole group counts as one parse failure.

``variant=diver`` runs the schedule, parsing and aggregation of GroupRank's own code
(AQ-MedAI/Diver, ``Reranker/rerank_groupwise.py``); with ``template=grouprank`` (its
prompt), ``group_size=10``, ``max_words=none`` and ``max_chars=3000`` it sends the
prompts that code sends and ranks as it ranks (``docs/methods/groupwise.md``).
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Sequence
from types import MappingProxyType

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


# Diver's answer: the part inside <answer> tags, then the last ```json block in it, else its last {...}
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FENCED_JSON = re.compile(r"```json\s*([\s\S]+?)\s*```")
_JSON_OBJECT = re.compile(r"\{[\s\S]*?\}")
_DOUBLED_BRACKET = re.compile(r"(\[\d+\])\]")
_TIE_STEP = 1e-9  # far below the gap between two different means of scores in tenths (1 / (10 * rounds²))


def parse_diver_answer(text: str, size: int) -> list[tuple[int, float]] | None:
    """(position in the group, score / 10) in the order the answer gives them, read as Diver's GroupRank
    code reads its model's answer; None where that code gives up, which scores the whole group 0.

    As there, ``"[7]]"`` is repaired, a missing closing brace added, a repeated key keeps its last score,
    and id 0 or a negative id counts from the end of the group (Python's negative indexing). Unlike
    there, a score that is not a finite number (``NaN``) fails the answer instead of entering the mean."""
    answer = _ANSWER.search(text)
    if answer:
        text = answer.group(1).strip()
    blocks = _FENCED_JSON.findall(text) or _JSON_OBJECT.findall(text)
    if not blocks:
        return None
    blob = _DOUBLED_BRACKET.sub(r"\1", blocks[-1].strip())
    if blob.count("{") > blob.count("}"):
        blob += "}"
    try:
        pairs = dict(json.loads(re.sub(r"\s+", " ", blob).strip())).items()
        given = []
        for key, value in pairs:
            position = int(key.strip().strip("[]")) - 1
            if not -size <= position < size:
                return None
            score = value / 10  # a TypeError for text, null, lists
            if not math.isfinite(score):
                return None
            given.append((position % size, score))
    except (ValueError, TypeError, AttributeError, RecursionError):  # not JSON or a mapping; an id not a number
        return None
    return given


def diver_order(given: Sequence[tuple[int, float]], n: int) -> list[float]:
    """Scores for n candidates from every (candidate, score) given: the mean of each one's scores, as Diver
    ranks them (descending, ties in the order the candidates were first scored); a candidate never
    scored, which Diver's output leaves out, comes after them in the given order. Ties are kept apart by
    steps of 1e-9, so the contract's score order is exactly that order."""
    scored: dict[int, list[float]] = {}
    for candidate, score in given:
        scored.setdefault(candidate, []).append(score)
    means = {c: sum(s) / len(s) for c, s in scored.items()}
    order = sorted(means, key=lambda c: means[c], reverse=True)  # stable: ties by first appearance
    scores = [0.0] * n
    for rank, c in enumerate(order):
        scores[c] = means[c] - rank * _TIE_STEP
    floor = min(means.values(), default=0.0) - 1.0
    for rank, c in enumerate(c for c in range(n) if c not in means):
        scores[c] = floor - rank * _TIE_STEP
    return scores


class GroupwiseReranker(LLMMethodMixin, Reranker):
    method = "groupwise"
    # variant, max_chars and max_new_tokens came later; at these values they change nothing
    neutral_params = MappingProxyType({"variant": "rerank", "max_chars": None, "max_new_tokens": None})

    def __init__(
        self,
        model: str,
        backend: str = "transformers",
        template: str = "groupwise",
        group_size: int = 5,
        rounds: int = 2,
        max_words: int | None = 100,
        seed: int = 0,
        batch_size: int = 4,
        variant: str = "rerank",
        max_chars: int | None = None,
        max_new_tokens: int | None = None,
    ):
        if group_size < 1 or rounds < 1:
            raise ValueError("group_size and rounds must be at least 1")
        if variant not in ("rerank", "diver"):
            raise ValueError(f"variant must be rerank or diver, not {variant!r}")
        for name, value in (("max_words", max_words), ("max_chars", max_chars), ("max_new_tokens", max_new_tokens)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or none), not {value}")
        self.model, self.backend_name, self.template_name = model, backend, template
        self.group_size, self.rounds, self.max_words = group_size, rounds, max_words
        self.seed, self.batch_size, self.variant, self.max_chars = seed, batch_size, variant, max_chars
        if max_new_tokens is None:  # Diver lets its model reason before the scores, up to 8,000 tokens
            max_new_tokens = 8000 if variant == "diver" else 8 * group_size + 8
        self.max_new_tokens = max_new_tokens
        self.prompt = load_prompt(template)
        self.max_score = float(self.prompt.get("max_score", "10"))
        self._load_backend(backend, model, batch_size)

    def _passage(self, text: str) -> str:
        if self.max_words is not None:
            text = words(text, self.max_words)
        if self.variant == "diver":
            text = re.sub("\n+", " ", text)
        return text[: self.max_chars] if self.max_chars is not None else text

    def _messages(self, query: str, texts: Sequence[str]) -> list[dict[str, str]]:
        p, num, top = self.prompt, len(texts), f"{self.max_score:g}"
        body = p["prefix"].format(query=query, num=num, max_score=top)
        for i, text in enumerate(texts, start=1):
            body += p["passage"].format(id=i, passage=self._passage(text))
        body += p["suffix"].format(query=query, num=num, max_score=top)
        return [{"role": "system", "content": p["system"]}, {"role": "user", "content": body}]

    def groups(self, request: RerankRequest, round_number: int) -> list[list[int]]:
        """The groups of one round (seeded by seed and qid). Round 0 groups the given order and each later
        round shuffles it anew; with ``variant=diver`` every round, the first too, shuffles the order the
        round before left, as Diver does."""
        order = list(range(len(request.candidates)))
        if self.variant == "diver":
            generator = random.Random(f"{self.seed}:{request.query.qid}")
            for _ in range(round_number + 1):
                generator.shuffle(order)
        elif round_number > 0:
            random.Random(f"{self.seed}:{request.query.qid}:{round_number}").shuffle(order)
        return [order[i : i + self.group_size] for i in range(0, len(order), self.group_size)]

    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        started = time.perf_counter()
        texts = [require_texts(r) for r in requests]
        totals = [[0.0] * len(t) for t in texts]
        given: list[list[tuple[int, float]]] = [[] for _ in requests]  # variant=diver: (candidate, score)
        costs = [Cost() for _ in requests]
        neutral = self.max_score / 2
        for round_number in range(self.rounds):
            jobs = [(q, group) for q, r in enumerate(requests) for group in self.groups(r, round_number)]
            conversations = [self._messages(requests[q].query.text, [texts[q][c] for c in g]) for q, g in jobs]
            answers = self.backend.generate(conversations, max_new_tokens=self.max_new_tokens)
            for (q, group), answer in zip(jobs, answers, strict=True):
                if self.variant == "diver":
                    read = parse_diver_answer(answer.text, len(group))
                    failed = read is None or len({p for p, _ in read}) < len(group)  # as rerank counts them
                    given[q] += [(c, 0.0) for c in group] if read is None else [(group[p], s) for p, s in read]
                else:
                    scores, failed = parse_scores(answer.text, len(group), self.max_score)
                    for candidate, score in zip(group, scores, strict=True):
                        totals[q][candidate] += neutral if score is None else score
                costs[q] = costs[q] + call_cost(answer) + Cost(parse_failures=int(failed))
        elapsed = time.perf_counter() - started
        calls = sum(c.calls for c in costs) or 1
        if self.variant == "diver":
            final = [diver_order(g, len(r.candidates)) for g, r in zip(given, requests, strict=True)]
        else:
            final = [[s / self.rounds for s in total] for total in totals]
        return [
            RerankResult(scored_ranking(r, scores), c + Cost(seconds=elapsed * c.calls / calls))
            for r, scores, c in zip(requests, final, costs, strict=True)
        ]
