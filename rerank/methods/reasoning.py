"""Reasoning before the answer: a ``<think>`` block, then the answer, with a budget on the thinking.

``reasoning=on`` lets a method's model think before it answers. The answer is read after the last
``</think>`` (RankLLM's ``clean_ranking_response``; Rank-R1's and ReasonRank's answer tags come after it).
The model may write up to ``budget`` tokens of reasoning plus the answer's own length, as RankLLM asks vLLM
for (``reasoning_token_budget`` + the answer's tokens). Where its thinking is still open at that cap:

- ``forcing=True`` (the default) closes it: the prompt, the reasoning so far and ``</think>`` go back to the
  model, which is asked for the answer alone (Muennighoff et al.'s budget forcing, "s1", 2025). A second
  call, counted as such.
- ``forcing=False`` is RankLLM's and ReasonRank's own behaviour: the output is cut there and whatever it
  holds is parsed (for a listwise answer, every number in the reasoning).

A reasoning that never closes and is not forced (the model stopped inside it) yields no answer: the method
counts a parse failure and keeps its candidates' previous order, every candidate once. Tokens up to and
including ``</think>`` are counted as ``reasoning_tokens`` in the cost record, apart from the answer's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

from data.errors import InvalidSpecError
from rerank.cost import Cost
from rerank.llm.backend import LLMBackend, Prompt, call_cost

THINK_END = "</think>"
CLOSE = "\n</think>\n\n"  # how budget forcing ends a reasoning cut off by the budget
DEFAULT_BUDGET = 10_000  # RankLLM's reasoning_token_budget
# The parameters, added to methods after their outputs were keyed: at these values they stay out of keys
PARAMS = MappingProxyType({"reasoning": False, "reasoning_budget": DEFAULT_BUDGET, "budget_forcing": True})


def check_reasoning(method: str, params: object) -> None:
    """``reasoning_budget`` and ``budget_forcing`` without ``reasoning`` would be ignored: refused."""
    get = params.get  # type: ignore[attr-defined]
    reasoning, budget, forcing = (get(name, default) for name, default in PARAMS.items())
    if not reasoning and (budget != DEFAULT_BUDGET or forcing is not True):
        name = "reasoning_budget" if budget != DEFAULT_BUDGET else "budget_forcing"
        raise InvalidSpecError(f"{method}: {name} applies with reasoning=true")
    if int(budget) < 1:
        raise InvalidSpecError(f"{method}: reasoning_budget must be at least 1 token, not {budget}")


@dataclass(frozen=True, slots=True)
class Reasoned:
    """One generation read as reasoning and answer; ``answer`` is None where the reasoning never closed."""

    reasoning: str
    answer: str | None
    cost: Cost
    forced: bool = False


def split_answer(text: str) -> tuple[str, str | None]:
    """The reasoning (through the last ``</think>``) and the answer after it; no ``</think>``: no answer."""
    if THINK_END not in text:
        return text, None
    head, _, answer = text.rpartition(THINK_END)
    return head + THINK_END, answer


def reason(
    backend: LLMBackend, prompts: Sequence[Prompt], budget: int, answer_tokens: int, forcing: bool = True
) -> list[Reasoned]:
    """Generate with reasoning for every prompt (one batch), forcing an answer where the budget ran out."""
    cap = budget + answer_tokens
    first = backend.generate(prompts, max_new_tokens=cap, min_new_tokens=answer_tokens)
    out: list[Reasoned] = []
    forced: list[int] = []
    for k, generation in enumerate(first):
        reasoning, answer = split_answer(generation.text)
        if answer is None and forcing and generation.output_tokens >= cap:
            forced.append(k)
        out.append(Reasoned(reasoning, answer, _cost(backend, call_cost(generation), reasoning, answer)))
    if forced:
        continued = backend.generate(
            [backend.prompt_text(prompts[k]) + first[k].text + CLOSE for k in forced],
            max_new_tokens=answer_tokens,
            min_new_tokens=answer_tokens,
        )
        for k, generation in zip(forced, continued, strict=True):
            reasoning = first[k].text + CLOSE.rstrip()
            cost = _cost(backend, call_cost(first[k]), first[k].text, None) + call_cost(generation)
            out[k] = Reasoned(reasoning, generation.text, cost, forced=True)
    return out


def _cost(backend: LLMBackend, spent: Cost, reasoning: str, answer: str | None) -> Cost:
    """The call's cost with its output tokens split: the reasoning's apart, the answer's as output."""
    if spent.output_tokens == 0:  # read back from a cache: no tokens were spent
        return spent
    thought = (
        min(backend.count_tokens(reasoning), int(spent.output_tokens)) if answer is not None else spent.output_tokens
    )
    return Cost(calls=spent.calls, input_tokens=spent.input_tokens, output_tokens=int(spent.output_tokens) - int(thought),
                reasoning_tokens=int(thought))  # fmt: skip
