"""The small interface every LLM backend offers the ranking methods.

Prompts are chat messages; a backend renders them with the model's chat
template. Methods ask for what they need: generated text, or the
log-probabilities of a few chosen next tokens (yes/no labels, passage ids).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from data.errors import InvalidSpecError

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": …}


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class TokenScores:
    """Log-probabilities of the asked-for next tokens after one prompt."""

    logprobs: dict[str, float]
    input_tokens: int


class LLMBackend(ABC):
    name: ClassVar[str]
    model: str

    @abstractmethod
    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text the model sees for these messages (chat template, generation prompt added)."""

    @abstractmethod
    def count_tokens(self, text: str) -> int: ...

    @abstractmethod
    def generate(self, conversations: Sequence[Sequence[Message]], max_new_tokens: int) -> list[Generation]:
        """Greedy continuations, one per conversation."""

    @abstractmethod
    def next_token_scores(self, conversations: Sequence[Sequence[Message]], labels: Sequence[str]) -> list[TokenScores]:
        """For each conversation, the log-probability of each label as the next token.

        Every label must be a single token for this model's tokenizer.
        """

    def single_token(self, label: str) -> bool:
        return True


_BACKENDS: dict[str, str | type[LLMBackend]] = {
    "transformers": "rerank.llm.transformers_backend:TransformersBackend",
    "scripted": "rerank.testing:ScriptedBackend",  # canned answers, for testing methods' parsing
}


def register_backend(name: str, target: str | type[LLMBackend]) -> None:
    """Add a backend: ``"module:Class"`` or the class itself; a name is registered once."""
    if name in _BACKENDS:
        raise ValueError(f"LLM backend {name!r} is already registered")
    _BACKENDS[name] = target


def load_backend(name: str, model: str, **options: Any) -> LLMBackend:
    try:
        target = _BACKENDS[name]
    except KeyError:
        raise InvalidSpecError(f"unknown LLM backend {name!r}; known: {', '.join(sorted(_BACKENDS))}") from None
    if isinstance(target, str):
        module_name, _, class_name = target.partition(":")
        target = getattr(importlib.import_module(module_name), class_name)
    backend: LLMBackend = target(model, **options)  # type: ignore[call-arg]
    return backend
