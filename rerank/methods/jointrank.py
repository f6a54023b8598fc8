"""JointRank (Dedov, 2025, "JointRank: Rank Large Sets with Single Queries").

The candidates are covered by overlapping blocks (a design in which every
candidate sits in ``replicas`` blocks of ``block_size``), each block is ranked
on its own by any reranking method (``inner``, by default FIRST), all blocks of
all queries in one batch, so the work is parallel rather than a sequential
sliding window. Each block's order gives pairwise wins (a passage beats everything
ranked below it in the block), and a global order comes from aggregating them:
``winrate`` (wins over comparisons) or ``pagerank`` (losers link to winners).

The design (``design=shuffles``): ``replicas`` rounds, each a seeded shuffle cut into
blocks; a short last block is filled up with other candidates, so every block has
``block_size``. ``design=reference`` builds the blocks as V3RGANz/jointrank does.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from data.records import RerankRequest
from rerank.base import Reranker, RerankResult, scored_ranking
from rerank.cache import OutputCache
from rerank.cost import Cost


def block_design(n: int, block_size: int, replicas: int, rng: random.Random) -> list[list[int]]:
    """Blocks of ``min(block_size, n)`` candidates; each candidate is in at least ``replicas`` of them."""
    size = min(block_size, n)
    blocks: list[list[int]] = []
    for _ in range(replicas if n > 1 else 0):
        order = list(range(n))
        rng.shuffle(order)
        for start in range(0, n, size):
            block = order[start : start + size]
            if len(block) < size:
                others = [c for c in order[:start] if c not in block]
                block += rng.sample(others, size - len(block))
            blocks.append(block)
    return blocks


def reference_design(n: int, block_size: int, replicas: int, rng: random.Random) -> list[list[int]]:
    """The blocks V3RGANz/jointrank's evaluation builds (``reranker_factory.get_joint``), its random calls
    drawn from ``rng`` in the same order: with 2 replicas and n = block_size², a Latin square's rows and
    columns (no randomness); otherwise replica pools, ``replicas · n // block_size`` blocks (at least one)
    cut from a shuffled pool that is refilled, when it runs short, with the candidates it no longer holds.
    With n ≤ block_size: ``replicas`` shuffles of all n."""
    if n < 2:
        return []
    if replicas == 2 and n == block_size * block_size:
        rows = [list(range(r * block_size, (r + 1) * block_size)) for r in range(block_size)]
        return rows + [list(column) for column in zip(*rows, strict=True)]
    if n <= block_size:
        shuffles = [list(range(n)) for _ in range(replicas)]
        for order in shuffles:
            rng.shuffle(order)
        return shuffles
    count = replicas * n // block_size or 1
    pool = list(range(n))
    rng.shuffle(pool)
    blocks: list[list[int]] = []
    while len(blocks) < count:
        if len(pool) >= block_size:
            blocks.append(pool[:block_size])
            pool = pool[block_size:]
        else:
            # the reference draws from the set difference as CPython lists it (ascending for these ints)
            extra = rng.sample(list(set(range(n)) - set(pool)), block_size - len(pool))
            blocks.append(pool + extra)
            pool = [c for c in range(n) if c not in extra]
            rng.shuffle(pool)
    return blocks


DESIGNS = {"shuffles": block_design, "reference": reference_design}


def win_matrix(n: int, block_orders: Sequence[Sequence[int]]) -> list[list[int]]:
    """wins[i][j]: how many blocks ranked i above j."""
    wins = [[0] * n for _ in range(n)]
    for order in block_orders:
        for rank, winner in enumerate(order):
            for loser in order[rank + 1 :]:
                wins[winner][loser] += 1
    return wins


def win_rate(wins: list[list[int]]) -> list[float]:
    n = len(wins)
    rates = []
    for i in range(n):
        won = sum(wins[i])
        played = won + sum(wins[j][i] for j in range(n))
        rates.append(won / played if played else 0.5)
    return rates


def pagerank(wins: list[list[int]], damping: float = 0.85, iterations: int = 100) -> list[float]:
    """PageRank over the graph where each loser links to its winners, weighted by wins."""
    n = len(wins)
    if n == 0:
        return []
    out_weight = [sum(wins[j][i] for j in range(n)) for i in range(n)]  # i's losses: links from i to winners j
    rank = [1.0 / n] * n
    for _ in range(iterations):
        dangling = sum(rank[i] for i in range(n) if out_weight[i] == 0)  # unbeaten: spread evenly
        new = [(1 - damping) / n + damping * dangling / n] * n
        for i in range(n):
            if out_weight[i]:
                share = damping * rank[i] / out_weight[i]
                for j in range(n):
                    if wins[j][i]:
                        new[j] += share * wins[j][i]
        if max(abs(a - b) for a, b in zip(new, rank, strict=True)) < 1e-12:
            rank = new
            break
        rank = new
    return rank


class JointRankReranker(Reranker):
    method = "jointrank"
    nested_params = ("inner",)
    neutral_params = MappingProxyType({"design": "shuffles"})  # added later: the default keeps earlier keys

    def __init__(
        self,
        inner: str = "first(model=qwen2.5-coder-0.5b)",
        block_size: int = 10,
        replicas: int = 3,
        aggregation: str = "pagerank",
        seed: int = 0,
        design: str = "shuffles",
    ):
        from rerank.registry import load_reranker

        if block_size < 2 or replicas < 1:
            raise ValueError("block_size must be at least 2 and replicas at least 1")
        if aggregation not in ("winrate", "pagerank"):
            raise ValueError(f"aggregation must be winrate or pagerank, not {aggregation!r}")
        if design not in DESIGNS:
            raise ValueError(f"design must be shuffles or reference, not {design!r}")
        self.inner_spec, self.block_size, self.replicas = inner, block_size, replicas
        self.aggregation, self.seed, self.design = aggregation, seed, design
        self.inner: Any = load_reranker(inner)

    @classmethod
    def check_params(cls, params: dict[str, Any], where: str) -> None:
        from rerank.registry import check_reranker

        super().check_params(params, where)
        check_reranker(params.get("inner", "first(model=qwen2.5-coder-0.5b)"))  # the inner method, checked alike

    def use_cache(self, cache: OutputCache | None) -> None:
        if hasattr(self.inner, "use_cache"):
            self.inner.use_cache(cache)

    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        started = time.perf_counter()
        jobs: list[tuple[int, list[int]]] = []
        for q, request in enumerate(requests):
            rng = random.Random(f"{self.seed}:{request.query.qid}")
            design = DESIGNS[self.design](len(request.candidates), self.block_size, self.replicas, rng)
            jobs += [(q, block) for block in design]
        block_requests = [
            RerankRequest(requests[q].query, tuple(requests[q].candidates[c] for c in block)) for q, block in jobs
        ]
        ranked = self.inner.rerank(block_requests) if block_requests else []
        orders: list[list[list[int]]] = [[] for _ in requests]
        costs = [Cost() for _ in requests]
        for (q, block), result in zip(jobs, ranked, strict=True):
            position = {requests[q].candidates[c].docid: c for c in block}
            orders[q].append([position[c.docid] for c in result.ranking.candidates])
            costs[q] = costs[q] + Cost(**{**result.cost.as_dict(), "seconds": 0.0})
        aggregate = pagerank if self.aggregation == "pagerank" else win_rate
        elapsed = time.perf_counter() - started
        calls = sum(c.calls for c in costs) or 1
        results = []
        for request, block_orders, cost in zip(requests, orders, costs, strict=True):
            scores = aggregate(win_matrix(len(request.candidates), block_orders))
            results.append(
                RerankResult(scored_ranking(request, scores), cost + Cost(seconds=elapsed * cost.calls / calls))
            )
        return results
