"""Where a transformer encoder runs: torch, or ONNX Runtime or OpenVINO on an export (``data.export``).

The cross-encoder, the bi-encoder, the dense retriever, the SPLADE encoder, monoT5/duoT5 and ColBERT keep their
own tokenisation (exact lengths, length-sorted batches, each distinct text once) and hand padded id arrays to an
export. This module holds what they share: the backend and precision checks, the padded batches, and the
sentence encoder of the bi-encoder and the dense retriever.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.export import Backend, EncoderRuntime, Head
from data.optional import optional_import

BACKENDS = ("torch", "onnx", "openvino")
_EXTRA = {"onnx": "onnx", "openvino": "openvino"}


def check_backend(backend: str, precision: str, where: str, calibration: int = 0) -> None:
    """A backend, precision and calibration that go together, and the backend's libraries installed (a
    missing one names its extra): checked before any model loads."""
    import importlib.util

    from data.errors import InvalidSpecError, MissingDependencyError

    if backend not in BACKENDS:
        raise InvalidSpecError(f"{where}: backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if not isinstance(calibration, int) or calibration < 0:
        raise InvalidSpecError(f"{where}: calibration must be a number of samples >= 0, not {calibration!r}")
    if calibration and (backend == "torch" or precision != "int8"):
        raise InvalidSpecError(
            f"{where}: calibration=N calibrates static int8: use it with backend=onnx|openvino, precision=int8"
        )
    if backend == "torch":
        if precision == "int8":  # torch's dynamic quantisation was slower and reordered more (benchmarks/RESULTS.md)
            raise InvalidSpecError(f"{where}: precision=int8 runs on backend=onnx or openvino")
        return
    if precision not in ("float32", "int8", "auto"):
        raise InvalidSpecError(f"{where}: backend={backend} runs precision float32 or int8, not {precision!r}")
    if backend == "openvino" and precision == "int8" and not calibration:
        raise InvalidSpecError(f"{where}: backend=openvino, precision=int8 is static quantisation: give calibration=N")
    if backend == "onnx" and precision == "int8" and not calibration:
        # The one path outside the contract's batch-size invariance (docs/design.md): said where it is chosen.
        import warnings

        from data.errors import RerankWarning

        warnings.warn(
            "backend=onnx, precision=int8 without calibration is dynamic: activations are scaled per batch, so a "
            "text's score depends on the texts batched with it; calibration=N (static int8) scores it the same in any "
            "batch",
            RerankWarning,
            stacklevel=2,
        )
    needed: tuple[str, ...] = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnx")}[backend]
    if backend == "openvino" and precision == "int8":
        needed += ("nncf",)
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(
            f"{where}: backend={backend} needs {', '.join(missing)}: pip install 'rerank[{_EXTRA[backend]}]'"
        )


def backend_libraries(backend: str) -> tuple[str, ...]:
    """The distributions an export on ``backend`` depends on (they join the stage keys)."""
    return {
        "torch": (),
        "onnx": ("onnx", "onnxscript", "onnxruntime"),
        "openvino": ("onnx", "onnxscript", "openvino", "nncf"),
    }.get(backend, ())


NEUTRAL = {"backend": "torch", "calibration": 0}  # parameters the encoders gained with this module


def sentence_pooling(path: str) -> Head:
    """The pooling a sentence-transformers folder declares (``1_Pooling/config.json``): mean or cls."""
    folder = Path(path)
    modules = folder / "modules.json"
    if not modules.is_file():
        return "mean"  # a plain transformers encoder: sentence-transformers pools it by mean too
    for module in json.loads(modules.read_text(encoding="utf-8")):
        if module.get("type", "").endswith("Pooling"):
            config = json.loads((folder / module["path"] / "config.json").read_text(encoding="utf-8"))
            if config.get("pooling_mode_cls_token"):
                return "cls"
            if config.get("pooling_mode_mean_tokens"):
                return "mean"
            modes = [k for k, v in config.items() if k.startswith("pooling_mode") and v]
            raise ValueError(
                f"{path}: pooling {', '.join(modes)} is not exported; onnx and openvino pool by mean or cls"
            )
    return "mean"


def padded_batches(
    ids: Sequence[Sequence[int]], batch_size: int, pad_id: int | None, max_tokens: int | None = None
) -> list[tuple[list[int], dict[str, Any]]]:
    """Texts' token ids in batches of similar length, longest first, each of at most ``batch_size`` texts and
    ``max_tokens`` padded tokens: each batch's positions in ``ids`` and its padded ``input_ids``,
    ``attention_mask`` and ``token_type_ids`` (zeros)."""
    np = optional_import("numpy")
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    chunks: list[list[int]] = []
    for i in order:
        width = len(ids[chunks[-1][0]]) if chunks else 0
        full = not chunks or len(chunks[-1]) >= batch_size
        if full or (max_tokens is not None and (len(chunks[-1]) + 1) * width > max_tokens):
            chunks.append([])
        chunks[-1].append(i)
    out = []
    for chunk in chunks:
        width = len(ids[chunk[0]])
        batch = np.full((len(chunk), width), pad_id or 0, dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for row, i in enumerate(chunk):
            batch[row, : len(ids[i])] = ids[i]
            mask[row, : len(ids[i])] = 1
        out.append((chunk, {"input_ids": batch, "attention_mask": mask, "token_type_ids": np.zeros_like(batch)}))
    return out


_BATCH_TOKENS = 4096  # padded tokens per batch on onnx and openvino


class SentenceEncoder:
    """Normalised sentence embeddings on ONNX Runtime or OpenVINO, tokenised and batched as sentence-transformers does.

    Texts are cut at ``max_length`` tokens (the folder's ``max_seq_length``), sorted by length so a batch
    carries almost no padding, and pooled as the folder declares. ``calibration=N`` (with int8) builds the
    export on the first call, from its first N texts.
    """

    def __init__(
        self,
        path: str,
        backend: Backend,
        precision: str = "float32",
        batch_size: int = 32,
        max_length: int | None = None,
        calibration: int = 0,
        threads: int | None = None,
        export: Path | None = None,
    ):
        transformers = optional_import("transformers")
        self.path, self.backend, self.precision = path, backend, precision
        self.batch_size, self.calibration, self.threads = batch_size, calibration, threads
        # Long texts go 16 to a batch at 256 tokens: bigger batches ran 10-15% slower (attention's
        # batch x heads x length² scores leave the cache); short ones (queries) keep ``batch_size``.
        self.batch_tokens = _BATCH_TOKENS
        self.tokenizer: Any = transformers.AutoTokenizer.from_pretrained(path)
        config = Path(path) / "sentence_bert_config.json"
        declared = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length") if config.is_file() else None
        self.max_length = int(max_length or declared or min(self.tokenizer.model_max_length, 512))
        self.head = sentence_pooling(path)
        self.runtime: EncoderRuntime | None = None
        if export is not None:
            self.runtime = EncoderRuntime.from_folder(export, threads)
        elif not (precision == "int8" and calibration):
            self.runtime = EncoderRuntime(path, self.head, backend, precision, (), threads)

    def encode(self, texts: Sequence[str]) -> Any:
        np = optional_import("numpy")
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length, verbose=False)["input_ids"]
        batches = padded_batches(ids, self.batch_size, self.tokenizer.pad_token_id, self.batch_tokens)
        if not ids:
            return np.zeros((0, 0), dtype=np.float32)
        if self.runtime is None:
            sample = padded_batches(
                ids[: self.calibration], self.batch_size, self.tokenizer.pad_token_id, self.batch_tokens
            )
            self.runtime = EncoderRuntime(
                self.path, self.head, self.backend, self.precision, [b for _, b in sample], self.threads
            )
        vectors = np.zeros((len(ids), 0), dtype=np.float32)
        for chunk, batch in batches:
            pooled = self.runtime.run(**batch)
            if vectors.shape[1] == 0:
                vectors = np.zeros((len(ids), pooled.shape[1]), dtype=np.float32)
            vectors[chunk] = pooled
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)
