"""Checks of the paths given on the command line, made before any work starts.

Each failure is one line naming the flag: a path that does not exist is ``PathNotFoundError``
(exit 5); a folder where a file belongs, an unreadable input or an output that cannot be written is
``InvalidPathError`` (exit 3).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from data.errors import InvalidPathError, PathNotFoundError
from data.textio import is_special_output


def input_file(flag: str, value: str) -> Path:
    """An existing, readable file (``-`` is not accepted here: the command says where it is). A pipe or FIFO
    (``--qrels <(zcat qrels.gz)``) is read once, here, into the cache, and that copy is returned: commands
    read some inputs twice (their query order, then their lines), and a stream's second read is empty."""
    path = Path(value).expanduser()
    if not path.exists():
        raise PathNotFoundError(f"{flag} {value}: no such file")
    if path.is_dir():
        raise InvalidPathError(f"{flag} {value} is a folder; give a file")
    if not path.is_file():
        return _kept_stream(flag, value, path)
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as err:
        raise InvalidPathError(f"{flag} {value} cannot be read: {err.strerror or err}") from None
    return path


def input_folder(flag: str, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.exists():
        raise PathNotFoundError(f"{flag} {value}: no such folder")
    if not path.is_dir():
        raise InvalidPathError(f"{flag} {value} is a file; give a folder")
    return path


def output_file(flag: str, value: str) -> Path:
    """Where a result file will go: ``-`` (standard output), a device or FIFO written in place, or a
    regular file (new or replaced) in a folder that can be written."""
    if not value:
        raise InvalidPathError(f"{flag} is empty; give a file path or - for standard output")
    if value.endswith(("/", os.sep)):  # "out/new/" names a folder: never write a file called "new"
        raise InvalidPathError(f"{flag} {value} ends in a slash, so it names a folder; give a file path")
    path = Path(value).expanduser()
    if is_special_output(path):
        if str(value) != "-" and not os.access(path, os.W_OK):
            raise InvalidPathError(f"{flag} {value} cannot be written")
        return path
    if path.is_dir():
        raise InvalidPathError(f"{flag} {value} is a folder; give a file path")
    _writable_folder(flag, value, path.parent)
    return path


def not_an_input(output: tuple[str, str | None], inputs: list[tuple[str, str | None]]) -> None:
    """Refuse an output that is one of the command's inputs (the same path, a symlink or a hard link to it):
    writing it would destroy what is being read. Named by both flags, before any work."""
    flag, value = output
    if not value or value == "-" or not Path(value).expanduser().exists():
        return
    target = Path(value).expanduser()
    for input_flag, input_value in inputs:
        if not input_value or input_value == "-":
            continue
        source = Path(input_value).expanduser()
        try:
            same = source.exists() and os.path.samefile(source, target)
        except OSError:
            continue
        if same:
            raise InvalidPathError(
                f"{flag} {value} is {input_flag} {input_value}: writing it would destroy the input; give another file"
            )


def output_folder(flag: str, value: str) -> Path:
    """A folder that will be created or written into (an existing file at that path is refused)."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise InvalidPathError(f"{flag} {value} is a file; give a folder")
    _writable_folder(flag, value, path if path.is_dir() else path.parent)
    return path


def _writable_folder(flag: str, value: str, folder: Path) -> None:
    """The folder (or, if it does not exist yet, its nearest existing ancestor) accepts new files."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InvalidPathError(f"{flag} {value}: {existing} is a file, so no folder can be made there")
    try:  # a real probe: root passes permission checks but not a read-only file system
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as err:
        raise InvalidPathError(f"{flag} {value}: cannot write in {existing} ({err.strerror or err})") from None


def _kept_stream(flag: str, value: str, path: Path) -> Path:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise InvalidPathError(f"{flag} {value} cannot be read: {err.strerror or err}") from None
    if not data:
        raise InvalidPathError(f"{flag} {value}: the stream is empty")
    return _kept_bytes(data, "".join(path.suffixes))


def _kept_bytes(data: bytes, suffix: str) -> Path:
    """``data`` in the cache under its digest (the suffix kept: formats are told by it), written once."""
    import hashlib

    from data.config import cache_dir

    path = cache_dir() / "stdin" / (hashlib.sha256(data).hexdigest()[:20] + suffix)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def stdin_file(flag: str) -> Path:
    """Standard input saved into the cache under its digest, so a run read from a pipe has a stable
    identity (and a resumed job finds the same input)."""
    import sys

    data = sys.stdin.buffer.read()
    if not data:
        raise InvalidPathError(f"{flag} -: standard input is empty")
    return _kept_bytes(data, ".trec")
