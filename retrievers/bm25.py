"""BM25 on Lucene through pyserini.

The default document representation is BEIR's "flat" setting: title and text
in one field (``title + " " + text``), Lucene's default English analyzer, and
k1=0.9, b=0.4. It reproduces pyserini's published BEIR numbers exactly.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from data.records import Document, Query, Run
from retrievers.base import IndexMeta, Retriever, new_meta
from retrievers.lucene import build_lucene_index, require_pyserini, search_batch


class BM25Retriever(Retriever):
    name = "bm25"
    libraries = ("pyserini",)
    search_params = frozenset({"k1", "b", "threads"})

    def __init__(self, index_dir: str | Path, k1: float = 0.9, b: float = 0.4, k: int = 1000, threads: int = 2):
        require_pyserini()
        self.index_dir = Path(index_dir)
        self.k1, self.b, self.k, self.threads = k1, b, k, threads
        self._searcher: Any = None

    @classmethod
    def build(
        cls,
        documents: Iterable[Document],
        index_dir: str | Path,
        corpus: dict[str, Any] | None = None,
        threads: int = 2,
        **search_options: Any,
    ) -> BM25Retriever:
        """Index documents (title and text in one field) into ``index_dir``."""
        require_pyserini()
        index_dir = Path(index_dir)
        index_dir.mkdir(parents=True, exist_ok=True)
        staging = index_dir / ".collection"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        count = 0
        with open(staging / "docs.jsonl", "w", encoding="utf-8") as out:
            for doc in documents:
                out.write(json.dumps({"id": doc.docid, "contents": doc.full_text}, ensure_ascii=False) + "\n")
                count += 1
        lucene = index_dir / "lucene"
        shutil.rmtree(lucene, ignore_errors=True)
        build_lucene_index(
            staging, lucene, "JsonCollection", ["--storePositions", "--storeDocvectors", "--storeRaw"], threads
        )
        shutil.rmtree(staging)
        fields = {
            "fields": "flat (title + ' ' + text)",
            "analyzer": "Lucene default English (Porter stemming, stopwords)",
        }
        new_meta(cls.name, fields, {**(corpus or {}), "documents": count}, "pyserini").save(index_dir)
        return cls(index_dir, threads=threads, **search_options)

    @classmethod
    def load(cls, index_dir: str | Path, **options: Any) -> BM25Retriever:
        IndexMeta.load(index_dir)
        return cls(index_dir, **options)

    @property
    def searcher(self) -> Any:
        if self._searcher is None:
            from pyserini.search.lucene import LuceneSearcher

            self._searcher = LuceneSearcher(str(self.index_dir / "lucene"))
            self._searcher.set_bm25(self.k1, self.b)
        return self._searcher

    def retrieve(self, queries: Sequence[Query], k: int | None = None) -> Run:
        return search_batch(self.searcher, queries, k or self.k, self.threads, f"bm25(k1={self.k1}, b={self.b})")
