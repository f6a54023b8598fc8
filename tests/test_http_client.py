"""The JSON client every remote model call goes through: keep-alive, retries, Retry-After, clear errors.

A real HTTP/1.1 server on loopback answers; it records which connection each request came on.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from data.errors import BackendError
from rerank.http_client import JSONClient, retry_after
from rerank.llm.backend import load_backend

ANSWER = {"choices": [{"message": {"content": "[2] > [1]"}}], "usage": {"prompt_tokens": 7, "completion_tokens": 5}}


class Recorder(BaseHTTPRequestHandler):
    """Answers ``ANSWER`` after ``script`` (a list of (status, headers) to answer first, in turn)."""

    protocol_version = "HTTP/1.1"  # keep-alive
    script: ClassVar[list[tuple[int, dict[str, str]]]] = []
    connections: ClassVar[list[tuple[str, int]]] = []  # the client address of each request
    times: ClassVar[list[float]] = []

    def do_POST(self) -> None:
        type(self).connections.append(self.client_address)
        type(self).times.append(time.monotonic())
        json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status, headers = type(self).script.pop(0) if type(self).script else (200, {})
        body = json.dumps(ANSWER if status == 200 else {"error": "scripted"}).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Recorder.script, Recorder.connections, Recorder.times = [], [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


CONVERSATION = [[{"role": "user", "content": "rank [1] and [2]"}]]


@pytest.mark.integration
def test_calls_reuse_one_keep_alive_connection(server):
    backend = load_backend(f'openai(base_url="{server}", concurrency=1)', "m")
    for _ in range(5):
        (answer,) = backend.generate(CONVERSATION, max_new_tokens=4)
        assert answer.text == "[2] > [1]"
    assert len(Recorder.connections) == 5
    assert len(set(Recorder.connections)) == 1  # one TCP connection, not one per call


@pytest.mark.integration
def test_concurrent_calls_reuse_their_connections(server):
    backend = load_backend(f'openai(base_url="{server}", concurrency=2)', "m")
    answers = backend.generate(CONVERSATION * 12, max_new_tokens=4)
    assert [a.text for a in answers] == ["[2] > [1]"] * 12
    assert len(set(Recorder.connections)) <= 2


@pytest.mark.integration
def test_retry_after_is_waited_for_then_the_call_succeeds(server):
    Recorder.script = [(429, {"Retry-After": "1"}), (503, {})]
    client = JSONClient(server, max_retries=2)
    assert client.post("/chat/completions", {"x": 1}) == ANSWER
    assert len(Recorder.times) == 3
    assert Recorder.times[1] - Recorder.times[0] >= 0.99  # the server's wait, not the backoff's 0.25-0.75 s


@pytest.mark.integration
def test_a_client_error_is_not_retried_and_names_the_status(server):
    Recorder.script = [(400, {})]
    client = JSONClient(server, max_retries=3)
    with pytest.raises(BackendError, match=r"HTTP 400 from http://127\.0\.0\.1:\d+/v1/completions"):
        client.post("/completions", {})
    assert len(Recorder.times) == 1


@pytest.mark.integration
def test_failing_every_attempt_is_one_error_with_the_hint(server):
    Recorder.script = [(503, {"Retry-After": "0"})] * 3
    client = JSONClient(server, max_retries=2, what="test server", hint="check it")
    with pytest.raises(BackendError, match=r"test server failed after 3 attempts \(HTTP 503 .*\); check it"):
        client.post("/x", {})
    assert len(Recorder.times) == 3


@pytest.mark.integration
def test_a_client_survives_pickling_and_works_after():
    import pickle

    client = JSONClient("http://127.0.0.1:1", max_retries=0)
    copy = pickle.loads(pickle.dumps(client))
    assert copy.base_url == client.base_url and copy._client is None
    with pytest.raises(BackendError, match=r"failed after 1 attempts .*ConnectError"):
        copy.post("/x", {})


@pytest.mark.unit
def test_retry_after_reads_seconds_and_dates():
    assert retry_after("2", 0.5) == 2.0
    assert retry_after("600", 0.5) == 60.0  # at most a minute
    assert retry_after(None, 0.5) == retry_after("soon", 0.5) == 0.5
    in_three = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=3), usegmt=True)
    assert 1.5 < retry_after(in_three, 0.5) <= 3.0
    past = format_datetime(datetime.now(timezone.utc) - timedelta(hours=1), usegmt=True)
    assert retry_after(past, 0.5) == 0.0
