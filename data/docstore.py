"""Random access to document text by docid.

``SqliteDocumentStore`` is the on-disk store: built once from any document
stream (8.8M MS MARCO passages fit; memory stays at SQLite's page cache),
opened read-only, safe to share across threads (one connection per thread).
``MemoryDocumentStore`` serves small collections and tests.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from data.errors import DocumentNotFoundError, ParseError
from data.records import Document

STORE_FORMAT = 1
_LOOKUP_CHUNK = 500  # below SQLite's default limit of host parameters


@runtime_checkable
class DocumentStore(Protocol):
    def get_many(self, docids: Sequence[str]) -> list[Document]: ...

    def __contains__(self, docid: object) -> bool: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Document]: ...


def get_document(store: DocumentStore, docid: str) -> Document:
    return store.get_many([docid])[0]


class MemoryDocumentStore:
    def __init__(self, documents: Iterable[Document]):
        self._docs: dict[str, Document] = {}
        for doc in documents:
            if doc.docid in self._docs:
                raise ValueError(f"duplicate document id {doc.docid!r}")
            self._docs[doc.docid] = doc

    def get_many(self, docids: Sequence[str]) -> list[Document]:
        try:
            return [self._docs[d] for d in docids]
        except KeyError as err:
            raise DocumentNotFoundError(f"document {err.args[0]!r} is not in the store") from None

    def __contains__(self, docid: object) -> bool:
        return docid in self._docs

    def __len__(self) -> int:
        return len(self._docs)

    def __iter__(self) -> Iterator[Document]:
        return iter(self._docs.values())


class SqliteDocumentStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no document store at {self.path}")
        self._local = threading.local()
        self._len: int | None = None

    @property
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB per connection
            self._local.conn = conn
        return conn

    @property
    def source(self) -> str:
        """The corpus file (or dataset) the store was built from, as recorded when it was built."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'source'").fetchone()
        return str(row[0]) if row and row[0] else ""

    @classmethod
    def build(cls, path: str | Path, documents: Iterable[Document], source: str = "") -> SqliteDocumentStore:
        """Write a store atomically: it appears at ``path`` only once complete."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        conn = sqlite3.connect(tmp)
        try:
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("CREATE TABLE docs (docid TEXT NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL)")
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.executemany("INSERT INTO docs VALUES (?, ?, ?)", ((d.docid, d.title, d.text) for d in documents))
            try:
                conn.execute("CREATE UNIQUE INDEX docs_by_id ON docs (docid)")
            except sqlite3.IntegrityError:
                dup = conn.execute("SELECT docid FROM docs GROUP BY docid HAVING COUNT(*) > 1 LIMIT 1").fetchone()
                raise ParseError(source or target, None, f"duplicate document id {dup[0]!r}") from None
            count = conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
            meta = {"format": str(STORE_FORMAT), "source": source, "count": str(count)}
            conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            conn.commit()
        except BaseException:
            conn.close()
            tmp.unlink(missing_ok=True)
            raise
        conn.close()
        os.replace(tmp, target)
        return cls(target)

    def get_many(self, docids: Sequence[str]) -> list[Document]:
        found: dict[str, Document] = {}
        unique = list(dict.fromkeys(docids))
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT docid, title, text FROM docs WHERE docid IN ({marks})"
            for docid, title, text in self._conn.execute(sql, chunk):
                found[docid] = Document(docid, text, title)
        missing = [d for d in unique if d not in found]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            where = f"the corpus {self.source}" if self.source else f"the store {self.path}"
            raise DocumentNotFoundError(f"document {missing[0]!r}{more} not in {where}")
        return [found[d] for d in docids]

    def __contains__(self, docid: object) -> bool:
        row = self._conn.execute("SELECT 1 FROM docs WHERE docid = ?", (docid,)).fetchone()
        return row is not None

    def __len__(self) -> int:
        if self._len is None:
            self._len = int(self._conn.execute("SELECT value FROM meta WHERE key = 'count'").fetchone()[0])
        return self._len

    def __iter__(self) -> Iterator[Document]:
        for docid, title, text in self._conn.execute("SELECT docid, title, text FROM docs ORDER BY rowid"):
            yield Document(docid, text, title)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def cached_store(source: Path, documents: Iterable[Document], cache_dir: Path) -> SqliteDocumentStore:
    """Open the store built from ``source``, building it on first use.

    The cache key covers the source's path, size and mtime, so a changed source
    file gets a fresh store. ``documents`` is consumed only when building.
    """
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{STORE_FORMAT}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = cache_dir / "docstores" / f"{source.name.split('.')[0]}-{digest}.sqlite"
    if path.is_file():
        return SqliteDocumentStore(path)
    return SqliteDocumentStore.build(path, documents, source=str(source))
