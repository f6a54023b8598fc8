"""JSON over HTTP with retries: what every remote model call (an LLM server, a rerank service) needs.

A failed request is retried with exponential backoff and jitter, honouring ``Retry-After``
(408, 409, 429 and 5xx, and connection errors); another 4xx, or failure after the retries,
raises ``BackendError`` so no candidate is ever ranked from a missing answer. Standard library
only, so a remote stage costs no extra install.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from data.errors import BackendError

RETRYABLE = frozenset({408, 409, 429, 500, 502, 503, 504})


def post_json(
    url: str,
    body: Any,
    *,
    headers: Mapping[str, str] | None = None,
    max_retries: int = 5,
    timeout: float = 120.0,
    what: str = "server",
    hint: str = "",
) -> Any:
    """The decoded JSON answer of a POST, after up to ``max_retries`` retries."""
    data = json.dumps(body).encode("utf-8")
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    last = ""
    for attempt in range(max_retries + 1):
        delay = min(30.0, 0.5 * 2**attempt) * (0.5 + random.random())
        try:
            request = urllib.request.Request(url, data=data, headers=all_headers, method="POST")
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode("utf-8", "replace")
            last = f"HTTP {err.code} from {url}: {detail}"
            if err.code not in RETRYABLE:
                raise BackendError(last) from None
            retry_after = err.headers.get("Retry-After") if err.headers else None
            if retry_after and retry_after.replace(".", "", 1).isdigit():
                delay = min(60.0, float(retry_after))
        except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as err:
            last = f"{url}: {getattr(err, 'reason', err)}"
        if attempt < max_retries:
            time.sleep(delay)
    raise BackendError(f"{what} failed after {max_retries + 1} attempts ({last})" + (f"; {hint}" if hint else ""))
