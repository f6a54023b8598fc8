"""Helpers for tests of ``rerank serve``: a real server in a subprocess, and a model whose speed a test controls."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from data.errors import BackendError
from data.records import RerankRequest
from rerank.base import Reranker, RerankResult, scored_ranking
from rerank.cost import Cost

TESTS = Path(__file__).resolve().parent


class Served:
    """``rerank serve ARGS --port 0`` in a subprocess; ``url`` once it logs where it listens."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, gated: bool = False):
        # A gated server registers the GatedReranker below first (the way a plugin would).
        prelude = "from rerank.registry import register_method; register_method('gated', 'serving:GatedReranker'); "
        code = (prelude if gated else "") + "from rerank.cli import main; import sys; sys.exit(main(sys.argv[1:]))"
        environment = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, "serve", *args, "--port", "0"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=environment,
        )  # fmt: skip
        self.lines: list[str] = []
        self.url = ""
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            found = re.search(r"listening on (http://\S+?)[ ,]", line)
            if found:
                self.url = found.group(1)
                self._listening.set()
        self._listening.set()  # the process ended: whoever waits learns it at once

    def wait_listening(self) -> str:
        # Waits on the server's own progress line (or its exit); the bound is only a safety net.
        self._listening.wait(timeout=900)
        if not self.url:
            raise RuntimeError(f"rerank serve did not start (exit {self.process.poll()}):\n{''.join(self.lines)}")
        return self.url

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=300)
        self._reader.join(timeout=10)
        return code

    @property
    def log(self) -> str:
        return "".join(self.lines)


class GatedReranker(Reranker):
    """Scores by text length, but computes only while ``gate`` (a file) is absent: a test holds the model busy.

    ``seconds_per_pair`` makes it a slow model of known speed; while the file ``fail`` exists, every call fails
    as a model server that stopped answering does (``BackendError``).
    """

    method = "gated"

    def __init__(self, gate: str, poll: float = 0.01, seconds_per_pair: float = 0.0, fail: str = ""):
        self.gate, self.poll, self.seconds_per_pair, self.fail = gate, poll, seconds_per_pair, fail

    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        # The server's warm-up request (answered before its port opens) passes a closed gate.
        while os.path.exists(self.gate) and requests[0].query.qid != "rerank-warm-up":
            time.sleep(self.poll)
        if self.fail and os.path.exists(self.fail):
            raise BackendError(f"the gated model is told to fail ({self.fail} exists)")
        time.sleep(self.seconds_per_pair * sum(len(r.candidates) for r in requests))
        return [
            RerankResult(scored_ranking(r, [float(len(c.text or "")) for c in r.candidates]), Cost(calls=1))
            for r in requests
        ]
