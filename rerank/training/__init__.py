"""Training rerankers: synthetic queries (``queries``) and cross-encoder training with distillation (``trainer``).

Nothing heavy is imported here: ``rerank.training.generate_queries`` and ``rerank.training.train`` load
their modules when first used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainSettings", "generate_queries", "train"]


def __getattr__(name: str) -> Any:
    if name == "generate_queries":
        from rerank.training.queries import generate_queries

        return generate_queries
    if name in ("train", "TrainSettings"):
        from rerank.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'rerank.training' has no attribute {name!r}")
