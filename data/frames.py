"""Runs and reranking inputs as pandas frames, in PyTerrier's columns.

A frame has one row per (query, document): ``qid, query, docno, text, score, rank``, with ``rank``
0-based (PyTerrier's first rank, and a TREC run's) and a query's rows in rank order. ``query`` and
``text`` are there when the caller can give them. pandas is imported when a function runs
(``pip install 'rerank[pandas]'``).

Records are read by their attributes and frames come back as plain tuples (``FrameRanking``) for
the caller to build records from: ``data.records`` calls this module (``Run.to_frame``), so an
import of it here would be a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from data.optional import optional_import

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("qid", "query", "docno", "text", "score", "rank")


class ScoredDocument(Protocol):  # data.records.Candidate
    @property
    def docid(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def text(self) -> str | None: ...


class RankedList(Protocol):  # data.records.Ranking
    @property
    def qid(self) -> str: ...
    @property
    def candidates(self) -> Sequence[ScoredDocument]: ...


class QueryText(Protocol):  # data.records.Query
    @property
    def qid(self) -> str: ...
    @property
    def text(self) -> str: ...


class FullText(Protocol):  # data.records.Document
    @property
    def full_text(self) -> str: ...


class TextSource(Protocol):  # data.docstore.DocumentStore
    def get_many(self, docids: Sequence[str]) -> Sequence[FullText]: ...


Queries = Mapping[str, str] | Mapping[str, QueryText] | Iterable[QueryText]


@dataclass(frozen=True, slots=True)
class FrameRanking:
    """One query's rows of a frame in rank order: what a ``Ranking`` or a ``RerankRequest`` is built from."""

    qid: str
    query: str | None
    rows: tuple[tuple[str, float, str | None], ...]  # (docno, score, text)


def run_to_frame(
    run: Iterable[RankedList], queries: Queries | None = None, docs: TextSource | None = None
) -> pd.DataFrame:
    """A frame of the run's rankings in order, ``rank`` their positions (0 first).

    ``query`` is a column when ``queries`` are given (every query of the run needs one); ``text`` when
    ``docs`` are given or the candidates carry their texts (a candidate's own text wins over the store's).
    """
    pd = optional_import("pandas")
    query_texts = _query_texts(queries) if queries is not None else None
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    texts_missing: list[tuple[str, str]] = []
    for ranking in run:
        candidates = ranking.candidates
        if query_texts is not None:
            if ranking.qid not in query_texts:
                raise ValueError(f"query {ranking.qid!r} of the run is not among the queries given")
            columns["query"].extend([query_texts[ranking.qid]] * len(candidates))
        texts = [c.text for c in candidates]
        if docs is not None and any(t is None for t in texts):
            missing = [c.docid for c in candidates if c.text is None]
            found = iter(d.full_text for d in docs.get_many(missing))
            texts = [t if t is not None else next(found) for t in texts]
        texts_missing.extend((ranking.qid, c.docid) for c, t in zip(candidates, texts, strict=True) if t is None)
        columns["qid"].extend([ranking.qid] * len(candidates))
        columns["docno"].extend(c.docid for c in candidates)
        columns["text"].extend(texts)
        columns["score"].extend(c.score for c in candidates)
        columns["rank"].extend(range(len(candidates)))
    if texts_missing and len(texts_missing) < len(columns["text"]):  # some texts: all or none, never a gap
        qid, docid = texts_missing[0]
        raise ValueError(
            f"document {docid!r} of query {qid!r} has no text while others have theirs; "
            "give docs (a document store) to fill the texts in"
        )
    has_text = not texts_missing and (docs is not None or bool(columns["text"]))
    kept = [n for n in COLUMNS if (n != "query" or query_texts is not None) and (n != "text" or has_text)]
    dtypes = {"score": "float64", "rank": "int64"}
    return pd.DataFrame({n: pd.Series(columns[n], dtype=dtypes.get(n, object)) for n in kept})


def frame_rankings(frame: pd.DataFrame, required: Sequence[str], reader: str) -> list[FrameRanking]:
    """The frame's queries in order of first appearance, each with its rows in rank order.

    ``required`` are the columns ``reader`` (named in errors) cannot do without. A query's rows are
    ordered by ``rank`` where the frame has one, else by ``score`` descending (ties keep the frame's
    order, as PyTerrier's ``add_ranks``), else as they come. A frame without ``score`` gives 0.0.
    """
    _require_columns(frame, required, reader)
    for name in ("qid", "docno"):
        if name in frame.columns and frame[name].isna().any():
            row = int(frame[name].isna().to_numpy().argmax())
            raise ValueError(f"{reader}: row {row} of the frame has no {name}")
    if "rank" in frame.columns:
        ordered = frame.sort_values("rank", kind="stable")
    elif "score" in frame.columns:
        ordered = frame.sort_values("score", ascending=False, kind="stable")
    else:
        ordered = frame
    qids = [str(q) for q in _values(ordered, "qid")]
    docnos = [str(d) for d in _values(ordered, "docno")]
    scores = _values(ordered, "score") if "score" in frame.columns else [0.0] * len(ordered)
    texts = _values(ordered, "text") if "text" in frame.columns else [None] * len(ordered)
    queries = _values(ordered, "query") if "query" in frame.columns else [None] * len(ordered)
    rows: dict[str, list[tuple[str, float, str | None]]] = {str(q): [] for q in _values(frame, "qid")}
    query_of: dict[str, str | None] = {}
    for qid, docno, score, text, query in zip(qids, docnos, scores, texts, queries, strict=True):
        if query_of.setdefault(qid, query) != query:
            raise ValueError(f"{reader}: query {qid!r} has two texts in the frame: {query_of[qid]!r} and {query!r}")
        rows[qid].append((docno, float(score) if score is not None else float("nan"), text))
    return [FrameRanking(qid, query_of.get(qid), tuple(found)) for qid, found in rows.items()]


def frame_queries(frame: pd.DataFrame, reader: str) -> list[tuple[str, str]]:
    """(qid, query text) of each query of a frame (a topics frame or a results frame), in order."""
    _require_columns(frame, ("qid", "query"), reader)
    found: dict[str, str] = {}
    for qid, text in zip(_values(frame, "qid"), _values(frame, "query"), strict=True):
        if qid is None:
            raise ValueError(f"{reader}: a row of the frame has no qid")
        if found.setdefault(str(qid), text) != text:
            raise ValueError(f"{reader}: query {qid!r} has two texts in the frame: {found[str(qid)]!r} and {text!r}")
    return list(found.items())


def retrieved_frame(topics: pd.DataFrame, run: Iterable[RankedList], docs: TextSource | None = None) -> pd.DataFrame:
    """A retriever's run for the topics' queries as a results frame; further columns of a topics
    frame (``query_0`` of a rewrite) are kept, as a PyTerrier retriever keeps them."""
    results = run_to_frame(run, dict(frame_queries(topics, "retrieval")), docs)
    extra = [c for c in topics.columns if c not in results.columns] if "docno" not in topics.columns else []
    if not extra:
        return results
    kept = topics[["qid", *extra]].assign(qid=topics["qid"].astype(str)).drop_duplicates("qid")
    return results.merge(kept, on="qid", how="left")[[*COLUMNS[:2], *extra, *results.columns[2:]]]


def reranked_frame(frame: pd.DataFrame, rankings: Iterable[RankedList]) -> pd.DataFrame:
    """The frame's rows with the rankings' scores and 0-based ranks, sorted by qid then rank."""
    pd = optional_import("pandas")
    placed = {(r.qid, c.docid): (c.score, rank) for r in rankings for rank, c in enumerate(r.candidates)}
    scores: list[float] = []
    ranks: list[int] = []
    for qid, docno in zip(_values(frame, "qid"), _values(frame, "docno"), strict=True):
        key = (str(qid), str(docno))
        if key not in placed:  # a reranker returns every candidate (the Reranker contract)
            raise RuntimeError(f"the reranker returned no score for document {key[1]!r} of query {key[0]!r}")
        score, rank = placed[key]
        scores.append(score)
        ranks.append(rank)
    reranked = frame.assign(
        score=pd.Series(scores, index=frame.index, dtype="float64"),
        rank=pd.Series(ranks, index=frame.index, dtype="int64"),
    )
    return reranked.sort_values(["qid", "rank"], kind="stable").reset_index(drop=True)


def _query_texts(queries: Queries) -> dict[str, str]:
    if isinstance(queries, Mapping):
        return {str(qid): q if isinstance(q, str) else q.text for qid, q in queries.items()}
    return {q.qid: q.text for q in queries}


def _require_columns(frame: Any, required: Sequence[str], reader: str) -> None:
    pd = optional_import("pandas")
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{reader} takes a pandas DataFrame, not a {type(frame).__name__}")
    missing = [name for name in required if name not in frame.columns]
    if missing:
        has = ", ".join(map(str, frame.columns)) or "no columns"
        raise ValueError(f"{reader} needs the column(s) {', '.join(missing)} in the frame (it has {has})")


def _values(frame: pd.DataFrame, column: str) -> list[Any]:
    """A column's values as Python objects, a missing one (NaN, None, NA) as None."""
    values = frame[column]
    return values.astype(object).where(values.notna(), None).tolist()
