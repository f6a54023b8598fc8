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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from data.models import resolve_model
from data.optional import optional_import
from data.records import Document, Query, Run
from retrievers.base import IndexMeta, Retriever, new_meta
from retrievers.lucene import build_lucene_index, require_pyserini, search_batch


class SpladeEncoder:
    """Texts to sparse term weights with any Hugging Face SPLADE (masked-LM) model."""

    def __init__(
        self, model: str = "splade-tiny", max_length: int = 256, batch_size: int = 8, device: str | None = None
    ):
        torch = optional_import("torch")
        transformers = optional_import("transformers")
        self.model, self.max_length, self.batch_size = model, max_length, batch_size
        path = resolve_model(model)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._tokenizer: Any = transformers.AutoTokenizer.from_pretrained(path)
        self._mlm: Any = transformers.AutoModelForMaskedLM.from_pretrained(path).to(self.device).eval()
        self._vocab = {i: t for t, i in self._tokenizer.get_vocab().items()}

    def encode(self, texts: Sequence[str], quantization: float | None = None) -> list[dict[str, float]]:
        """One ``{term: weight}`` per text; with ``quantization``, integer weights ``round(w × q)`` above zero."""
        import torch

        out: list[dict[str, float]] = []
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
                for row in pooled:
                    nonzero = torch.nonzero(row).squeeze(-1).tolist()
                    values = row[nonzero].tolist()
                    terms: dict[str, float] = {}
                    for index, value in zip(nonzero, values, strict=True):
                        if quantization is not None:
                            value = round(value * quantization)
                            if value <= 0:
                                continue
                        terms[self._vocab[index]] = value
                    out.append(terms)
        return out


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

    def __init__(self, index_dir: str | Path, k: int = 1000, threads: int = 2, device: str | None = None):
        require_pyserini()
        self.index_dir = Path(index_dir)
        self.params = dict(IndexMeta.load(index_dir).params)
        self.k, self.threads = k, threads
        self.encoder = SpladeEncoder(self.params["model"], self.params["max_length"], device=device)
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
        **search_options: Any,
    ) -> SpladeRetriever:
        """Encode documents (title and text) and index their quantised weights."""
        from tqdm import tqdm

        require_pyserini()
        encoder = SpladeEncoder(model, max_length, batch_size, device)
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
                if len(pending) >= batch_size * 16:
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
        new_meta(cls.name, params, {**(corpus or {}), "documents": count}, "pyserini", "transformers", "torch").save(
            index_dir
        )
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
