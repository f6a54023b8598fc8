"""Any OpenAI-compatible HTTP server: vLLM, llama.cpp's server, OpenAI itself.

Two ways to ask, by whether the prompt is rendered here:

- ``tokenizer`` unset: chat completions (the server applies the chat template). Next-token
  log-probabilities come from ``logprobs``/``top_logprobs``; since a chat answer cannot be made to
  start with an answer prefix, the label is read where the model itself wrote the prefix.
- ``tokenizer=MODEL`` (a local GGUF, pack or Hugging Face folder of the served model): the prompt is
  rendered here with that model's chat template, the answer prefix appended, and sent to
  ``/completions``, so labels are read at the same position as in process and the answers match the
  ``llama.cpp``/``transformers`` backends on the same weights.

Decoding is greedy. A label outside the returned top log-probabilities gets a floor below all of them
and is counted missing. Requests run concurrently up to ``concurrency``; a failed request is retried
with exponential backoff (honouring ``Retry-After``) and, if it keeps failing, raises ``BackendError``
so no candidate is ranked from a missing answer. The API key is read from the environment variable
named by ``api_key_env``, never from a spec.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from rerank.http_client import JSONClient
from rerank.llm.backend import BackendError, Generation, LLMBackend, Message, Prompt, TokenScores, cut_at_stop

T = TypeVar("T")


class LocalTemplate:
    """The served model's tokenizer and chat template, loaded here: a GGUF's metadata (through llama.cpp,
    vocabulary only) or a Hugging Face tokenizer."""

    def __init__(self, model: str):
        from pathlib import Path

        from data.models import resolve_model

        path = Path(resolve_model(model))
        if path.suffix == ".gguf" or (path.is_dir() and any(path.glob("*.gguf"))):
            from rerank.llm.llama_cpp_backend import LlamaCppBackend

            gguf = LlamaCppBackend(str(path), vocab_only=True)
            self.render, self.count_tokens, self.single_token = gguf.render, gguf.count_tokens, gguf.single_token
            self.truncate_tokens, self.special_tokens = gguf.truncate_tokens, gguf.special_tokens
            self.label_tokens = gguf.label_tokens
        else:
            from data.optional import optional_import

            tokenizer = optional_import("transformers").AutoTokenizer.from_pretrained(str(path))
            self.render = lambda messages: str(
                tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
            )
            self.count_tokens = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
            self.single_token = lambda label: len(tokenizer.encode(label, add_special_tokens=False)) == 1
            self.truncate_tokens = lambda text, limit: str(
                tokenizer.convert_tokens_to_string(tokenizer.tokenize(text)[:limit])
            )
            self.special_tokens = lambda: {
                "bos_token": tokenizer.bos_token or "",
                "eos_token": tokenizer.eos_token or "",
            }
            self.label_tokens = lambda label: [str(t) for t in tokenizer.tokenize(label)]


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
        tokenizer: str | None = None,
        repeat_penalty: float | None = None,
        batch_size: int = 0,  # accepted for a uniform interface; concurrency does the batching here
    ):
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.api_key = os.environ.get(api_key_env, "")
        self.concurrency = max(1, concurrency)
        self.top_logprobs, self.seed = top_logprobs, seed
        self.tokenizer, self.repeat_penalty = tokenizer, repeat_penalty
        self._template = LocalTemplate(tokenizer) if tokenizer else None
        self._http = JSONClient(
            self.base_url, headers={"Authorization": f"Bearer {self.api_key}"} if self.api_key else {},
            max_retries=max_retries, timeout=timeout, connections=self.concurrency,
            what="OpenAI-compatible server", hint="check that it is running and that base_url points at its /v1",
        )  # fmt: skip

    @classmethod
    def check_options(cls, options: dict[str, Any], what: str) -> None:
        tokenizer = options.get("tokenizer")
        if isinstance(tokenizer, str):
            from data.models import check_model

            check_model(tokenizer, what=f"{what}: tokenizer", files=("tokenizer.json", "tokenizer_config.json"))

    @property
    def identity(self) -> str:
        local = f":rendered-by:{self.tokenizer}" if self.tokenizer else ""
        penalty = f":repeat-penalty:{self.repeat_penalty}" if self.repeat_penalty is not None else ""
        return f"openai:{self.base_url}:{self.model}{local}{penalty}"

    def render(self, messages: Sequence[Message]) -> str:
        if self._template is not None:
            return self._template.render(messages)
        # The server applies the chat template; this text stands for the prompt in cache keys.
        return "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)

    def count_tokens(self, text: str) -> int:
        """Exact with a local ``tokenizer``; else an estimate (about 4 characters a token), the costs
        recorded coming from the server's usage."""
        if self._template is not None:
            return self._template.count_tokens(text)
        return max(1, math.ceil(len(text) / 4))

    def single_token(self, label: str) -> bool:
        return self._template.single_token(label) if self._template is not None else True

    def label_tokens(self, label: str) -> list[str]:
        return list(self._template.label_tokens(label)) if self._template is not None else [label]

    def special_tokens(self) -> dict[str, str]:
        if self._template is None:
            raise ValueError("the openai backend renders a chat template here only with the served model's "
                             "tokenizer: add tokenizer=… (a GGUF, pack or Hugging Face folder)")  # fmt: skip
        return dict(self._template.special_tokens())

    def truncate_tokens(self, text: str, limit: int) -> str:
        if self._template is None:
            raise ValueError("the openai backend cuts text in tokens only with a local tokenizer: add tokenizer=…")
        return self._template.truncate_tokens(text, limit)

    # --- HTTP ---------------------------------------------------------------------------------------------
    def _post(self, path: str, body: dict[str, Any]) -> Any:
        answer = self._http.post(path, body)
        if not isinstance(answer, dict) or not answer.get("choices"):
            raise BackendError(f"{self.base_url}: an answer without choices: {json.dumps(answer)[:300]}")
        return answer

    def _map(self, fn: Callable[[Prompt], T], conversations: Sequence[Prompt]) -> list[T]:
        if len(conversations) <= 1 or self.concurrency == 1:
            return [fn(c) for c in conversations]
        with ThreadPoolExecutor(min(self.concurrency, len(conversations))) as pool:
            return list(pool.map(fn, conversations))

    def _ask(self, messages: Prompt, prefix: str = "", **options: Any) -> dict[str, Any]:
        """One greedy answer: from ``/completions`` on the prompt rendered here (with ``prefix`` appended)
        or given rendered, else from ``/chat/completions``."""
        body: dict[str, Any] = {"model": self.model, "temperature": 0.0, "seed": self.seed, **options}
        if self.repeat_penalty is not None:  # llama.cpp's server penalises repeats by default (1.1)
            body["repeat_penalty"] = self.repeat_penalty
        if self._template is not None or isinstance(messages, str):
            return self._post("/completions", {**body, "prompt": self.prompt_text(messages) + prefix})
        return self._post("/chat/completions", {**body, "messages": list(messages)})

    # --- the interface -------------------------------------------------------------------------------------
    def generate(
        self, conversations: Sequence[Prompt], max_new_tokens: int, min_new_tokens: int = 0, stop: Sequence[str] = ()
    ) -> list[Generation]:
        def one(messages: Prompt) -> Generation:
            # min_tokens is vLLM's and llama.cpp's server's extension; a server without it may stop sooner
            extra: dict[str, Any] = {"min_tokens": min_new_tokens} if min_new_tokens else {}
            if stop:
                extra["stop"] = list(stop)
            answer = self._ask(messages, max_tokens=max_new_tokens, **extra)
            usage = answer.get("usage") or {}
            choice = answer["choices"][0]
            completed = self._template is not None or isinstance(messages, str)
            text = choice["text"] if completed else choice["message"].get("content")
            return Generation(
                cut_at_stop(text or "", stop),
                int(usage.get("prompt_tokens", 0)),
                int(usage.get("completion_tokens", 0)),
            )

        return self._map(one, conversations)

    def next_token_scores(
        self,
        conversations: Sequence[Prompt],
        labels: Sequence[str],
        prefix: str = "",
        read_at: int = 0,
        top: int = 0,
    ) -> list[TokenScores]:
        top = top or self.top_logprobs

        def one(messages: Prompt) -> TokenScores:
            rendered = self._template is not None or isinstance(messages, str)
            # A chat answer may open with the prefix (say "Passage"): generate past it and read after it.
            steps = 1 + read_at + (0 if rendered else len(prefix))
            options: dict[str, Any] = {"max_tokens": steps, **({"min_tokens": steps} if read_at else {})}
            if rendered:  # the legacy completions shape: one {token: logprob} per generated position
                answer = self._ask(messages, prefix=prefix, logprobs=top, **options)
                positions = (answer["choices"][0].get("logprobs") or {}).get("top_logprobs") or []
                position = read_at
            else:
                answer = self._ask(messages, logprobs=True, top_logprobs=top, **options)
                content = ((answer["choices"][0].get("logprobs") or {}).get("content")) or []
                positions = [{t["token"]: t["logprob"] for t in c.get("top_logprobs", [])} for c in content]
                position = self._after_prefix([c["token"] for c in content], prefix) + read_at
            if position >= len(positions) or not positions[position]:
                raise BackendError(f"{self.base_url} returned no log-probabilities for {self.model} at answer "
                                   f"position {position} (does it take min_tokens?)")  # fmt: skip
            top_tokens = {token: float(value) for token, value in positions[position].items()}
            floor = min(top_tokens.values()) - 1.0
            # in process a label is its own token; a chat answer may write it after a space
            spaced = {} if rendered else {label: top_tokens.get(f" {label}") for label in labels}
            found = {label: top_tokens.get(label, spaced.get(label)) for label in labels}
            scores = {label: floor if value is None else value for label, value in found.items()}
            usage = answer.get("usage") or {}
            return TokenScores(scores, int(usage.get("prompt_tokens", 0)), sum(v is None for v in found.values()))

        return self._map(one, conversations)

    @staticmethod
    def _after_prefix(tokens: Sequence[str], prefix: str) -> int:
        """The position after the answer prefix the model wrote itself (0 when it wrote something else)."""
        position, written = 0, ""
        while prefix and position < len(tokens) - 1 and len(written) < len(prefix):
            written += tokens[position]
            position += 1
        return position if prefix and written.strip().startswith(prefix.strip()) else 0
