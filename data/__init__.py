"""rerank's data layer: records, file formats, document stores, datasets.

Only the standard library is imported here, so ``import data`` is instant.
"""

from data.datasets import Dataset, DatasetInfo, load, registered
from data.docstore import DocumentStore, MemoryDocumentStore, SqliteDocumentStore
from data.errors import (
    BackendError,
    DatasetNotFoundError,
    DocumentNotFoundError,
    InvalidSpecError,
    MissingDependencyError,
    ModelNotFoundError,
    ModelPackNotInstalledError,
    ParseError,
    RerankError,
)
from data.jsonl import iter_candidates_jsonl, read_candidates_jsonl, write_candidates_jsonl
from data.rankllm import iter_rankllm_requests, read_rankllm_requests, write_rankllm_requests
from data.records import Candidate, Document, Qrels, Query, Ranking, RerankRequest, Run
from data.trec import (
    iter_run_groups,
    iter_run_rankings,
    read_trec_qrels,
    read_trec_run,
    write_trec_qrels,
    write_trec_run,
)
from data.tsv import iter_topics, read_topics, write_topics

__all__ = [
    "BackendError",
    "Candidate",
    "Dataset",
    "DatasetInfo",
    "DatasetNotFoundError",
    "Document",
    "DocumentNotFoundError",
    "DocumentStore",
    "InvalidSpecError",
    "MemoryDocumentStore",
    "MissingDependencyError",
    "ModelNotFoundError",
    "ModelPackNotInstalledError",
    "ParseError",
    "Qrels",
    "Query",
    "Ranking",
    "RerankError",
    "RerankRequest",
    "Run",
    "SqliteDocumentStore",
    "iter_candidates_jsonl",
    "iter_rankllm_requests",
    "iter_run_groups",
    "iter_run_rankings",
    "iter_topics",
    "load",
    "read_candidates_jsonl",
    "read_rankllm_requests",
    "read_topics",
    "read_trec_qrels",
    "read_trec_run",
    "registered",
    "write_candidates_jsonl",
    "write_rankllm_requests",
    "write_topics",
    "write_trec_qrels",
    "write_trec_run",
]
