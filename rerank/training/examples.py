"""Training examples for a cross-encoder: what each loss reads, built from rankings and labels.

A query's **group** is drawn from its candidates (the teacher's ranking, or the first stage's): with more
candidates than ``group_size``, ranks spread evenly from the first to the last, so every group holds the top
and a spread of harder and easier negatives, the same for every run. Losses read:

- ``bce``: (query, passage, 0 or 1) pairs: the query's judged passages (relevance > 0) as positives, the
  group's unjudged or non-relevant ones as negatives (hard negatives mined by the first stage);
- ``margin-mse``: (query, positive, negative, teacher margin) triples: the group's first passage against each
  of the others;
- ``listnet`` and ``lambda``: (query, [passages], [targets]) lists.

Targets come from the teacher: its scores divided by ``temperature`` (``targets=scores``), or ``1/rank``
(``targets=ranks``, for a teacher whose scores only order, such as a listwise LLM).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from data.errors import InvalidSpecError
from data.records import Qrels, Ranking

LOSSES = ("bce", "margin-mse", "listnet", "lambda")
TARGETS = ("scores", "ranks")


@dataclass(frozen=True, slots=True)
class Examples:
    """Columns for a ``datasets.Dataset`` (sentence-transformers' input layout for the loss)."""

    columns: Mapping[str, list[Any]]
    queries: int

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))


def spread(ranking: Sequence[Any], size: int) -> list[Any]:
    """``size`` items of ``ranking`` at evenly spaced ranks, first and last included (all when fewer)."""
    if len(ranking) <= size:
        return list(ranking)
    if size == 1:
        return [ranking[0]]
    step = (len(ranking) - 1) / (size - 1)
    return [ranking[round(i * step)] for i in range(size)]


def targets(ranking: Ranking, kind: str, temperature: float) -> list[float]:
    if kind == "ranks":
        return [1.0 / rank for rank in range(1, len(ranking.candidates) + 1)]
    return [c.score / temperature for c in ranking.candidates]


def build_examples(
    loss: str,
    rankings: Sequence[Ranking],
    query_text: Mapping[str, str],
    passage_text: Callable[[str], str],
    *,
    group_size: int = 8,
    qrels: Qrels | None = None,
    target: str = "scores",
    temperature: float = 1.0,
) -> Examples:
    """The examples of ``loss`` from ``rankings`` (teacher order, or first-stage order with ``qrels``)."""
    if loss not in LOSSES:
        raise InvalidSpecError(f"--loss {loss!r}: choose {', '.join(LOSSES)}")
    if target not in TARGETS:
        raise InvalidSpecError(f"--targets {target!r}: choose {', '.join(TARGETS)}")
    columns: dict[str, list[Any]]
    used = 0
    if loss == "bce":
        if qrels is None:
            raise InvalidSpecError("--loss bce trains on relevance labels: give --qrels (or a dataset with qrels)")
        columns = {"query": [], "passage": [], "label": []}
        for ranking in rankings:
            judged = qrels.judgments.get(ranking.qid, {})
            positives = [d for d, rel in judged.items() if rel > 0]
            if not positives:
                continue
            negatives = [c.docid for c in ranking.candidates if judged.get(c.docid, 0) <= 0]
            pairs = [(d, 1) for d in positives] + [
                (d, 0) for d in spread(negatives, max(1, group_size - len(positives)))
            ]
            for docid, label in pairs:
                columns["query"].append(query_text[ranking.qid])
                columns["passage"].append(passage_text(docid))
                columns["label"].append(float(label))
            used += 1
        return Examples(columns, used)
    if loss == "margin-mse":
        columns = {"query": [], "positive": [], "negative": [], "label": []}
        for ranking in rankings:
            pair_group = spread(ranking.candidates, group_size)
            if len(pair_group) < 2:
                continue
            value = dict(zip((c.docid for c in ranking.candidates), targets(ranking, target, temperature), strict=True))
            top = pair_group[0].docid
            for other in pair_group[1:]:
                columns["query"].append(query_text[ranking.qid])
                columns["positive"].append(passage_text(top))
                columns["negative"].append(passage_text(other.docid))
                columns["label"].append(value[top] - value[other.docid])
            used += 1
        return Examples(columns, used)
    columns = {"query": [], "docs": [], "labels": []}
    for ranking in rankings:
        if len(ranking.candidates) < 2:
            continue
        values = dict(zip((c.docid for c in ranking.candidates), targets(ranking, target, temperature), strict=True))
        group = spread(ranking.candidates, group_size)
        columns["query"].append(query_text[ranking.qid])
        columns["docs"].append([passage_text(c.docid) for c in group])
        columns["labels"].append([values[c.docid] for c in group])
        used += 1
    return Examples(columns, used)


def make_loss(name: str, model: Any) -> Any:
    """sentence-transformers' implementation of each loss, at its defaults."""
    from sentence_transformers.cross_encoder import losses

    if name == "bce":
        return losses.BinaryCrossEntropyLoss(model)
    if name == "margin-mse":
        return losses.MarginMSELoss(model)
    if name == "listnet":
        return losses.ListNetLoss(model)
    return losses.LambdaLoss(model)
