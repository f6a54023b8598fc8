"""Paired significance tests between runs over the same queries, Holm-Bonferroni corrected."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from eval.metrics import Evaluation

Test = Literal["t-test", "wilcoxon"]
TESTS: tuple[Test, ...] = ("t-test", "wilcoxon")


@dataclass(frozen=True, slots=True)
class Comparison:
    """One run against the baseline on one measure, with one test."""

    run: str
    measure: str
    test: Test
    num_queries: int
    baseline_mean: float
    mean: float
    p_value: float
    p_adjusted: float
    significant: bool

    @property
    def delta(self) -> float:
        return self.mean - self.baseline_mean


def paired_p_value(a: Sequence[float], b: Sequence[float], test: Test) -> float:
    """Two-sided p-value; identical samples give 1.0 rather than an error."""
    from scipy import stats

    if len(a) < 2 or all(x == y for x, y in zip(a, b, strict=True)):
        return 1.0
    if test == "t-test":
        p = float(stats.ttest_rel(a, b).pvalue)
    else:
        p = float(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)
    return 1.0 if p != p else p  # a NaN (zero variance) means no evidence of a difference


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def compare(
    baseline: Evaluation, others: Sequence[Evaluation], test: Test = "t-test", alpha: float = 0.05
) -> list[Comparison]:
    """Each run against the baseline on each measure, over the queries both have.

    Holm's correction runs over the comparisons of one measure (the runs), the
    family a reader scans when looking down one column of a table.
    """
    if not isinstance(baseline, Evaluation):
        raise TypeError(f"compare() takes the baseline's Evaluation (from evaluate()), not {type(baseline).__name__}")
    if isinstance(others, Evaluation):
        raise TypeError("compare() takes the other runs' evaluations as a list: compare(baseline, [other])")
    if not all(isinstance(o, Evaluation) for o in others):
        raise TypeError("compare() takes a list of Evaluations (from evaluate()) to compare with the baseline")
    for other in others:
        missing = [m for m in baseline.measures if m not in other.per_query]
        if missing:
            raise ValueError(f"run {other.run_name!r} was not evaluated on {', '.join(missing)}, as the baseline was")
    comparisons: list[Comparison] = []
    for measure in baseline.measures:
        base = baseline.per_query[measure]
        rows = []
        for other in others:
            values = other.per_query[measure]
            qids = sorted(set(base) & set(values))
            if not qids:
                raise ValueError(f"run {other.run_name!r} shares no evaluated query with {baseline.run_name!r}")
            a = [base[q] for q in qids]
            b = [values[q] for q in qids]
            rows.append((other, qids, a, b, paired_p_value(a, b, test)))
        adjusted = holm([row[4] for row in rows])
        for (other, qids, a, b, p), p_adj in zip(rows, adjusted, strict=True):
            comparisons.append(
                Comparison(
                    run=other.run_name,
                    measure=measure,
                    test=test,
                    num_queries=len(qids),
                    baseline_mean=sum(a) / len(a),
                    mean=sum(b) / len(b),
                    p_value=p,
                    p_adjusted=p_adj,
                    significant=p_adj < alpha,
                )
            )
    return comparisons
