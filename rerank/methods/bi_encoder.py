"""Bi-encoder reranking: cosine similarity of sentence-transformers embeddings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

from data.inference import NEUTRAL, Backend, SentenceEncoder, backend_libraries, check_backend
from data.models import check_model, resolve_model
from data.optional import optional_import
from rerank.base import PairScores, PointwiseReranker


class BiEncoderReranker(PointwiseReranker):
    """Scores a candidate by the cosine of its embedding with the query's.

    Each distinct text of a batch is encoded once (DL queries share many passages).
    ``embeddings`` names a dense index (``rerank index --retriever dense``) built
    with the same model: candidates it holds reuse their stored vectors instead of
    being encoded again. ``backend="onnx"`` or ``"openvino"`` runs the model exported into the cache
    (``data.inference``), tokenised and pooled as sentence-transformers does; ``precision="int8"``
    quantises it there (dynamically on ONNX Runtime, or statically from the first ``calibration``
    texts it is given).
    """

    method = "bi-encoder"
    libraries = ("torch", "transformers", "sentence-transformers")
    neutral_params = MappingProxyType({**NEUTRAL, "precision": "float32"})

    @classmethod
    def libraries_for(cls, params: Mapping[str, Any]) -> tuple[str, ...]:
        return cls.libraries + backend_libraries(str(params.get("backend", "torch")))

    def __init__(
        self,
        model: str = "minilm",
        batch_size: int = 32,
        max_length: int | None = None,
        device: str | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        embeddings: str | None = None,
        backend: Backend = "torch",
        precision: Literal["float32", "int8"] = "float32",
        calibration: int = 0,
    ):
        self.model = model
        self.backend, self.precision, self.calibration = backend, precision, calibration
        check_backend(backend, precision, "bi-encoder", calibration)
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.embeddings = embeddings  # checked before the model loads: a mismatch fails fast
        self._stored: dict[str, int] = {}
        self._vectors: Any = None
        if embeddings is not None:
            self._load_embeddings(embeddings)
        self._encoder: Any = None
        self._sentence: SentenceEncoder | None = None
        if backend != "torch":
            self._sentence = SentenceEncoder(
                resolve_model(model), backend, precision, batch_size, max_length, calibration
            )
            return
        st = optional_import("sentence_transformers")
        self._encoder = st.SentenceTransformer(resolve_model(model), device=device)
        if max_length is not None:
            self._encoder.max_seq_length = max_length

    @classmethod
    def check_params(cls, params: dict[str, Any], where: str) -> None:
        super().check_params(params, where)
        check_model(str(params.get("model", "minilm")), what=f"{where}: model", files=("modules.json", "config.json"))
        backend, precision = str(params.get("backend", "torch")), str(params.get("precision", "float32"))
        check_backend(backend, precision, where, params.get("calibration", 0))

    @property
    def batch_invariant(self) -> bool:
        return not (self.precision == "int8" and not self.calibration)  # dynamic int8 scales per batch

    def _load_embeddings(self, index_dir: str) -> None:
        from pathlib import Path

        from data.textio import iter_lines
        from retrievers.base import IndexMeta

        meta = IndexMeta.load(index_dir)
        if meta.retriever != "dense" or meta.params.get("model") != self.model:
            raise ValueError(
                f"{index_dir} holds {meta.retriever} vectors of {meta.params.get('model')!r}, not dense vectors of {self.model!r}"
            )
        if meta.params.get("document_prefix", "") != self.document_prefix:
            raise ValueError(f"{index_dir} was encoded with document prefix {meta.params.get('document_prefix')!r}")
        faiss = optional_import("faiss")
        index = faiss.read_index(str(Path(index_dir) / "index.faiss"))
        self._vectors = index.reconstruct_n(0, index.ntotal)
        self._stored = {docid: row for row, (_, docid) in enumerate(iter_lines(Path(index_dir) / "docids.txt"))}

    def tokenizer(self) -> Any:
        return self._sentence.tokenizer if self._sentence is not None else self._encoder.tokenizer

    def _encode(self, texts: list[str]) -> Any:
        if self._sentence is not None:
            return self._sentence.encode(texts)
        return self._encoder.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

    def score_pairs(self, queries: Sequence[str], texts: Sequence[str], docids: Sequence[str] = ()) -> PairScores:
        import numpy as np

        unique_queries = list(dict.fromkeys(queries))
        stored = [bool(docids) and docids[i] in self._stored for i in range(len(texts))]
        unique_texts = list(dict.fromkeys(t for t, s in zip(texts, stored, strict=True) if not s))
        if self._sentence is not None and self._sentence.runtime is None:
            # static int8 calibrates on what it is about to encode: this call's queries, then its passages
            sample = [self.query_prefix + q for q in unique_queries] + [self.document_prefix + t for t in unique_texts]
            self._sentence.encode(sample[: self.calibration])
        q_emb = self._encode([self.query_prefix + q for q in unique_queries])
        d_emb: Any = self._encode([self.document_prefix + t for t in unique_texts]) if unique_texts else None
        q_index = {q: i for i, q in enumerate(unique_queries)}
        d_index = {t: i for i, t in enumerate(unique_texts)}
        qi = np.fromiter((q_index[q] for q in queries), dtype=np.int64, count=len(queries))
        docs = np.stack(
            [
                self._vectors[self._stored[docids[i]]] if stored[i] else d_emb[d_index[texts[i]]]
                for i in range(len(texts))
            ]
        )
        scores = np.einsum("ij,ij->i", q_emb[qi], docs)
        limit = self._sentence.max_length if self._sentence is not None else self._encoder.max_seq_length
        lengths = (
            [len(ids) for ids in self.tokenizer()(unique_texts, verbose=False)["input_ids"]] if unique_texts else []
        )
        tokens = [0 if stored[i] else lengths[d_index[texts[i]]] for i in range(len(texts))]
        return PairScores(
            scores=[float(s) for s in scores],
            input_tokens=[min(n, limit) for n in tokens],
            truncated=[n > limit for n in tokens],
            calls=-(-len(unique_queries) // self.batch_size) + -(-len(unique_texts) // self.batch_size),
        )
