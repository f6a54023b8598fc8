"""Pointwise cross-encoder: a sequence-classification model scores each (query, passage) pair.

Works with any Hugging Face sequence-classification model or sentence-transformers
CrossEncoder folder or id: one logit is the score; with two labels the score is
the softmax probability of the second ("relevant"). Speed on a CPU comes from
forming batches across queries, sorted by token length so batches carry almost
no padding, and from tokenising each distinct query and passage once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

from data.errors import UntrainedModelError
from data.first_token import first_token_logits
from data.inference import NEUTRAL, backend_libraries, check_backend
from data.models import check_model, quiet_loading, resolve_model
from data.optional import optional_import
from rerank.base import PairScores, PointwiseReranker

Truncation = Literal["document", "both"]
Activation = Literal["none", "sigmoid"]
Precision = Literal["auto", "float32", "float16", "bfloat16", "int8"]
Backend = Literal["torch", "onnx", "openvino"]


class CrossEncoderReranker(PointwiseReranker):
    """Scores = the model's relevance logit (or P(relevant) for two-label models).

    ``truncation="document"`` cuts only the passage to fit ``max_length`` (the query
    is cut too only when it alone is too long); ``"both"`` cuts the longer of the two
    first, as ``longest_first`` does. ``float16``/``bfloat16`` are for CUDA.
    ``backend="onnx"`` or ``"openvino"`` runs the same model exported once into the cache
    (``data.export``); with ``precision="int8"`` it is quantised there: dynamically on ONNX
    Runtime, or statically from the first ``calibration`` pairs the reranker is given.
    A checkpoint without trained weights for the classification head (a bi-encoder folder, a
    base model) is refused unless ``allow_untrained=true`` (speed tests only).
    Dynamic int8 scales activations per batch, so its scores move slightly with
    batch composition: it is the one path that is not batch-size invariant.
    """

    method = "cross-encoder"
    version = 2  # 2: the last layer runs for the first token only (data.first_token): scores move by float rounding
    libraries = ("torch", "transformers", "sentence-transformers")
    neutral_params = MappingProxyType(NEUTRAL)

    @classmethod
    def libraries_for(cls, params: Mapping[str, Any]) -> tuple[str, ...]:
        return cls.libraries + backend_libraries(str(params.get("backend", "torch")))

    def __init__(
        self,
        model: str,
        max_length: int = 512,
        batch_size: int = 64,
        batch_tokens: int | None = None,
        truncation: Truncation = "document",
        activation: Activation = "none",
        precision: Precision = "auto",
        device: str | None = None,
        threads: int | None = None,
        allow_untrained: bool = False,
        backend: Backend = "torch",
        calibration: int = 0,
    ):
        torch = optional_import("torch")
        transformers = optional_import("transformers")
        if truncation not in ("document", "both"):
            raise ValueError(f"truncation must be 'document' or 'both', not {truncation!r}")
        if activation not in ("none", "sigmoid"):
            raise ValueError(f"activation must be 'none' or 'sigmoid', not {activation!r}")
        self.model, self.max_length, self.batch_size, self.batch_tokens = model, max_length, batch_size, batch_tokens
        self.truncation, self.activation, self.precision = truncation, activation, precision
        self.device, self.threads = device, threads
        self.backend, self.calibration = backend, calibration
        check_backend(backend, precision, "cross-encoder", calibration)
        if threads is not None:
            torch.set_num_threads(threads)  # asked for explicitly by the caller
        path = resolve_model(model)
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._tokenizer: Any = transformers.AutoTokenizer.from_pretrained(path)
        net: Any
        with quiet_loading():  # missing head weights are reported below in one line
            net, loading = transformers.AutoModelForSequenceClassification.from_pretrained(
                path, output_loading_info=True
            )
        untrained = sorted(loading.get("missing_keys") or ())
        if untrained and not allow_untrained:
            raise UntrainedModelError(
                f"cross-encoder(model={model}): the checkpoint has no trained weights for {', '.join(untrained[:3])}"
                f"{' …' if len(untrained) > 3 else ''} (it is not a cross-encoder; a random head would rank differently "
                "on every load). Give a cross-encoder checkpoint, or allow_untrained=true for speed tests"
            )
        self.allow_untrained = allow_untrained
        net.eval()
        self._path = path
        self._runtime: Any = None
        if backend != "torch":
            if self._device.type != "cpu":
                raise ValueError(f"backend={backend} runs on the CPU; use backend=torch on {self._device.type}")
            if calibration == 0:  # else built on the first pairs it is given (their own calibration sample)
                self._runtime = self._compile(())
        elif precision in ("float16", "bfloat16") or (precision == "auto" and self._device.type == "cuda"):
            net = net.to(getattr(torch, "float16" if precision == "auto" else precision))
        self._net: Any = net.to(self._device) if backend == "torch" else None  # the export holds the weights
        self._first_token = first_token_logits(self._net) if backend == "torch" else None
        # Small padded batches keep a CPU's caches warm (measured: 2,048 tokens beat 16-64 fixed pairs); GPUs want more.
        self._budget = batch_tokens or (32_768 if self._device.type == "cuda" else 2_048)
        self._num_labels = int(net.config.num_labels)
        if self._num_labels not in (1, 2):
            raise ValueError(f"{model}: a cross-encoder needs 1 or 2 labels, this model has {self._num_labels}")
        limit = getattr(self._tokenizer, "model_max_length", max_length) or max_length
        self._limit = min(max_length, limit if limit < 1_000_000 else max_length)
        self._special = self._tokenizer.num_special_tokens_to_add(pair=True)

    @classmethod
    def check_params(cls, params: dict[str, Any], where: str) -> None:
        super().check_params(params, where)
        check_model(str(params["model"]), what=f"{where}: model", files=("config.json",))
        check_backend(
            str(params.get("backend", "torch")),
            str(params.get("precision", "auto")),
            where,
            params.get("calibration", 0),
        )

    @property
    def batch_invariant(self) -> bool:
        # Dynamic int8 scales activations per batch; static int8 (calibrated) and float paths do not.
        return self.precision != "int8" or bool(self.calibration)

    def _compile(self, calibration: Sequence[dict[str, Any]]) -> Any:
        from data.export import EncoderRuntime

        precision = "float32" if self.precision == "auto" else self.precision
        return EncoderRuntime(self._path, "logits", self.backend, precision, calibration, self.threads)

    def _calibrate(self, inputs: list[list[int]], types: list[list[int]]) -> None:
        """Static int8 from the first ``calibration`` pairs, in the batches the model will see."""
        order = list(range(min(self.calibration, len(inputs))))
        samples = [
            self._arrays([order[i] for i in chunk], inputs, types)
            for chunk in self._batches([inputs[i] for i in order])
        ]
        self._runtime = self._compile(samples)

    def _lengths(self, texts: Sequence[str]) -> dict[str, int]:
        """Token counts without special tokens, each distinct text tokenised once."""
        unique = list(dict.fromkeys(texts))
        encoded = self._tokenizer(unique, add_special_tokens=False, verbose=False)["input_ids"]
        return {text: len(ids) for text, ids in zip(unique, encoded, strict=True)}

    def _encode_pairs(
        self, queries: Sequence[str], texts: Sequence[str]
    ) -> tuple[list[list[int]], list[list[int]], list[bool]]:
        """Input ids and token types per pair, cut by the truncation policy, and which pairs were cut."""
        q_len, d_len = self._lengths(queries), self._lengths(texts)
        budget = self._limit - self._special
        truncated = [q_len[q] + d_len[t] > budget for q, t in zip(queries, texts, strict=True)]
        # "document" cuts only the passage, unless the query alone leaves it no room.
        cut_document = [self.truncation == "document" and q_len[q] < budget for q in queries]
        ids: list[list[int]] = [[] for _ in queries]
        types: list[list[int]] = [[] for _ in queries]
        for policy, wanted in (("only_second", True), ("longest_first", False)):
            rows = [i for i, flag in enumerate(cut_document) if flag is wanted]
            if not rows:
                continue
            encoded = self._tokenizer(
                [queries[i] for i in rows], [texts[i] for i in rows], truncation=policy,
                max_length=self._limit, verbose=False,
            )  # fmt: skip
            token_types = encoded.get("token_type_ids")
            for n, i in enumerate(rows):
                ids[i] = encoded["input_ids"][n]
                types[i] = token_types[n] if token_types is not None else []
        return ids, types, truncated

    def _batches(self, inputs: list[list[int]]) -> list[list[int]]:
        """Pair indices sorted longest first (so padding is near zero, and the memory peak comes first),
        cut into batches of at most ``batch_size`` pairs and ``batch_tokens`` padded tokens."""
        order = sorted(range(len(inputs)), key=lambda i: -len(inputs[i]))
        batches: list[list[int]] = []
        current: list[int] = []
        for i in order:
            width = len(inputs[current[0]]) if current else len(inputs[i])
            if current and (len(current) >= self.batch_size or (len(current) + 1) * width > self._budget):
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches

    def tokenizer(self) -> Any:
        return self._tokenizer

    def document_limit(self) -> tuple[int, str]:
        return self._limit, "tokens"

    def _arrays(self, chunk: Sequence[int], inputs: list[list[int]], types: list[list[int]]) -> dict[str, Any]:
        """One padded batch as int64 arrays (token types only for models that have them)."""
        import numpy as np

        width = max(len(inputs[i]) for i in chunk)
        ids = np.full((len(chunk), width), self._tokenizer.pad_token_id or 0, dtype=np.int64)
        token_types = np.zeros((len(chunk), width), dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for row, i in enumerate(chunk):
            n = len(inputs[i])
            ids[row, :n] = inputs[i]
            if types[i]:
                token_types[row, :n] = types[i]
            mask[row, :n] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if types[chunk[0]]:
            batch["token_type_ids"] = token_types
        return batch

    def _logits(self, batch: dict[str, Any]) -> Any:
        import torch

        if self.backend != "torch":
            return torch.from_numpy(self._runtime.run(**batch))
        tensors = {k: torch.from_numpy(v).to(self._device) for k, v in batch.items()}
        if self._first_token is not None:
            return self._first_token(**tensors).float()
        return self._net(**tensors).logits.float()

    def score_pairs(self, queries: Sequence[str], texts: Sequence[str], docids: Sequence[str] = ()) -> PairScores:
        import torch

        inputs, types, truncated = self._encode_pairs(queries, texts)
        if not inputs:
            return PairScores([], [], [], 0)
        if self.backend != "torch" and self._runtime is None:
            self._calibrate(inputs, types)
        scores = [0.0] * len(inputs)
        calls = 0
        with torch.inference_mode():
            for chunk in self._batches(inputs):
                logits = self._logits(self._arrays(chunk, inputs, types))
                if self._num_labels == 2:
                    values = torch.softmax(logits, dim=-1)[:, 1]
                else:
                    values = logits[:, 0]
                    if self.activation == "sigmoid":
                        values = torch.sigmoid(values)
                for i, value in zip(chunk, values.cpu().tolist(), strict=True):
                    scores[i] = float(value)
                calls += 1
        return PairScores(scores, [len(x) for x in inputs], truncated, calls)


def build_minilm_shaped_cross_encoder(path: str, seed: int = 0) -> str:
    """all-MiniLM-L6-v2's encoder under a fresh one-logit head: the shape of ms-marco-MiniLM-L-6-v2.

    Its scores mean nothing; its speed and agreement with other implementations do.
    Built once into ``path``.
    """
    from pathlib import Path

    transformers = optional_import("transformers")
    torch = optional_import("torch")
    target = Path(path)
    if (target / "config.json").is_file():
        return str(target)
    source = resolve_model("minilm")
    torch.manual_seed(seed)
    model = transformers.BertForSequenceClassification.from_pretrained(source, num_labels=1)
    tmp = target.with_name(f".{target.name}.{time.time_ns()}")
    model.save_pretrained(tmp)
    transformers.AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # built meanwhile by another process
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
