"""Late interaction: ColBERT's MaxSim over token embeddings (Khattab and Zaharia, SIGIR 2020).

A query and a passage are each encoded into one vector per token: the encoder's last hidden states,
projected (the checkpoint's linear layers) and L2-normalised. The score is the sum over query tokens of
the largest dot product with any passage token. As in PyLate and the ColBERT reference:

- a marker token follows ``[CLS]``: ``[Q] ``/``[D] `` (PyLate's, added to the vocabulary) or
  ``[unused0]``/``[unused1]`` (ColBERT's), as the checkpoint says;
- a query is padded with ``[MASK]`` to its ``query_length`` (query expansion); the masks are not attended
  to (unless the checkpoint says so) but their embeddings count in the sum;
- a passage is cut to ``document_length`` tokens, and its padding and punctuation (the checkpoint's
  skiplist) carry no embedding.

Each distinct query and passage of a batch is encoded once, passages in batches sorted by length; a
passage's embeddings depend on its batch only in their last bits (the padding width picks the kernels). PyLate's ``rank.rerank`` pads a query's passages with zero
vectors to the longest one and takes the maximum over them too, so a passage whose every similarity to a
query token is negative scores 0 for that token when a longer passage shares its query;
``variant=pylate`` does the same (for real checkpoints the similarities are positive and it changes
nothing).

``embedding_cache=True`` keeps each passage's token embeddings on disk (``<cache>/token-vectors``, keyed like
the bi-encoder's passage vectors: the weights' checksum, the passage settings and the text), exactly as
computed: a passage reranked again, in any run or pipeline, is read back instead of encoded. fp32 token
embeddings take about 0.5 KB a token (about 90 KB for a 180-token passage), so it is opt-in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from data.errors import InvalidSpecError
from data.export import Backend, LazyRuntime
from data.inference import NEUTRAL, backend_libraries, check_backend, padded_batches
from data.models import check_model, quiet_loading, resolve_model
from data.optional import optional_import
from data.records import RerankRequest
from rerank.base import PairScores, PointwiseReranker, check_device
from rerank.result import RerankResult

Variant = Literal["rerank", "pylate"]


class ColBERTReranker(PointwiseReranker):
    """ColBERT MaxSim with a PyLate or ColBERT checkpoint.

    ``query_length`` and ``document_length`` default to the checkpoint's (PyLate's 32 and 180 when it
    names none). ``batch_size`` texts per encoder call.
    """

    method = "colbert"
    libraries = ("torch", "transformers")
    # the cache holds embeddings exactly as computed: reading them back changes no score
    execution_params = frozenset({"batch_size", "embedding_cache"})
    neutral_params = MappingProxyType({**NEUTRAL, "precision": "float32"})

    @classmethod
    def libraries_for(cls, params: Mapping[str, Any]) -> tuple[str, ...]:
        return cls.libraries + backend_libraries(str(params.get("backend", "torch")))

    @property
    def batch_invariant(self) -> bool:
        return self.precision != "int8" or bool(self.calibration)  # dynamic int8 scales per batch

    def __init__(
        self,
        model: str,
        query_length: int | None = None,
        document_length: int | None = None,
        batch_size: int = 32,
        device: str | None = None,
        variant: Variant = "rerank",
        embedding_cache: bool = False,
        backend: Backend = "torch",
        precision: str = "float32",
        calibration: int = 0,
    ):
        """``backend=onnx|openvino`` runs the encoder and its projections exported into the cache;
        ``precision=int8`` quantises that export (dynamically on ONNX Runtime, or statically from the first
        ``calibration`` passages)."""
        torch = optional_import("torch")
        transformers = optional_import("transformers")
        if variant not in ("rerank", "pylate"):
            raise InvalidSpecError(f"colbert: variant is rerank or pylate, not {variant!r}")
        check_backend(backend, precision, "colbert", calibration)
        self.model, self.batch_size, self.variant = model, batch_size, variant
        self.backend, self.precision, self.calibration = backend, precision, calibration
        self.embedding_cache = embedding_cache
        self._cache: Any = None
        path = Path(resolve_model(model))
        settings = checkpoint_settings(path)
        self.query_length = int(query_length or settings["query_length"])
        self.document_length = int(document_length or settings["document_length"])
        self.attend_to_expansion = bool(settings["attend_to_expansion_tokens"])
        self.expand_queries = bool(settings["do_query_expansion"])
        self.lowercase = bool(settings["do_lower_case"])
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._tokenizer: Any = transformers.AutoTokenizer.from_pretrained(str(path))
        self._runtime: Any = None  # the export (onnx, openvino), which holds the weights
        if backend != "torch":
            if self._device.type != "cpu":
                raise InvalidSpecError(
                    f"colbert: backend={backend} runs on the CPU; use backend=torch on {self._device}"
                )
            types = "token_type_ids" in self._tokenizer.model_input_names
            self._runtime = LazyRuntime(str(path), "colbert", backend, precision, calibration,
                                        module=lambda: exported_encoder(path, settings, types))  # fmt: skip
        else:
            with quiet_loading():
                self._net: Any = transformers.AutoModel.from_pretrained(str(path)).to(self._device).eval()
            self._projections = [layer.to(self._device) for layer in load_projections(path, settings)]
        self._query_marker = self._tokenizer.convert_tokens_to_ids(settings["query_prefix"])
        self._document_marker = self._tokenizer.convert_tokens_to_ids(settings["document_prefix"])
        self._skip = {self._tokenizer.convert_tokens_to_ids(word) for word in settings["skiplist_words"]}
        self._mask = self._tokenizer.mask_token_id
        if self.expand_queries and self._mask is None:
            raise InvalidSpecError(f"colbert(model={model}): query expansion needs a [MASK] token")

    @classmethod
    def check_params(cls, params: dict[str, Any], where: str) -> None:
        if params.get("device") is not None:
            check_device(str(params["device"]), where)
        check_model(str(params["model"]), what=f"{where}: model", files=("config.json",))
        check_backend(str(params.get("backend", "torch")), str(params.get("precision", "float32")), where,
                      params.get("calibration", 0))  # fmt: skip
        config_file = Path(resolve_model(str(params["model"]))) / "config.json"
        if config_file.is_file():
            config = json.loads(config_file.read_text(encoding="utf-8"))
            if config.get("is_encoder_decoder") or any(
                a.endswith("ForCausalLM") for a in config.get("architectures") or ()
            ):
                found = f"{config.get('model_type')} ({', '.join(config.get('architectures') or ())})"
                raise InvalidSpecError(
                    f"{where}: colbert needs an encoder (BERT-like) checkpoint; {params['model']} is a {found}"
                )

    def tokenizer(self) -> Any:
        return self._tokenizer

    def document_limit(self) -> tuple[int, str]:
        return self.document_length, "tokens"

    def _ids(self, texts: Sequence[str], limit: int) -> list[list[int]]:
        """Token ids cut to ``limit`` with the marker after ``[CLS]`` (PyLate: stripped, cut one short, marked)."""
        clean = [t.strip().lower() if self.lowercase else t.strip() for t in texts]
        encoded = self._tokenizer(clean, truncation=True, max_length=limit - 1, verbose=False)["input_ids"]
        return [list(x) for x in encoded]

    def _encode(self, batch: dict[str, Any]) -> Any:
        torch = optional_import("torch")
        if self._runtime is not None:
            out = self._runtime.run(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
            rows, width = len(batch["input_ids"]), len(batch["input_ids"][0])
            return torch.from_numpy(out.reshape(rows, width, -1)).float()  # (OpenVINO int8 adds a leading axis)
        tensors = {k: torch.as_tensor(v).to(self._device) for k, v in batch.items()}
        if "token_type_ids" not in self._tokenizer.model_input_names:
            tensors.pop("token_type_ids", None)
        with torch.inference_mode():
            hidden = self._net(**tensors).last_hidden_state
            for layer in self._projections:
                hidden = layer(hidden)
        return hidden.float()

    def encode_queries(self, queries: Sequence[str]) -> list[Any]:
        """Each query's token embeddings (``query_length`` of them with expansion), normalised."""
        torch = optional_import("torch")
        rows, masks = [], []
        for ids in self._ids(queries, self.query_length):
            marked = [ids[0], self._query_marker, *ids[1:]]
            pad = self.query_length - len(marked) if self.expand_queries else 0
            rows.append(marked + [self._mask] * pad)
            masks.append([1] * len(marked) + [1 if self.attend_to_expansion else 0] * pad)
        out: list[Any] = [None] * len(rows)
        for start in range(0, len(rows), self.batch_size):
            chunk = list(range(start, min(start + self.batch_size, len(rows))))
            width = max(len(rows[i]) for i in chunk)
            padded = [rows[i] + [self._mask] * (width - len(rows[i])) for i in chunk]
            attention = [masks[i] + [0] * (width - len(masks[i])) for i in chunk]
            types = [[0] * width for _ in chunk]
            embedded = self._encode({"input_ids": padded, "attention_mask": attention, "token_type_ids": types})
            for row, i in enumerate(chunk):
                keep = len(rows[i]) if self.expand_queries else sum(masks[i])
                out[i] = torch.nn.functional.normalize(embedded[row, :keep], p=2, dim=1)
        return out

    def encode_documents(self, texts: Sequence[str]) -> tuple[list[Any], list[int], list[bool]]:
        """Each passage's kept token embeddings (no padding, no punctuation), normalised; token counts; cut."""
        torch = optional_import("torch")
        full = self._tokenizer([t.strip() for t in texts], verbose=False)["input_ids"] if texts else []
        rows = [[ids[0], self._document_marker, *ids[1:]] for ids in self._ids(texts, self.document_length)]
        out: list[Any] = [None] * len(rows)
        batches = padded_batches(rows, self.batch_size, self._tokenizer.pad_token_id)
        if self._runtime is not None:
            self._runtime.calibrate([arrays for _, arrays in batches])  # static int8: from the first passages
        for chunk, arrays in batches:
            embedded = self._encode(arrays)
            for row, i in enumerate(chunk):
                keep = [n for n, token in enumerate(rows[i]) if token not in self._skip]
                out[i] = torch.nn.functional.normalize(embedded[row, keep], p=2, dim=1)
        return out, [len(r) for r in rows], [len(f) > self.document_length - 1 for f in full]

    def _documents(self, texts: Sequence[str]) -> tuple[list[Any], list[int], list[bool], int]:
        """``encode_documents`` through the embedding cache when it is on; and how many passages were encoded."""
        if not self.embedding_cache:
            vectors, lengths, cut = self.encode_documents(texts)
            return vectors, lengths, cut, len(texts)
        import base64

        import numpy as np
        import torch

        from data.config import cache_dir
        from rerank.cache import OutputCache, cache_key

        if self._cache is None:
            from rerank.identity import model_identity

            weights = model_identity(self.model)
            self._space = json.dumps({"model": weights["sha256"] or weights["name"], "document_length":
                                      self.document_length, "lowercase": self.lowercase}, sort_keys=True)  # fmt: skip
            self._cache = OutputCache(cache_dir() / "token-vectors")
        keys = [cache_key("colbert", self._space, text) for text in texts]
        found = self._cache.get_many(keys)
        missing = [n for n, key in enumerate(keys) if key not in found]
        if missing:
            fresh = self.encode_documents([texts[n] for n in missing])
            stored = {keys[n]: [base64.b64encode(v.cpu().numpy().astype(np.float32).tobytes()).decode(), list(v.shape),
                                length, was_cut] for n, v, length, was_cut in zip(missing, *fresh, strict=True)}  # fmt: skip
            self._cache.put_many(stored.items())
            found.update(stored)
        vectors, lengths, cut = [], [], []
        for key in keys:
            data, shape, length, was_cut = found[key]
            array = np.frombuffer(base64.b64decode(data), dtype=np.float32).reshape(shape)
            vectors.append(torch.from_numpy(array.copy()).to(self._device))
            lengths.append(int(length))
            cut.append(bool(was_cut))
        return vectors, lengths, cut, len(missing)

    def score_pairs(self, queries: Sequence[str], texts: Sequence[str], docids: Sequence[str] = ()) -> PairScores:
        if not texts:
            return PairScores([], [], [], 0)
        unique_queries = list(dict.fromkeys(queries))
        unique_texts = list(dict.fromkeys(texts))
        vectors, lengths, cut, encoded = self._documents(unique_texts)  # first: static int8 calibrates on passages
        query_vectors = dict(zip(unique_queries, self.encode_queries(unique_queries), strict=True))
        where = {text: n for n, text in enumerate(unique_texts)}
        scores = []
        for query, text in zip(queries, texts, strict=True):
            similarities = query_vectors[query] @ vectors[where[text]].T
            scores.append(float(similarities.max(dim=1).values.sum()))
        calls = -(-len(unique_queries) // self.batch_size) + -(-encoded // self.batch_size)
        tokens = [self.query_length + lengths[where[t]] for t in texts]
        return PairScores(scores, tokens, [cut[where[t]] for t in texts], calls)

    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        if self.variant != "pylate":
            return super().rerank(requests)
        return [self._pylate_one(request) for request in requests]

    def _pylate_one(self, request: RerankRequest) -> RerankResult:
        """PyLate's ``rank.rerank`` for one query: its passages padded with zero vectors to the longest."""
        import time

        from rerank.base import require_texts, scored_ranking
        from rerank.cost import Cost

        start = time.perf_counter()
        texts = require_texts(request)
        if not texts:
            return RerankResult(scored_ranking(request, []), Cost())
        vectors, lengths, cut, encoded = self._documents(texts)
        (query,) = self.encode_queries([request.query.text])
        longest = max(len(v) for v in vectors)
        scores = []
        for v in vectors:
            best = (query @ v.T).max(dim=1).values
            if len(v) < longest:  # the zero vectors PyLate pads with are similarities of 0
                best = best.clamp(min=0.0)
            scores.append(float(best.sum()))
        calls = 1 + -(-encoded // self.batch_size)
        cost = Cost(calls=calls, input_tokens=sum(lengths) + self.query_length, truncated=sum(cut),
                    seconds=time.perf_counter() - start)  # fmt: skip
        return RerankResult(scored_ranking(request, scores), cost)


def checkpoint_settings(path: Path) -> dict[str, Any]:
    """A checkpoint's ColBERT settings: PyLate's (``config_sentence_transformers.json``), else ColBERT's
    (an ``HF_ColBERT`` architecture or ``artifact.metadata``: ``[unused0]``/``[unused1]`` unless it names
    others, and the ``linear`` layer in the model's weights), else PyLate's defaults."""
    settings: dict[str, Any] = {
        "query_prefix": "[Q] ", "document_prefix": "[D] ", "query_length": 32, "document_length": 180,
        "attend_to_expansion_tokens": False, "do_query_expansion": True, "do_lower_case": False,
        "skiplist_words": list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"), "dense": [],
    }  # fmt: skip
    pylate = path / "config_sentence_transformers.json"
    metadata = path / "artifact.metadata"
    config_file = path / "config.json"
    architectures = (
        json.loads(config_file.read_text(encoding="utf-8")).get("architectures") if config_file.is_file() else None
    )
    if pylate.is_file():
        config = json.loads(pylate.read_text(encoding="utf-8"))
        settings.update({k: config[k] for k in settings if config.get(k) is not None})
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
        settings["dense"] = [m["path"] for m in modules if m["type"].endswith("Dense")]
        bert_config = path / "sentence_bert_config.json"
        if bert_config.is_file():
            settings["do_lower_case"] = bool(json.loads(bert_config.read_text(encoding="utf-8")).get("do_lower_case"))
    elif metadata.is_file() or architectures == ["HF_ColBERT"]:  # ColBERT's own (stanford-futuredata) format
        config = json.loads(metadata.read_text(encoding="utf-8")) if metadata.is_file() else {}
        settings.update({
            "query_prefix": config.get("query_token_id", "[unused0]"),
            "document_prefix": config.get("doc_token_id", "[unused1]"),
            "query_length": config.get("query_maxlen", 32),
            "document_length": config.get("doc_maxlen", 180),
            "attend_to_expansion_tokens": config.get("attend_to_mask_tokens", False),
            "dense": ["<linear>"],
        })  # fmt: skip
    return settings


def exported_encoder(path: Path, settings: dict[str, Any], token_types: bool) -> Any:
    """The encoder and its projections as one module to export: token embeddings out, before normalisation."""
    torch = optional_import("torch")
    transformers = optional_import("transformers")

    class Encoder(torch.nn.Module):  # type: ignore[name-defined]  # torch is imported lazily
        input_names = ("input_ids", "attention_mask", *(("token_type_ids",) if token_types else ()))

        def __init__(self) -> None:
            super().__init__()
            with quiet_loading():
                self.net = transformers.AutoModel.from_pretrained(str(path), attn_implementation="eager")
            self.projections = torch.nn.ModuleList(load_projections(path, settings))

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            hidden = self.net(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
            for layer in self.projections:
                hidden = layer(hidden)
            return hidden

    module = Encoder().eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def load_projections(path: Path, settings: dict[str, Any]) -> list[Any]:
    """The linear layers after the encoder: PyLate's ``Dense`` modules in order, or ColBERT's ``linear``."""
    torch = optional_import("torch")
    from safetensors.torch import load_file

    layers = []
    config: dict[str, Any]
    for folder in settings["dense"]:
        if folder == "<linear>":
            weights = {k.removeprefix("linear."): v for k, v in load_file(str(path / "model.safetensors")).items()
                       if k.startswith("linear.")}  # fmt: skip
            config = {"in_features": weights["weight"].shape[1], "out_features": weights["weight"].shape[0],
                      "bias": "bias" in weights, "use_residual": False}  # fmt: skip
        else:
            config = json.loads((path / folder / "config.json").read_text(encoding="utf-8"))
            weights = {
                k.removeprefix("linear."): v for k, v in load_file(str(path / folder / "model.safetensors")).items()
            }
        if config.get("use_residual") or "Identity" not in config.get("activation_function", "Identity"):
            raise InvalidSpecError(f"{path}: a projection with an activation or a residual is not supported yet")
        layer = torch.nn.Linear(int(config["in_features"]), int(config["out_features"]), bias=bool(config["bias"]))
        layer.load_state_dict(weights)
        layers.append(layer.eval())
    return layers
