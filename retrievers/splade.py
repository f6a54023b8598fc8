"""SPLADE: a learned sparse encoder, documents quantised into a Lucene impact index.

Term weights are ``max over tokens of log(1 + ReLU(MLM logits))`` (SPLADE's max
pooling), masked to real tokens. The MLM head spans the whole 30,522-term
vocabulary, so texts go through in small batches and only the pooled vector
of each batch is kept. Document and query weights are quantised to integers
(× ``quantization``, 100 as in SPLADE's releases) and searched with pyserini's
impact searcher, which scores a document by the dot product of the two.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from data.export import Backend, EncoderRuntime, keep_export
from data.inference import NEUTRAL, backend_libraries, check_backend, padded_batches
from data.models import resolve_model
from data.optional import optional_import
from data.records import Document, Query, Run
from retrievers.base import IndexMeta, Retriever, new_meta
from retrievers.lucene import build_lucene_index, require_pyserini, search_batch


class SpladeEncoder:
    """Texts to sparse term weights with any Hugging Face SPLADE (masked-LM) model.

    ``backend=onnx|openvino`` runs an export whose graph ends in the pooled weights (see
    ``data.export``), on batches sorted by length; ``export`` opens one an index kept.
    """

    def __init__(
        self,
        model: str = "splade-tiny",
        max_length: int = 256,
        batch_size: int = 8,
        device: str | None = None,
        backend: Backend = "torch",
        precision: Literal["float32", "int8"] = "float32",
        calibration: int = 0,
        threads: int | None = None,
        export: Path | None = None,
    ):
        if export is None:  # an index's own export needs no calibration sample again
            check_backend(backend, precision, "splade", calibration)
        transformers = optional_import("transformers")
        self.model, self.max_length, self.batch_size = model, max_length, batch_size
        self.backend, self.precision, self.calibration, self.threads = backend, precision, calibration, threads
        self._path = resolve_model(model)
        self._tokenizer: Any = transformers.AutoTokenizer.from_pretrained(self._path)
        self._vocab = {i: t for t, i in self._tokenizer.get_vocab().items()}
        self.runtime: EncoderRuntime | None = None
        if backend == "torch":
            torch = optional_import("torch")
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            self._mlm: Any = transformers.AutoModelForMaskedLM.from_pretrained(self._path).to(self.device).eval()
        elif export is not None:
            self.runtime = EncoderRuntime.from_folder(export, threads)
        elif not (precision == "int8" and calibration):
            self.runtime = EncoderRuntime(self._path, "splade", backend, precision, (), threads)

    def encode(self, texts: Sequence[str], quantization: float | None = None) -> list[dict[str, float]]:
        """One ``{term: weight}`` per text; with ``quantization``, integer weights ``round(w × q)`` above zero."""
        pooled = self._pooled_torch(texts) if self.backend == "torch" else self._pooled_exported(texts)
        return [self._terms(row, quantization) for row in pooled]

    def _pooled_torch(self, texts: Sequence[str]) -> list[Any]:
        import torch

        rows: list[Any] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self._tokenizer(
                    list(texts[start : start + self.batch_size]), padding=True, truncation=True,
                    max_length=self.max_length, return_tensors="pt",
                ).to(self.device)  # fmt: skip
                logits = self._mlm(**batch).logits
                # log1p(relu(.)) is monotonic, so pool the raw logits first: one pass over (batch, tokens, vocab).
                padding = batch["attention_mask"].unsqueeze(-1) == 0
                pooled = torch.log1p(torch.relu(logits.masked_fill_(padding, float("-inf")).max(dim=1).values))
                del logits
                rows.extend(pooled.cpu().numpy())
        return rows

    def _pooled_exported(self, texts: Sequence[str]) -> list[Any]:
        ids = self._tokenizer(list(texts), truncation=True, max_length=self.max_length, verbose=False)["input_ids"]
        pad = self._tokenizer.pad_token_id
        if self.runtime is None:  # static int8: calibrated on the first call's first texts
            sample = [b for _, b in padded_batches(ids[: self.calibration], self.batch_size, pad)]
            self.runtime = EncoderRuntime(self._path, "splade", self.backend, self.precision, sample, self.threads)
        rows: list[Any] = [None] * len(ids)
        for chunk, batch in padded_batches(ids, self.batch_size, pad):
            for position, row in zip(chunk, self.runtime.run(**batch), strict=True):
                rows[position] = row
        return rows

    def _terms(self, row: Any, quantization: float | None) -> dict[str, float]:
        import numpy as np

        nonzero = np.flatnonzero(row)
        terms: dict[str, float] = {}
        for index, value in zip(nonzero.tolist(), row[nonzero].tolist(), strict=True):
            if quantization is not None:
                value = round(value * quantization)
                if value <= 0:
                    continue
            terms[self._vocab[index]] = value
        return terms


class _QueryEncoder:
    """The object pyserini's impact searcher calls: ``encode(text) -> {term: weight}``."""

    def __init__(self, encoder: SpladeEncoder, quantization: float):
        self.encoder, self.quantization = encoder, quantization

    def encode(self, text: str) -> dict[str, float]:
        return self.encoder.encode([text], self.quantization)[0]


class SpladeRetriever(Retriever):
    name = "splade"
    libraries = ("torch", "transformers", "pyserini")
    search_params = frozenset({"threads"})
    neutral_params = MappingProxyType({**NEUTRAL, "precision": "float32"})

    @classmethod
    def libraries_for(cls, params: Mapping[str, Any]) -> tuple[str, ...]:
        return cls.libraries + backend_libraries(str(params.get("backend", "torch")))

    def __init__(self, index_dir: str | Path, k: int = 1000, threads: int = 2, device: str | None = None):
        require_pyserini()
        self.index_dir = Path(index_dir)
        self.params = dict(IndexMeta.load(index_dir).params)
        self.k, self.threads = k, threads
        export = self.index_dir / "export"
        self.encoder = SpladeEncoder(
            self.params["model"], self.params["max_length"], device=device,
            backend=self.params.get("backend", "torch"), precision=self.params.get("precision", "float32"),
            export=export if export.is_dir() else None,
        )  # fmt: skip
        self._searcher: Any = None

    @classmethod
    def build(
        cls,
        documents: Iterable[Document],
        index_dir: str | Path,
        corpus: dict[str, Any] | None = None,
        model: str = "splade-tiny",
        max_length: int = 256,
        batch_size: int = 8,
        quantization: float = 100.0,
        threads: int = 2,
        device: str | None = None,
        backend: Backend = "torch",
        precision: Literal["float32", "int8"] = "float32",
        calibration: int = 0,
        **search_options: Any,
    ) -> SpladeRetriever:
        """Encode documents (title and text) and index their quantised weights.

        With ``backend=onnx|openvino`` the index keeps the export its documents were encoded with
        (``export/``), so queries are encoded by the same model, calibration included.
        """
        from tqdm import tqdm

        require_pyserini()
        encoder = SpladeEncoder(model, max_length, batch_size, device, backend, precision, calibration)
        index_dir = Path(index_dir)
        staging = index_dir / ".collection"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        count = 0
        with (
            open(staging / "vectors.jsonl", "w", encoding="utf-8") as out,
            tqdm(unit="doc", desc="encoding", file=sys.stderr) as bar,
        ):
            pending: list[Document] = []

            def flush() -> None:
                for doc, vector in zip(
                    pending, encoder.encode([d.full_text for d in pending], quantization), strict=True
                ):
                    out.write(
                        json.dumps({"id": doc.docid, "contents": "", "vector": vector}, ensure_ascii=False) + "\n"
                    )
                bar.update(len(pending))
                pending.clear()

            for doc in documents:
                pending.append(doc)
                count += 1
                if len(pending) >= max(batch_size * 16, calibration):  # static int8 calibrates on the first
                    flush()
            flush()
        lucene = index_dir / "lucene"
        shutil.rmtree(lucene, ignore_errors=True)
        build_lucene_index(staging, lucene, "JsonVectorCollection", ["--impact", "--pretokenized"], threads)
        shutil.rmtree(staging)
        params = {
            "model": model,
            "max_length": max_length,
            "quantization": quantization,
            "pooling": "max",
            "activation": "log1p(relu)",
        }
        if backend != "torch":  # absent means torch: older indexes still load
            params |= {"backend": backend, "precision": precision, "calibration": calibration}
            assert encoder.runtime is not None
            keep_export(encoder.runtime, index_dir / "export")
        libraries = ("pyserini", "transformers", "torch", *backend_libraries(backend))
        new_meta(cls.name, params, {**(corpus or {}), "documents": count}, *libraries).save(index_dir)
        return cls(index_dir, threads=threads, device=device, **search_options)

    @classmethod
    def load(cls, index_dir: str | Path, **options: Any) -> SpladeRetriever:
        return cls(index_dir, **options)

    @property
    def searcher(self) -> Any:
        if self._searcher is None:
            from pyserini.search.lucene import LuceneImpactSearcher

            encoder = _QueryEncoder(self.encoder, float(self.params["quantization"]))
            self._searcher = LuceneImpactSearcher(str(self.index_dir / "lucene"), encoder)
        return self._searcher

    def retrieve(self, queries: Sequence[Query], k: int | None = None) -> Run:
        return search_batch(self.searcher, queries, k or self.k, self.threads, f"splade({self.params['model']})")
