"""The pipeline core: one way to run a pipeline, in four parts.

- ``plan``: a spec checked and resolved once into its stages (each prefix, each fusion member), with
  each stage's kind, and the ``Source`` it runs over;
- ``keys``: what determines a stage's output (``stage_key``), and the names derived from it;
- ``store``: stage outputs and manifests on disk;
- ``loop``: the one checkpointed batch loop that retrieval and reranking stages run in (``jobs`` runs
  it into files; in memory it needs no store).

``Executor`` runs a plan against a store (reusing unchanged stages); ``run`` is the Python call
behind ``rerank run``. The same batch loop runs in memory for composed pipelines and the service
(``rerank.compose``), and on Ray through the engines of ``rerank.engine``. See the glossary in
docs/design.md: a *pipeline* is the whole spec, a *stage* one of its prefixes, a *job* one call
that writes an output, a *run file* a TREC run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY = {
    "Executor": "rerank.core.executor",
    "Source": "rerank.core.plan",
    "check_pipeline": "rerank.core.plan",
    "source_for": "rerank.core.plan",
    "source_for_dataset": "rerank.core.plan",
    "StageOutput": "rerank.core.store",
    "StageStatus": "rerank.core.store",
    "RunResult": "rerank.core.api",
    "run": "rerank.core.api",
    "compute": "rerank.core.api",
}

if TYPE_CHECKING:
    from rerank.core.api import RunResult, compute, run
    from rerank.core.executor import Executor
    from rerank.core.plan import Source, check_pipeline, source_for, source_for_dataset
    from rerank.core.store import StageOutput, StageStatus


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rerank.core' has no attribute {name!r}")


__all__ = [
    "Executor",
    "RunResult",
    "Source",
    "StageOutput",
    "StageStatus",
    "check_pipeline",
    "compute",
    "run",
    "source_for",
    "source_for_dataset",
]
