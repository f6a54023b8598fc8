"""Listwise reranking with a sliding window (RankGPT: Sun et al., 2023, "Is ChatGPT Good at Search?";
RankZephyr: Pradeep et al., 2023), as RankLLM (``RankListwiseOSLLM``) runs it.

The window slides from the bottom of the list to the top: each step asks the model to order up to
``window_size`` passages, then moves up by ``stride``, so strong passages bubble towards the head.
``passes`` repeats the sweep. Windows at the same step of different queries go to the backend
together (batch first). Synthetic scores: the final position ``r`` (0-based) gets score ``n - r``.

What RankLLM does and this module does too (``tests/test_fidelity.py`` compares them side by side):
the schedule keeps each window's end and cuts the top window short; passages and the query go through
ftfy's ``fix_text`` and have ``[n]`` rewritten to ``(n)``; a window of ``w`` passages cuts each to
``300 * 20 / w`` words, fewer while the prompt and answer overflow ``context_size`` tokens; the answer
is exactly as many tokens as ``[1] > [2] > … > [w]`` (less one); parsing reads every digit run.
"""

from __future__ import annotations

import functools
import random
import re
import time
from collections.abc import Sequence
from types import MappingProxyType
from typing import ClassVar, Literal

from data.errors import InvalidSpecError
from data.records import RerankRequest
from rerank.base import Reranker, RerankResult, require_texts
from rerank.cost import Cost
from rerank.listwise_parsing import parse_permutation, parse_rank_k
from rerank.llm.backend import call_cost
from rerank.methods.llm_common import (
    InitialOrder,
    LLMMethodMixin,
    by_size,
    check_initial_order,
    ranked_results,
    start_order,
)
from rerank.methods.reasoning import DEFAULT_BUDGET, PARAMS, check_reasoning, reason
from rerank.methods.schedules import drive, tdpart, tournament
from rerank.prompts import load_prompt

_BRACKETED_NUMBER = re.compile(r"\[(\d+)\]")


def window_spans(n: int, window: int, stride: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each window, bottom of the list first (RankLLM's ``sliding_windows``).

    Every window keeps its end, so the top one is cut short where ``n - window`` is not a multiple of
    ``stride``, and the sweep stops after the first window that starts at the top.
    """
    window = min(window, n)
    spans, end, start = [], n, n - window
    while end > 0 and start + stride != 0:
        start = max(start, 0)  # clamped before the step, so the sweep ends one window after reaching the top
        spans.append((start, end))
        end, start = end - stride, start - stride
    return spans


@functools.lru_cache(maxsize=8192)  # a passage comes back in several windows and in every shrinking step
def clean_text(text: str) -> str:
    """What RankLLM feeds the prompt: ftfy-fixed text whose ``[n]`` cannot pass for a passage id."""
    from data.optional import optional_import

    return _BRACKETED_NUMBER.sub(r"(\1)", optional_import("ftfy").fix_text(text))


Strategy = Literal["sliding", "tdpart", "tournament"]
# Each strategy's own parameters and their defaults (TDPart's are pyterrier-generative's, TourRank's its script's)
OWN: MappingProxyType[str, dict[str, int]] = MappingProxyType({
    "sliding": {"stride": 10, "passes": 1},
    "tdpart": {"buffer": 20, "cutoff": 10, "max_iters": 100},
    "tournament": {"tournaments": 10},
})  # fmt: skip


class ListwiseReranker(LLMMethodMixin, Reranker):
    method = "listwise"
    version = 2  # 2: RankLLM's schedule, text cleaning, passage length, answer length and parsing
    libraries: ClassVar[tuple[str, ...]] = ("ftfy",)
    # added later: at their defaults they stay out of keys, which keeps every earlier key
    neutral_params = MappingProxyType({"strategy": "sliding", **OWN["tdpart"], **OWN["tournament"], **PARAMS})

    def __init__(
        self,
        model: str,
        backend: str = "transformers",
        template: str = "rankzephyr",
        window_size: int = 20,
        stride: int = 10,
        passes: int = 1,
        max_words: int | None = None,
        context_size: int = 4096,
        initial_order: InitialOrder = "given",
        seed: int = 0,
        batch_size: int = 4,
        strategy: Strategy = "sliding",
        buffer: int = 20,
        cutoff: int = 10,
        max_iters: int = 100,
        tournaments: int = 10,
        reasoning: bool = False,
        reasoning_budget: int = DEFAULT_BUDGET,
        budget_forcing: bool = True,
    ):
        """``reasoning`` lets the model think before it answers, ``reasoning_budget`` tokens at most, and closes
        a longer reasoning to ask for the answer unless ``budget_forcing`` is off (``rerank.methods.reasoning``).
        ``strategy=tdpart`` schedules windows by top-down partitioning (``rerank.methods.schedules``): the
        top ``cutoff`` found with a pivot, ``buffer`` candidates per round, at most ``max_iters`` rounds;
        ``strategy=tournament`` by TourRank's ``tournaments`` tournaments (groups shuffled with ``seed``)."""
        if window_size < 2 or stride < 1 or passes < 1:
            raise ValueError("window_size must be at least 2, stride and passes at least 1")
        self._check_strategy(strategy, {"stride": stride, "passes": passes, "buffer": buffer, "cutoff": cutoff,
                                        "max_iters": max_iters, "tournaments": tournaments, "window_size": window_size})  # fmt: skip
        self.strategy, self.buffer, self.cutoff, self.max_iters = strategy, buffer, cutoff, max_iters
        self.tournaments = tournaments
        check_reasoning(self.method, {"reasoning": reasoning, "reasoning_budget": reasoning_budget,
                                      "budget_forcing": budget_forcing})  # fmt: skip
        self.reasoning, self.reasoning_budget, self.budget_forcing = reasoning, reasoning_budget, budget_forcing
        if max_words is not None and max_words < 1:
            raise ValueError(f"max_words must be at least 1, not {max_words}")
        check_initial_order(initial_order)
        self.model, self.backend_name, self.template_name = model, backend, template
        self.window_size, self.stride, self.passes, self.max_words = window_size, stride, passes, max_words
        self.context_size = context_size
        self.initial_order, self.seed, self.batch_size = initial_order, seed, batch_size
        self.prompt = load_prompt(template)
        self._load_backend(backend, model, batch_size)
        self._check_room()

    @classmethod
    def _check_strategy(cls, strategy: str, params: dict[str, object]) -> None:
        """A strategy's parameters belong to it: one of another strategy's, set, would be ignored."""
        if strategy not in OWN:
            raise InvalidSpecError(f"{cls.method}: strategy is one of {', '.join(OWN)}, not {strategy!r}")
        for other, owned in OWN.items():
            for name, default in owned.items():
                value = params.get(name, default)
                if other != strategy and value != default:
                    raise InvalidSpecError(f"{cls.method}: {name} is a parameter of strategy={other}, not {strategy}")
                if other == strategy and int(value) < 1:  # type: ignore[call-overload]
                    raise InvalidSpecError(f"{cls.method}: {name} must be at least 1, not {value}")
        if strategy == "tournament" and params.get("window_size", 20) != 20:
            raise InvalidSpecError(f"{cls.method}: strategy=tournament plays TourRank's groups (20, 10, 20, 10 and 5 "
                                   "passages), not windows of window_size")  # fmt: skip

    @classmethod
    def check_params(cls, params: dict[str, object], where: str) -> None:
        super().check_params(params, where)
        cls._check_strategy(str(params.get("strategy", "sliding")), params)
        check_reasoning(cls.method, params)

    def _check_room(self) -> None:
        """Refuses a ``context_size`` that the prompt's own text fills: every passage would reach the model empty."""
        size = self.window_size
        bare = self.backend.count_tokens(self.backend.render(self.messages("", [""] * size, 0, [0.0] * size)))
        need = bare + self.answer_tokens(size)
        if need >= self.context_size:
            raise InvalidSpecError(
                f"{self.method}: context_size={self.context_size} leaves no room for passages: a window of {size} "
                f"takes {need} tokens before any passage ({bare} of prompt, {need - bare} of answer)"
            )

    # --- the prompt ------------------------------------------------------------------------------------
    def _identifiers(self, n: int) -> list[str]:
        return [str(i) for i in range(1, n + 1)]

    def _clean(self, text: str) -> str:
        return clean_text(text)

    def messages(
        self, query: str, passages: Sequence[str], max_words: int, scores: Sequence[float] = ()
    ) -> list[dict[str, str]]:
        """The conversation for one window: single-turn, or RankGPT's turns when the template has them.
        ``scores`` fill a template's ``{score}`` (InsertRank), three decimals as RankLLM writes them."""
        p, num = self.prompt, len(passages)
        query = self._clean(query) if p.get("clean", True) else query
        if "{score}" in p["passage"] and len(scores) != num:
            raise ValueError(f"template {self.template_name} shows each passage's score: give {num} scores")
        shown = [f"{s:.3f}" for s in scores] if scores else [""] * num
        bodies = [
            (ident, p["passage"].format(id=ident, passage=self._shown_passage(passage, max_words), score=score))
            for ident, passage, score in zip(self._identifiers(num), passages, shown, strict=True)
        ]
        messages = [{"role": "system", "content": p["system"]}] if p.get("system") else []
        prefix, suffix = p["prefix"].format(num=num, query=query), p["suffix"].format(num=num, query=query)
        if "passage_reply" in p:  # multi-turn: every passage is a user turn the assistant acknowledges
            messages += [{"role": "user", "content": prefix}, {"role": "assistant", "content": p["prefix_reply"]}]
            for ident, body in bodies:
                messages += [{"role": "user", "content": body},
                             {"role": "assistant", "content": p["passage_reply"].format(id=ident)}]  # fmt: skip
            return [*messages, {"role": "user", "content": suffix}]
        joined = p.get("separator", "").join(body for _, body in bodies)
        return [*messages, {"role": "user", "content": prefix + joined + suffix}]

    def _shown_passage(self, passage: str, max_words: int) -> str:
        """A passage as the template shows it: RankLLM's cleaning and word cut; a template that shows texts as
        they are (Rank-K's) cuts only a passage longer than ``max_words``."""
        if self.prompt.get("clean", True):
            return " ".join(self._clean(passage).split()[:max_words])
        words = passage.split()
        return passage if len(words) <= max_words else " ".join(words[:max_words])

    def answer_tokens(self, size: int) -> int:
        """The answer's length for a window of ``size``: RankLLM's count of ``[1] > … > [size]`` less one."""
        return max(1, self.backend.count_tokens(" > ".join(f"[{i}]" for i in self._identifiers(size))) - 1)

    def _fitted_messages(
        self, query: str, passages: Sequence[str], scores: Sequence[float] = ()
    ) -> tuple[list[dict[str, str]], int]:
        """The window's prompt with passages cut as RankLLM cuts them (``RankListwiseOSLLM.create_prompt``),
        and how many passages lost words (the cost's ``truncated``).

        ``max_words`` fixes the cut. Unset, a window of ``w`` passages starts at ``300 * 20 / w`` words
        and loses words while the rendered prompt plus the answer overflow ``context_size`` tokens.
        """
        if self.max_words is not None:
            return self.messages(query, passages, self.max_words, scores), self._cut(passages, self.max_words)
        size = len(passages)
        budget, limit = self.context_size - self.answer_tokens(size), 300 * (20 / size)
        while True:
            messages = self.messages(query, passages, max(int(limit), 0), scores)
            over = self.backend.count_tokens(self.backend.render(messages)) - budget
            if over <= 0 or limit < 1:
                return messages, self._cut(passages, max(int(limit), 0))
            limit -= max(1, over // (size * 4))

    def _cut(self, passages: Sequence[str], max_words: int) -> int:
        return sum(len(self._clean(passage).split()) > max_words for passage in passages)

    # --- the schedule ----------------------------------------------------------------------------------
    def _spans(self, n: int) -> list[tuple[int, int]]:
        # A window of one passage has nothing to order: RankLLM asks the model anyway, we do not.
        return [(s, e) for s, e in window_spans(n, self.window_size, self.stride) if e - s > 1]

    def _rank_windows(
        self, conversations: list[list[dict[str, str]]], windows: list[list[int]]
    ) -> list[tuple[list[int], Cost]]:
        """Each window's new order (positions into the window) and what asking for it cost."""
        out: list[tuple[list[int], Cost]] = [([], Cost())] * len(windows)
        parse = parse_rank_k if self.prompt.get("parse") == "rank-k" else parse_permutation
        for size, members in by_size(windows).items():
            n_tokens = self.answer_tokens(size)  # RankLLM's vLLM call: min_tokens = max_tokens
            asked = [conversations[k] for k in members]
            if self.reasoning:
                for k, r in zip(members, reason(self.backend, asked, self.reasoning_budget, n_tokens,
                                                self.budget_forcing), strict=True):  # fmt: skip
                    # unforced, an unclosed reasoning is parsed whole, as RankLLM parses it; else nothing came
                    text = r.answer if r.answer is not None else ("" if self.budget_forcing else r.reasoning)
                    parsed = parse(text, size)
                    out[k] = (parsed.order, r.cost + Cost(parse_failures=int(parsed.failed or r.answer is None)))
                continue
            answers = self.backend.generate(asked, max_new_tokens=n_tokens, min_new_tokens=n_tokens)
            for k, answer in zip(members, answers, strict=True):
                parsed = parse(answer.text, size)
                out[k] = (parsed.order, call_cost(answer) + Cost(parse_failures=int(parsed.failed)))
        return out

    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        start = time.perf_counter()
        texts = [require_texts(r) for r in requests]
        orders = [start_order(r, self.initial_order, self.seed) for r in requests]
        costs = [Cost() for _ in requests]
        if self.strategy != "sliding":
            orders = self._scheduled(requests, texts, orders, costs)
            return ranked_results(requests, orders, costs, time.perf_counter() - start)

        # Each query's schedule of windows; step k of every query is sent together.
        schedules = [self._spans(len(r.candidates)) * self.passes for r in requests]
        for step in range(max((len(s) for s in schedules), default=0)):
            jobs: list[tuple[int, tuple[int, int]]] = [
                (i, schedules[i][step]) for i in range(len(requests)) if step < len(schedules[i])
            ]
            if not jobs:
                continue
            windows = [orders[i][s:e] for i, (s, e) in jobs]
            # A score shown (InsertRank) is the first stage's score of the window's position, not of the passage
            # now there: RankLLM's receive_permutation moves passages and leaves the scores in place.
            fitted = [
                self._fitted_messages(
                    requests[i].query.text,
                    [texts[i][c] for c in window],
                    [c.score for c in requests[i].candidates[s:e]],
                )
                for (i, (s, e)), window in zip(jobs, windows, strict=True)
            ]
            conversations = [messages for messages, _ in fitted]
            for (i, (s, e)), window, (_, cut), (new_order, cost) in zip(
                jobs, windows, fitted, self._rank_windows(conversations, windows), strict=True
            ):
                orders[i][s:e] = [window[p] for p in new_order]
                costs[i] = costs[i] + cost + Cost(truncated=cut)
        return ranked_results(requests, orders, costs, time.perf_counter() - start)

    def _scheduled(
        self, requests: Sequence[RerankRequest], texts: list[list[str]], orders: list[list[int]], costs: list[Cost]
    ) -> list[list[int]]:
        """TDPart or TourRank for every request, the windows all of them want at a step sent together; ``costs``
        grows. A template that shows scores (InsertRank) shows each passage's own: these windows are not
        positions of a list."""

        def ask(jobs: list[tuple[int, list[int]]]) -> list[list[int]]:
            conversations, cuts = [], []
            for i, window in jobs:
                passages = [texts[i][c] for c in window]
                shown = [requests[i].candidates[c].score for c in window]
                messages, cut = self._fitted_messages(requests[i].query.text, passages, shown)
                conversations.append(messages)
                cuts.append(cut)
            ranked = self._rank_windows(conversations, [window for _, window in jobs])
            for (i, _), cut, (_, cost) in zip(jobs, cuts, ranked, strict=True):
                costs[i] = costs[i] + cost + Cost(truncated=cut)
            return [order for order, _ in ranked]

        if self.strategy == "tdpart":
            schedules = [tdpart(order, self.window_size, self.buffer, self.cutoff, self.max_iters) for order in orders]
        else:
            schedules = [tournament(order, self.tournaments, random.Random(f"{self.seed}:{r.query.qid}:tournament"))
                         for order, r in zip(orders, requests, strict=True)]  # fmt: skip
        return drive(schedules, ask)
