"""Effectiveness through ir-measures: aggregate and per-query values of any measure it parses."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from data.errors import InvalidSpecError
from data.records import Qrels, Run


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Values of each measure (keyed by its canonical name) for one run."""

    measures: tuple[str, ...]
    aggregate: Mapping[str, float]
    per_query: Mapping[str, Mapping[str, float]] = field(repr=False)  # measure -> qid -> value
    run_name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "aggregate", MappingProxyType(dict(self.aggregate)))
        per_query = {m: MappingProxyType(dict(v)) for m, v in self.per_query.items()}
        object.__setattr__(self, "per_query", MappingProxyType(per_query))

    @property
    def num_queries(self) -> int:
        return max((len(v) for v in self.per_query.values()), default=0)


def parse_measures(names: Iterable[str]) -> list[Any]:
    """ir-measures objects for measure names such as ``nDCG@10`` or ``RR(rel=2)@10``."""
    import ir_measures

    parsed = []
    for name in names:
        try:
            parsed.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, SyntaxError, TypeError) as err:
            raise InvalidSpecError(f"unknown measure {name!r}: {err}") from None
    return parsed


def _scored_docs(run: Run) -> Iterator[Any]:
    import ir_measures

    for ranking in run:
        for candidate in ranking.candidates:
            yield ir_measures.ScoredDoc(ranking.qid, candidate.docid, candidate.score)


def _qrels(qrels: Qrels, qids: set[str]) -> Iterator[Any]:
    import ir_measures

    # Only the run's queries: some ir-measures providers score a judged query missing from the run as
    # 0, which would silently lower the mean of a run over a subset of the queries.
    for qid, docs in qrels.judgments.items():
        if qid not in qids:
            continue
        for docid, relevance in docs.items():
            yield ir_measures.Qrel(qid, docid, relevance)


def evaluate(run: Run | str | Path, qrels: Qrels | str | Path, measures: str | Sequence[str]) -> Evaluation:
    """Aggregate and per-query values, as trec_eval computes them (ir-measures' providers).

    ``run`` and ``qrels`` may be files (a TREC run; TREC or BEIR qrels), ``measures`` one name or
    several. Queries without judgments are ignored; judged queries absent from the run are
    not averaged in (trec_eval's default without ``-c``).
    """
    import ir_measures

    from data.trec import read_trec_run

    if isinstance(run, (str, Path)):
        run = read_trec_run(run)
    elif not isinstance(run, Run):
        raise TypeError(f"evaluate() takes a Run or a run file, not {type(run).__name__}")
    if isinstance(qrels, (str, Path)):
        from data.beir import read_qrels

        qrels = read_qrels(qrels)
    elif not isinstance(qrels, Qrels):
        raise TypeError(f"evaluate() takes Qrels or a qrels file, not {type(qrels).__name__}")
    if isinstance(measures, str):
        measures = [measures]
    if not isinstance(measures, Sequence) or not all(isinstance(m, str) for m in measures):
        shown = type(measures).__name__ if not isinstance(measures, Sequence) else "a list holding a non-string"
        raise TypeError(f"evaluate() takes measures as a name or a list of names (such as 'nDCG@10'), not {shown}")
    if not measures:
        raise ValueError("evaluate() needs at least one measure, such as 'nDCG@10'")
    parsed = parse_measures(measures)
    names = tuple(str(m) for m in parsed)
    per_query: dict[str, dict[str, float]] = {name: {} for name in names}
    for metric in ir_measures.iter_calc(parsed, list(_qrels(qrels, set(run.qids))), list(_scored_docs(run))):
        per_query[str(metric.measure)][metric.query_id] = float(metric.value)
    aggregate = {name: (sum(v.values()) / len(v) if v else 0.0) for name, v in per_query.items()}
    return Evaluation(names, aggregate, per_query, run.name)
