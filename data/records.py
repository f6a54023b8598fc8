"""Frozen records: the vocabulary every package speaks.

Ranked lists follow trec_eval's reading order: score descending, then docid
descending (byte order) among equal scores. ``Ranking.sorted`` applies it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from data.frames import Queries, TextSource


@dataclass(frozen=True, slots=True)
class Query:
    qid: str
    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.qid, str) or not isinstance(self.text, str):
            raise TypeError(
                f"Query(qid, text) takes two strings, not {type(self.qid).__name__} and {type(self.text).__name__}"
            )


@dataclass(frozen=True, slots=True)
class Document:
    docid: str
    text: str
    title: str = ""

    @property
    def full_text(self) -> str:
        """Title and text in one field (the BEIR "flat" convention)."""
        return f"{self.title} {self.text}" if self.title else self.text


@dataclass(frozen=True, slots=True)
class Candidate:
    """A document in a ranked list; ``text`` is carried when the source had it.

    ``title`` marks the title ``text`` begins with (a store's ``full_text``: title, a space, body), so a method
    that splits a document into windows can put the title on each (``split``); the text every other method
    reads already holds it. Comparisons ignore it: it adds no text.
    """

    docid: str
    score: float
    text: str | None = None
    title: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.docid, str) or not self.docid:
            raise TypeError(f"a Candidate's docid is a non-empty string, not {self.docid!r}")
        score = self.score
        if type(score) is not float and (isinstance(score, bool) or not isinstance(score, numbers.Real)):  # fast path
            raise TypeError(f"candidate {self.docid!r}: score must be a number, not {score!r}")
        if math.isnan(score):
            raise ValueError(f"candidate {self.docid!r}: score is NaN")
        if self.text is not None and not isinstance(self.text, str):
            raise TypeError(f"candidate {self.docid!r}: text must be a string or None, not {type(self.text).__name__}")
        if self.title is not None and (self.text is None or not self.text.startswith(f"{self.title} ")):
            raise ValueError(f"candidate {self.docid!r}: its text does not begin with its title {self.title!r}")


def trec_order_key(candidate: Candidate) -> tuple[float, tuple[int, ...]]:
    """Sort key giving trec_eval's order: score desc, then docid desc by bytes."""
    return (-candidate.score, (*(-b for b in candidate.docid.encode("utf-8")), 1))


@dataclass(frozen=True, slots=True)
class Ranking:
    """One query's candidates, in rank order (first is best)."""

    qid: str
    candidates: tuple[Candidate, ...]

    def __post_init__(self) -> None:
        # a docid ranked twice would be scored twice: a run file with one is refused, so is a ranking built so
        seen: set[str] = set()
        for candidate in self.candidates:
            if candidate.docid in seen:
                raise ValueError(f"ranking of query {self.qid!r}: docid {candidate.docid!r} appears twice")
            seen.add(candidate.docid)

    @classmethod
    def sorted(cls, qid: str, candidates: Iterable[Candidate]) -> Ranking:
        """A ranking in trec_eval order, whatever order the candidates came in."""
        return cls(qid, tuple(sorted(candidates, key=trec_order_key)))

    def __len__(self) -> int:
        return len(self.candidates)

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.candidates)

    def cut(self, k: int) -> Ranking:
        return Ranking(self.qid, self.candidates[:k])

    @property
    def docids(self) -> list[str]:
        return [c.docid for c in self.candidates]


@dataclass(frozen=True, slots=True)
class Run:
    """Rankings for many queries, keyed by qid, in the order they were added."""

    rankings: Mapping[str, Ranking] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "rankings", MappingProxyType(dict(self.rankings)))

    @classmethod
    def from_rankings(cls, rankings: Iterable[Ranking], name: str = "") -> Run:
        by_qid: dict[str, Ranking] = {}
        for ranking in rankings:
            if ranking.qid in by_qid:
                raise ValueError(f"two rankings for query {ranking.qid!r}")
            by_qid[ranking.qid] = ranking
        return cls(by_qid, name)

    def __len__(self) -> int:
        return len(self.rankings)

    def __iter__(self) -> Iterator[Ranking]:
        return iter(self.rankings.values())

    def __getitem__(self, qid: str) -> Ranking:
        return self.rankings[qid]

    def __contains__(self, qid: object) -> bool:
        return qid in self.rankings

    @property
    def qids(self) -> list[str]:
        return list(self.rankings)

    def cut(self, k: int) -> Run:
        return Run({qid: r.cut(k) for qid, r in self.rankings.items()}, self.name)

    def num_candidates(self) -> int:
        return sum(len(r) for r in self.rankings.values())

    def to_frame(self, queries: Queries | None = None, docs: TextSource | None = None) -> pd.DataFrame:
        """This run as a pandas frame in PyTerrier's columns (``qid, query, docno, text, score, rank``,
        rank 0-based): ``query`` with ``queries`` (Query records or qid -> text), ``text`` with ``docs``
        (a document store) or candidates that carry their texts. See ``data.frames``."""
        from data.frames import run_to_frame

        return run_to_frame(self, queries, docs)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, name: str = "") -> Run:
        """The run of a frame with ``qid, docno, score`` (``text`` kept where present), each query's
        documents in ``rank`` order, or by score where the frame has no rank."""
        from data.frames import frame_rankings

        rankings = frame_rankings(frame, ("qid", "docno", "score"), "Run.from_frame")
        return cls.from_rankings(
            (Ranking(r.qid, tuple(Candidate(docno, score, text) for docno, score, text in r.rows)) for r in rankings),
            name,
        )


@dataclass(frozen=True, slots=True)
class Qrels:
    """Relevance judgments: qid -> docid -> graded relevance."""

    judgments: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frozen = {q: MappingProxyType(dict(d)) for q, d in self.judgments.items()}
        object.__setattr__(self, "judgments", MappingProxyType(frozen))

    def __len__(self) -> int:
        return len(self.judgments)

    def __getitem__(self, qid: str) -> Mapping[str, int]:
        return self.judgments[qid]

    def __contains__(self, qid: object) -> bool:
        return qid in self.judgments

    @property
    def qids(self) -> list[str]:
        return list(self.judgments)

    def num_judgments(self) -> int:
        return sum(len(d) for d in self.judgments.values())


@dataclass(frozen=True, slots=True)
class RerankRequest:
    """A query and the candidates to reorder; the unit a reranker takes."""

    query: Query
    candidates: tuple[Candidate, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.query, Query):
            raise TypeError(f"RerankRequest takes a Query, not {type(self.query).__name__}")
        if not self.query.text.strip():
            raise ValueError(f"query {self.query.qid!r} has no text")
        if not isinstance(self.candidates, tuple):
            if isinstance(self.candidates, (str, bytes, Mapping)) or not isinstance(self.candidates, Iterable):
                raise TypeError(
                    f"query {self.query.qid!r}: candidates are a sequence of Candidate, not {type(self.candidates).__name__}"
                )
            object.__setattr__(self, "candidates", tuple(self.candidates))
        seen: set[str] = set()
        for candidate in self.candidates:
            if not isinstance(candidate, Candidate):
                raise TypeError(
                    f"query {self.query.qid!r}: candidates are Candidate records, not {type(candidate).__name__}"
                )
            if candidate.docid in seen:
                raise ValueError(f"query {self.query.qid!r}: document {candidate.docid!r} is a candidate twice")
            seen.add(candidate.docid)
