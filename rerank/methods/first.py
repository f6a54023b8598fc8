"""FIRST: listwise reranking from a single answer token per window (Reddy et al., 2024,
"FIRST: Faster Improved Listwise Reranking with Single Token Decoding"), as RankLLM runs it
(``RankListwiseOSLLM`` with ``use_logits`` and ``use_alpha``).

Instead of generating ``[B] > [A] > …``, FIRST reads the log-probabilities of the identifier the
model would write first: the window is ordered by them. Identifiers are letters (A, B, …), single
tokens for common tokenizers where "10"–"20" are not; the method checks this for the model at hand.

Everything but the answer is ``listwise``'s, which is RankLLM's: the sliding windows, ftfy-cleaned
passages cut to fit the context, RankLLM's alphabetical RankZephyr template. The answer is RankLLM's
too (``tests/test_fidelity.py`` compares them side by side): two tokens are decoded greedily (no end of
text before the second), the identifier is read at the second position, where a model writing
"[B] > …" puts its first choice after "[", and only letters among the ``top_logprobs`` most likely
tokens there are ordered; the others keep their window order after them.
"""

from __future__ import annotations

import string
from typing import ClassVar

from rerank.cost import Cost
from rerank.llm.backend import call_cost
from rerank.methods.listwise import ListwiseReranker
from rerank.methods.llm_common import by_size

READ_AT = 1  # the answer position read: the second token the model writes ("[" comes first)


class FirstReranker(ListwiseReranker):
    method = "first"
    version = 2  # 2: RankLLM's FIRST (its template, windows, passage cleaning and length, position, top 30)
    libraries: ClassVar[tuple[str, ...]] = ("ftfy",)

    def __init__(self, model: str, template: str = "first", window_size: int = 20, top_logprobs: int = 30,
                 **options: object):  # fmt: skip
        if window_size > len(string.ascii_uppercase):
            raise ValueError(f"FIRST identifies passages by letters: window_size at most 26, not {window_size}")
        if options.get("reasoning"):
            raise ValueError("first: FIRST reads the first answer token's log-probabilities; reasoning does not "
                             "apply (use listwise with reasoning=true)")  # fmt: skip
        if top_logprobs < 0:
            raise ValueError(f"top_logprobs must be 0 (every token) or more, not {top_logprobs}")
        self.top_logprobs = top_logprobs
        super().__init__(model, template=template, window_size=window_size, **options)  # type: ignore[arg-type]
        wide = [letter for letter in string.ascii_uppercase[:window_size] if not self.backend.single_token(letter)]
        if wide:
            raise ValueError(f"identifiers {wide} are not single tokens for {model}")

    def _identifiers(self, n: int) -> list[str]:
        return list(string.ascii_uppercase[:n])

    def _rank_windows(
        self, conversations: list[list[dict[str, str]]], windows: list[list[int]]
    ) -> list[tuple[list[int], Cost]]:
        """One greedy two-token answer per window, windows of equal size batched together.

        Letters outside the top log-probabilities (or that an API did not return) keep their window
        order below the scored ones, as RankLLM's ``receive_permutation`` appends them; a window with
        no letter scored at all counts as a parse failure.
        """
        out: list[tuple[list[int], Cost]] = [([], Cost())] * len(windows)
        for size, members in by_size(windows).items():
            labels = self._identifiers(size)
            answers = self.backend.next_token_scores(
                [conversations[k] for k in members], labels, read_at=READ_AT, top=self.top_logprobs
            )
            for k, scores in zip(members, answers, strict=True):
                # Highest first; equal log-probabilities in the backend's order (vLLM's own, as RankLLM reads
                # them; else the window's), so unscored letters, which share a floor, keep the window's order.
                tie = {label: n for n, label in enumerate(scores.logprobs)}
                order = sorted(range(size), key=lambda p: (-scores.logprobs[labels[p]], tie[labels[p]]))
                decoded = Cost(output_tokens=0 if scores.cached else READ_AT)  # the greedy tokens before the read
                out[k] = (order, call_cost(scores) + decoded + Cost(parse_failures=int(scores.missing == size)))
        return out
