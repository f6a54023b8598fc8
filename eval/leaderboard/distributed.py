"""The leaderboard on Ray: every stage the selected cells need is one Ray task, each computed once.

The stages form a graph (a pipeline needs its prefix, a fusion its member runs); a stage goes to the
cluster when everything it needs is done, at most ``workers`` at a time, so independent cells run
side by side and a prefix shared by many rows (``run(name=bm25) % 100``) is computed once before
them. A task computes one stage with the same executor and store as a local run (the stages it
needs are fresh in the store by then), so the cells are the same files. The driver then reads the
cells as a local run would, computing nothing more.
"""

from __future__ import annotations

import fnmatch
import glob
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rerank.core.plan import needs, resolve_pipeline
from rerank.ray_engine import RayEngine, cause
from rerank.spec import PipelineSpec


@dataclass(frozen=True)
class CellJob:
    """What a task needs to build the same ``CellRunner`` as the driver's."""

    output: Path
    cache: Path
    query_limit: int | None
    batch_queries: int


@dataclass
class Stage:
    dataset: str
    pipeline: PipelineSpec  # resolved
    needs: set[tuple[str, str]] = field(default_factory=set)
    forced: bool = False


def compute_stage(job: CellJob, dataset: str, pipeline: PipelineSpec, forced: bool) -> list[str]:
    """In a Ray worker: compute one stage (its needs are fresh in the store), or find it fresh."""
    from eval.leaderboard.cells import CellRunner
    from rerank.ray_engine import compute_like_the_local_engine

    compute_like_the_local_engine()
    recompute = [glob.escape(str(pipeline))] if forced else []  # this stage only, never what it needs
    runner = CellRunner(
        job.output, job.cache, query_limit=job.query_limit, batch_queries=job.batch_queries, recompute=recompute,
    )  # fmt: skip
    runner.cell(dataset, pipeline)
    return runner.computed


def stage_graph(
    runner: Any, cells: Sequence[tuple[str, PipelineSpec]], recompute: Sequence[str]
) -> dict[tuple[str, str], Stage]:
    """Every stage the cells need, keyed by dataset and resolved pipeline, with what each needs."""
    stages: dict[tuple[str, str], Stage] = {}

    def add(dataset: str, pipeline: PipelineSpec, given: PipelineSpec) -> tuple[str, str]:
        resolved = resolve_pipeline(pipeline)
        key = (dataset, str(resolved))
        # As the executor decides: a pattern forces a stage by the form it was asked for in.
        forced = any(fnmatch.fnmatchcase(str(given), p) for p in recompute)
        if key in stages:
            stages[key].forced |= forced
            return key
        stage = stages[key] = Stage(dataset, resolved, forced=forced)
        for needed in needs(resolved):
            stage.needs.add(add(dataset, needed, needed))
        return key

    for dataset, pipeline in cells:
        add(dataset, pipeline, pipeline)
    fresh = {
        (dataset, str(status.pipeline))
        for dataset, pipeline in cells
        for status in runner.status(dataset, pipeline)
        if status.state == "fresh"
    }
    # A stage to compute: not fresh, forced, or over a stage that will be computed (its input may change).
    todo: set[tuple[str, str]] = set()
    changed = True
    while changed:
        changed = False
        for key, stage in stages.items():
            if key not in todo and (key not in fresh or stage.forced or stage.needs & todo):
                todo.add(key)
                changed = True
    return {key: stage for key, stage in stages.items() if key in todo}


def compute_on_ray(
    runner: Any, cells: Sequence[tuple[str, PipelineSpec]], engine: RayEngine, job: CellJob, recompute: Sequence[str]
) -> list[str]:
    """Compute the stages the cells need as Ray tasks, at most ``engine.workers`` at once; returns what was computed."""
    from rerank.ray_engine import BatchFailedError

    stages = stage_graph(runner, cells, recompute)
    if not stages:
        return []
    engine.connect()
    ray = engine.ray()
    task = ray.remote(compute_stage).options(**engine.task_options())
    done: set[tuple[str, str]] = set()
    running: dict[Any, tuple[str, str]] = {}
    computed: list[str] = []
    waiting = dict(stages)
    while waiting or running:
        ready = [key for key, stage in waiting.items() if not (stage.needs & (set(waiting) | set(running.values())))]
        for key in ready[: max(0, engine.workers - len(running))]:
            stage = waiting.pop(key)
            running[task.remote(job, stage.dataset, stage.pipeline, stage.forced)] = key
        [ref], _ = ray.wait(list(running), num_returns=1)
        key = running.pop(ref)
        try:
            computed += ray.get(ref)
        except ray.exceptions.RayError as err:
            for other in running:
                ray.cancel(other, force=True)
            raise BatchFailedError(
                f"leaderboard cell {key[0]}: {key[1]} failed ({cause(err)}); the cells finished before it are kept, "
                "and the same command computes the rest"
            ) from None
        done.add(key)
    return computed
