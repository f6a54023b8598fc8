"""How deep should a reranker go? ``rerank eval --depths 10,20,50,100 --pipeline 'run(name=bm25) >> X'``.

For each depth ``d`` the pipeline's first stage is cut at ``d`` (``run(name=bm25) % d >> X``) and the whole
pipeline runs through an executor, smallest depth first. A pointwise reranker (every pair scored on its own)
runs through a model-output cache and a stage store of the sweep's own: it scores each (query, passage) pair
once across all depths, depth ``d`` costing only the pairs below the previous depth. Any other reranker runs
in the shared stage store, so its depths (LLM windows, hours of work) resume across sessions and are reused
by ``rerank run`` and the leaderboard.

The cost reported for a depth is what reranking to that depth costs on its own: for a pointwise reranker,
the work of every depth up to it added (the pairs it reused were paid for there, and nothing scored before
the sweep counts as free); for any other reranker, whose prompts change with the depth, what its stage took
when it was computed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.errors import InvalidSpecError
from data.records import Qrels
from rerank.cost import Cost
from rerank.spec import PipelineSpec, StageSpec


@dataclass(frozen=True, slots=True)
class DepthPoint:
    """One pipeline at one depth: its measures, and the cost per query of reranking to that depth."""

    pipeline: str
    depth: int
    measures: dict[str, float]
    first_stage: dict[str, float]  # the first stage alone at this depth, for reference
    seconds_per_query: float | None
    calls_per_query: float
    tokens_per_query: float


def parse_depths(text: str) -> list[int]:
    """``10,20,50,100``: positive, distinct, in any order (returned ascending)."""
    try:
        depths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--depths {text!r}: a comma-separated list of positive integers, e.g. 10,20,50,100") from None
    if not depths or min(depths) < 1 or len(set(depths)) != len(depths):
        raise ValueError(f"--depths {text!r}: a comma-separated list of distinct positive integers, e.g. 10,20,50,100")
    return sorted(depths)


def at_depth(pipeline: PipelineSpec, depth: int) -> PipelineSpec:
    """The pipeline with its first stage cut at ``depth``."""
    return PipelineSpec((StageSpec(pipeline.first.spec, depth), *pipeline.stages[1:]))


def check_sweep(pipeline: PipelineSpec) -> None:
    """A first stage (whose own cutoff the sweep replaces), then rerankers."""
    from rerank.core.plan import check_pipeline, last_kind

    if len(pipeline.stages) < 2 or last_kind(pipeline) != "reranker":
        raise InvalidSpecError(f"--pipeline {str(pipeline)!r}: a depth sweep needs a first stage, then a reranker")
    if pipeline.first.cutoff is not None:
        raise InvalidSpecError(
            f"--pipeline {str(pipeline)!r}: leave the first stage uncut ({pipeline.first.spec}); --depths cuts it"
        )
    check_pipeline(at_depth(pipeline, 1), environment=True)


def pointwise(pipeline: PipelineSpec) -> bool:
    """One reranker that scores pairs one by one, the same in any batch: its outputs carry across depths."""
    from rerank.base import PointwiseReranker
    from rerank.registry import METHODS

    if len(pipeline.stages) != 2:
        return False
    spec = pipeline.last.spec
    # Dynamic int8 (no calibration) is the one pointwise path whose ``batch_invariant`` is false: its cached
    # scores are read back only for the same batch, so a depth reuses nothing and its cost is its own.
    dynamic = spec.kwargs.get("precision") == "int8" and not spec.kwargs.get("calibration")
    cls = METHODS.get(spec.name)
    return isinstance(cls, type) and issubclass(cls, PointwiseReranker) and not dynamic


def sweep(
    pipelines: Sequence[PipelineSpec],
    depths: Sequence[int],
    executor_for: Callable[[PipelineSpec], Any],
    source: Any,
    qrels: Qrels,
    measures: Sequence[str],
    on_point: Callable[[DepthPoint], None] | None = None,
) -> list[DepthPoint]:
    """Every pipeline at every depth, smallest first, through its executor (whose output cache is the reuse)."""
    from eval.metrics import evaluate

    points = []
    for pipeline in pipelines:
        executor, cumulative = executor_for(pipeline), pointwise(pipeline)
        carried, carried_seconds = Cost(), 0.0
        for depth in sorted(depths):
            output = executor.output(at_depth(pipeline, depth), source)
            stages = [executor.output(p, source, compute=False) for p in at_depth(pipeline, depth).prefixes()[1:]]
            manifests = [s.manifest for s in stages if s is not None]
            cost = sum((Cost(**(m.get("cost") or {})) for m in manifests), Cost())
            seconds = sum(m.get("seconds") or 0.0 for m in manifests)
            if cumulative:  # this depth's own work is the work of every depth up to it
                carried, carried_seconds = carried + cost, carried_seconds + seconds
                cost, seconds = carried, carried_seconds
            queries = max(len(source.queries), 1)
            aggregate = evaluate(output.run(), qrels, list(measures)).aggregate
            first = executor.output(at_depth(pipeline, depth).prefix(1), source)
            alone = evaluate(first.run(), qrels, list(measures)).aggregate
            point = DepthPoint(
                str(pipeline), depth, {m: float(aggregate[m]) for m in measures}, {m: float(alone[m]) for m in measures},
                seconds / queries, cost.calls / queries, (cost.input_tokens + cost.output_tokens) / queries,
            )  # fmt: skip
            points.append(point)
            if on_point is not None:
                on_point(point)
    return points


def best_depths(points: Sequence[DepthPoint], measure: str) -> dict[str, int]:
    """Each pipeline's depth with the highest ``measure`` (the smallest of equal ones: it costs least)."""
    best: dict[str, DepthPoint] = {}
    for point in points:
        held = best.get(point.pipeline)
        if held is None or point.measures[measure] > held.measures[measure]:
            best[point.pipeline] = point
    return {pipeline: point.depth for pipeline, point in best.items()}


def plot(points: Sequence[DepthPoint], measure: str, path: Path, title: str) -> None:
    """Two panels: ``measure`` against depth (one line per pipeline, its best depth ringed) and seconds per
    query against depth, both on a log-scaled depth axis with the swept depths as ticks."""
    from data.optional import optional_import

    optional_import("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eval.leaderboard.figures import distinct_labels

    pipelines = list(dict.fromkeys(p.pipeline for p in points))
    labels = distinct_labels(pipelines)
    alone: set[str] = set()
    depths = sorted({p.depth for p in points})
    best = best_depths(points, measure)
    figure, (quality, cost) = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    for n, pipeline in enumerate(pipelines):
        mine = [p for p in points if p.pipeline == pipeline]
        color = f"C{n % 10}"
        label = labels[n]
        quality.plot([p.depth for p in mine], [p.measures[measure] for p in mine], "o-", color=color, label=label)
        first = labels[n].split(" > ")[0]
        if first not in alone:  # a first stage two pipelines share is drawn once
            alone.add(first)
            quality.plot([p.depth for p in mine], [p.first_stage[measure] for p in mine], ":", color=color,
                         alpha=0.7, label=f"{first} alone")  # fmt: skip
        peak = next(p for p in mine if p.depth == best[pipeline])
        quality.plot([peak.depth], [peak.measures[measure]], "o", markersize=14, fillstyle="none", color=color)
        timed = [p for p in mine if p.seconds_per_query is not None]
        cost.plot([p.depth for p in timed], [p.seconds_per_query for p in timed], "o-", color=color, label=label)
    for axis, name in ((quality, measure), (cost, "seconds per query (reranking to that depth)")):
        axis.set_xscale("log")
        axis.set_xticks(depths, [str(d) for d in depths])
        axis.minorticks_off()
        axis.set_xlabel("reranking depth (candidates from the first stage)")
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
    quality.plot([], [], "o", markersize=14, fillstyle="none", color="grey", label="each pipeline's best depth")
    quality.set_title(f"{title}: {measure} by depth", fontsize=11)
    cost.set_title(f"{title}: cost by depth", fontsize=11)
    quality.legend(fontsize=8, loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
