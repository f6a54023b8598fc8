"""Reading a permutation out of a listwise LLM's answer, never dropping or duplicating a candidate.

The model is asked for ``[3] > [1] > [2]``. What comes back may be partial, repeat ids, name ids that
do not exist, wrap the ranking in prose, think aloud first, or be empty. The rule is RankLLM's
(``ListwiseRankLLM.receive_permutation``), so that the same answer gives the same order: text up to a
closing ``</think>`` is dropped; every run of digits is an id (look-alike digits such as ``①`` or
``３`` count as the digit they show); ids come first in the model's order, repeated and out-of-range
ids are ignored, and missing ids follow in their previous relative order. Any deviation from a clean
full permutation counts as one parse failure of that window.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ParsedPermutation:
    order: list[int]  # 0-based positions into the window, every one exactly once
    failed: bool  # the answer was not a clean permutation of all ids
    placed: int  # how many ids the model itself placed


def answer_ids(text: str) -> list[int]:
    """The ids an answer names, in order: its digit runs after any ``</think>``."""
    if "</think>" in text:
        text = text.split("</think>")[-1]
    digits = "".join(str(unicodedata.digit(c)) if c.isdigit() else " " for c in text)
    return [int(run) for run in digits.split()]


def parse_permutation(text: str, size: int) -> ParsedPermutation:
    """The window's new order from an answer naming ids 1..size."""
    seen: set[int] = set()
    order: list[int] = []
    anomalies = 0
    for number in answer_ids(text):
        position = number - 1
        if not 0 <= position < size or position in seen:
            anomalies += 1
            continue
        seen.add(position)
        order.append(position)
    placed = len(order)
    order.extend(i for i in range(size) if i not in seen)
    return ParsedPermutation(order, failed=anomalies > 0 or placed < size, placed=placed)


def parse_rank_k(text: str, size: int) -> ParsedPermutation:
    """Rank-K's reading (hltcoe/rank-k's ``parse_ranking_more``) of the answer's last line: ids in ``>``-separated
    groups, ``=`` ties kept in the order written; a piece that is not an integer is skipped, and so is an id out
    of range, except that ``[0]`` and negative ids name passages from the end, as its list indexing does; the
    first repeated id ends the reading. Missing ids follow in their previous order."""
    order: list[int] = []
    anomalies = 0
    for group in text.strip().split("\n")[-1].split(">"):
        for piece in group.split("="):
            try:
                number = int(piece.strip().replace("[", "").replace("]", ""))
            except ValueError:
                anomalies += 1
                continue
            if not -size <= number - 1 < size:
                anomalies += 1
                continue
            position = (number - 1) % size
            if position in order:  # its reading stops at the first repeat
                return _completed(order, size, anomalies + 1)
            order.append(position)
    return _completed(order, size, anomalies)


def _completed(order: list[int], size: int, anomalies: int) -> ParsedPermutation:
    placed = len(order)
    order = order + [i for i in range(size) if i not in order]
    return ParsedPermutation(order, failed=anomalies > 0 or placed < size, placed=placed)
