"""What a reranker gives for one request: the ranking and what it cost (``rerank.base`` re-exports it).

A module of its own so the batch loop (``rerank.core.loop``), which the composed pipeline runs in, needs
no reranker base class: ``rerank.base`` builds pipelines, so importing it from there would be a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from data.records import Ranking
from rerank.cost import Cost


@dataclass(frozen=True, slots=True)
class RerankResult:
    ranking: Ranking
    cost: Cost
