"""The dataset registry: ``load("beir/scifact")`` and friends.

A dataset lives in the data directory (``data.config.data_dir``) in the layout
its community publishes: BEIR folders under ``beir/<name>``, the TREC DL passage
sets under ``msmarco-passage/trec-dl-<year>`` beside ``passages.tsv.gz``. Users
with a network can download BEIR sets into the same place; DL topics and qrels
fall back to the copies inside pyserini's jar when the folder lacks them.
Everything is read lazily: ``load`` itself only checks that the folder exists.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from data.beir import find_file, iter_beir_corpus, read_beir_qrels, read_beir_queries
from data.config import cache_dir, data_dir
from data.docstore import DocumentStore, cached_store
from data.errors import DatasetNotFoundError
from data.records import Document, Qrels, Query, RerankRequest, Run
from data.trec import read_trec_qrels, read_trec_run
from data.tsv import iter_tsv_documents, read_topics

Layout = Literal["beir", "trec-dl"]

DL_MEASURES = ("nDCG@10", "RR(rel=2)@10", "R(rel=2)@100")
BEIR_MEASURES = ("nDCG@10", "R@100")
DL_RUNS = ("bm25", "bm25-rm3", "splade-pp-ed", "tasb", "openai-ada2", "repllama")


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """What the registry knows about a dataset; ``path`` is relative to the data directory."""

    name: str
    layout: Layout
    path: str
    measures: tuple[str, ...]
    runs: tuple[tuple[str, str], ...] = ()  # (run name, file relative to the dataset folder)
    candidates: tuple[tuple[str, str], ...] = ()  # (run name, RankLLM JSON with texts)
    split: str = "test"
    downloadable: bool = False
    pyserini_files: tuple[str, str] | None = None  # (topics, qrels) inside pyserini's jar
    packaged: bool = False  # ships inside this package instead of the data directory
    description: str = ""


_REGISTRY: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> DatasetInfo:
    if info.name in _REGISTRY:
        raise ValueError(f"dataset {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


def registered() -> list[str]:
    return sorted(_REGISTRY)


def info(name: str) -> DatasetInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DatasetNotFoundError(f"unknown dataset {name!r}; known: {', '.join(registered())}") from None


@dataclass(eq=False)
class Dataset:
    """A registered dataset resolved to a folder; every part loads on first use."""

    info: DatasetInfo
    root: Path
    data_root: Path

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def measures(self) -> tuple[str, ...]:
        return self.info.measures

    @property
    def runs(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.info.runs)

    def queries(self) -> list[Query]:
        if self.info.layout == "beir":
            return read_beir_queries(self.root, self.qrels())
        return read_topics(self._dl_file("queries.tsv", 0))

    @functools.cached_property
    def _qrels(self) -> Qrels:
        if self.info.layout == "beir":
            return read_beir_qrels(find_file(self.root / "qrels", f"{self.info.split}.tsv"))
        return read_trec_qrels(self._dl_file("qrels.txt", 1))

    def qrels(self) -> Qrels:
        return self._qrels

    def _dl_file(self, name: str, which: int) -> Path:
        path = self.root / name
        if path.is_file():
            return path
        if self.info.pyserini_files is None:
            raise DatasetNotFoundError(f"{path} is missing")
        from data.pyserini_resources import extract_resource

        jar_name = self.info.pyserini_files[which]
        return extract_resource(jar_name, cache_dir() / "pyserini-resources" / jar_name)

    def iter_documents(self) -> Iterator[Document]:
        if self.info.layout == "beir":
            return iter_beir_corpus(find_file(self.root, "corpus.jsonl"))
        return iter_tsv_documents(self._passages_file())

    def _passages_file(self) -> Path:
        return find_file(self.root.parent, "passages.tsv")

    @functools.cached_property
    def _docs(self) -> DocumentStore:
        source = find_file(self.root, "corpus.jsonl") if self.info.layout == "beir" else self._passages_file()
        return cached_store(source, self.iter_documents(), cache_dir())

    def docs(self) -> DocumentStore:
        """The document store, built into the cache directory on first use."""
        return self._docs

    def run_path(self, run: str) -> Path:
        files = dict(self.info.runs)
        if run not in files:
            raise DatasetNotFoundError(f"dataset {self.name!r} has no run {run!r}; available: {', '.join(files)}")
        path = self.root / files[run]
        if not path.is_file():
            raise DatasetNotFoundError(f"run {run!r} of {self.name!r} is missing: {path}")
        return path

    def run(self, run: str) -> Run:
        return read_trec_run(self.run_path(run), name=run)

    def candidates(self, run: str) -> list[RerankRequest]:
        """A run with its texts, from the RankLLM JSON the dataset ships for it."""
        from data.rankllm import read_rankllm_requests

        files = dict(self.info.candidates)
        if run not in files:
            raise DatasetNotFoundError(f"dataset {self.name!r} ships no candidate texts for run {run!r}")
        return read_rankllm_requests(self.root / files[run])


def load(name: str, data_dir_override: str | Path | None = None, *, download: bool = False) -> Dataset:
    """Resolve a registered dataset in the data directory (downloading BEIR sets if asked)."""
    meta = info(name)
    base = Path(__file__).parent if meta.packaged else data_dir(data_dir_override)
    root = base / meta.path
    if not root.is_dir():
        if meta.downloadable and download:
            from data.download import download_beir

            download_beir(meta.path.split("/")[-1], root)
        else:
            hint = " (pass download=True or --download to fetch it)" if meta.downloadable else ""
            raise DatasetNotFoundError(
                f"dataset {name!r} not found at {root}; set $RERANK_DATA_DIR or --data-dir to the folder holding "
                f"{meta.path}/{hint}"
            )
    return Dataset(meta, root, base)


def _dl(year: int, jar_topics: str) -> DatasetInfo:
    return DatasetInfo(
        name=f"msmarco-passage/trec-dl-{year}",
        layout="trec-dl",
        path=f"msmarco-passage/trec-dl-{year}",
        measures=DL_MEASURES,
        runs=tuple((run, f"runs/{run}.top100.trec.gz") for run in DL_RUNS),
        candidates=(("bm25", "runs/bm25.top100.rankllm.json.gz"),),
        pyserini_files=(jar_topics, f"qrels.dl{year % 100}-passage.txt"),
        description=f"TREC Deep Learning {year} passage task (judged queries, graded 0-3)",
    )


register(_dl(2019, "topics.dl19-passage.txt"))
register(_dl(2020, "topics.dl20.txt"))
register(
    DatasetInfo(
        name="beir/scifact",
        layout="beir",
        path="beir/scifact",
        measures=BEIR_MEASURES,
        runs=(("bm25-flat", "runs/bm25-flat.pyserini.top100.trec.gz"),),
        downloadable=True,
        description="BEIR SciFact, test split (300 queries, 5,183 abstracts)",
    )
)
for _name in ("nfcorpus", "fiqa", "arguana", "scidocs", "trec-covid", "quora", "nq", "hotpotqa", "fever"):
    register(DatasetInfo(f"beir/{_name}", "beir", f"beir/{_name}", BEIR_MEASURES, downloadable=True))
register(
    DatasetInfo(
        name="example",
        layout="beir",
        path="example",
        measures=BEIR_MEASURES,
        runs=(("bm25", "runs/bm25.trec"),),
        packaged=True,
        description="A small collection written for this project (ships inside the package)",
    )
)
