"""A disk cache of model outputs, so re-runs of the same work are free.

Keys are digests of everything that determines an output: the method's full
spec (model and settings), the query text and the candidate text. Values are
JSON. SQLite makes it safe to share between processes and to interrupt.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def cache_key(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")  # separator: ("ab", "c") and ("a", "bc") differ
    return digest.hexdigest()


class OutputCache:
    def __init__(self, directory: str | Path):
        self.path = Path(directory) / "outputs.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS outputs (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    @property
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60)
            conn.execute("PRAGMA journal_mode = WAL")
            self._local.conn = conn
        return conn

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            sql = f"SELECT key, value FROM outputs WHERE key IN ({','.join('?' * len(chunk))})"
            found.update((k, json.loads(v)) for k, v in self._conn.execute(sql, chunk))
        return found

    def put_many(self, items: Iterable[tuple[str, Any]]) -> None:
        with self._conn as conn:
            conn.executemany("INSERT OR REPLACE INTO outputs VALUES (?, ?)", ((k, json.dumps(v)) for k, v in items))

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM outputs").fetchone()[0])
