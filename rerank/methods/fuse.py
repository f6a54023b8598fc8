"""Fusion of rerankers: several methods rerank the same candidates and their rankings are fused.

    run(name=bm25) % 100 >> fuse(rerankers=[bi-encoder(model=minilm), bi-encoder(model=...)], method=rrf)

``method=rrf`` is reciprocal rank fusion (Cormack et al., 2009: the sum of 1 / (k + rank)), which needs
no weights; ``method=interpolate`` is the weighted sum of each member's scores normalised per query
(``minmax``, ``zscore`` or ``none``), both from ``retrievers.fusion``. The output is a permutation of the
input: every member reranks every candidate. Members keep their own model-output cache entries, so a
fused stage reuses what each member computed alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

from data.records import Candidate, Ranking, RerankRequest, Run
from rerank.base import Cost, Reranker, RerankResult, scored_ranking
from rerank.cache import OutputCache


class FusedReranker(Reranker):
    """Reranks with every member and fuses their rankings (RRF, or interpolation of normalised scores)."""

    method = "fuse"
    nested_params = ("rerankers",)

    def __init__(
        self,
        rerankers: Sequence[str] = (),
        method: Literal["rrf", "interpolate"] = "rrf",
        k: int = 60,
        weights: Sequence[float] | None = None,
        normalization: Literal["minmax", "zscore", "none"] = "minmax",
    ):
        from rerank.registry import load_reranker

        self._check(rerankers, method, k, weights)
        self.fusion, self.k, self.weights, self.normalization = method, k, weights, normalization
        self.members: list[Any] = [load_reranker(spec) for spec in rerankers]

    @staticmethod
    def _check(rerankers: Sequence[Any], method: str, k: int, weights: Sequence[float] | None) -> None:
        if len(rerankers) < 2:
            raise ValueError(f"rerankers: fuse takes two or more methods, not {len(rerankers)}")
        if method not in ("rrf", "interpolate"):
            raise ValueError(f"method: rrf or interpolate, not {method!r}")
        if k < 0:
            raise ValueError(f"k: the RRF constant is non-negative, not {k}")
        if weights is not None and (method != "interpolate" or len(weights) != len(rerankers)):
            raise ValueError(f"weights: one per reranker ({len(rerankers)}), and only with method=interpolate")

    @classmethod
    def check_params(cls, params: dict[str, Any], where: str) -> None:
        from rerank.registry import check_reranker

        super().check_params(params, where)
        members = params.get("rerankers", ())
        cls._check(members, params.get("method", "rrf"), params.get("k", 60), params.get("weights"))
        for member in members:
            check_reranker(member)  # each member, checked as if it stood alone

    @property
    def batch_invariant(self) -> bool:
        return all(member.batch_invariant for member in self.members)

    def use_cache(self, cache: OutputCache | None) -> None:
        for member in self.members:
            if hasattr(member, "use_cache"):
                member.use_cache(cache)

    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        from retrievers.fusion import interpolate, reciprocal_rank_fusion

        started = time.perf_counter()
        ranked = [member.rerank(requests) for member in self.members]
        # each member's rankings as a run keyed by request position (two requests may share a qid)
        runs = [
            Run.from_rankings(Ranking(str(i), tuple(Candidate(c.docid, c.score) for c in r.ranking.candidates))
                              for i, r in enumerate(results))
            for results in ranked
        ]  # fmt: skip
        if self.fusion == "rrf":
            fused = reciprocal_rank_fusion(runs, self.k)
        else:
            fused = interpolate(runs, self.weights, self.normalization)
        elapsed = time.perf_counter() - started
        results = []
        for i, request in enumerate(requests):
            scores = {c.docid: c.score for c in fused[str(i)].candidates}
            cost = sum((member[i].cost for member in ranked), Cost())
            own = elapsed - sum(member[i].cost.seconds for member in ranked)
            results.append(RerankResult(scored_ranking(request, [scores[c.docid] for c in request.candidates]),
                                        cost + Cost(seconds=max(own, 0.0) / len(requests))))  # fmt: skip
        return results
