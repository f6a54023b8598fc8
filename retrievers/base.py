"""The ``Retriever`` interface and the metadata saved beside every index.

A retriever answers a batch of queries with a ``Run``. ``retriever % k`` is the
same retriever returning ``k`` candidates per query (the pipeline pushes a
cutoff that follows a retriever into it this way).
"""

from __future__ import annotations

import contextlib
import copy
import json
import platform
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from data.errors import DatasetNotFoundError, ParseError
from data.records import Query, Run
from data.textio import atomic_writer

if TYPE_CHECKING:
    from data.docstore import DocumentStore
    from retrievers.pyterrier import RetrieverTransformer

META_FILE = "rerank-index.json"


@dataclass(frozen=True, slots=True)
class IndexMeta:
    """What built an index: the retriever's registry name, its parameters, versions, the corpus."""

    retriever: str
    params: Mapping[str, Any]
    corpus: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    created: str = ""

    def save(self, index_dir: Path) -> None:
        payload = {
            "retriever": self.retriever,
            "params": dict(self.params),
            "corpus": dict(self.corpus),
            "versions": dict(self.versions),
            "created": self.created,
        }
        with atomic_writer(index_dir / META_FILE) as out:
            json.dump(payload, out, indent=2, sort_keys=True)
            out.write("\n")

    @classmethod
    def load(cls, index_dir: str | Path) -> IndexMeta:
        path = Path(index_dir) / META_FILE
        if not path.is_file():
            raise DatasetNotFoundError(
                f"{index_dir} is not a rerank index (no {META_FILE}); build one with `rerank index`"
            )
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                raw["retriever"], raw["params"], raw.get("corpus", {}), raw.get("versions", {}), raw.get("created", "")
            )
        except (ValueError, KeyError, TypeError) as err:
            raise ParseError(path, None, f"unreadable index metadata: {err}") from None


def library_versions(*packages: str) -> dict[str, str]:
    """Versions of rerank and the given packages (absent ones are left out), plus Python's."""
    found = {"python": platform.python_version()}
    for name in ("rerank", *packages):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def new_meta(retriever: str, params: Mapping[str, Any], corpus: Mapping[str, Any], *packages: str) -> IndexMeta:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return IndexMeta(retriever, params, corpus, library_versions(*packages), created)


class Retriever(ABC):
    """First-stage retrieval over a saved index; subclasses set ``name`` and implement ``retrieve``."""

    name: ClassVar[str]
    k: int = 1000
    version: ClassVar[int] = 1  # bump when the same spec and corpus would give another run
    libraries: ClassVar[tuple[str, ...]] = ()  # distributions whose versions decide the run
    search_params: ClassVar[frozenset[str]] = frozenset()  # the rest are index-time and pick the index

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """Every parameter a spec may give, with its default: search-time ones from the constructor
        (``search_params``), index-time ones from ``build``."""
        import inspect

        found: dict[str, Any] = {}
        build = cls.build  # type: ignore[attr-defined]  # every retriever builds its index (not in this interface)
        for function, skip in (
            (cls.__init__, {"self", "index_dir", "k"}),
            (build, {"documents", "index_dir", "corpus"}),
        ):
            for parameter in inspect.signature(function).parameters.values():
                if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL) or parameter.name in skip:
                    continue
                searched = parameter.name in cls.search_params
                if (function is cls.__init__) == searched and parameter.name not in found:
                    found[parameter.name] = None if parameter.default is parameter.empty else parameter.default
        return found

    @classmethod
    def libraries_for(cls, params: Mapping[str, Any]) -> tuple[str, ...]:
        """The distributions that compute this retriever's run with these parameters."""
        return cls.libraries

    # Parameters added after runs were keyed, at the value that keeps the earlier behaviour: out of keys then.
    neutral_params: ClassVar[Mapping[str, Any]] = MappingProxyType({})

    @abstractmethod
    def retrieve(self, queries: Sequence[Query], k: int | None = None) -> Run:
        """The top ``k`` (default ``self.k``) documents of each query, as one run."""

    def search(self, query: str | Query, k: int | None = None) -> Run:
        """One query, for convenience."""
        return self.retrieve([query if isinstance(query, Query) else Query("0", query)], k)

    def as_pyterrier(self, docs: DocumentStore | None = None) -> RetrieverTransformer:
        """This retriever as a PyTerrier transformer (``pt.Transformer``) from queries frames to results
        frames, with a ``text`` column when ``docs`` (a document store) is given. Needs ``rerank[pyterrier]``."""
        from retrievers.pyterrier import RetrieverTransformer

        return RetrieverTransformer(self, docs)

    def __mod__(self, k: int) -> Retriever:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"a cutoff must be a positive integer, not {k!r}")
        clone = copy.copy(self)
        clone.k = k
        return clone
