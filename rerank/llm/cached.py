"""A disk cache in front of any LLM backend: the same prompt to the same model is answered once.

Keys hold the backend's identity (backend, model, output-affecting options), the
rendered prompt (so the template, query and passage texts, in their order) and
the request (labels and answer prefix, or the token limit). Read-back answers are
marked ``cached`` and cost no call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from rerank.cache import OutputCache, cache_key
from rerank.llm.backend import Generation, LLMBackend, Message, Prompt, TokenScores


class CachedBackend(LLMBackend):
    def __init__(self, inner: LLMBackend, cache: OutputCache):
        self.inner, self.cache = inner, cache
        self.name = inner.name  # type: ignore[misc]
        self.model = inner.model
        self._identity: str | None = None

    @property
    def identity(self) -> str:
        """The backend's own identity (model, dtype, options) with its weights' checksum and library versions."""
        if self._identity is None:
            from rerank.identity import model_identity, package_versions

            self._identity = json.dumps(
                {
                    "backend": self.inner.identity,
                    "weights": model_identity(self.inner.model)["sha256"],
                    "libraries": package_versions(type(self.inner).libraries),
                },
                sort_keys=True,
            )
        return self._identity

    def render(self, messages: Sequence[Message]) -> str:
        return self.inner.render(messages)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def single_token(self, label: str) -> bool:
        return self.inner.single_token(label)

    def truncate_tokens(self, text: str, limit: int) -> str:
        return self.inner.truncate_tokens(text, limit)

    def special_tokens(self) -> dict[str, str]:
        return self.inner.special_tokens()

    def label_tokens(self, label: str) -> list[str]:
        return self.inner.label_tokens(label)

    def generate(
        self, conversations: Sequence[Prompt], max_new_tokens: int, min_new_tokens: int = 0, stop: Sequence[str] = ()
    ) -> list[Generation]:
        # (the minimum joins the key only when set, so answers cached before it existed stay valid)
        # (so does the stop list)
        budget = str(max_new_tokens) + (f":{min_new_tokens}" if min_new_tokens else "")
        budget += ("|" + "\x1f".join(stop)) if stop else ""
        keys = [cache_key("generate", self.identity, self.prompt_text(c), budget) for c in conversations]
        known = self.cache.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in known]
        fresh = (
            self.inner.generate([conversations[i] for i in missing], max_new_tokens, min_new_tokens, stop)
            if missing
            else []
        )
        self.cache.put_many(
            (keys[i], [g.text, g.input_tokens, g.output_tokens]) for i, g in zip(missing, fresh, strict=True)
        )
        out: list[Generation | None] = [
            Generation(text, n_in, n_out, cached=True) if key in known else None
            for key in keys
            for text, n_in, n_out in [known.get(key) or ("", 0, 0)]
        ]
        for i, g in zip(missing, fresh, strict=True):
            out[i] = g
        return [g for g in out if g is not None]

    def next_token_scores(
        self,
        conversations: Sequence[Prompt],
        labels: Sequence[str],
        prefix: str = "",
        read_at: int = 0,
        top: int = 0,
    ) -> list[TokenScores]:
        # (the read position and top-k join the key only when set, so earlier entries stay valid)
        request = "\x1f".join(labels) + (f"@{read_at}:{top}" if read_at or top else "")
        keys = [cache_key("scores", self.identity, self.prompt_text(c), prefix, request) for c in conversations]
        known = self.cache.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in known]
        fresh = (
            self.inner.next_token_scores([conversations[i] for i in missing], labels, prefix, read_at, top)
            if missing
            else []
        )
        # (the normalizer is stored only where there is one, so entries written before it read back as they were)
        self.cache.put_many(
            (keys[i], [s.logprobs, s.input_tokens, s.missing, *([s.normalizer] if s.normalizer is not None else [])])
            for i, s in zip(missing, fresh, strict=True)
        )
        out: list[TokenScores | None] = [
            TokenScores(logprobs, n_in, n_missing, cached=True, normalizer=rest[0] if rest else None)
            if key in known
            else None
            for key in keys
            for logprobs, n_in, n_missing, *rest in [known.get(key) or ({}, 0, 0)]
        ]
        for i, s in zip(missing, fresh, strict=True):
            out[i] = replace(s, cached=False)
        return [s for s in out if s is not None]
