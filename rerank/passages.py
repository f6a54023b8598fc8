"""Long documents as passages: sliding windows over a document, and a document score from its windows'.

Dai & Callan's MaxP (SIGIR 2019) as PyTerrier runs it (``pt.text.sliding`` then ``pt.text.max_passage``): the
body is cut into tokens (whitespace-separated words by default, ``re.split(r"\\s+")``, or a model tokenizer's
tokens), windows of ``window`` tokens start every ``stride`` tokens, each is joined back with spaces (or the
tokenizer's ``convert_tokens_to_string``) and the title goes in front of each, followed by a space. A body
shorter than one window is one passage.

Where we differ, and why: PyTerrier keeps only complete windows, so the words after the last complete one are
never read (a 200-word body in 150-word windows with stride 75 loses its last 50). ``tail="keep"`` (the default)
adds one more window ending at the body's last token, so every word is scored; ``tail="drop"`` is PyTerrier's.
Both count a document whose words went unread (``tail="drop"``, or more than ``max_windows`` windows) as
truncated.

Aggregations: ``maxp`` (the best window), ``firstp`` (the first window: only it is scored, where PyTerrier's
``first_passage`` scores all and keeps one), ``sump`` and ``meanp`` (the sum and the mean of all windows' scores;
the mean is ``math.fsum`` over the count, which PyTerrier's pandas mean equals to the last bit or two).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Aggregation = Literal["maxp", "firstp", "sump", "meanp"]
Unit = Literal["words", "tokens"]
Tail = Literal["keep", "drop"]
AGGREGATIONS: tuple[str, ...] = ("maxp", "firstp", "sump", "meanp")
UNITS: tuple[str, ...] = ("words", "tokens")
TAILS: tuple[str, ...] = ("keep", "drop")

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Splitter:
    """How documents are cut: ``window`` tokens every ``stride``; ``tokenizer`` (Hugging Face, with ``tokenize``
    and ``convert_tokens_to_string``) for ``unit="tokens"``; at most ``max_windows`` windows (None: all)."""

    window: int
    stride: int
    tail: Tail = "keep"
    tokenizer: Any = None
    max_windows: int | None = None
    first_only: bool = False  # FirstP: the rest would be scored only to be ignored (and is not unread by mistake)

    def split(self, text: str, title: str | None = None) -> tuple[list[str], bool]:
        """The passages of one document (``text`` is its body; ``title`` goes in front of each), and whether
        some of its tokens are in none of them."""
        tokenize: Callable[[str], list[str]] = self.tokenizer.tokenize if self.tokenizer is not None else _SPACE.split
        detokenize: Callable[[Sequence[str]], str] = (
            self.tokenizer.convert_tokens_to_string if self.tokenizer is not None else " ".join
        )
        tokens = tokenize(text)
        starts = spans(len(tokens), self.window, self.stride, self.tail)
        cut = bool(starts) and starts[-1] + self.window < len(tokens)
        if self.max_windows is not None and len(starts) > self.max_windows:
            starts, cut = starts[: self.max_windows], True
        if self.first_only:
            starts, cut = starts[:1], False
        passages = [detokenize(tokens[s : s + self.window]) for s in starts] if starts else [detokenize(tokens)]
        return ([f"{title} {p}" for p in passages] if title is not None else passages), cut


def spans(length: int, window: int, stride: int, tail: Tail = "keep") -> list[int]:
    """Where each window starts in a body of ``length`` tokens; [] when the body is shorter than one window
    (it is one passage, whole). ``drop``: complete windows only (more_itertools.windowed, as PyTerrier filters
    it); ``keep``: and one that ends at the last token when the complete ones stop short of it."""
    if length < window:
        return []
    starts = list(range(0, length - window + 1, stride))
    if tail == "keep" and starts[-1] + window < length:
        starts.append(length - window)
    return starts


def body_and_title(text: str, title: str | None) -> tuple[str, str | None]:
    """A candidate's text as body and title (``Candidate.title`` marks the title its text begins with)."""
    if title is not None and text.startswith(f"{title} "):
        return text[len(title) + 1 :], title
    return text, None


def aggregate(scores: Sequence[float], how: Aggregation) -> float:
    """A document's score from its windows' scores, in window order."""
    if how == "maxp":
        return max(scores)
    if how == "firstp":
        return scores[0]
    if how == "sump":
        return math.fsum(scores)
    if how == "meanp":
        return math.fsum(scores) / len(scores)
    raise ValueError(f"aggregate: one of {', '.join(AGGREGATIONS)}, not {how!r}")


def splitter_for(scorer: Any, window: int, stride: int, aggregate: str = "maxp", unit: str = "words",
                 tail: str = "keep", max_windows: int | None = None, where: str = "split") -> Splitter:  # fmt: skip
    """A splitter for a pointwise ``scorer``, checked against it: ``unit=tokens`` needs its tokenizer, and a
    window longer than the model reads of a document (``document_limit``) would be cut, so it is refused."""
    from data.errors import InvalidSpecError

    check_split(window, stride, aggregate, unit, tail, max_windows, where)
    tokenizer = scorer.tokenizer() if unit == "tokens" else None
    if unit == "tokens" and tokenizer is None:
        raise InvalidSpecError(f"{where}: unit=tokens, but {scorer.spec} has no tokenizer to count tokens with; "
                               "use unit=words")  # fmt: skip
    limit = scorer.document_limit()
    if limit is not None and window > limit[0] and (limit[1] == "tokens" or unit == "words"):
        raise InvalidSpecError(
            f"{where}: window={window} {unit} is more than {scorer.method} reads of a document ({limit[0]} "
            f"{limit[1]}), so each window would be cut; give a window of at most {limit[0]}"
        )
    return Splitter(window, stride, tail, tokenizer, max_windows, aggregate == "firstp")  # type: ignore[arg-type]


def check_split(window: int, stride: int, aggregate: str, unit: str, tail: str, max_windows: int | None,
                where: str) -> None:  # fmt: skip
    """The splitting parameters' own rules; each error names its parameter."""
    from data.errors import InvalidSpecError

    if aggregate not in AGGREGATIONS:
        raise InvalidSpecError(f"{where}: aggregate is one of {', '.join(AGGREGATIONS)}, not {aggregate!r}")
    if unit not in UNITS:
        raise InvalidSpecError(f"{where}: unit is words or tokens, not {unit!r}")
    if tail not in TAILS:
        raise InvalidSpecError(f"{where}: tail is keep or drop (PyTerrier's), not {tail!r}")
    if window < 1:
        raise InvalidSpecError(f"{where}: window is at least 1 {unit}, not {window}")
    if not 1 <= stride <= window:
        raise InvalidSpecError(
            f"{where}: stride must be between 1 and the window ({window}), not {stride} "
            f"({'windows would not move' if stride < 1 else 'words between windows would be skipped'})"
        )
    if max_windows is not None and max_windows < 1:
        raise InvalidSpecError(f"{where}: max_windows is at least 1, not {max_windows}")
