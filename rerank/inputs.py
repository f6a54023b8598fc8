"""Turning runs, topics and document stores into rerank requests with texts."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from data.docstore import DocumentStore
from data.errors import DatasetNotFoundError, DocumentNotFoundError
from data.records import Candidate, Query, Ranking, RerankRequest, Run


def requests_from_run(
    run: Run, queries: Mapping[str, Query], store: DocumentStore | None, k: int | None = None
) -> Iterator[RerankRequest]:
    """The top ``k`` of each ranking with the query and document texts attached.

    A query of the run without text is an error (it cannot be reranked); texts
    come from the store when the candidates carry none.
    """
    for ranking in run:
        yield request_for(ranking.cut(k) if k is not None else ranking, queries, store, run.name)


def request_for(
    ranking: Ranking, queries: Mapping[str, Query], store: DocumentStore | None, source: str = ""
) -> RerankRequest:
    """One ranking as a request: its query's text and its candidates' texts (from ``store`` when they carry none)."""
    query = queries.get(ranking.qid)
    if query is None:
        raise DatasetNotFoundError(f"query {ranking.qid!r} of the run has no text in the topics")
    try:
        texts = attach_texts(ranking.candidates, store)
    except DocumentNotFoundError as err:
        where = f" of {source}" if source else ""
        raise DocumentNotFoundError(f"query {ranking.qid!r}{where}: {err.args[0]}") from None
    return RerankRequest(query, texts)


@dataclass(frozen=True)
class RunRequests:
    """The requests of a run file, streamed: rankings read query by query, texts fetched per batch.

    Nothing of the run is held beyond the batch being turned into requests, so a job over it
    runs in memory bounded by the batch, whatever the run's size. The file is grouped by query
    (``iter_run_groups`` groups one that is not, on disk).
    """

    path: Path
    queries: Mapping[str, Query]
    store: DocumentStore | None
    name: str = ""
    grouped: bool = False  # known to be grouped by query (a stage's own output): no grouping pass

    def rankings(self) -> Iterator[Ranking]:
        from data.trec import iter_run_groups, iter_run_rankings

        return iter_run_rankings(self.path) if self.grouped else iter_run_groups(self.path)

    def requests(self, rankings: Iterable[Ranking]) -> list[RerankRequest]:
        return [request_for(r, self.queries, self.store, self.name) for r in rankings]


def attach_texts(candidates: tuple[Candidate, ...], store: DocumentStore | None) -> tuple[Candidate, ...]:
    if all(c.text is not None for c in candidates):
        return candidates
    if store is None:
        raise ValueError("candidates have no texts and no document store or corpus was given")
    docs = store.get_many([c.docid for c in candidates])
    return tuple(
        Candidate(c.docid, c.score, d.full_text, d.title or None) for c, d in zip(candidates, docs, strict=True)
    )


def fingerprint(requests: Iterable[RerankRequest]) -> str:
    """A digest of everything a reranker sees, to tell one job's inputs from another's."""
    digest = hashlib.sha256()
    for request in requests:
        digest.update(f"Q\t{request.query.qid}\t{request.query.text}\n".encode())
        for c in request.candidates:
            digest.update(f"C\t{c.docid}\t{c.score!r}\t{c.text}\n".encode())
    return digest.hexdigest()
