"""Long documents: split each into windows, score every window with a pointwise method, aggregate.

    bm25 % 100 >> split(inner="cross-encoder(model=M)", aggregate=maxp, window=150, stride=75)

Every window of every candidate of every request goes to the inner method in one batch-first call (its
batching, its model-output cache), so a window scored once is read back in any later run. How windows are cut
and scores aggregated, and where that differs from PyTerrier's ``sliding`` and ``max_passage``:
``rerank.passages``. A candidate that carries its title (``Candidate.title``: the document stores' titles)
has it in front of every window.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from data.errors import InvalidSpecError
from data.records import RerankRequest
from rerank.base import PointwiseReranker, Reranker, RerankResult, require_texts, scored_ranking
from rerank.cache import OutputCache
from rerank.cost import Cost
from rerank.passages import Aggregation, Tail, Unit, aggregate, body_and_title, check_split, splitter_for


class SplitReranker(Reranker):
    """MaxP, FirstP, SumP or MeanP over windows of ``window`` words (or tokens of the inner model's tokenizer)."""

    method = "split"
    nested_params = ("inner",)

    def __init__(
        self,
        inner: str,
        aggregate: Aggregation = "maxp",
        window: int = 150,
        stride: int = 75,
        unit: Unit = "words",
        tail: Tail = "keep",
        max_windows: int | None = None,
    ):
        """``inner`` is a pointwise method's spec (or a pointwise reranker, in Python). The defaults are Dai &
        Callan's and PyTerrier's: 150 words every 75. ``max_windows`` scores only each document's first N
        windows (the service's ``max_chunks_per_doc``)."""
        from rerank.registry import load_reranker

        check_split(window, stride, aggregate, unit, tail, max_windows, "split")  # before a model loads
        if isinstance(inner, Reranker):
            self.inner: Any = inner
            self._init_params["inner"] = str(inner.spec)  # a spec prints and parses back; an object does not
        else:
            self.inner = load_reranker(inner)
        if not isinstance(self.inner, PointwiseReranker):
            raise InvalidSpecError(_not_pointwise(self.inner.method))
        self.aggregate, self.window, self.stride, self.unit = aggregate, window, stride, unit
        self.splitter = splitter_for(self.inner, window, stride, aggregate, unit, tail, max_windows)

    @classmethod
    def check_params(cls, params: dict[str, Any], where: str) -> None:
        from rerank.registry import check_reranker, method_class
        from rerank.spec import parse_spec

        super().check_params(params, where)
        check_split(int(params.get("window", 150)), int(params.get("stride", 75)), str(params.get("aggregate", "maxp")),
                    str(params.get("unit", "words")), str(params.get("tail", "keep")), params.get("max_windows"),
                    where)  # fmt: skip
        inner = params.get("inner")
        if isinstance(inner, str):
            name = parse_spec(inner).name
            if not issubclass(method_class(name), PointwiseReranker):
                raise InvalidSpecError(f"{where}: {_not_pointwise(name)}")
            check_reranker(inner)  # the inner method, checked as if it stood alone

    @property
    def batch_invariant(self) -> bool:
        return bool(self.inner.batch_invariant)

    def use_cache(self, cache: OutputCache | None) -> None:
        self.inner.use_cache(cache)

    def tokenizer(self) -> Any | None:
        return self.inner.tokenizer()

    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        started = time.perf_counter()
        queries: list[str] = []
        texts: list[str] = []
        docids: list[str] = []
        counts: list[list[int]] = []  # windows per candidate, per request
        unread: list[int] = []  # per request: documents with tokens in no window
        for request in requests:
            require_texts(request)
            counts.append([])
            unread.append(0)
            for c in request.candidates:
                passages, cut = self.splitter.split(*body_and_title(c.text or "", c.title))
                queries += [request.query.text] * len(passages)
                texts += passages
                docids += [f"{c.docid}%p{i}" for i in range(len(passages))]  # PyTerrier's passage ids
                counts[-1].append(len(passages))
                unread[-1] += cut
        pairs = self.inner.score_cached(queries, texts, docids)
        elapsed = time.perf_counter() - started
        results: list[RerankResult] = []
        offset = 0
        for request, windows, left_out in zip(requests, counts, unread, strict=True):
            scores = []
            start = offset
            for n in windows:
                scores.append(aggregate(pairs.scores[offset : offset + n], self.aggregate))
                offset += n
            share = (offset - start) / len(texts) if texts else 0.0  # the batch's calls and time, by windows
            cost = Cost(
                calls=pairs.calls * share,
                input_tokens=sum(pairs.input_tokens[start:offset]),
                truncated=sum(pairs.truncated[start:offset]) + left_out,
                reasoning_tokens=sum(pairs.reasoning_tokens[start:offset]),
                parse_failures=sum(pairs.failed[start:offset]),
                windows=offset - start,
                seconds=elapsed * share,
            )
            results.append(RerankResult(scored_ranking(request, scores), cost))
        return results


def _not_pointwise(name: str) -> str:
    from rerank.registry import method_class, method_names

    pointwise = [n for n in method_names() if issubclass(method_class(n), PointwiseReranker)]
    return (
        f"inner: split scores each window on its own, so inner is a pointwise method ({', '.join(pointwise)}), "
        f"not {name}"
    )
