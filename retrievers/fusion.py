"""Fusing runs: reciprocal rank fusion and normalised score interpolation, over any number of runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from data.records import Candidate, Query, Ranking, Run
from retrievers.base import Retriever

Normalization = Literal["minmax", "zscore", "none"]


def _qids(runs: Sequence[Run]) -> list[str]:
    """Every query of any run, in first-seen order."""
    return list(dict.fromkeys(qid for run in runs for qid in run.qids))


def reciprocal_rank_fusion(runs: Sequence[Run], k: int = 60, depth: int | None = None, name: str = "") -> Run:
    """RRF (Cormack et al., 2009): score = sum over runs of 1 / (k + rank), ranks from 1.

    ``depth`` limits how many candidates of each run take part.
    """
    if not runs:
        raise ValueError("fusion needs at least one run")
    if k < 0:
        raise ValueError(f"the RRF constant k must be non-negative, not {k}")
    rankings = []
    for qid in _qids(runs):
        scores: dict[str, float] = {}
        for run in runs:
            if qid not in run:
                continue
            for rank, candidate in enumerate(run[qid].candidates[:depth], start=1):
                scores[candidate.docid] = scores.get(candidate.docid, 0.0) + 1.0 / (k + rank)
        rankings.append(Ranking.sorted(qid, (Candidate(d, s) for d, s in scores.items())))
    return Run.from_rankings(rankings, name=name or f"rrf(k={k})")


def _normalise(values: list[float], how: Normalization) -> list[float]:
    if how == "none" or not values:
        return values
    if how == "minmax":
        low, high = min(values), max(values)
        return [1.0 if high == low else (v - low) / (high - low) for v in values]
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [0.0 if spread == 0 else (v - mean) / spread for v in values]


def interpolate(
    runs: Sequence[Run], weights: Sequence[float] | None = None, normalization: Normalization = "minmax", name: str = ""
) -> Run:
    """Weighted sum of per-query normalised scores.

    A document missing from a run's list gets that run's lowest normalised score
    for the query (it ranked below everything the run returned).
    """
    if not runs:
        raise ValueError("fusion needs at least one run")
    weights = list(weights) if weights is not None else [1.0 / len(runs)] * len(runs)
    if len(weights) != len(runs):
        raise ValueError(f"{len(weights)} weights for {len(runs)} runs")
    rankings = []
    for qid in _qids(runs):
        per_run: list[dict[str, float]] = []
        for run in runs:
            candidates = run[qid].candidates if qid in run else ()
            normalised = _normalise([c.score for c in candidates], normalization)
            per_run.append({c.docid: s for c, s in zip(candidates, normalised, strict=True)})
        docids = dict.fromkeys(d for scores in per_run for d in scores)
        fused = []
        for docid in docids:
            total = 0.0
            for weight, scores in zip(weights, per_run, strict=True):
                floor = min(scores.values()) if scores else 0.0
                total += weight * scores.get(docid, floor)
            fused.append(Candidate(docid, total))
        rankings.append(Ranking.sorted(qid, fused))
    return Run.from_rankings(rankings, name=name or f"interpolate({normalization})")


class FusionRetriever(Retriever):
    """Several retrievers queried together and fused (RRF by default)."""

    name = "fusion"

    def __init__(
        self,
        retrievers: Sequence[Retriever],
        method: Literal["rrf", "interpolate"] = "rrf",
        rrf_k: int = 60,
        weights: Sequence[float] | None = None,
        normalization: Normalization = "minmax",
        k: int = 1000,
    ):
        self.retrievers, self.method, self.rrf_k = list(retrievers), method, rrf_k
        self.weights, self.normalization, self.k = weights, normalization, k

    def retrieve(self, queries: Sequence[Query], k: int | None = None) -> Run:
        depth = k or self.k
        runs = [r.retrieve(queries, depth) for r in self.retrievers]
        if self.method == "rrf":
            fused = reciprocal_rank_fusion(runs, self.rrf_k)
        else:
            fused = interpolate(runs, self.weights, self.normalization)
        return fused.cut(depth)


# PyTerrier's Concatenate.epsilon: the gap between the left's lowest score and the rest's best.
CONCAT_EPSILON = 1e-4


def concatenate(runs: Sequence[Run], name: str = "") -> Run:
    """PyTerrier's ``A ^ B`` (``pyterrier._ops.Concatenate``), folded left over the runs: the first run's
    ranking, then each next run's candidates not ranked yet, their scores shifted (``s - best + lowest -
    epsilon``, PyTerrier's arithmetic) so they keep their order and gaps below everything before them.

    One deliberate difference: where the left has no candidates for a query, PyTerrier drops the right's too
    (an inner merge on the left's lowest score); here the right's ranking is kept as it is, since nothing
    ranks above it.
    """
    if not runs:
        raise ValueError("concatenation needs at least one run")
    for n, run in enumerate(runs[1:], start=2):  # a query the left lacks is fine (nothing found); no shared one is not
        if runs[0].qids and run.qids and not set(runs[0].qids) & set(run.qids):
            raise ValueError(
                f"concat: member {n} ranks queries ({', '.join(run.qids[:3])}, ...) that member 1 does not "
                f"({', '.join(runs[0].qids[:3])}, ...): pipelines over different topics cannot be concatenated"
            )
    rankings = []
    for qid in _qids(runs):
        kept: list[Candidate] = []
        for run in runs:
            ranked = {c.docid for c in kept}
            rest = [c for c in (run[qid].candidates if qid in run else ()) if c.docid not in ranked]
            if kept and rest:
                lowest, best = min(c.score for c in kept), max(c.score for c in rest)
                rest = [Candidate(c.docid, c.score - best + lowest - CONCAT_EPSILON, c.text) for c in rest]
            kept += rest
        rankings.append(Ranking.sorted(qid, kept))
    return Run.from_rankings(rankings, name=name or "concat")
