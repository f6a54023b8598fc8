"""The cost record every ranking carries."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Cost:
    calls: float = 0  # model calls (forward passes or LLM requests); batched calls are shared fractionally
    input_tokens: int = 0
    output_tokens: int = 0
    truncated: int = 0  # inputs cut to fit the model's length
    parse_failures: int = 0  # model outputs that did not parse completely
    windows: int = 0  # passages scored in place of whole documents (split): a long document costs several
    reasoning_tokens: int = 0  # generated inside <think> … </think> (reasoning=on), apart from output_tokens
    seconds: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
