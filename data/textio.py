"""Line reading and atomic writing shared by every reader and writer.

Reading is gzip-transparent (by magic bytes, not by name), streaming, strict
UTF-8 (an invalid byte is a parse error on its line), tolerant of a BOM and of
CRLF endings. Writing goes to a temporary file beside the target and is renamed
into place, so no partial file ever sits at an output path.
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from data.errors import ParseError

GZIP_MAGIC = b"\x1f\x8b"


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a file for reading bytes, decompressing it if it is gzip."""
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller
    if raw.peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def _corrupt_gzip(path: str | Path, line: int, err: Exception) -> ParseError:
    return ParseError(path, line, f"corrupt or truncated gzip data ({type(err).__name__}: {err})")


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` with line endings removed; numbers start at 1."""
    with open_binary(path) as handle:
        lines = enumerate(handle, start=1)
        number = 0
        while True:
            try:
                number, raw = next(lines)
            except StopIteration:
                return
            except (EOFError, zlib.error, gzip.BadGzipFile) as err:
                raise _corrupt_gzip(path, number + 1, err) from None
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ParseError(path, number, f"invalid UTF-8 ({err.reason} at byte {err.start})") from None
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield number, text.rstrip("\r\n")


def read_text(path: str | Path) -> str:
    """The whole file as text (gzip-transparent, strict UTF-8, BOM removed)."""
    with open_binary(path) as handle:
        try:
            data = handle.read()
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise _corrupt_gzip(path, 1, err) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ParseError(path, line, f"invalid UTF-8 ({err.reason})") from None
    return text.removeprefix("\ufeff")


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[IO[str]]:
    """A text handle whose content appears at ``path`` only when the block succeeds.

    A ``.gz`` path is gzip-compressed (with a fixed mtime, so equal content gives
    equal bytes).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            compressed = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if target.suffix == ".gz" else None
            text = io.TextIOWrapper(compressed or raw, encoding="utf-8", newline="\n")
            yield text
            text.detach()  # flushes without closing the binary layer
            if compressed is not None:
                compressed.close()  # writes the gzip trailer, leaves raw open
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
