"""Jobs: the batch loop (``rerank.core.loop``) run into a file, checkpointed beside it.

``rerank_to_file`` reranks a run's queries and ``retrieve_to_file`` searches queries; each resumes
from ``OUTPUT.checkpoint`` and writes its output from the checkpoint, in the input's order, only
when every query is done, so the file is the same bytes whatever the engine or the interruptions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data.records import Candidate, Query, RerankRequest
from rerank.core.loop import Engine, Work, batches, checkpointed
from rerank.cost import Cost
from rerank.result import RerankResult
from rerank.spec import MethodSpec

if TYPE_CHECKING:
    from rerank.checkpoint import Checkpoint
    from rerank.inputs import RunRequests


def write_results(
    checkpoint: Checkpoint,
    order: Sequence[str],
    output: Path,
    *,
    fmt: str = "trec",
    tag: str = "rerank",
    keep: int | None = None,
    run: RunRequests | None = None,
) -> tuple[Cost, int]:
    """Write every query's checkpointed ranking, in ``order``, cut to ``keep``; returns their total cost and
    the candidates written.

    One query's ranking is in memory at a time (TREC and JSONL); RankLLM's format is a single JSON
    document, so its rows are gathered first. Those formats carry texts, read again from ``run``.
    """
    from data.jsonl import write_candidates_jsonl
    from data.rankllm import write_rankllm_requests
    from data.trec import write_trec_run

    total = Cost()
    written = 0

    def rankings() -> Iterator[RerankResult]:
        nonlocal total, written
        for qid in order:
            result = checkpoint.result(qid)
            total += result.cost
            ranking = result.ranking.cut(keep) if keep is not None else result.ranking
            written += len(ranking)
            yield RerankResult(ranking, result.cost)

    if fmt == "trec":
        write_trec_run((r.ranking for r in rankings()), output, tag=tag)
        return total, written
    assert run is not None, "RankLLM JSON and JSONL outputs carry texts: give the run they come from"

    def reranked() -> Iterator[RerankRequest]:
        results = rankings()
        for chunk in batches(run.rankings(), 256):
            for request in run.requests(chunk):
                texts = {c.docid: c.text for c in request.candidates}  # checkpoints keep ids and scores only
                ranking = next(results).ranking
                yield RerankRequest(request.query, tuple(Candidate(c.docid, c.score, texts[c.docid]) for c in ranking))

    (write_rankllm_requests if fmt == "rankllm" else write_candidates_jsonl)(reranked(), output)
    return total, written


def rerank_to_file(
    spec: MethodSpec,
    run: RunRequests,
    output: Path,
    job: dict[str, Any],
    *,
    batch_queries: int = 8,
    resume: bool = False,
    fresh: bool = False,
    cache: str | Path | None = None,
    output_format: str = "trec",
    tag: str = "rerank",
    keep: int | None = None,
    engine: Engine | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    """Rerank every query of ``run`` (resuming from ``OUTPUT.checkpoint``), write the output, return the summary.

    ``job`` (the stage's key) heads the checkpoint: a checkpoint of another job is refused. The
    output appears only when every query is done. ``keep`` cuts each written ranking to its top
    ``keep``. ``total`` is the number of queries, for the progress bar.
    """
    from rerank.checkpoint import note_what_is_kept, open_checkpoint
    from rerank.engine import rerank_work

    checkpoint = open_checkpoint(output, job, resume=resume, fresh=fresh)
    order: list[str] = []
    candidates = 0

    def chunks() -> Iterator[list[Any]]:
        nonlocal candidates
        for chunk in batches(run.rankings(), batch_queries):
            order.extend(r.qid for r in chunk)
            candidates += sum(len(r) for r in chunk)
            yield chunk

    start = time.perf_counter()
    try:
        counts = checkpointed(
            rerank_work(spec, cache), chunks(), checkpoint, qid=lambda r: r.qid, prepare=run.requests,
            engine=engine, total=total,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        cost, _ = write_results(checkpoint, order, output, fmt=output_format, tag=tag, keep=keep, run=run)
        checkpoint.remove()
    except Exception:
        note_what_is_kept(checkpoint)
        raise
    finally:
        checkpoint.close()
    return {
        "output": str(output),
        "spec": str(spec),
        "queries": len(order),
        "resumed": counts.resumed,
        "resumed_seconds": round(counts.resumed_seconds, 3),
        "candidates": candidates,
        "seconds": round(elapsed, 3),
        "load_seconds": round(counts.load_seconds, 3),
        "queries_per_second": round(counts.computed / elapsed, 3) if counts.computed and elapsed > 0 else None,
        "cost": cost.as_dict(),
    }


def retrieve_to_file(
    work: Work,
    queries: Sequence[Query],
    output: Path,
    job: dict[str, Any],
    *,
    batch_queries: int | None = None,
    engine: Engine | None = None,
    target: Path | None = None,
    tag: str = "rerank",
    resume: bool = True,
    fresh: bool = False,
) -> tuple[int, int]:
    """Search every query in batches, checkpointing each beside ``output``, then write the run to ``target``
    (``output`` when None) from the checkpoint; returns the candidates written and the queries resumed."""
    from rerank.checkpoint import note_what_is_kept, open_checkpoint

    checkpoint = open_checkpoint(output, job, resume=resume, fresh=fresh)
    try:
        counts = checkpointed(
            work, batches(queries, batch_queries or max(1, len(queries))), checkpoint, qid=lambda q: q.qid,
            prepare=list, engine=engine, total=len(queries),
        )  # fmt: skip
        _, written = write_results(checkpoint, [q.qid for q in queries], target or output, tag=tag)
    except Exception:
        note_what_is_kept(checkpoint)
        raise
    finally:
        checkpoint.close()
    checkpoint.remove()
    return written, counts.resumed
