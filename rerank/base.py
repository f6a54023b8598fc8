"""The ``Reranker`` interface: batch first, a permutation out, a cost record with it.

Contract (``docs/design.md``): every input candidate comes back exactly
once, sorted by score descending; ties follow trec_eval's order (docid
descending), so the returned order is the order a written run file has.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from data.records import Candidate, Query, Ranking, RerankRequest
from rerank.cache import OutputCache, cache_key
from rerank.cost import Cost
from rerank.result import RerankResult
from rerank.spec import MethodSpec, Value

if TYPE_CHECKING:
    import pandas as pd

    from data.docstore import DocumentStore
    from rerank.integrations.langchain import RerankerDocumentCompressor
    from rerank.integrations.llamaindex import RerankerNodePostprocessor
    from rerank.integrations.pyterrier import RerankerTransformer


class Reranker(ABC):
    """Base of every reranking method; subclasses declare ``method`` and implement ``rerank``."""

    method: ClassVar[str]
    _init_params: dict[str, Any]

    @property
    def batch_invariant(self) -> bool:
        """Whether scores are independent of how requests are batched (true unless a method says otherwise)."""
        return True

    # Bump when the method's output for the same spec, model and inputs changes (part of every stage key).
    version: ClassVar[int] = 1
    # Distributions whose versions decide this method's outputs (part of every stage key).
    libraries: ClassVar[tuple[str, ...]] = ()
    # Parameters that change how fast, not what: left out of the model-output cache's identity.
    execution_params: ClassVar[frozenset[str]] = frozenset({"batch_size"})
    # The parameter naming a prompt file in rerank/prompts (its digest joins the keys), if any.
    prompt_param: ClassVar[str | None] = None
    # Parameters that hold another method's spec (JointRank's inner ranker): keyed as that method.
    nested_params: ClassVar[tuple[str, ...]] = ()
    # Parameters added after outputs were keyed, with the value that keeps the earlier behaviour: at that
    # value they stay out of keys (adding one changes no key); any other value enters the key.
    neutral_params: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    # The parameter holding an LLM backend spec (rerank/llm), if any: its libraries and options join the key.
    llm_backend_param: ClassVar[str | None] = None

    @classmethod
    def libraries_for(cls, params: Mapping[str, Any]) -> tuple[str, ...]:
        """The distributions that compute this method's output with these parameters (a backend may add some)."""
        return cls.libraries

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "rerank" in cls.__dict__:  # every implementation checks what it is given the same way
            cls.rerank = _checked_rerank(cls.__dict__["rerank"])  # type: ignore[method-assign]

    def __new__(cls, *args: Any, **kwargs: Any) -> Reranker:
        if not isinstance(getattr(cls, "method", None), str):
            raise TypeError(f"{cls.__name__} must set the class attribute 'method' (its registry name)")
        instance = super().__new__(cls)
        instance._init_params = _given_parameters(cls, args, kwargs)
        return instance

    def params(self) -> dict[str, Value]:
        """The constructor arguments that reproduce this instance, defaults included (for its spec).

        Derived from the constructor's signature and the arguments it was called with, so a
        parameter is declared once and a spec can never drop one.
        """
        return dict(self._init_params)

    @abstractmethod
    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        """One result per request, in request order."""

    @property
    def spec(self) -> MethodSpec:
        return MethodSpec.of(self.method, self.params())

    def tokenizer(self) -> Any | None:
        """The Hugging Face tokenizer the model reads text with, where it has one (for token limits)."""
        return None

    @classmethod
    def check_params(cls, params: dict[str, Any], where: str) -> None:
        """Checks beyond the parameters' types, before anything loads (a device that is there, a model
        that exists); each raises one error that names the parameter."""
        if params.get("device") is not None:
            check_device(params["device"], where)

    def rank(self, query: str | Query, documents: Iterable[str | Candidate]) -> RerankResult:
        """Rerank one query's documents (plain strings get docids "0", "1", …)."""
        if not isinstance(query, (str, Query)):
            raise TypeError(f"rank() takes the query as a string or Query, not {type(query).__name__}")
        if isinstance(documents, (str, bytes, Mapping)) or not isinstance(documents, Iterable):
            raise TypeError(
                f"rank() takes the documents as a list of strings or Candidates, not a {type(documents).__name__}"
            )
        q = query if isinstance(query, Query) else Query("0", query)
        candidates = []
        for i, d in enumerate(documents):
            if not isinstance(d, (str, Candidate)):
                raise TypeError(f"rank(): document {i} is a {type(d).__name__}; give strings or Candidates")
            candidates.append(d if isinstance(d, Candidate) else Candidate(str(i), 0.0, d))
        return self.rerank([RerankRequest(q, tuple(candidates))])[0]

    def rerank_frame(self, frame: pd.DataFrame, docs: DocumentStore | None = None) -> pd.DataFrame:
        """Rerank a pandas frame in PyTerrier's columns: ``qid, query, docno`` and ``text`` (or ``docs``, a
        document store, to read texts from); ``score`` is optional. Returns its rows with new ``score``
        and ``rank`` (0-based) columns, sorted by qid then rank; other columns come along."""
        from data.frames import frame_rankings, reranked_frame
        from rerank.inputs import attach_texts

        needed = ("qid", "query", "docno") if docs is not None else ("qid", "query", "docno", "text")
        requests = [
            RerankRequest(Query(r.qid, r.query or ""), attach_texts(tuple(Candidate(*row) for row in r.rows), docs))
            for r in frame_rankings(frame, needed, f"{type(self).__name__}.rerank_frame")
        ]
        return reranked_frame(frame, [result.ranking for result in self.rerank(requests)])

    def as_pyterrier(self, docs: DocumentStore | None = None) -> RerankerTransformer:
        """This reranker as a PyTerrier transformer (``pt.Transformer``) over results frames: it composes
        with PyTerrier's operators (``bm25 % 100 >> reranker.as_pyterrier()``). Needs ``rerank[pyterrier]``."""
        from rerank.integrations.pyterrier import RerankerTransformer

        return RerankerTransformer(self, docs)

    def as_langchain(self, top_n: int | None = 3) -> RerankerDocumentCompressor:
        """A LangChain document compressor keeping the ``top_n`` documents (all with None) by this
        reranker, each with ``relevance_score`` in its metadata. Needs ``rerank[langchain]``."""
        from rerank.integrations.langchain import RerankerDocumentCompressor

        return RerankerDocumentCompressor(reranker=self, top_n=top_n)

    def as_llamaindex(self, top_n: int | None = 3) -> RerankerNodePostprocessor:
        """A LlamaIndex node postprocessor keeping the ``top_n`` nodes (all with None) by this reranker,
        scored by it. Needs ``rerank[llamaindex]``."""
        from rerank.integrations.llamaindex import RerankerNodePostprocessor

        return RerankerNodePostprocessor(reranker=self, top_n=top_n)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec})"

    # Pipeline algebra: ``reranker % 20`` keeps the top 20; ``a >> b`` chains (see rerank.compose).
    def __mod__(self, k: int) -> Any:
        from rerank.compose import RerankStage

        return RerankStage(self) % k

    def __rshift__(self, other: Any) -> Any:
        from rerank.compose import Pipeline

        return Pipeline.of(self) >> other

    def __rrshift__(self, other: Any) -> Any:
        from rerank.compose import Pipeline

        return Pipeline.of(other) >> self

    def __xor__(self, other: Any) -> Any:  # ``a ^ b``: a's ranking, then b's rest (rerank.compose.Concatenation)
        from rerank.compose import Pipeline

        return Pipeline.of(self) ^ other

    def __rxor__(self, other: Any) -> Any:
        from rerank.compose import Concatenation, Pipeline

        return Concatenation.of(other) ^ Pipeline.of(self)


def _checked_rerank(rerank: Any) -> Any:
    import functools

    if getattr(rerank, "_checks_requests", False):
        return rerank

    @functools.wraps(rerank)
    def checked(self: Reranker, requests: Sequence[RerankRequest], *args: Any, **kwargs: Any) -> Any:
        if isinstance(requests, (str, bytes, Mapping, RerankRequest)) or not isinstance(requests, Sequence):
            raise TypeError(
                f"rerank() takes a list of RerankRequest, not a {type(requests).__name__} "
                "(rank(query, documents) reranks one query's texts)"
            )
        for request in requests:
            if not isinstance(request, RerankRequest):
                raise TypeError(
                    f"rerank() takes a list of RerankRequest, not of {type(request).__name__} "
                    "(rank(query, documents) reranks one query's texts)"
                )
        return rerank(self, requests, *args, **kwargs)

    checked._checks_requests = True  # type: ignore[attr-defined]
    return checked


def check_device(device: str, where: str) -> None:
    """``cpu``, ``cuda[:N]`` or ``mps``, and only where this torch build and machine have it."""
    from data.errors import InvalidSpecError

    kind, _, index = str(device).partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise InvalidSpecError(f"{where}: device must be cpu, cuda, cuda:N or mps, not {device!r}")
    if kind == "cpu":
        return
    from data.optional import optional_import

    torch = optional_import("torch")
    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise InvalidSpecError(f"{where}: device=mps, but this machine has no Apple GPU; use device=cpu")
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, no GPU visible"
        raise InvalidSpecError(
            f"{where}: device={device}, but torch {torch.__version__} has no CUDA device ({build}); use device=cpu"
        )
    if index and int(index) >= count:
        raise InvalidSpecError(f"{where}: device={device}, but this machine has {count} CUDA device(s)")


def _given_parameters(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Every constructor parameter's value for this call: given ones over the signature's defaults."""
    import inspect

    from data.registry import constructor_parameters

    defaults = {
        k: v for k, v in constructor_parameters(cls).items() if isinstance(k, str) and v is not inspect.Parameter.empty
    }
    try:
        bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)  # type: ignore[misc]
    except TypeError:
        return {**defaults, **kwargs}  # the constructor itself reports the mistake
    given: dict[str, Any] = {}
    parameters = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    for name, value in list(bound.arguments.items())[1:]:
        kind = parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            given.update(value)
        elif kind is not inspect.Parameter.VAR_POSITIONAL:
            given[name] = value
    return {**defaults, **given}


def require_texts(request: RerankRequest) -> list[str]:
    """The candidates' texts; a candidate without text is an error naming it."""
    texts = []
    for c in request.candidates:
        if c.text is None:
            raise ValueError(
                f"candidate {c.docid!r} of query {request.query.qid!r} has no text; "
                "give the reranker a document store or candidates with texts"
            )
        texts.append(c.text)
    return texts


def scored_ranking(request: RerankRequest, scores: Sequence[float]) -> Ranking:
    """The request's candidates with new scores, in contract order."""
    if len(scores) != len(request.candidates):
        raise RuntimeError(f"{len(scores)} scores for {len(request.candidates)} candidates of {request.query.qid!r}")
    rescored = (Candidate(c.docid, float(s), c.text, c.title) for c, s in zip(request.candidates, scores, strict=True))
    return Ranking.sorted(request.query.qid, rescored)


@dataclass(frozen=True, slots=True)
class PairScores:
    """What a pointwise model returns for a batch of pairs: per-pair values and the batch's calls."""

    scores: list[float]
    input_tokens: list[int]
    truncated: list[bool]
    calls: int
    # per pair where a method reasons before it scores (llm-pointwise, reasoning=true); empty: none
    reasoning_tokens: list[int] = field(default_factory=list)
    failed: list[bool] = field(default_factory=list)  # its reasoning never reached an answer


class PointwiseReranker(Reranker):
    """A method that scores each (query, text) pair independently; batches cross queries.

    With an output cache (``use_cache``), pairs scored before by the same spec are
    read back instead of computed, and cost no calls or tokens.
    """

    cache: OutputCache | None = None

    def use_cache(self, cache: OutputCache | None) -> None:
        self.cache = cache

    @abstractmethod
    def score_pairs(self, queries: Sequence[str], texts: Sequence[str], docids: Sequence[str] = ()) -> PairScores:
        """A score per pair, with its token count and whether it was truncated."""

    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        start = time.perf_counter()
        queries: list[str] = []
        texts: list[str] = []
        docids: list[str] = []
        for request in requests:
            request_texts = require_texts(request)
            queries.extend([request.query.text] * len(request_texts))
            texts.extend(request_texts)
            docids.extend(c.docid for c in request.candidates)
        pairs = self.score_cached(queries, texts, docids)
        elapsed = time.perf_counter() - start
        results: list[RerankResult] = []
        offset = 0
        for request in requests:
            end = offset + len(request.candidates)
            # Calls and time are shared by the whole batch: each request gets its share by pair count.
            share = len(request.candidates) / len(texts) if texts else 0.0
            cost = Cost(
                calls=pairs.calls * share,
                input_tokens=sum(pairs.input_tokens[offset:end]),
                truncated=sum(pairs.truncated[offset:end]),
                reasoning_tokens=sum(pairs.reasoning_tokens[offset:end]),
                parse_failures=sum(pairs.failed[offset:end]),
                seconds=elapsed * share,
            )
            results.append(RerankResult(scored_ranking(request, pairs.scores[offset:end]), cost))
            offset = end
        return results

    def document_limit(self) -> tuple[int, str] | None:
        """How much of a document the model reads, ``(n, "tokens")`` or ``(n, "words")``; None where unknown.
        ``split`` refuses a window longer than this (it would be cut)."""
        return None

    def score_cached(self, queries: list[str], texts: list[str], docids: list[str]) -> PairScores:
        """``score_pairs`` through the model-output cache (``use_cache``): pairs scored before are read back."""
        if not texts:
            return PairScores([], [], [], 0)
        if self.cache is None:
            return self.score_pairs(queries, texts, docids)
        from rerank.identity import cache_identity

        spec = cache_identity(self)
        # A method whose scores depend on the batch (dynamic int8's per-batch scales) is read back only for the
        # same batch: a pair's score from another batch would be another number (and a rerun stays free).
        batch = (
            () if self.batch_invariant else (cache_key(*(f"{q}\x1f{t}" for q, t in zip(queries, texts, strict=True))),)
        )
        keys = [cache_key(spec, q, t, *batch) for q, t in zip(queries, texts, strict=True)]
        known = self.cache.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in known]
        fresh = (
            self.score_pairs([queries[i] for i in missing], [texts[i] for i in missing], [docids[i] for i in missing])
            if missing
            else PairScores([], [], [], 0)
        )
        self.cache.put_many((keys[i], score) for i, score in zip(missing, fresh.scores, strict=True))
        scores = [float(known[key]) if key in known else 0.0 for key in keys]
        tokens = [0] * len(keys)
        truncated = [False] * len(keys)
        thought, failed = [0] * len(keys), [False] * len(keys)
        for n, i in enumerate(missing):
            scores[i], tokens[i], truncated[i] = fresh.scores[n], fresh.input_tokens[n], fresh.truncated[n]
            if fresh.reasoning_tokens:
                thought[i], failed[i] = fresh.reasoning_tokens[n], fresh.failed[n]
        return PairScores(scores, tokens, truncated, fresh.calls, thought, failed)
