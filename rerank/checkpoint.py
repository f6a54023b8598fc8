"""Per-query checkpoints for long reranking jobs.

A checkpoint is a text file beside the output: a header line naming the job
(method spec and a fingerprint of its inputs), then one line per finished query.
Every line carries a CRC-32 of its JSON, so damage is detected, not trusted. A
torn last line (the process died mid-write) is dropped and redone; damage
anywhere else is an error.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from data.errors import ParseError, RerankError
from data.records import Candidate, Ranking
from rerank.cost import Cost
from rerank.result import RerankResult

FORMAT = 1
log = logging.getLogger("rerank")


def _line(payload: dict[str, Any]) -> str:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"{zlib.crc32(body.encode()):08x} {body}\n"


def _decode(path: Path, number: int, text: str) -> dict[str, Any] | None:
    """The payload of a line, or None when its CRC or JSON is bad."""
    crc, _, body = text.partition(" ")
    try:
        if int(crc, 16) != zlib.crc32(body.encode()):
            return None
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def checkpoint_job(path: Path) -> dict[str, Any] | None:
    """The job a checkpoint file belongs to (its header), or None when it is missing or its header is damaged."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline().decode("utf-8", errors="replace").rstrip("\n")
    except OSError:
        return None
    return _decode(path, 1, first)


def checkpoint_path(output: Path) -> Path:
    """Where the checkpoint of the job writing ``output`` lives: beside it."""
    return output.with_name(output.name + ".checkpoint")


def open_checkpoint(output: Path, header: dict[str, Any], *, resume: bool, fresh: bool) -> Checkpoint:
    """The checkpoint of the job writing ``output``: resumed with ``resume``, discarded with ``fresh``.

    A checkpoint found without either is refused, so an interrupted run is never silently restarted
    or silently continued.
    """
    path = checkpoint_path(output)
    checkpoint = Checkpoint(path, header)
    found = checkpoint_job(path) if path.exists() and not fresh else None
    if fresh:
        path.unlink(missing_ok=True)
    elif found is not None and found != checkpoint.header:
        # its method or inputs changed (a corpus fixed after a late failure): nothing in it can be resumed
        log.info(f"starting afresh: {path} was left by another job (its method or inputs changed since)")
        path.unlink()
    elif path.exists() and not resume:
        with open(path, "rb") as handle:
            finished = max(0, sum(1 for _ in handle) - 1)
        raise RerankError(f"{path} holds {finished} finished queries of this same job: add --resume to go on "
                          "from them, or --fresh to start over")  # fmt: skip
    return checkpoint.open()


def note_what_is_kept(checkpoint: Checkpoint) -> None:
    """After a failure: where the finished queries are and how the same command goes on from them."""
    if len(checkpoint):
        log.info(f"kept {len(checkpoint)} finished queries in {checkpoint.path}: the same command with --resume "
                 "goes on from them (a changed input starts afresh)")  # fmt: skip


class Checkpoint:
    """Finished rankings of one job; ``open`` resumes, ``add`` appends durably.

    Memory holds where each finished query's line starts and what it cost in seconds, never the
    rankings: ``result`` reads one back from the file. A query checkpointed twice (a batch redone
    after a kill mid-write) is read from its last line.
    """

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.header = {"format": FORMAT, **header}
        self._where: dict[str, tuple[int, float]] = {}  # qid: (byte offset of its line, its seconds)
        self._handle: IO[bytes] | None = None
        self._reader: IO[bytes] | None = None

    def __contains__(self, qid: object) -> bool:
        return qid in self._where

    def __len__(self) -> int:
        return len(self._where)

    def seconds(self, qid: str) -> float:
        return self._where[qid][1]

    def qids(self) -> list[str]:
        """The finished queries, in the order they were first checkpointed."""
        return list(self._where)

    def result(self, qid: str) -> RerankResult:
        """The finished ranking and cost of one query, read from the file."""
        if self._handle is not None:
            self._handle.flush()
        if self._reader is None:
            self._reader = open(self.path, "rb")  # noqa: SIM115 - kept open across result() calls
        self._reader.seek(self._where[qid][0])
        payload = _decode(self.path, 0, self._reader.readline().decode("utf-8").rstrip("\n"))
        if payload is None:
            raise ParseError(self.path, 0, f"checkpoint line of query {qid!r} changed while the job ran")
        return _result(payload)

    def open(self) -> Checkpoint:
        """Loads what an earlier run finished. A new checkpoint file is created by the first ``add``, so
        a job that fails before its first batch is done leaves nothing to resume."""
        if self.path.exists():
            self._load()
            self._handle = open(self.path, "ab")  # noqa: SIM115 - kept open across add() calls
        return self

    def _load(self) -> None:
        offset = 0
        torn = b""
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.endswith(b"\n"):  # bytes after the final newline are a torn write
                    torn = raw
                    break
                text = raw[:-1].decode("utf-8", errors="replace")
                payload = _decode(self.path, number, text)
                if number == 1:
                    if payload is None:
                        raise ParseError(self.path, 1, "checkpoint header is corrupted; delete it or run with --fresh")
                    if payload != self.header:
                        raise ParseError(
                            self.path, 1,
                            "checkpoint belongs to a different job (method or inputs changed); run with --fresh",
                        )  # fmt: skip
                elif payload is None:
                    raise ParseError(
                        self.path, number, "checkpoint line is corrupted (CRC or JSON mismatch); run with --fresh"
                    )
                else:
                    self._where[payload["qid"]] = (offset, float(payload["cost"]["seconds"]))
                offset += len(raw)
        if offset == 0:
            raise ParseError(self.path, 1, "checkpoint has no header; delete it or run with --fresh")
        if torn:
            with open(self.path, "r+b") as raw_file:  # drop the torn line so appends start clean
                raw_file.truncate(offset)

    def add(self, results: Iterable[RerankResult], position: int | None = None) -> None:
        """Append finished rankings (``position``, the batch's place, is not needed: lines carry query ids)."""
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "wb")  # noqa: SIM115 - kept open across add() calls
            self._handle.write(_line(self.header).encode())
        for result in results:
            payload = {
                "qid": result.ranking.qid,
                "candidates": [[c.docid, c.score] for c in result.ranking.candidates],
                "cost": result.cost.as_dict(),
            }
            offset = self._handle.tell()
            self._handle.write(_line(payload).encode())
            self._where[result.ranking.qid] = (offset, result.cost.seconds)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        for handle in (self._handle, self._reader):
            if handle is not None:
                handle.close()
        self._handle = self._reader = None


def _result(payload: dict[str, Any]) -> RerankResult:
    ranking = Ranking(payload["qid"], tuple(Candidate(d, s) for d, s in payload["candidates"]))
    return RerankResult(ranking, Cost(**payload["cost"]))
