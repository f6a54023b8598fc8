"""Turning runs, topics and document stores into rerank requests with texts."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping

from data.docstore import DocumentStore
from data.errors import DatasetNotFoundError, DocumentNotFoundError
from data.records import Candidate, Query, RerankRequest, Run


def requests_from_run(
    run: Run, queries: Mapping[str, Query], store: DocumentStore | None, k: int | None = None
) -> Iterator[RerankRequest]:
    """The top ``k`` of each ranking with the query and document texts attached.

    A query of the run without text is an error (it cannot be reranked); texts
    come from the store when the candidates carry none.
    """
    for ranking in run:
        query = queries.get(ranking.qid)
        if query is None:
            raise DatasetNotFoundError(f"query {ranking.qid!r} of the run has no text in the topics")
        candidates = ranking.candidates[:k] if k is not None else ranking.candidates
        try:
            texts = attach_texts(candidates, store)
        except DocumentNotFoundError as err:
            source = f" of {run.name}" if run.name else ""
            raise DocumentNotFoundError(f"query {ranking.qid!r}{source}: {err.args[0]}") from None
        yield RerankRequest(query, texts)


def attach_texts(candidates: tuple[Candidate, ...], store: DocumentStore | None) -> tuple[Candidate, ...]:
    if all(c.text is not None for c in candidates):
        return candidates
    if store is None:
        raise ValueError("candidates have no texts and no document store or corpus was given")
    docs = store.get_many([c.docid for c in candidates])
    return tuple(Candidate(c.docid, c.score, d.full_text) for c, d in zip(candidates, docs, strict=True))


def fingerprint(requests: Iterable[RerankRequest]) -> str:
    """A digest of everything a reranker sees, to tell one job's inputs from another's."""
    digest = hashlib.sha256()
    for request in requests:
        digest.update(f"Q\t{request.query.qid}\t{request.query.text}\n".encode())
        for c in request.candidates:
            digest.update(f"C\t{c.docid}\t{c.score!r}\t{c.text}\n".encode())
    return digest.hexdigest()
