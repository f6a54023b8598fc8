"""FIRST: listwise reranking from one forward pass per window (Reddy et al., 2024,
"FIRST: Faster Improved Listwise Reranking with Single Token Decoding").

Instead of generating ``[B] > [A] > …``, FIRST reads the logits of the first
token the model would write: each passage's identifier token gets a score, and
the window is ordered by it. Identifiers are letters (A, B, …), which are
single tokens for common tokenizers where "10"–"20" are not; the method checks
this for the model at hand.

FIRST still runs the sliding window and prompt that ``listwise`` ran before it took RankLLM's
(``version`` 1): a full top window, passages cut to ``max_words`` words and not cleaned. Its own
comparison with RankLLM's FIRST path (``docs/design.md``) is still to come.
"""

from __future__ import annotations

import string
from types import MappingProxyType
from typing import ClassVar

from rerank.cost import Cost
from rerank.llm.backend import call_cost
from rerank.methods.listwise import ListwiseReranker, by_size


class FirstReranker(ListwiseReranker):
    method = "first"
    version = 1
    libraries: ClassVar[tuple[str, ...]] = ()
    neutral_params = MappingProxyType({"context_size": 4096})  # FIRST does not fit prompts to a context

    def __init__(
        self, model: str, template: str = "first", window_size: int = 20, max_words: int = 100, **options: object
    ):
        if window_size > len(string.ascii_uppercase):
            raise ValueError(f"FIRST identifies passages by letters: window_size at most 26, not {window_size}")
        super().__init__(model, template=template, window_size=window_size, max_words=max_words, **options)  # type: ignore[arg-type]
        wide = [letter for letter in string.ascii_uppercase[:window_size] if not self.backend.single_token(letter)]
        if wide:
            raise ValueError(f"identifiers {wide} are not single tokens for {model}")

    def _identifiers(self, n: int) -> list[str]:
        return list(string.ascii_uppercase[:n])

    def _clean(self, text: str) -> str:
        return text

    def _spans(self, n: int) -> list[tuple[int, int]]:
        """A full window at the top: starts ``n - w``, ``n - w - stride``, …, then 0."""
        if n <= 1:
            return []
        if n <= self.window_size:
            return [(0, n)]
        starts = list(range(n - self.window_size, 0, -self.stride))
        if starts[-1] != 0:
            starts.append(0)
        return [(s, min(s + self.window_size, n)) for s in starts]

    def _rank_windows(
        self, conversations: list[list[dict[str, str]]], windows: list[list[int]]
    ) -> list[tuple[list[int], Cost]]:
        """One forward pass per window, windows of equal size batched together.

        The identifier is read after the answer's opening "[" (the template's
        ``answer_prefix``), where a model writing "[B] > [A] …" puts its first choice.
        A label an API could not score (outside its top log-probabilities) counts as a failure.
        """
        out: list[tuple[list[int], Cost]] = [([], Cost())] * len(windows)
        for size, members in by_size(windows).items():
            labels = self._identifiers(size)
            answers = self.backend.next_token_scores(
                [conversations[k] for k in members], labels, prefix=self.prompt.get("answer_prefix", "")
            )
            for k, scores in zip(members, answers, strict=True):
                # Highest score first; ties keep the window's current order (a stable sort).
                order = sorted(range(size), key=lambda p: -scores.logprobs[labels[p]])
                out[k] = (order, call_cost(scores) + Cost(parse_failures=int(scores.missing > 0)))
        return out
