"""The one exception hierarchy of the toolkit.

Every error is a ``RerankError`` and also a standard type, so callers can catch
either (``except ValueError`` keeps working for a parse error).
"""

from __future__ import annotations

from pathlib import Path


class RerankError(Exception):
    """Base of every error rerank raises on purpose."""


class RerankWarning(UserWarning):
    """A result that may mislead (an empty run, queries without judgments); the CLI prints it as one line."""


class ParseError(RerankError, ValueError):
    """A file does not have the expected format; names the file and the line."""

    def __init__(self, path: str | Path, line: int | None, message: str, text: str | None = None):
        self.path = str(path)
        self.line = line
        self.message = message
        self.text = text
        where = f"{self.path}:{line}" if line is not None else self.path
        detail = f" (line: {_excerpt(text)})" if text is not None else ""
        super().__init__(f"{where}: {message}{detail}")


class MissingDependencyError(RerankError, ImportError):
    """An optional dependency is absent; the message says how to install it."""


class ModelPackNotInstalledError(MissingDependencyError):
    """A registered model pack's packages are absent or damaged; the message gives the pip command."""


class ModelPackChecksumError(ModelPackNotInstalledError):
    """A model pack's parts joined into a file whose sha256 is not the pack's: nothing was kept."""


class BackendError(RerankError, RuntimeError):
    """A model call failed for good (a server unreachable or erroring after its retries): nothing is ranked from it."""


class DatasetNotFoundError(RerankError, FileNotFoundError):
    """A dataset name is unknown or its files are not in the data directory."""


class PathNotFoundError(RerankError, FileNotFoundError):
    """A file or folder given on the command line does not exist."""


class InvalidPathError(RerankError, ValueError):
    """A path of the wrong kind (a folder where a file belongs, an output over a folder) or not readable/writable."""


class OutputError(InvalidPathError):
    """An output could not be written (a full disk, a read-only place); nothing partial is left."""


class ModelNotFoundError(RerankError, FileNotFoundError):
    """A model name resolves to no local weights."""


class DocumentNotFoundError(RerankError, KeyError):
    """A docid is not in the document store."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class InvalidSpecError(RerankError, ValueError):
    """A method or pipeline spec string does not parse, or names an unknown method."""


class SpecTypeError(InvalidSpecError, TypeError):
    """A parameter of the wrong type (a constructor's own check): a ``TypeError`` to Python, exit 3 to the CLI."""


class UntrainedModelError(InvalidSpecError):
    """A checkpoint lacks trained weights its method needs (a bi-encoder folder given as a cross-encoder)."""


def _excerpt(text: str, limit: int = 80) -> str:
    text = text.rstrip("\r\n")
    return repr(text if len(text) <= limit else text[:limit] + "…")
