"""Any OpenAI-compatible HTTP server: vLLM, llama.cpp's server, OpenAI itself.

Chat completions with greedy decoding; next-token log-probabilities from the
``logprobs``/``top_logprobs`` fields where the server gives them (a label outside
the returned top few gets a floor below all of them and is counted missing).
Requests run concurrently up to ``concurrency``; a failed request is retried with
exponential backoff (honouring ``Retry-After``) and, if it keeps failing, raises
``BackendError`` so no candidate is ranked from a missing answer. The API key is
read from the environment variable named by ``api_key_env``, never from a spec.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from rerank.http_client import post_json
from rerank.llm.backend import BackendError, Generation, LLMBackend, Message, TokenScores

T = TypeVar("T")


class OpenAIBackend(LLMBackend):
    name = "openai"
    libraries = ()  # the server computes; its model name and base URL are in the spec

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 4,
        max_retries: int = 5,
        timeout: float = 120.0,
        top_logprobs: int = 20,
        seed: int = 0,
        batch_size: int = 0,  # accepted for a uniform interface; concurrency does the batching here
    ):
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.api_key = os.environ.get(api_key_env, "")
        self.concurrency, self.max_retries, self.timeout = max(1, concurrency), max_retries, timeout
        self.top_logprobs, self.seed = top_logprobs, seed

    @property
    def identity(self) -> str:
        return f"openai:{self.base_url}:{self.model}"

    def render(self, messages: Sequence[Message]) -> str:
        # The server applies the chat template; this text stands for the prompt in cache keys.
        return "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)

    def count_tokens(self, text: str) -> int:
        """An estimate (about 4 characters a token); the costs recorded come from the server's usage."""
        return max(1, math.ceil(len(text) / 4))

    # --- HTTP ---------------------------------------------------------------------------------------------
    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        answer: dict[str, Any] = post_json(
            f"{self.base_url}{path}", body, headers=headers, max_retries=self.max_retries, timeout=self.timeout,
            what="OpenAI-compatible server", hint="check that it is running and that base_url points at its /v1",
        )  # fmt: skip
        return answer

    def _map(self, fn: Callable[[Sequence[Message]], T], conversations: Sequence[Sequence[Message]]) -> list[T]:
        if len(conversations) <= 1 or self.concurrency == 1:
            return [fn(c) for c in conversations]
        with ThreadPoolExecutor(min(self.concurrency, len(conversations))) as pool:
            return list(pool.map(fn, conversations))

    def _chat(self, messages: Sequence[Message], **options: Any) -> dict[str, Any]:
        body = {"model": self.model, "messages": list(messages), "temperature": 0.0, "seed": self.seed, **options}
        answer = self._post("/chat/completions", body)
        if not answer.get("choices"):
            raise BackendError(f"{self.base_url}: an answer without choices: {json.dumps(answer)[:300]}")
        return answer

    # --- the interface -------------------------------------------------------------------------------------
    def generate(
        self, conversations: Sequence[Sequence[Message]], max_new_tokens: int, min_new_tokens: int = 0
    ) -> list[Generation]:
        def one(messages: Sequence[Message]) -> Generation:
            # min_tokens is vLLM's and llama.cpp's server's extension; a server without it may stop sooner
            extra = {"min_tokens": min_new_tokens} if min_new_tokens else {}
            answer = self._chat(messages, max_tokens=max_new_tokens, **extra)
            usage = answer.get("usage") or {}
            text = answer["choices"][0]["message"].get("content") or ""
            return Generation(text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))

        return self._map(one, conversations)

    def next_token_scores(
        self, conversations: Sequence[Sequence[Message]], labels: Sequence[str], prefix: str = ""
    ) -> list[TokenScores]:
        # The answer may open with the prefix (say "["): generate past it and read the position after.
        steps = 1 + len(prefix)

        def one(messages: Sequence[Message]) -> TokenScores:
            answer = self._chat(messages, max_tokens=steps, logprobs=True, top_logprobs=self.top_logprobs)
            content = ((answer["choices"][0].get("logprobs") or {}).get("content")) or []
            if not content:
                raise BackendError(f"{self.base_url} returned no log-probabilities for {self.model}")
            position, written = 0, ""
            while prefix and position < len(content) - 1 and len(written) < len(prefix):
                written += content[position]["token"]
                position += 1
            if prefix and not written.strip().startswith(prefix.strip()):
                position = 0  # the model did not open with the prefix: read its first choice instead
            top = {t["token"]: float(t["logprob"]) for t in content[position].get("top_logprobs", [])}
            floor = min(top.values(), default=0.0) - 1.0
            scores = {label: top.get(label, top.get(f" {label}", floor)) for label in labels}
            missing = sum(label not in top and f" {label}" not in top for label in labels)
            usage = answer.get("usage") or {}
            return TokenScores(scores, int(usage.get("prompt_tokens", 0)), missing)

        return self._map(one, conversations)
