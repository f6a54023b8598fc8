"""Loading what is served, and running it under uvicorn with a graceful stop.

SIGTERM or SIGINT: uvicorn stops accepting connections, every accepted request is finished and
answered, the batcher drains, and the process exits 0 (a second SIGINT forces the exit).
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from data.errors import BackendError, InvalidSpecError, RerankError
from data.optional import optional_import
from data.records import Candidate, Query, RerankRequest
from rerank.serve.app import ServeSettings, Service, create_app
from rerank.spec import CONCAT, PipelineSpec, StageSpec

log = logging.getLogger("rerank.serve")


def _concatenation(pipeline: PipelineSpec) -> tuple[PipelineSpec, ...]:
    """The members of a pipeline that is one concatenation with no cutoff (``A ^ B``), else none."""
    only = pipeline.first if len(pipeline.stages) == 1 else None
    return only.spec.inputs if only is not None and only.spec.name == CONCAT and only.cutoff is None else ()


def served_stages(pipeline: PipelineSpec) -> list[StageSpec]:
    """Every reranking stage a served pipeline runs (a concatenation's members' too), in order."""
    members = _concatenation(pipeline)
    return [s for m in members for s in served_stages(m)] if members else list(pipeline.stages)


def check_served(pipeline: PipelineSpec) -> None:
    """A served pipeline reranks what each request sends: every stage must be a reranking method, or the
    pipeline a concatenation of such pipelines (``(a % 10 >> b) ^ a``)."""
    from rerank.registry import METHODS, check_reranker

    for member in _concatenation(pipeline):
        check_served(member)
    if _concatenation(pipeline):
        return
    for stage in pipeline.stages:
        if stage.spec.name not in METHODS.names():
            raise InvalidSpecError(
                f"{stage.spec}: a served pipeline reranks the documents each request sends, so every stage is a "
                f"reranking method (one of {', '.join(METHODS.names())}), or it is a concatenation of such "
                "pipelines (A ^ B)"
            )
        check_reranker(stage.spec)  # its parameters, and that its model and device are here


def load_served(pipeline: PipelineSpec) -> tuple[Callable[[Sequence[RerankRequest]], Sequence[Any]], Any]:
    """The rerank callable for a pipeline of rerankers (one stage: the reranker itself), or a concatenation of
    them, and its first reranker."""
    from rerank.compose import Concatenation

    check_served(pipeline)
    members = _concatenation(pipeline)
    if members:
        composed = [_composed(member) for member in members]
        return Concatenation(tuple(c for c, _ in composed)).rerank, composed[0][1]
    served, first = _composed(pipeline)
    if len(pipeline.stages) == 1 and pipeline.stages[0].cutoff is None:
        return first.rerank, first
    return served.rerank, first


def _composed(pipeline: PipelineSpec) -> tuple[Any, Any]:
    """A pipeline of rerankers, loaded, and its first reranker."""
    from rerank.compose import Pipeline, RerankStage
    from rerank.registry import load_reranker

    rerankers = [load_reranker(stage.spec) for stage in pipeline.stages]
    stages = tuple(RerankStage(r, s.cutoff) for r, s in zip(rerankers, pipeline.stages, strict=True))
    return Pipeline(stages), rerankers[0]


# One small real request, answered before the port opens: a model that loads but cannot answer (a dead model
# server, a window with no room, a bad device) fails here, once, instead of with a 503 to every caller.
WARM_UP = RerankRequest(
    Query("rerank-warm-up", "what does a reranker do"),
    (
        Candidate("0", 0.0, "A reranker orders the documents a first stage found by their relevance to a query."),
        Candidate("1", 0.0, "Tides rise and fall twice a day."),
    ),
)


def warm_up(rerank: Callable[[Sequence[RerankRequest]], Sequence[Any]]) -> float:
    """Answers ``WARM_UP`` and checks the answer; returns its seconds. ``BackendError`` (exit 6) if it fails."""
    start = time.perf_counter()
    try:
        (result,) = rerank([WARM_UP])
    except (RerankError, ValueError, RuntimeError, OSError) as err:
        raise BackendError(f"the warm-up request failed, so nothing is served: {err}") from err
    got = sorted(c.docid for c in result.ranking.candidates)
    if got != ["0", "1"]:
        raise BackendError(f"the warm-up request came back with documents {got}, not ['0', '1']")
    return time.perf_counter() - start


def pointwise_scorer(pipeline: PipelineSpec, first: Any) -> Any:
    """The served reranker if the pipeline is one pointwise method and no cutoff (it can score a request's
    documents split into windows, ``passages``), else None."""
    from rerank.base import PointwiseReranker

    one = len(pipeline.stages) == 1 and pipeline.stages[0].cutoff is None and pipeline.first.spec.name != CONCAT
    return first if one and isinstance(first, PointwiseReranker) else None


def token_cutter(reranker: Any) -> Callable[[str, int], str] | None:
    """Cuts a text to N tokens of the reranker's own tokenizer (for ``max_tokens_per_doc``), if it has one."""
    tokenizer = reranker.tokenizer() if hasattr(reranker, "tokenizer") else None
    if tokenizer is None or not getattr(tokenizer, "is_fast", False):
        return None

    def cut(text: str, limit: int) -> str:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return text if len(offsets) <= limit else text[: offsets[limit - 1][1]]

    return cut


def check_port(host: str, port: int) -> None:
    """Refuses a port that is out of range or taken, before the model loads."""
    if not 0 <= port <= 65535:
        raise ValueError(f"--port {port}: a port is 0-65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ValueError(f"--host {host}: {err.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            reason = "in use" if err.errno == errno.EADDRINUSE else err.strerror
            raise ValueError(f"--port {port}: cannot listen on {host}:{port} ({reason})") from None


def serve(
    pipeline: PipelineSpec,
    settings: ServeSettings,
    host: str,
    port: int,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Loads the model, answers a warm-up request, then serves until SIGTERM/SIGINT; returns after a graceful
    stop. The port opens only after the warm-up succeeded, so ``/ready`` is never true before."""
    uvicorn = optional_import("uvicorn")
    rerank, first = load_served(pipeline)
    log.warning("rerank serve: warm-up request answered in %.2f s", warm_up(rerank))
    app = create_app(Service(rerank, settings, token_cutter(first), pointwise_scorer(pipeline, first)))

    class Server(uvicorn.Server):  # type: ignore[name-defined]
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            # uvicorn re-raises a caught signal after its graceful stop (exit 143); a requested stop exits 0.
            self._captured_signals.clear()

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started and on_listening is not None:
                bound = [s.getsockname() for server in self.servers for s in server.sockets]
                on_listening(", ".join(f"http://{_host(a)}:{a[1]}" for a in bound))

    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=None,
        lifespan="on",
    )  # fmt: skip
    Server(config).run()


def _host(address: Sequence[Any]) -> str:
    host = str(address[0])
    return f"[{host}]" if ":" in host else host
