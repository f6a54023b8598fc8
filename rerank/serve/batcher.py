"""Dynamic batching: concurrent requests coalesced into one ``rerank()`` call, run off the event loop.

Requests wait in a bounded queue. One worker takes everything waiting, up to ``max_batch_pairs``
pairs and ``max_batch_tokens`` estimated tokens, waiting at most ``max_wait_ms`` for more while the
batch is not full, and runs the model in a single thread (the model computes one batch at a time;
the event loop stays free for health checks and new requests meanwhile). Each request gets its own
result back through its own future, so nothing crosses between requests.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from data.records import RerankRequest


class QueueFullError(Exception):
    """No room: ``max_queue`` requests wait already, or the work ahead would outlast the request's timeout (429)."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_batch_pairs: int = 512
    max_batch_tokens: int = 0  # 0: no token bound
    max_wait_ms: float = 5.0
    max_queue: int = 256  # requests waiting (not counting the batch being computed)
    # Refuse a request whose wait, estimated from the measured pairs/s, would exceed this (0: never):
    # under overload it gets 429 at once instead of waiting in the queue only to time out. The CLI
    # passes 3/4 of the request timeout: the estimate moves with batch mix and CPU contention.
    shed_after_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_batch_pairs", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.max_batch_tokens < 0 or self.max_wait_ms < 0 or self.shed_after_s < 0:
            raise ValueError("max_batch_tokens, max_wait_ms and shed_after_s cannot be negative")


def estimated_tokens(request: RerankRequest) -> int:
    """About four characters a token, query repeated per pair: enough to bound a batch's size."""
    query = len(request.query.text)
    return sum((query + len(c.text or "")) // 4 + 1 for c in request.candidates)


@dataclass(eq=False)
class _Waiting:
    request: RerankRequest
    future: asyncio.Future[Any]
    pairs: int
    tokens: int
    enqueued: float = field(default_factory=time.perf_counter)


BatchObserver = Callable[[int, int, float], None]  # (requests, pairs, seconds) of each computed batch


class Batcher:
    """Owns the queue and the model thread; ``submit`` returns what ``rerank`` gives for that request."""

    def __init__(
        self,
        rerank: Callable[[Sequence[RerankRequest]], Sequence[Any]],
        limits: BatchLimits,
        on_batch: BatchObserver | None = None,
    ):
        self._rerank, self.limits, self._on_batch = rerank, limits, on_batch
        self._waiting: deque[_Waiting] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rerank-model")
        self._closing = False
        self.in_flight = 0  # requests of the batch being computed
        self._pairs_ahead = 0  # pairs waiting or being computed
        self._rate: float | None = None  # pairs/s of recent batches (moving average)

    @property
    def depth(self) -> int:
        return len(self._waiting)

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="rerank-batcher")

    async def submit(self, request: RerankRequest) -> Any:
        if self._wakeup is None or self._closing:
            raise RuntimeError("the batcher is not running")
        pairs = len(request.candidates)
        if len(self._waiting) >= self.limits.max_queue:
            raise QueueFullError(f"{len(self._waiting)} requests are waiting already", self._seconds_for(0))
        if self.limits.shed_after_s and self._rate and self._pairs_ahead:
            eta = (self._pairs_ahead + pairs) / self._rate
            if eta > self.limits.shed_after_s:
                raise QueueFullError(
                    f"about {eta:.0f} s of work is ahead, too close to the request timeout",
                    self._seconds_for(self.limits.shed_after_s),
                )
        waiting = _Waiting(request, asyncio.get_running_loop().create_future(), pairs, estimated_tokens(request))
        self._waiting.append(waiting)
        self._pairs_ahead += pairs
        self._wakeup.set()
        return await waiting.future

    def _seconds_for(self, allowed: float) -> int:
        """Retry-After: when the work ahead should have shrunk to what is allowed (at least a second)."""
        if not self._rate:
            return 1
        return max(1, math.ceil(self._pairs_ahead / self._rate - allowed))

    async def close(self) -> None:
        """Computes everything accepted, then stops the worker and the model thread."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._worker is not None:
            await self._worker
        self._thread.shutdown(wait=True)

    def _take_batch(self) -> list[_Waiting]:
        batch: list[_Waiting] = []
        pairs = tokens = 0
        while self._waiting:
            head = self._waiting[0]
            if head.future.done():  # its caller gave up (timeout or disconnect) before it was computed
                self._waiting.popleft()
                self._pairs_ahead -= head.pairs
                continue
            fits = pairs + head.pairs <= self.limits.max_batch_pairs and (
                not self.limits.max_batch_tokens or tokens + head.tokens <= self.limits.max_batch_tokens
            )
            if batch and not fits:
                break
            batch.append(self._waiting.popleft())
            pairs, tokens = pairs + head.pairs, tokens + head.tokens
        return batch

    def _full(self) -> bool:
        pairs = sum(w.pairs for w in self._waiting)
        return pairs >= self.limits.max_batch_pairs

    async def _work(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # A batch that is not full waits a little for company, counted from its oldest request.
            wait = self.limits.max_wait_ms / 1000 - (time.perf_counter() - self._waiting[0].enqueued)
            while wait > 0 and not self._full() and not self._closing:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), wait)
                except asyncio.TimeoutError:
                    break
                wait = self.limits.max_wait_ms / 1000 - (time.perf_counter() - self._waiting[0].enqueued)
            batch = self._take_batch()
            if not batch:
                continue
            self.in_flight = len(batch)
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._thread, self._rerank, [w.request for w in batch])
            except Exception as err:  # the whole batch failed: every request in it gets the error
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(err)
            else:
                for waiting, result in zip(batch, results, strict=True):
                    if not waiting.future.done():
                        waiting.future.set_result(result)
            finally:
                self.in_flight = 0
            pairs, seconds = sum(w.pairs for w in batch), time.perf_counter() - start
            self._pairs_ahead -= pairs
            if pairs and seconds > 0:
                rate = pairs / seconds
                self._rate = rate if self._rate is None else 0.7 * self._rate + 0.3 * rate
            if self._on_batch is not None:
                self._on_batch(len(batch), pairs, seconds)
