"""JSON over HTTP with retries: what every remote model call (an LLM server, a rerank service) needs.

``JSONClient`` posts to one server over pooled keep-alive connections (httpx), so a job of thousands
of calls opens a handful of connections, not one per call. A failed request is retried with
exponential backoff and jitter, honouring ``Retry-After`` in seconds or as an HTTP date (408, 409,
429 and 5xx, and connection errors); another 4xx, or failure after the retries, raises
``BackendError`` so no candidate is ever ranked from a missing answer. One client is shared by the
threads of a method's concurrent calls.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from data.errors import BackendError

RETRYABLE = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_DELAY, MAX_RETRY_AFTER = 30.0, 60.0


class JSONClient:
    """POSTs JSON to ``base_url`` and decodes the answer, up to ``max_retries`` retries per call.

    ``what`` names the server in errors and ``hint`` says what to check when it never answers.
    ``connections`` bounds the pool (the callers' concurrency). The httpx client is made on first use,
    so a method holding this can be built, copied or pickled before any call.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        max_retries: int = 5,
        timeout: float = 120.0,
        connections: int = 4,
        what: str = "server",
        hint: str = "",
    ):
        self.base_url = base_url.rstrip("/")
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.max_retries, self.timeout, self.connections = max_retries, timeout, max(1, connections)
        self.what, self.hint = what, hint
        self._client: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None, "_lock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import httpx

                limits = httpx.Limits(max_connections=self.connections, max_keepalive_connections=self.connections)
                self._client = httpx.Client(timeout=self.timeout, limits=limits, headers=self.headers)
            return self._client

    def post(self, path: str, body: Any) -> Any:
        """The decoded JSON answer of ``POST base_url + path``."""
        import httpx

        url = f"{self.base_url}{path}"
        content = json.dumps(body).encode("utf-8")
        last = ""
        for attempt in range(self.max_retries + 1):
            delay = min(MAX_DELAY, 0.5 * 2**attempt) * (0.5 + random.random())
            try:
                response = self.client().post(url, content=content)
            except httpx.TransportError as err:  # refused, reset, timed out
                last = f"{url}: {type(err).__name__}: {err}"
            else:
                if response.is_success:
                    try:
                        return response.json()
                    except ValueError:
                        last = f"{url}: an answer that is not JSON: {response.text[:300]!r}"
                else:
                    last = f"HTTP {response.status_code} from {url}: {response.text[:300]}"
                    if response.status_code not in RETRYABLE:
                        raise BackendError(last)
                    delay = retry_after(response.headers.get("Retry-After"), delay)
            if attempt < self.max_retries:
                time.sleep(delay)
        raise BackendError(
            f"{self.what} failed after {self.max_retries + 1} attempts ({last})"
            + (f"; {self.hint}" if self.hint else "")
        )

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def retry_after(header: str | None, default: float) -> float:
    """The wait a ``Retry-After`` header asks for (seconds or an HTTP date, at most a minute), else ``default``."""
    if not header:
        return default
    header = header.strip()
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(header)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return min(MAX_RETRY_AFTER, max(0.0, (when - datetime.now(timezone.utc)).total_seconds()))
