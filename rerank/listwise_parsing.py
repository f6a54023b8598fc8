"""Reading a permutation out of a listwise LLM's answer, never dropping or duplicating a candidate.

The model is asked for ``[3] > [1] > [2]``. What comes back may be partial,
repeat ids, name ids that do not exist, wrap the ranking in prose, or be empty.
The rule (the reranker contract in ``docs/design.md``): ids the model placed come first in its
order; repeated and out-of-range ids are ignored; missing ids follow in their
previous relative order. Any deviation from a clean full permutation counts as
one parse failure of that window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BRACKETED = re.compile(r"\[(\d+)\]")
_BARE = re.compile(r"\b(\d+)\b")


@dataclass(frozen=True, slots=True)
class ParsedPermutation:
    order: list[int]  # 0-based positions into the window, every one exactly once
    failed: bool  # the answer was not a clean permutation of all ids
    placed: int  # how many ids the model itself placed


def parse_permutation(text: str, size: int) -> ParsedPermutation:
    """The window's new order from an answer naming ids 1..size."""
    numbers = _BRACKETED.findall(text) or _BARE.findall(text)
    seen: set[int] = set()
    order: list[int] = []
    anomalies = 0
    for raw in numbers:
        position = int(raw) - 1
        if not 0 <= position < size:
            anomalies += 1
            continue
        if position in seen:
            anomalies += 1
            continue
        seen.add(position)
        order.append(position)
    placed = len(order)
    order.extend(i for i in range(size) if i not in seen)
    return ParsedPermutation(order, failed=anomalies > 0 or placed < size, placed=placed)
