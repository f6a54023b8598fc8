"""Bi-encoder reranking: cosine similarity of sentence-transformers embeddings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from data.export import Backend
from data.inference import NEUTRAL, SentenceEncoder, backend_libraries, check_backend
from data.models import check_model, quiet_loading, resolve_model
from data.optional import optional_import
from rerank.base import PairScores, PointwiseReranker


class BiEncoderReranker(PointwiseReranker):
    """Scores a candidate by the cosine of its embedding with the query's.

    Each distinct text of a batch is encoded once (DL queries share many passages).
    ``embeddings`` names a dense index (``rerank index --retriever dense``) built
    with the same model: candidates it holds reuse their stored vectors instead of
    being encoded again. ``backend="onnx"`` or ``"openvino"`` runs the model exported into the cache
    (``data.export``), tokenised and pooled as sentence-transformers does; ``precision="int8"``
    quantises it there (dynamically on ONNX Runtime, or statically from the first ``calibration``
    texts it is given).

    ``encoder="llama.cpp"`` runs a GGUF embedding model (nomic-embed-text-v1.5) exactly as the dense
    retriever does (``retrievers.dense.DenseEncoder``), so both give the same vectors and scores. Its
    passage vectors are kept in a disk cache (``<cache>/vectors``) keyed by the model's checksum, the
    pooling, the window and the prefixed text: every run that reranks a passage again reads its vector.
    """

    method = "bi-encoder"
    libraries = ("torch", "transformers", "sentence-transformers")
    neutral_params = MappingProxyType(
        {**NEUTRAL, "precision": "float32", "encoder": "sentence-transformers", "pooling": None, "threads": None}
    )
    execution_params: ClassVar[frozenset[str]] = frozenset({"batch_size", "threads"})

    @classmethod
    def libraries_for(cls, params: Mapping[str, Any]) -> tuple[str, ...]:
        if params.get("encoder") == "llama.cpp":
            return ("llama_cpp_python",)
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
        encoder: Literal["sentence-transformers", "llama.cpp"] = "sentence-transformers",
        pooling: Literal["mean", "cls", "last"] | None = None,
        threads: int | None = None,
    ):
        self.model = model
        self.encoder = encoder
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
        self._gguf: Any = None  # retrievers.dense.DenseEncoder on llama.cpp
        self._vector_cache: Any = None
        if encoder == "llama.cpp":
            if backend != "torch" or embeddings is not None:
                raise ValueError("encoder=llama.cpp runs its own model: backend and embeddings do not apply")
            from retrievers.dense import DenseEncoder

            self._gguf = DenseEncoder(model, batch_size, max_length, query_prefix=query_prefix,
                                      document_prefix=document_prefix, encoder=encoder, threads=threads,
                                      pooling=pooling)  # fmt: skip
            self._vector_space = self._vector_namespace(pooling, max_length)
            return
        if backend != "torch":
            self._sentence = SentenceEncoder(
                resolve_model(model), backend, precision, batch_size, max_length, calibration
            )
            return
        st = optional_import("sentence_transformers")
        with quiet_loading():  # a sub-second load needs no bar (a spec error after it would follow the bar)
            self._encoder = st.SentenceTransformer(resolve_model(model), device=device)
        if max_length is not None:
            self._encoder.max_seq_length = max_length

    def _vector_namespace(self, pooling: str | None, max_length: int | None) -> str:
        import json

        from rerank.identity import model_identity

        model = model_identity(self.model)
        return json.dumps({"model": model["sha256"] or model["name"], "encoder": self.encoder, "pooling": pooling,
                           "max_length": max_length}, sort_keys=True)  # fmt: skip

    @classmethod
    def check_params(cls, params: dict[str, Any], where: str) -> None:
        super().check_params(params, where)
        gguf = params.get("encoder") == "llama.cpp"
        files = ("modules.json", "config.json") if not gguf else ()
        check_model(str(params.get("model", "minilm")), what=f"{where}: model", files=files)
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

    def _document_vectors(self, texts: list[str]) -> tuple[Any, int]:
        """Passage vectors from the vector cache, encoding (and keeping) only the missing ones; and how many."""
        import base64

        import numpy as np

        from data.config import cache_dir
        from rerank.cache import OutputCache, cache_key

        if self._vector_cache is None:
            self._vector_cache = OutputCache(cache_dir() / "vectors")
        keys = {t: cache_key(self._vector_space, self.document_prefix + t) for t in texts}  # texts are distinct
        found = self._vector_cache.get_many(list(keys.values()))
        missing = [t for t, k in keys.items() if k not in found]
        if missing:
            fresh = self._gguf.encode(missing, self.document_prefix)
            new = {keys[t]: base64.b64encode(v.tobytes()).decode() for t, v in zip(missing, fresh, strict=True)}
            self._vector_cache.put_many(new.items())
            found.update(new)
        rows = [np.frombuffer(base64.b64decode(found[keys[t]]), dtype=np.float32) for t in texts]
        return np.stack(rows), len(missing)

    def _score_gguf(self, queries: Sequence[str], texts: Sequence[str]) -> PairScores:
        import numpy as np

        unique_queries = list(dict.fromkeys(queries))
        unique_texts = list(dict.fromkeys(texts))
        q_emb = self._gguf.encode(unique_queries, self.query_prefix)
        d_emb, encoded = self._document_vectors(unique_texts)
        q_index = {q: i for i, q in enumerate(unique_queries)}
        d_index = {t: i for i, t in enumerate(unique_texts)}
        qi = np.fromiter((q_index[q] for q in queries), dtype=np.int64, count=len(queries))
        di = np.fromiter((d_index[t] for t in texts), dtype=np.int64, count=len(texts))
        scores = np.einsum("ij,ij->i", q_emb[qi], d_emb[di])
        limit, lengths = self._gguf.window, self._gguf.token_counts(unique_texts, self.document_prefix)
        return PairScores(
            scores=[float(s) for s in scores],
            input_tokens=[min(lengths[d_index[t]], limit) for t in texts],
            truncated=[lengths[d_index[t]] > limit for t in texts],
            calls=len(unique_queries) + encoded,  # llama.cpp encodes one text per call
        )

    def tokenizer(self) -> Any:
        if self._gguf is not None:
            return None  # llama.cpp's own tokenizer has no offsets to cut texts by
        return self._sentence.tokenizer if self._sentence is not None else self._encoder.tokenizer

    def document_limit(self) -> tuple[int, str]:
        if self._gguf is not None:
            return self._gguf.window, "tokens"
        return (self._sentence.max_length if self._sentence is not None else self._encoder.max_seq_length), "tokens"

    def _encode(self, texts: list[str]) -> Any:
        if self._sentence is not None:
            return self._sentence.encode(texts)
        return self._encoder.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

    def score_pairs(self, queries: Sequence[str], texts: Sequence[str], docids: Sequence[str] = ()) -> PairScores:
        import numpy as np

        if self._gguf is not None:
            return self._score_gguf(queries, texts)
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
