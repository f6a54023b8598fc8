"""GGUF models through llama.cpp (llama-cpp-python), on CPU threads or offloaded to a GPU.

The chat template is the one stored in the GGUF. Next-token scores come from
the logits of the last prompt position (one forward pass; no sampling), and the
longest prefix shared with the previous prompt is kept in the KV cache, so
prompts that start alike (the same query, the same instructions) are cheap.
llama.cpp runs one sequence at a time: ``batch_size`` is accepted and unused.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.errors import ModelNotFoundError
from data.models import resolve_model
from data.optional import optional_import
from rerank.llm.backend import Generation, LLMBackend, Message, Prompt, TokenScores, cut_at_stop, label_logprobs


class LlamaCppBackend(LLMBackend):
    name = "llama.cpp"
    libraries = ("llama_cpp_python",)

    @classmethod
    def check_model(cls, model: str, what: str) -> None:
        from data.models import check_model, find_pack

        if find_pack(model) is not None:
            check_model(model, what=what)
        elif not Path(model).expanduser().exists():
            raise ModelNotFoundError(f"{what} {model!r} does not exist (llama.cpp takes a .gguf file or a model pack)")

    def __init__(
        self,
        model: str,
        n_ctx: int = 8192,
        threads: int | None = None,
        gpu_layers: int = 0,
        seed: int = 0,
        batch_size: int = 1,
        vocab_only: bool = False,
    ):
        """``vocab_only`` loads the tokenizer and chat template alone (``render``, ``count_tokens``), as the
        ``openai`` backend does to render prompts for a server's completions endpoint."""
        llama_cpp = optional_import("llama_cpp")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.model = model
        path = Path(resolve_model(model))
        if path.is_dir():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) != 1:
                raise ModelNotFoundError(f"{path} holds {len(ggufs)} .gguf files; name one for llama.cpp")
            path = ggufs[0]
        if path.suffix != ".gguf":
            raise ModelNotFoundError(f"llama.cpp needs a .gguf file, not {path}")
        if vocab_only:  # the model file's vocabulary and metadata, no weights and no context
            from llama_cpp._internals import LlamaModel

            params = llama_cpp.llama_model_default_params()
            params.vocab_only = True
            self._llm: Any = None
            self._vocab: Any = LlamaModel(path_model=str(path), params=params, verbose=False)
            meta = self._vocab.metadata()
        else:
            self._llm = self._vocab = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=threads or os.cpu_count(),
                n_gpu_layers=gpu_layers,
                seed=seed,
                verbose=False,
            )
            meta = self._llm.metadata
        self._llama_cpp = llama_cpp
        template = meta.get("tokenizer.chat_template")
        if not template:
            raise ModelNotFoundError(f"{path.name} has no chat template in its metadata")

        def token_text(key: str) -> str:
            index = meta.get(key)
            return self._vocab.detokenize([int(index)], special=True).decode("utf-8", "replace") if index else ""

        self._special = {"bos_token": token_text("tokenizer.ggml.bos_token_id"),
                         "eos_token": token_text("tokenizer.ggml.eos_token_id")}  # fmt: skip
        self._formatter = Jinja2ChatFormatter(
            template, eos_token=self._special["eos_token"], bos_token=self._special["bos_token"],
            add_generation_prompt=True,
        )  # fmt: skip
        self._n_vocab = self._vocab.n_vocab()

    def render(self, messages: Sequence[Message]) -> str:
        return str(self._formatter(messages=list(messages)).prompt)  # type: ignore[arg-type]

    def special_tokens(self) -> dict[str, str]:
        return dict(self._special)

    def _tokenize(self, text: str) -> list[int]:
        # The rendered template already holds any BOS token it wants.
        return list(self._vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def truncate_tokens(self, text: str, limit: int) -> str:
        ids = self._vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if len(ids) <= limit:
            return text
        # a cut inside a multi-byte character drops its partial bytes; a space the tokenizer added goes
        cut = self._vocab.detokenize(ids[:limit]).decode("utf-8", errors="ignore")
        return cut if text.startswith(" ") else cut.lstrip(" ")

    def single_token(self, label: str) -> bool:
        return len(self._vocab.tokenize(label.encode("utf-8"), add_bos=False, special=False)) == 1

    def label_tokens(self, label: str) -> list[str]:
        ids = self._vocab.tokenize(label.encode("utf-8"), add_bos=False, special=False)
        return [self._vocab.detokenize([i]).decode("utf-8", "replace") for i in ids]

    def _label_id(self, label: str) -> int:
        ids = self._vocab.tokenize(label.encode("utf-8"), add_bos=False, special=False)
        if len(ids) != 1:
            raise ValueError(f"label {label!r} is {len(ids)} tokens for {self.model}; labels must be single tokens")
        return int(ids[0])

    def _keep_shared_prefix(self, tokens: list[int]) -> int:
        """Keep the KV cache of the prefix ``tokens`` share with the last prompt; returns its length.

        At least two tokens are always left to evaluate: llama.cpp computes a lone token
        on another kernel path, whose logits differ (by up to 0.5 here), and a prompt's
        scores must not depend on what was asked before it.
        """
        llm = self._llm
        shared = 0
        for old, new in zip(llm.input_ids[: llm.n_tokens], tokens[:-2], strict=False):
            if old != new:
                break
            shared += 1
        llm.n_tokens = shared  # eval() and generate() drop the cache beyond n_tokens
        return shared

    def next_token_scores(
        self,
        conversations: Sequence[Prompt],
        labels: Sequence[str],
        prefix: str = "",
        read_at: int = 0,
        top: int = 0,
    ) -> list[TokenScores]:
        import numpy as np

        label_ids = [self._label_id(label) for label in labels]
        end_ids = self._end_of_generation_ids if read_at else []
        out = []
        for conversation in conversations:
            tokens = self._tokenize(self.prompt_text(conversation) + prefix)
            pending = tokens[self._keep_shared_prefix(tokens) :]
            for _ in range(read_at):  # greedy steps before the read position, none of them the end
                self._llm.eval(pending)
                logits = self._last_logits()
                logits[end_ids] = -np.inf
                pending = [int(logits.argmax())]
            self._llm.eval(pending)
            logits = self._last_logits().astype(np.float64)
            peak = logits.max()
            normalizer = float(peak + np.log(np.exp(logits - peak).sum()))
            scores, missing = label_logprobs(logits - normalizer, labels, label_ids, top)
            out.append(TokenScores(scores, len(tokens), missing, normalizer=normalizer))
        return out

    def _last_logits(self) -> Any:
        """A copy of the logits at the last evaluated position."""
        import numpy as np

        pointer = self._llama_cpp.llama_get_logits_ith(self._llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).copy()

    def generate(
        self, conversations: Sequence[Prompt], max_new_tokens: int, min_new_tokens: int = 0, stop: Sequence[str] = ()
    ) -> list[Generation]:
        out = []
        for conversation in conversations:
            tokens = self._tokenize(self.prompt_text(conversation))
            shared = self._keep_shared_prefix(tokens)
            if min_new_tokens:
                text, produced = self._greedy(tokens[shared:], max_new_tokens, min_new_tokens, stop)
                out.append(Generation(text, len(tokens), produced))
                continue
            answer = self._llm.create_completion(
                prompt=tokens,
                max_tokens=max_new_tokens,
                temperature=0.0,
                top_k=1,
                top_p=1.0,
                repeat_penalty=1.0,
                stop=list(stop) or None,
            )
            usage = answer["usage"]
            text = cut_at_stop(answer["choices"][0]["text"], stop)
            out.append(Generation(text, len(tokens), int(usage["completion_tokens"])))
        return out

    def _greedy(
        self, pending: list[int], max_new_tokens: int, min_new_tokens: int, stop: Sequence[str] = ()
    ) -> tuple[str, int]:
        """Greedy decoding that cannot end before ``min_new_tokens`` tokens (vLLM's ``min_tokens``).

        Done by hand because llama-cpp-python's logit processors run through a custom sampler its own
        source calls broken; the argmax over the last position's logits is what ``top_k=1`` samples.
        """
        import numpy as np

        end_ids = self._end_of_generation_ids
        produced: list[int] = []
        while len(produced) < max_new_tokens:
            self._llm.eval(pending)
            logits = self._last_logits()
            if len(produced) < min_new_tokens:
                logits[end_ids] = -np.inf
            token = int(logits.argmax())
            if token in end_ids:
                break
            produced.append(token)
            pending = [token]
            if stop:  # a stop string may span tokens: look for it in the text so far
                text = self._llm.detokenize(produced).decode("utf-8", "replace")
                if (cut := cut_at_stop(text, stop)) != text:
                    return cut, len(produced)
        return self._llm.detokenize(produced).decode("utf-8", "replace"), len(produced)

    @functools.cached_property
    def _end_of_generation_ids(self) -> list[int]:
        """Every token that ends generation (EOS, end of turn, …): a pass over the vocabulary, done once."""
        vocab = self._llama_cpp.llama_model_get_vocab(self._llm.model)
        return [t for t in range(self._n_vocab) if self._llama_cpp.llama_vocab_is_eog(vocab, t)]
