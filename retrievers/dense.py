"""Dense retrieval: sentence-transformers embeddings (normalised) in a faiss index.

Two index kinds: ``flat`` (exact inner product, i.e. cosine) and ``hnsw``
(approximate; ``hnsw_m``, ``ef_construction`` at build, ``ef_search`` at query
time). Documents are encoded in chunks so memory holds one chunk of text plus
the index.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from data.export import Backend, keep_export
from data.inference import NEUTRAL, SentenceEncoder, backend_libraries, check_backend
from data.models import resolve_model
from data.optional import optional_import
from data.records import Candidate, Document, Query, Ranking, Run
from data.textio import atomic_writer, iter_lines
from retrievers.base import IndexMeta, Retriever, new_meta

IndexKind = Literal["flat", "hnsw"]
EncoderKind = Literal["sentence-transformers", "llama.cpp"]
_CHUNK = 512  # documents per encode call: progress updates and bounded text memory


def _chunks(items: Iterable[Document], size: int) -> Iterator[list[Document]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class DenseEncoder:
    """An embedding model with the prefixes some models expect (e5, nomic, bge).

    ``encoder`` picks the runtime: ``sentence-transformers`` (a model folder or Hugging Face id) or
    ``llama.cpp`` (a GGUF embedding model such as nomic-embed-text-v1.5, pooled as its file says).
    """

    def __init__(
        self,
        model: str,
        batch_size: int = 32,
        max_length: int | None = None,
        device: str | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        encoder: EncoderKind = "sentence-transformers",
        threads: int | None = None,
        pooling: str | None = None,
        backend: Backend = "torch",
        precision: Literal["float32", "int8"] = "float32",
        calibration: int = 0,
        export: Path | None = None,
    ):
        if encoder not in ("sentence-transformers", "llama.cpp"):
            raise ValueError(f"encoder must be 'sentence-transformers' or 'llama.cpp', not {encoder!r}")
        if export is None:  # an index's own export needs no calibration sample again
            check_backend(backend, precision, "dense", calibration)
        if backend != "torch" and encoder != "sentence-transformers":
            raise ValueError(f"backend={backend} exports a sentence-transformers model; encoder={encoder} runs its own")
        self.model, self.encoder, self.backend = model, encoder, backend
        self.sentence: SentenceEncoder | None = None
        self.batch_size = batch_size
        self.query_prefix, self.document_prefix = query_prefix, document_prefix
        self._model: Any
        if encoder == "llama.cpp":
            llama_cpp = optional_import("llama_cpp")
            context = max_length or 2048  # nomic's GGUF was trained to 2048 tokens per text here
            self.window = context
            poolings = {None: llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED, "mean": llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                        "cls": llama_cpp.LLAMA_POOLING_TYPE_CLS, "last": llama_cpp.LLAMA_POOLING_TYPE_LAST}  # fmt: skip
            if pooling not in poolings:
                raise ValueError(f"pooling must be mean, cls or last (or unset: the file's own), not {pooling!r}")
            self._model = llama_cpp.Llama(
                model_path=resolve_model(model), embedding=True, n_ctx=context, n_batch=context, n_ubatch=context,
                n_threads=threads, pooling_type=poolings[pooling], verbose=False,
            )  # fmt: skip
        elif backend != "torch":
            self.sentence = SentenceEncoder(
                resolve_model(model), backend, precision, batch_size, max_length, calibration, threads, export
            )
        else:
            st = optional_import("sentence_transformers")
            self._model = st.SentenceTransformer(resolve_model(model), device=device)
            if max_length is not None:
                self._model.max_seq_length = max_length

    def token_counts(self, texts: Sequence[str], prefix: str) -> list[int]:
        """Each prefixed text's length in llama.cpp's tokens, before truncation (the GGUF encoder only)."""
        if self.encoder != "llama.cpp":
            raise NotImplementedError(
                "token_counts is for encoder=llama.cpp; sentence encoders count with their tokenizer"
            )
        return [len(self._model.tokenize((prefix + t).encode("utf-8"))) for t in texts]

    @property
    def dimension(self) -> int:
        if self.encoder == "llama.cpp":
            return int(self._model.n_embd())
        if self.sentence is not None:
            return self._config_width()  # mean or cls pooling: the hidden width
        return int(self._model.get_embedding_dimension())

    def _config_width(self) -> int:
        transformers = optional_import("transformers")
        return int(transformers.AutoConfig.from_pretrained(resolve_model(self.model)).hidden_size)

    def encode(self, texts: Sequence[str], prefix: str, progress: bool = False) -> Any:
        import numpy as np

        if self.encoder == "llama.cpp":
            # one text per call: llama.cpp pools each sequence alone, so results do not depend on batching
            rows = [self._model.embed(prefix + t, normalize=True, truncate=True) for t in texts]
            if rows and isinstance(rows[0][0], list):
                raise ValueError(f"{self.model} gives one vector per token: pass pooling=mean, cls or last")
            return np.ascontiguousarray(np.asarray(rows, dtype=np.float32))
        if self.sentence is not None:
            return np.ascontiguousarray(self.sentence.encode([prefix + t for t in texts]), dtype=np.float32)
        vectors = self._model.encode(
            [prefix + t for t in texts], batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=progress,
        )  # fmt: skip
        return np.ascontiguousarray(vectors, dtype=np.float32)


class DenseRetriever(Retriever):
    name = "dense"
    libraries = ("torch", "sentence-transformers", "transformers", "faiss-cpu")

    neutral_params = MappingProxyType({**NEUTRAL, "precision": "float32"})

    @classmethod
    def libraries_for(cls, params: Mapping[str, Any]) -> tuple[str, ...]:
        if params.get("encoder") == "llama.cpp":
            return ("llama_cpp_python", "faiss-cpu")
        return cls.libraries + backend_libraries(str(params.get("backend", "torch")))

    search_params = frozenset({"ef_search", "batch_size"})

    def __init__(
        self,
        index_dir: str | Path,
        k: int = 1000,
        ef_search: int = 128,
        batch_size: int = 32,
        device: str | None = None,
    ):
        self.index_dir = Path(index_dir)
        meta = IndexMeta.load(index_dir)
        self.params = dict(meta.params)
        self.k, self.ef_search = k, ef_search
        faiss = optional_import("faiss")
        self._index: Any = faiss.read_index(str(self.index_dir / "index.faiss"))
        if self.params["index"] == "hnsw":
            self._index.hnsw.efSearch = ef_search
        self._docids = [text for _, text in iter_lines(self.index_dir / "docids.txt")]
        self.encoder = DenseEncoder(
            self.params["model"], batch_size, self.params.get("max_length"), device,
            self.params.get("query_prefix", ""), self.params.get("document_prefix", ""),
            self.params.get("encoder", "sentence-transformers"), pooling=self.params.get("pooling"),
            backend=self.params.get("backend", "torch"), precision=self.params.get("precision", "float32"),
            export=self.index_dir / "export" if (self.index_dir / "export").is_dir() else None,
        )  # fmt: skip

    @classmethod
    def build(
        cls,
        documents: Iterable[Document],
        index_dir: str | Path,
        corpus: dict[str, Any] | None = None,
        model: str = "minilm",
        index: IndexKind = "flat",
        hnsw_m: int = 32,
        ef_construction: int = 200,
        batch_size: int = 32,
        max_length: int | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        device: str | None = None,
        encoder: EncoderKind = "sentence-transformers",
        threads: int | None = None,
        pooling: str | None = None,
        backend: Backend = "torch",
        precision: Literal["float32", "int8"] = "float32",
        calibration: int = 0,
        **search_options: Any,
    ) -> DenseRetriever:
        """Encode every document's title and text and add it to a faiss index in ``index_dir``.

        With ``backend=onnx|openvino`` the index keeps the export its documents were encoded with
        (``export/``), so queries are encoded by the same model, calibration included.
        """
        from tqdm import tqdm

        faiss = optional_import("faiss")
        if index not in ("flat", "hnsw"):
            raise ValueError(f"index must be 'flat' or 'hnsw', not {index!r}")
        embedder = DenseEncoder(
            model, batch_size, max_length, device, query_prefix, document_prefix, encoder, threads, pooling,
            backend, precision, calibration,
        )  # fmt: skip
        dim = embedder.dimension
        if index == "flat":
            faiss_index = faiss.IndexFlatIP(dim)
        else:
            faiss_index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            faiss_index.hnsw.efConstruction = ef_construction
        index_dir = Path(index_dir)
        index_dir.mkdir(parents=True, exist_ok=True)
        count = 0
        with atomic_writer(index_dir / "docids.txt") as ids, tqdm(unit="doc", desc="encoding", file=sys.stderr) as bar:
            for chunk in _chunks(documents, max(_CHUNK, calibration)):  # static int8 calibrates on the first
                faiss_index.add(embedder.encode([d.full_text for d in chunk], document_prefix))
                for doc in chunk:
                    if "\n" in doc.docid:
                        raise ValueError(f"docid {doc.docid!r} contains a newline")
                    ids.write(doc.docid + "\n")
                count += len(chunk)
                bar.update(len(chunk))
        tmp = index_dir / ".index.faiss.tmp"
        faiss.write_index(faiss_index, str(tmp))
        tmp.replace(index_dir / "index.faiss")
        params = {
            "model": model, "index": index, "dimension": dim, "max_length": max_length,
            "query_prefix": query_prefix, "document_prefix": document_prefix, "normalized": True,
        }  # fmt: skip
        if encoder != "sentence-transformers":
            params["encoder"] = encoder  # absent means sentence-transformers: older indexes still load
        if pooling is not None:
            params["pooling"] = pooling
        if backend != "torch":  # absent means torch: older indexes still load
            params |= {"backend": backend, "precision": precision, "calibration": calibration}
            assert embedder.sentence is not None and embedder.sentence.runtime is not None
            keep_export(embedder.sentence.runtime, index_dir / "export")
        if index == "hnsw":
            params |= {"hnsw_m": hnsw_m, "ef_construction": ef_construction}
        corpus_info = {**(corpus or {}), "documents": count}
        runtime = {"llama.cpp": ("llama_cpp_python",), "onnx": ("onnxruntime", "onnx", "torch"),
                   "openvino": ("openvino", "nncf", "onnx", "torch")}.get(
            encoder if encoder == "llama.cpp" else backend, ("sentence-transformers", "torch")
        )  # fmt: skip
        new_meta(cls.name, params, corpus_info, *runtime, "faiss-cpu").save(index_dir)
        return cls(index_dir, batch_size=batch_size, device=device, **search_options)

    @classmethod
    def load(cls, index_dir: str | Path, **options: Any) -> DenseRetriever:
        return cls(index_dir, **options)

    def retrieve(self, queries: Sequence[Query], k: int | None = None) -> Run:
        if not queries:
            return Run(name=self.name)
        depth = min(k or self.k, len(self._docids))
        vectors = self.encoder.encode([q.text for q in queries], self.encoder.query_prefix)
        scores, positions = self._index.search(vectors, depth)
        rankings = []
        for query, row_scores, row_positions in zip(queries, scores, positions, strict=True):
            candidates = [
                Candidate(self._docids[p], float(s)) for s, p in zip(row_scores, row_positions, strict=True) if p >= 0
            ]
            rankings.append(Ranking.sorted(query.qid, candidates))
        return Run.from_rankings(rankings, name=f"dense({self.params['model']}, {self.params['index']})")
