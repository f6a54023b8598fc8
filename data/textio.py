"""Line reading and atomic writing shared by every reader and writer.

Reading is gzip-transparent (by magic bytes, not by name), streaming, strict
UTF-8 (an invalid byte is a parse error on its line), tolerant of a BOM and of
CRLF endings. Writing goes to a temporary file beside the target and is renamed
into place, so no partial file ever sits at an output path.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from data.errors import OutputError, ParseError

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


def is_special_output(path: str | Path) -> bool:
    """``-`` (standard output) or an existing path that is not a regular file or folder (a device, a FIFO)."""
    if str(path) == "-":
        return True
    target = Path(path)
    return target.exists() and not target.is_file() and not target.is_dir()


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[IO[str]]:
    """A text handle whose content appears at ``path`` only when the block succeeds.

    A ``.gz`` path is gzip-compressed (with a fixed mtime, so equal content gives equal bytes).
    ``-`` writes to standard output, and a device or FIFO is written in place: only a regular file is
    replaced by renaming (a rename would put a file where the device was). A new file gets the mode
    the umask gives; a replaced one keeps its mode.
    """
    import sys

    target = Path(path)
    if is_special_output(target):
        try:
            with _in_place(target, sys.stdout.buffer if str(path) == "-" else None) as stream:
                in_place = io.TextIOWrapper(stream, encoding="utf-8", newline="\n")
                yield in_place
                in_place.detach()
        except BrokenPipeError:
            raise
        except OSError as err:
            raise OutputError(f"cannot write {path}: {err.strerror or err}") from None
        return
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise OutputError(f"cannot write {target}: {err.strerror or err}") from None
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
        os.chmod(tmp_name, target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask())
        os.replace(tmp_name, target)
    except BaseException as err:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        if isinstance(err, OSError) and err.errno in _FULL_OR_DENIED:
            raise OutputError(f"cannot write {target}: {err.strerror}") from None
        raise


@contextmanager
def _in_place(target: Path, stream: IO[bytes] | None) -> Iterator[IO[bytes]]:
    if stream is not None:
        yield stream
        stream.flush()
        return
    with open(target, "wb") as raw:
        yield raw


_FULL_OR_DENIED = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
