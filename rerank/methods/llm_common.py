"""What the LLM ranking methods share: a backend behind an optional disk cache, the starting order
(for position-bias studies), passage truncation, and results from final orders.
"""

from __future__ import annotations

import random
from collections.abc import Sequence, Sized
from typing import Any, ClassVar, Literal

from data.records import Candidate, Ranking, RerankRequest
from rerank.base import RerankResult
from rerank.cache import OutputCache
from rerank.cost import Cost
from rerank.llm.backend import LLMBackend, load_backend

InitialOrder = Literal["given", "reversed", "shuffled"]
Scoring = Literal["logits", "generate"]
Variant = Literal["rerank", "llm-rankers"]


def check_variant(variant: str) -> str:
    if variant not in ("rerank", "llm-rankers"):
        raise ValueError(f"variant must be rerank or llm-rankers, not {variant!r}")
    return variant


def by_size(windows: Sequence[Sized]) -> dict[int, list[int]]:
    """The windows' (or sets') indices grouped by length: equal-length ones share a backend call."""
    groups: dict[int, list[int]] = {}
    for k, window in enumerate(windows):
        groups.setdefault(len(window), []).append(k)
    return groups


def check_initial_order(initial_order: str) -> None:
    if initial_order not in ("given", "reversed", "shuffled"):
        raise ValueError(f"initial_order must be given, reversed or shuffled, not {initial_order!r}")


def start_order(request: RerankRequest, initial_order: str, seed: int) -> list[int]:
    """The order a method starts from: the given one, reversed, or shuffled by (seed, qid), for bias studies."""
    order = list(range(len(request.candidates)))
    if initial_order == "reversed":
        order.reverse()
    elif initial_order == "shuffled":
        random.Random(f"{seed}:{request.query.qid}").shuffle(order)
    elif initial_order != "given":
        raise ValueError(f"initial_order must be given, reversed or shuffled, not {initial_order!r}")
    return order


def words(text: str, limit: int) -> str:
    return " ".join(text.split()[:limit])


def check_backend_model(cls: type, params: dict[str, Any], where: str) -> None:
    """The backend's own check of the method's model (a local file or an installed pack for in-process backends)."""
    from data.registry import constructor_parameters
    from rerank.llm.backend import BACKENDS
    from rerank.spec import parse_spec

    defaults = constructor_parameters(cls)
    backend, model = params.get("backend", defaults.get("backend")), params.get("model", defaults.get("model"))
    if isinstance(model, str) and backend is not None:
        spec = parse_spec(backend) if isinstance(backend, str) else backend
        BACKENDS.check(spec.name, {"model": model, **spec.kwargs}, given=f"backend {spec}")  # its options first
        BACKENDS.get(spec.name).check_model(model, f"{where}: model")
        BACKENDS.get(spec.name).check_options(dict(spec.kwargs), f"{where}: backend {spec.name}")


class LLMMethodMixin:
    """A backend loaded from the method's ``backend`` spec, and the disk cache in front of it."""

    backend: Any
    _uncached: LLMBackend
    prompt_param: ClassVar[str | None] = (
        "template"  # the prompt file (rerank/prompts/NAME.json) is data: digested into stage keys
    )
    llm_backend_param: ClassVar[str | None] = "backend"

    @classmethod
    def check_params(cls, params: dict[str, Any], where: str) -> None:
        super().check_params(params, where)  # type: ignore[misc]
        check_backend_model(cls, params, where)

    def _load_backend(self, backend: str, model: str, batch_size: int) -> None:
        self._uncached = load_backend(backend, model, batch_size=batch_size)
        self.backend = self._uncached

    def use_cache(self, cache: OutputCache | None) -> None:
        """Answer prompts seen before (same backend, model and rendered prompt) from ``cache``."""
        from rerank.llm.cached import CachedBackend

        self.backend = self._uncached if cache is None else CachedBackend(self._uncached, cache)


def ranked_results(
    requests: Sequence[RerankRequest], orders: Sequence[list[int]], costs: Sequence[Cost], seconds: float
) -> list[RerankResult]:
    """Results from final orders (indices into each request's candidates): score ``n - rank``.

    The batch's wall time is shared by the requests in proportion to their calls.
    """
    total_calls = sum(c.calls for c in costs) or 1
    results = []
    for request, order, cost in zip(requests, orders, costs, strict=True):
        n = len(order)
        ranked = tuple(
            Candidate(
                request.candidates[c].docid, float(n - r), request.candidates[c].text, request.candidates[c].title
            )
            for r, c in enumerate(order)
        )
        share = Cost(seconds=seconds * cost.calls / total_calls)
        results.append(RerankResult(Ranking(request.query.qid, ranked), cost + share))
    return results
