"""rerank: neural retrieval and reranking, batch first, honest about cost.

``import rerank`` is light: it loads no torch, transformers or pyserini.
Methods are found by name in the registry and import their libraries when built::

    from rerank import load_reranker
    reranker = load_reranker("bi-encoder(model=minilm)")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

__version__ = "0.1.0"

_LAZY = {
    "Reranker": "rerank.base",
    "RerankResult": "rerank.base",
    "PointwiseReranker": "rerank.base",
    "Cost": "rerank.cost",
    "MethodSpec": "rerank.spec",
    "PipelineSpec": "rerank.spec",
    "parse_spec": "rerank.spec",
    "parse_pipeline": "rerank.spec",
    "Executor": "rerank.core.executor",
    "run": "rerank.core.api",
    "RunResult": "rerank.core.api",
    "load_reranker": "rerank.registry",
    "method_names": "rerank.registry",
}

if TYPE_CHECKING:
    from rerank.base import PointwiseReranker, Reranker, RerankResult
    from rerank.core.api import RunResult, run
    from rerank.core.executor import Executor
    from rerank.cost import Cost
    from rerank.registry import load_reranker, method_names
    from rerank.spec import MethodSpec, PipelineSpec, parse_pipeline, parse_spec


def pipeline(spec: Any) -> PipelineSpec:
    """The pipeline spec of a string (``"bm25 % 100 >> bi-encoder(model=minilm)"``), of the operator
    algebra's result, or of live rerankers and pipelines; equal pipelines give equal specs."""
    from rerank.spec import as_pipeline

    return as_pipeline(spec)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rerank' has no attribute {name!r}")


__all__ = [
    "BackendError",
    "Cost",
    "DatasetNotFoundError",
    "DocumentNotFoundError",
    "Executor",
    "InvalidSpecError",
    "MethodSpec",
    "MissingDependencyError",
    "ModelNotFoundError",
    "ModelPackNotInstalledError",
    "ParseError",
    "PipelineSpec",
    "PointwiseReranker",
    "RerankError",
    "RerankResult",
    "Reranker",
    "RunResult",
    "__version__",
    "load_reranker",
    "method_names",
    "parse_pipeline",
    "parse_spec",
    "pipeline",
    "run",
]
