"""Control rankers: what an ordering that knows nothing about relevance scores.

A reranker that lands near ``random`` has learned nothing the first stage did not already
know, whatever its cost. ``random(seed=0)`` gives each candidate a score drawn from a hash of
(seed, qid, docid), so the order is a uniform random permutation that depends on neither the
order candidates arrive in nor how queries are batched: a resumed or re-batched run writes the
same file. It is registered through the ``rerank.methods`` plugin group (``pyproject.toml``),
the way third-party methods are, so ``rerank run --reranker "random(seed=0)"`` and the
leaderboard both reach it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

from data.errors import SpecTypeError
from data.records import RerankRequest
from rerank.base import Reranker, RerankResult, scored_ranking
from rerank.cost import Cost


def uniform(seed: int, qid: str, docid: str) -> float:
    """A value in [0, 1), fixed by its arguments and spread uniformly over them."""
    digest = hashlib.blake2b(f"{seed}\0{qid}\0{docid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class RandomReranker(Reranker):
    """Orders each query's candidates uniformly at random (reproducibly, per seed); no model, no calls."""

    method = "random"

    def __init__(self, seed: int = 0):
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise SpecTypeError(f"random: seed must be an integer, not {seed!r}")
        self.seed = seed

    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        results = []
        for request in requests:
            start = time.perf_counter()
            scores = [uniform(self.seed, request.query.qid, c.docid) for c in request.candidates]
            ranking = scored_ranking(request, scores)
            results.append(RerankResult(ranking, Cost(seconds=time.perf_counter() - start)))
        return results
