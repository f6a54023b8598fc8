"""Setwise ranking (Zhuang et al., 2024, "A Setwise Approach to Effective and Highly Efficient
Zero-shot Ranking with Large Language Models").

Each call shows the query and ``num_child + 1`` passages labelled A, B, C, … and
asks which is most relevant; a heapsort (a ``num_child``-ary heap) or bubble sort
built on those judgements finds the top ``k``. With ``scoring=logits`` the winner
is the label with the highest next-token log-probability after "Passage " (one
forward pass, never unparseable); with ``scoring=generate`` it is the first valid
label in the generated answer, and an answer naming none keeps the current
leader and counts as a parse failure.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from data.errors import InvalidSpecError
from data.records import RerankRequest
from rerank.base import RerankResult
from rerank.cost import Cost
from rerank.llm.backend import LLMBackend, call_cost
from rerank.methods.comparison import ComparisonReranker
from rerank.methods.llm_common import (
    InitialOrder,
    Scoring,
    Variant,
    by_size,
    check_initial_order,
    check_variant,
)
from rerank.methods.reasoning import DEFAULT_BUDGET, check_reasoning, reason
from rerank.methods.reasoning import PARAMS as REASONING
from rerank.prompts import load_prompt


def label_token(prompt: dict[str, str], label: str) -> str:
    """How a label is written right after the answer prefix: "Passage" then " B" is the token " B"."""
    return prompt.get("label_token", "{label}").format(label=label)


TAGGED_ANSWER_TOKENS = 16  # room for "<answer>[19]</answer>" after the reasoning
LLM_RANKERS_PREFIX = " Passage:"  # what llm-rankers appends to the rendered prompt of a causal LM


def greedy_letters(backend: LLMBackend, conversations: list[list[dict[str, str]]], letters: Sequence[str]) -> list[
    tuple[int | None, Cost]
]:  # fmt: skip
    """llm-rankers' answer: the one token a causal LM writes greedily after `` Passage:``, stripped and
    upper-cased; the position of the letter it is, or None for any other token (a parse failure).

    The greedy token is the one label among the letters' spellings (`` A``, ``A``, `` a``, ``a``) that is
    the model's most likely token (``top=1``); when none is, the model wrote something else.
    """
    spellings = list(dict.fromkeys(
        spelled for letter in letters for spelled in (f" {letter}", letter, f" {letter.lower()}", letter.lower())
        if backend.single_token(spelled)
    ))  # fmt: skip
    out: list[tuple[int | None, Cost]] = []
    for scores in backend.next_token_scores(conversations, spellings, prefix=LLM_RANKERS_PREFIX, top=1):
        written = max(spellings, key=lambda spelled: scores.logprobs[spelled])
        named = letters.index(written.strip().upper()) if scores.missing < len(spellings) else None
        out.append((named, call_cost(scores) + Cost(parse_failures=int(named is None))))
    return out


def first_label(text: str, labels: Sequence[str]) -> int | None:
    """The position of the label the answer names ("Passage C", "[C]", or just "C"), else None.

    A bare capital inside prose ("A passage…", "I think…") is not read as a label.
    """
    for pattern in (r"Passage\s+([A-Z])\b", r"\[([A-Z])\]"):
        for found in re.findall(pattern, text):
            if found in labels:
                return labels.index(found)
    bare = text.strip().strip(".:;,!\"'()").strip()
    return labels.index(bare) if bare in labels else None


class SetwiseReranker(ComparisonReranker):
    method = "setwise"
    neutral_params = MappingProxyType({**ComparisonReranker.neutral_params, **REASONING})

    def __init__(
        self,
        model: str,
        backend: str = "transformers",
        template: str = "setwise",
        strategy: str = "heapsort",
        num_child: int = 3,
        k: int = 10,
        scoring: Scoring = "logits",
        max_words: int | None = 100,
        max_tokens: int | None = None,
        initial_order: InitialOrder = "given",
        seed: int = 0,
        batch_size: int = 4,
        variant: Variant = "rerank",
        reasoning: bool = False,
        reasoning_budget: int = DEFAULT_BUDGET,
        budget_forcing: bool = True,
    ):
        """``reasoning`` (with ``scoring=generate``) lets the model think before it names the best passage,
        ``reasoning_budget`` tokens at most, closed then unless ``budget_forcing`` is off
        (``rerank.methods.reasoning``)."""
        if num_child < 1 or num_child + 1 > len(string.ascii_uppercase) or k < 1:
            raise ValueError("num_child must be 1 to 25 and k at least 1")
        check_initial_order(initial_order)
        if scoring not in ("logits", "generate"):
            raise ValueError(f"scoring must be logits or generate, not {scoring!r}")
        self._check_setwise_reasoning(reasoning, reasoning_budget, budget_forcing, scoring)
        self.reasoning, self.reasoning_budget, self.budget_forcing = reasoning, reasoning_budget, budget_forcing
        self.model, self.backend_name, self.template_name = model, backend, template
        self.strategy, self.num_child, self.k, self.scoring = strategy, num_child, k, scoring
        self.initial_order, self.seed, self.batch_size = initial_order, seed, batch_size
        self.variant = check_variant(variant)
        self.prompt = load_prompt(template)
        if "answer_pattern" in self.prompt and not (reasoning and scoring == "generate"):
            raise InvalidSpecError(f"{self.method}: template {template} reasons before it answers in tags: give "
                                   "reasoning=true and scoring=generate")  # fmt: skip
        if self.prompt.get("labels") == "numbers" and num_child + 1 > 20:
            raise InvalidSpecError(
                f"{self.method}: template {template} numbers at most 20 passages: num_child at most 19"
            )
        self._sequence = random.Random(929)
        self._algorithm(2)  # validates the strategy
        self._check_cuts(max_words, max_tokens)
        self._load_backend(backend, model, batch_size)

    @classmethod
    def _check_setwise_reasoning(cls, reasoning: object, budget: object, forcing: object, scoring: object) -> None:
        check_reasoning(cls.method, {"reasoning": reasoning, "reasoning_budget": budget, "budget_forcing": forcing})
        if reasoning and scoring != "generate":
            raise InvalidSpecError(f"{cls.method}: reasoning=true needs scoring=generate (the answer is read from "
                                   "the text after the reasoning, not from the next token's log-probabilities)")  # fmt: skip

    @classmethod
    def check_params(cls, params: dict[str, Any], where: str) -> None:
        super().check_params(params, where)
        cls._check_setwise_reasoning(params.get("reasoning", False), params.get("reasoning_budget", DEFAULT_BUDGET),
                                     params.get("budget_forcing", True), params.get("scoring", "logits"))  # fmt: skip

    def _messages(self, query: str, texts: Sequence[str]) -> list[dict[str, str]]:
        p = self.prompt
        query = self._cut(query, passage=False)
        body = p["prefix"].format(query=query, num=len(texts))
        labels = [str(i) for i in range(1, len(texts) + 1)] if p.get("labels") == "numbers" else string.ascii_uppercase
        for label, text in zip(labels, texts, strict=False):
            body += p["passage"].format(id=label, passage=self._cut(text))
        body += p["suffix"].format(query=query, num=len(texts))
        system = [{"role": "system", "content": p["system"]}] if p.get("system") else []
        return [*system, {"role": "user", "content": body}]

    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        if self.prompt.get("shuffle") and self.variant == "llm-rankers":
            # llm-rankers seeds its module's random with 929 and ranks the queries one after another, each
            # comparison shuffling its passages from that one sequence: so here, for the queries of this call
            self._sequence = random.Random(929)
            results: list[RerankResult] = []
            for request in requests:
                results += super().rerank([request])
            return results
        return super().rerank(requests)

    def _shown(self, query: str, texts: Sequence[str]) -> list[int]:
        """The order a comparison shows its passages in: as given, or shuffled (Rank-R1), from llm-rankers'
        sequence (``variant=llm-rankers``) or from the comparison itself, whatever the batch."""
        if not self.prompt.get("shuffle"):
            return list(range(len(texts)))
        rng = (
            self._sequence
            if self.variant == "llm-rankers"
            else random.Random("\x1f".join([str(self.seed), query, *texts]))
        )
        return rng.sample(range(len(texts)), len(texts))

    def _judge_tagged(self, asks: list[tuple[str, list[str]]]) -> list[tuple[int, Cost]]:
        """Rank-R1: numbered passages in a shuffled order, a reasoning, the label read inside the answer tags of
        the whole completion, lower-cased (its ``compare``); anything else names no passage, and the first of
        the set wins, as there."""
        shown = [self._shown(query, texts) for query, texts in asks]
        conversations = [
            self._messages(query, [texts[i] for i in order]) for (query, texts), order in zip(asks, shown, strict=True)
        ]
        thought = reason(self.backend, conversations, self.reasoning_budget, TAGGED_ANSWER_TOKENS, self.budget_forcing)
        out = []
        for (_, texts), order, r in zip(asks, shown, thought, strict=True):
            found = re.search(self.prompt["answer_pattern"], (r.reasoning + (r.answer or "")).lower(), re.DOTALL)
            label = re.fullmatch(r"\[(\d+)\]", found.group(1).strip()) if found else None
            named = int(label.group(1)) - 1 if label and 0 < int(label.group(1)) <= len(texts) else None
            out.append((order[named] if named is not None else 0, r.cost + Cost(parse_failures=int(named is None))))
        return out

    def _judge(self, query: str, texts: Sequence[str]) -> tuple[int, Cost]:
        return self._judge_many([(query, list(texts))])[0]

    def _judge_many(self, asks: list[tuple[str, list[str]]]) -> list[tuple[int, Cost]]:
        if "answer_pattern" in self.prompt:
            return self._judge_tagged(asks)
        conversations = [self._messages(query, texts) for query, texts in asks]
        out: list[tuple[int, Cost]] = []
        if self.variant == "llm-rankers":  # its greedy letter; anything else keeps the parent (position 0)
            for (_, texts), (i, cost) in zip(asks, self._greedy_letters(conversations, asks), strict=True):
                out.append((0 if i is None or i >= len(texts) else i, cost))
            return out
        if self.scoring == "logits":
            # sets of one size share a label list; the heap's last parent may have fewer children
            found: dict[int, tuple[int, Cost]] = {}
            for size, members in by_size([texts for _, texts in asks]).items():
                labels = [label_token(self.prompt, letter) for letter in string.ascii_uppercase[:size]]
                answers = self.backend.next_token_scores(
                    [conversations[i] for i in members], labels, prefix=self.prompt.get("answer_prefix", "")
                )
                for i, scores in zip(members, answers, strict=True):
                    best = max(range(size), key=lambda p: (scores.logprobs[labels[p]], -p))  # ties: the first
                    found[i] = (best, call_cost(scores) + Cost(parse_failures=int(scores.missing > 0)))
            return [found[i] for i in range(len(asks))]
        if self.reasoning:
            thought = reason(self.backend, conversations, self.reasoning_budget, 8, self.budget_forcing)
            for (_, texts), r in zip(asks, thought, strict=True):
                text = r.answer if r.answer is not None else ("" if self.budget_forcing else r.reasoning)
                named = first_label(text, list(string.ascii_uppercase[: len(texts)]))
                out.append((named or 0, r.cost + Cost(parse_failures=int(named is None or r.answer is None))))
            return out
        for (_, texts), answer in zip(asks, self.backend.generate(conversations, max_new_tokens=8), strict=True):
            named = first_label(answer.text, list(string.ascii_uppercase[: len(texts)]))
            out.append((named or 0, call_cost(answer) + Cost(parse_failures=int(named is None))))
        return out

    def _greedy_letters(
        self, conversations: list[list[dict[str, str]]], asks: list[tuple[str, list[str]]]
    ) -> list[tuple[int | None, Cost]]:
        """llm-rankers' letter for each set, sets of one size asked together."""
        found: dict[int, tuple[int | None, Cost]] = {}
        for size, members in by_size([texts for _, texts in asks]).items():
            letters = list(string.ascii_uppercase[:size])
            for i, answer in zip(members, greedy_letters(self.backend, [conversations[i] for i in members], letters),
                                 strict=True):  # fmt: skip
                found[i] = answer
        return [found[i] for i in range(len(asks))]
