"""LLMs through Hugging Face transformers: any causal LM by id or folder, GGUF files too.

A GGUF file is dequantised once into an fp32 copy in the cache directory, so
later loads take seconds instead of a minute. fp32 on CPU (bf16 was 6× slower
there), bf16 on CUDA. Prompts are batched with left padding.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.config import cache_dir
from data.models import resolve_model
from data.optional import optional_import
from rerank.llm.backend import Generation, LLMBackend, Message, Prompt, TokenScores, cut_at_stop, label_logprobs


def fp32_copy_of_gguf(gguf: Path) -> Path:
    """A transformers folder holding the GGUF's weights in fp32, converted on first use."""
    torch = optional_import("torch")
    transformers = optional_import("transformers")
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_dir() / "models" / f"{gguf.stem}-{key}-fp32"
    if (target / "config.json").is_file():
        return target
    model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None  # the weights are plain fp32 now; save them as such
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target


class TransformersBackend(LLMBackend):
    name = "transformers"
    libraries = ("torch", "transformers")

    @classmethod
    def check_model(cls, model: str, what: str) -> None:
        from data.models import check_model

        check_model(model, what=what)

    def __init__(self, model: str, device: str | None = None, batch_size: int = 8, dtype: str | None = None):
        torch = optional_import("torch")
        transformers = optional_import("transformers")
        self.model, self.batch_size = model, batch_size
        path = Path(resolve_model(model))
        if path.suffix == ".gguf":
            path = fp32_copy_of_gguf(path)
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        chosen = dtype or ("bfloat16" if self._device.type == "cuda" else "float32")
        self._tokenizer: Any = transformers.AutoTokenizer.from_pretrained(path)
        self._tokenizer.padding_side = "left"
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        self._lm: Any = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, chosen))
        self._lm.to(self._device).eval()
        self._dtype = chosen
        # Only the last position's logits are read: skipping the vocabulary projection of every other
        # position saves about a quarter of a 0.5B model's prefill and a (tokens x vocab) tensor.
        accepts = inspect.signature(self._lm.forward).parameters
        self._last_logits_only = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}

    @property
    def identity(self) -> str:
        return f"transformers:{self.model}:{self._dtype}"

    def render(self, messages: Sequence[Message]) -> str:
        return str(self._tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True))

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def special_tokens(self) -> dict[str, str]:
        return {"bos_token": self._tokenizer.bos_token or "", "eos_token": self._tokenizer.eos_token or ""}

    def truncate_tokens(self, text: str, limit: int) -> str:
        # tokens to string, as ielab/llm-rankers' truncate does (not ids to text: the two differ on spaces)
        return str(self._tokenizer.convert_tokens_to_string(self._tokenizer.tokenize(text)[:limit]))

    def _label_id(self, label: str) -> int:
        ids = self._tokenizer.encode(label, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"label {label!r} is {len(ids)} tokens for {self.model}; labels must be single tokens")
        return int(ids[0])

    def single_token(self, label: str) -> bool:
        return len(self._tokenizer.encode(label, add_special_tokens=False)) == 1

    def label_tokens(self, label: str) -> list[str]:
        return [str(t) for t in self._tokenizer.tokenize(label)]

    def _batches(self, prompts: list[str]) -> Any:
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            encoded = self._tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            yield start, encoded.to(self._device), [int(m.sum()) for m in encoded["attention_mask"]]

    def next_token_scores(
        self,
        conversations: Sequence[Prompt],
        labels: Sequence[str],
        prefix: str = "",
        read_at: int = 0,
        top: int = 0,
    ) -> list[TokenScores]:
        import torch

        label_ids = [self._label_id(label) for label in labels]
        prompts = [self.prompt_text(c) + prefix for c in conversations]
        out: list[TokenScores] = []
        with torch.inference_mode():
            for _, batch, lengths in self._batches(prompts):
                if read_at:  # greedy steps first (no end before the read position); raw logits are read
                    logits = self._lm.generate(
                        **batch, max_new_tokens=read_at + 1, min_new_tokens=read_at + 1, do_sample=False,
                        output_logits=True, return_dict_in_generate=True, pad_token_id=self._tokenizer.pad_token_id,
                    ).logits[read_at].float()  # fmt: skip
                else:
                    # Left padding: positions count real tokens only, so a prompt scores the same in any batch.
                    positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
                    logits = self._lm(**batch, position_ids=positions, **self._last_logits_only).logits[:, -1, :]
                # log_softmax as before (its bits are the outputs' keys); the normalizer beside it for raw logits
                normalizers = torch.logsumexp(logits.float(), dim=-1)
                logprobs = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
                for row, n, normalizer in zip(logprobs, lengths, normalizers.tolist(), strict=True):
                    scores, missing = label_logprobs(row, labels, label_ids, top)
                    out.append(TokenScores(scores, n, missing, normalizer=normalizer))
        return out

    def generate(
        self, conversations: Sequence[Prompt], max_new_tokens: int, min_new_tokens: int = 0, stop: Sequence[str] = ()
    ) -> list[Generation]:
        import torch

        prompts = [self.prompt_text(c) for c in conversations]
        out: list[Generation] = []
        with torch.inference_mode():
            for _, batch, lengths in self._batches(prompts):
                produced = self._lm.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    min_new_tokens=min_new_tokens or None,
                    do_sample=False,
                    pad_token_id=self._tokenizer.pad_token_id,
                    # a row that wrote a stop string ends there (its tokenizer finds the string across tokens)
                    **({"stop_strings": list(stop), "tokenizer": self._tokenizer} if stop else {}),
                )[:, batch["input_ids"].shape[1] :]
                for row, n in zip(produced, lengths, strict=True):
                    tokens = [t for t in row.tolist() if t != self._tokenizer.pad_token_id]
                    text = cut_at_stop(self._tokenizer.decode(tokens, skip_special_tokens=True), stop)
                    out.append(Generation(text, n, len(tokens)))
        return out
