"""The FastAPI application: every wire format over one ``Service``, with limits, API keys and metrics.

Status codes (the body is always JSON ``{"message", "field"}``, never a traceback):

| code | when |
|------|------|
| 400  | the body is not valid JSON |
| 401  | an API key is configured and the request's ``Authorization: Bearer`` key is missing or wrong |
| 404 / 405 | no such route / method |
| 413  | the body is over ``--max-body-bytes``, or more documents than ``--max-documents`` |
| 422  | a field is missing or wrong (``field`` names it, e.g. ``documents.2``) |
| 429  | the queue is full (``Retry-After`` says when to come back) |
| 503  | the model failed for this batch after its retries (``/ready`` too, until a batch succeeds), or the server is stopping |
| 504  | the request waited longer than ``--request-timeout`` |
| 500  | a bug (logged on the server; the body says only that) |
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from data.errors import BackendError
from data.records import Candidate, Query, RerankRequest
from rerank.passages import aggregate
from rerank.serve.api import (
    CohereV1Request,
    CohereV2Request,
    DocumentError,
    Passages,
    TEIRequest,
    document_texts,
    meta,
    ordered,
    sigmoid,
)
from rerank.serve.batcher import Batcher, BatchLimits, QueueFullError
from rerank.serve.metrics import Metrics

log = logging.getLogger("rerank.serve")
RERANK_ROUTES = ("/v1/rerank", "/v2/rerank", "/rerank")


@dataclass(frozen=True)
class ServeSettings:
    spec: str
    limits: BatchLimits = field(default_factory=BatchLimits)
    max_documents: int = 1000
    max_body_bytes: int = 8 * 1024 * 1024
    request_timeout: float = 60.0
    api_key: str | None = None  # read from an environment variable by the CLI, never a flag value
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Scored:
    """One request's answer: indices in rank order (what the method kept), their scores, its cost."""

    order: list[int]
    scores: dict[int, float]
    input_tokens: int
    truncated: int


class APIError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, dict(headers or {})


Tokenizer = Callable[[str, int], str]  # (text, max tokens) -> the text cut to that many tokens


class Service:
    """The one internal path: texts in, scores out, through the batcher."""

    def __init__(
        self,
        rerank: Callable[[Sequence[RerankRequest]], Sequence[Any]],
        settings: ServeSettings,
        cut_tokens: Tokenizer | None = None,
        scorer: Any = None,
    ):
        self.settings = settings
        self._scorer = scorer  # the served pipeline's one pointwise method, if it is one: it can score windows
        self.metrics = Metrics()
        self.batcher = Batcher(rerank, settings.limits, on_batch=self.metrics.observe_batch)
        self._cut_tokens = cut_tokens
        self._ids = itertools.count()
        self.accepted = self.answered = 0
        self.stopping = False
        self.failing: str | None = None  # the model's last error, until a batch succeeds again (/ready says it)

    async def rank(
        self,
        query: str,
        texts: Sequence[str],
        max_tokens_per_doc: int | None = None,
        field: str = "documents",
        passages: Passages | None = None,
    ) -> Scored:
        """``field`` is the request's name for the texts (``documents``; TEI's ``texts``), for the 413."""
        if len(texts) > self.settings.max_documents:
            raise APIError(413, f"{len(texts)} {field}; at most {self.settings.max_documents} per request", field)
        if max_tokens_per_doc is not None:
            if passages is not None:
                raise APIError(422, "max_tokens_per_doc cuts each document, passages splits it: give one", "passages")
            cut = self._cut_tokens or _cut_words
            texts = [cut(t, max_tokens_per_doc) for t in texts]
        windows = self._windows(texts, passages) if passages is not None else None
        scored = [w for split, _ in windows for w in split] if windows is not None else texts
        # A private qid and docids = positions: coalesced requests can share a query text and never mix.
        request = RerankRequest(
            Query(f"q{next(self._ids)}", query), tuple(Candidate(str(i), 0.0, t) for i, t in enumerate(scored))
        )
        self.metrics.queue_depth.set(self.batcher.depth)
        try:
            result = await asyncio.wait_for(self.batcher.submit(request), self.settings.request_timeout)
        except QueueFullError as err:
            raise APIError(
                429, f"the server is busy ({err}); retry later", headers={"Retry-After": str(err.retry_after)}
            ) from None
        except asyncio.TimeoutError:
            raise APIError(504, f"not answered within {self.settings.request_timeout:g} s") from None
        except BackendError as err:
            self.failing = str(err)
            raise APIError(503, f"the model failed: {err}") from None
        finally:
            self.metrics.queue_depth.set(self.batcher.depth)
        self.failing = None
        scores = {int(c.docid): c.score for c in result.ranking.candidates}
        cost = result.cost
        truncated = int(cost.truncated)
        if windows is not None and passages is not None:
            offsets = list(itertools.accumulate((len(split) for split, _ in windows), initial=0))
            scores = {i: aggregate([scores[k] for k in range(offsets[i], offsets[i + 1])], passages.aggregate)
                      for i in range(len(windows))}  # fmt: skip
            truncated += sum(cut for _, cut in windows)
        self.metrics.pairs.inc(len(scored))
        self.metrics.tokens.inc(cost.input_tokens)
        self.metrics.truncated.inc(truncated)
        return Scored(ordered_keys(scores), scores, int(cost.input_tokens), truncated)

    def _windows(self, texts: Sequence[str], passages: Passages) -> list[tuple[list[str], bool]]:
        """Each text's windows, as the ``split`` method cuts them, and whether words of it are in none; 422 where the served pipeline cannot score windows or the window does not fit it."""
        from data.errors import InvalidSpecError
        from rerank.passages import splitter_for

        if self._scorer is None:
            raise APIError(422, f"passages: {self.settings.spec} does not score each document on its own; serve one "
                                "pointwise method (bi-encoder, cross-encoder, …) to split documents", "passages")  # fmt: skip
        options = passages.model_dump(exclude={"aggregate"})
        try:
            splitter = splitter_for(self._scorer, **options, aggregate=passages.aggregate, where="passages")
        except InvalidSpecError as err:
            raise APIError(422, str(err), "passages") from None
        return [splitter.split(t) for t in texts]


def ordered_keys(scores: Mapping[int, float]) -> list[int]:
    keys = sorted(scores)
    return [keys[i] for i in ordered([scores[k] for k in keys], None)]


def _cut_words(text: str, limit: int) -> str:
    """Without a model tokenizer: the first ``limit`` whitespace-separated words."""
    words = text.split()
    return text if len(words) <= limit else " ".join(words[:limit])


def _top(order: list[int], top_n: int | None) -> list[int]:
    return order[:top_n] if top_n is not None else order


def _headers(scored: Scored) -> dict[str, str]:
    return {"X-Rerank-Truncated": str(scored.truncated), "X-Rerank-Input-Tokens": str(scored.input_tokens)}


def create_app(service: Service) -> Any:
    settings = service.settings

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        service.batcher.start()
        yield
        service.stopping = True
        await service.batcher.close()
        log.warning("rerank serve: stopped; answered %d of %d accepted requests", service.answered, service.accepted)

    # With an API key, the API's description is behind it too: only /health, /ready and /metrics stay open.
    keyed = settings.api_key is not None
    app = FastAPI(
        title="rerank",
        summary=f"Reranking with {settings.spec}",
        description="Cohere-, Jina- and text-embeddings-inference-compatible reranking.",
        lifespan=lifespan,
        docs_url=None if keyed else "/docs",
        openapi_url=None if keyed else "/openapi.json",
        redoc_url=None,
    )

    def error_response(status: int, message: str, field: str | None, headers: Mapping[str, str] | None = None) -> Any:
        return JSONResponse({"message": message, "field": field}, status_code=status, headers=dict(headers or {}))

    @app.exception_handler(APIError)
    async def _api_error(request: Request, err: APIError) -> Any:
        return error_response(err.status, err.message, err.field, err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> Any:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            return error_response(415, f"the body must be JSON (Content-Type: application/json), not {kind or 'none'}",
                                  "Content-Type")  # fmt: skip
        first = err.errors()[0]
        if first.get("type") == "json_invalid":
            return error_response(400, f"the body is not valid JSON ({first.get('msg')})", None)
        loc = [str(part) for part in first.get("loc", ()) if part != "body"]
        # A union's member name (str, dict[str,any]) is not the caller's field: keep the path to it.
        loc = [p for p in loc if not p.startswith(("str", "dict["))]
        where = ".".join(loc) or "body"
        return error_response(422, f"{where}: {first.get('msg', 'invalid')}", where)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> Any:
        message = f"no route {request.method} {request.url.path}" if err.status_code == 404 else str(err.detail)
        return error_response(err.status_code, message, None, getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, err: Exception) -> Any:
        log.exception("rerank serve: unexpected error on %s", request.url.path)
        return error_response(500, "internal error (logged on the server)", None)

    async def authorized(request: Request) -> None:
        if settings.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, key = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), settings.api_key.encode()):
            raise APIError(401, "a valid 'Authorization: Bearer KEY' header is required", "Authorization",
                           {"WWW-Authenticate": "Bearer"})  # fmt: skip

    async def rank(query: str, texts: Sequence[str], max_tokens: int | None = None, field: str = "documents",
                   passages: Passages | None = None) -> Scored:  # fmt: skip
        if service.stopping:
            raise APIError(503, "the server is stopping")
        service.accepted += 1
        try:
            return await service.rank(query, texts, max_tokens, field, passages)
        finally:
            service.answered += 1

    guarded = [Depends(authorized)]

    @app.post("/v2/rerank", dependencies=guarded, summary="Cohere v2 rerank")
    async def cohere_v2(body: CohereV2Request) -> Any:
        texts = _texts(body.documents, None)
        scored = await rank(body.query, texts, body.max_tokens_per_doc, passages=body.passages)
        results = [{"index": i, "relevance_score": scored.scores[i]} for i in _top(scored.order, body.top_n)]
        return JSONResponse(
            {"id": str(uuid.uuid4()), "results": results, "meta": meta("2", scored.input_tokens, scored.truncated)},
            headers=_headers(scored),
        )

    @app.post("/v1/rerank", dependencies=guarded, summary="Cohere v1 / Jina / Infinity / vLLM rerank")
    async def cohere_v1(body: CohereV1Request) -> Any:
        texts = _texts(body.documents, body.rank_fields)
        scored = await rank(body.query, texts, passages=body.chunked())
        results = []
        for i in _top(scored.order, body.top_n):
            result: dict[str, Any] = {"index": i, "relevance_score": scored.scores[i]}
            if body.return_documents:
                doc = body.documents[i]
                result["document"] = {"text": doc} if isinstance(doc, str) else doc
            results.append(result)
        return JSONResponse(
            {
                "id": str(uuid.uuid4()),
                "model": body.model or settings.spec,
                "results": results,
                "meta": meta("1", scored.input_tokens, scored.truncated),
                "usage": {"total_tokens": scored.input_tokens},
            },
            headers=_headers(scored),
        )

    @app.post("/rerank", dependencies=guarded, summary="text-embeddings-inference rerank")
    async def tei(body: TEIRequest) -> Any:
        scored = await rank(body.query, body.texts, field="texts", passages=body.passages)
        answer = []
        for i in _top(scored.order, body.top_n):
            raw = scored.scores[i]
            item: dict[str, Any] = {"index": i, "score": raw if body.raw_scores else sigmoid(raw)}
            if body.return_text:
                item["text"] = body.texts[i]
            answer.append(item)
        return JSONResponse(answer, headers=_headers(scored))

    @app.get("/health", summary="alive")
    async def health() -> Any:
        return {"status": "ok"}

    @app.get("/ready", summary="the model answered (a warm-up before the port opened, then the last batch)")
    async def ready() -> Any:
        if service.stopping:
            return error_response(503, "the server is stopping", None)
        if service.failing is not None:
            return error_response(503, f"the model's last batch failed: {service.failing}", None)
        return {"status": "ready", "queue_depth": service.batcher.depth, "in_flight": service.batcher.in_flight}

    @app.get("/info", dependencies=guarded, summary="what is served")
    async def info() -> Any:
        return dict(settings.info)

    if keyed:

        @app.get("/openapi.json", dependencies=guarded, include_in_schema=False)
        async def openapi() -> Any:
            return app.openapi()

        @app.get("/docs", dependencies=guarded, include_in_schema=False)
        async def docs() -> Any:
            from fastapi.openapi.docs import get_swagger_ui_html

            return get_swagger_ui_html(openapi_url="/openapi.json", title="rerank")

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Any:
        body, content_type = service.metrics.exposition()
        return Response(body, media_type=content_type)

    return _Guard(app, service)


def _texts(documents: Sequence[Any], rank_fields: Sequence[str] | None) -> list[str]:
    try:
        return document_texts(documents, rank_fields)
    except DocumentError as err:
        raise APIError(422, f"{err.field}: {err}", err.field) from None


class _Guard:
    """ASGI middleware: refuses oversized bodies before they are read, and counts requests and latency."""

    def __init__(self, app: Any, service: Service):
        self.app, self.service = app, service
        self.limit = service.settings.max_body_bytes
        self.routes = {route.path for route in app.routes}

    def __getattr__(self, name: str) -> Any:  # the FastAPI app's attributes (openapi, routes, state)
        return getattr(self.app, name)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        route = path if path in self.routes else "other"
        status = {"code": 500}

        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            status["code"] = 413
            await _send_json(send, 413, f"the body is {int(length)} bytes; at most {self.limit}", "body")
        else:
            # The body is read here, within the limit, and handed on whole (a chunked body has no length).
            body, complete = (
                await _read_body(receive, self.limit) if scope["method"] in ("POST", "PUT") else (b"", True)
            )
            if not complete:
                status["code"] = 413
                await _send_json(send, 413, f"the body is over {self.limit} bytes", "body")
            else:
                await self.app(scope, _replay(body, receive), counting_send)
        metrics = self.service.metrics
        metrics.requests.labels(route, str(status["code"])).inc()
        if route in RERANK_ROUTES:
            metrics.latency.labels(route).observe(time.perf_counter() - start)


async def _read_body(receive: Any, limit: int) -> tuple[bytes, bool]:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"", True  # the client went away: the app sees an empty body and nobody reads the answer
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive: Any) -> Any:
    sent = {"body": False}

    async def replayed() -> dict[str, Any]:
        if not sent["body"]:
            sent["body"] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return dict(await receive())  # after the body: the client's disconnect, when it comes

    return replayed


async def _send_json(send: Any, status: int, message: str, field: str | None) -> None:
    body = json.dumps({"message": message, "field": field}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
