"""``rerank.run``: what ``rerank run`` does, as one Python call.

The call checks every argument and input before any work, plans the pipeline (``rerank.core.plan``),
computes or reuses every stage but the last in the store (``rerank.core.executor``), and runs the
last stage in the batch loop into ``output``, checkpointed beside it: an interrupted call resumes
with ``resume=True`` and writes the same bytes. The ``rerank run`` command is argument parsing over
this function; the leaderboard's cells and the service run the same plan.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.errors import DatasetNotFoundError, RerankWarning
from data.records import Qrels, Ranking, Run
from rerank.core.executor import Executor
from rerank.core.plan import (
    GIVEN,
    Source,
    check_pipeline,
    fusion_members,
    given_rankings,
    last_kind,
    resolve_pipeline,
    source_for,
    stage_kind,
)
from rerank.core.store import StageOutput, read_manifest
from rerank.cost import Cost
from rerank.spec import CONCAT, MethodSpec, PipelineSpec

OUTPUT_FORMATS = ("trec", "rankllm", "jsonl")


@dataclass(frozen=True)
class Job:
    """A planned call: the pipeline, its source, the executor, the last stage's input and its key."""

    pipeline: PipelineSpec
    source: Source
    executor: Executor
    previous: StageOutput  # the last stage's input (a concatenation's: its last member, what --eval compares)
    key: dict[str, Any]
    whole: StageOutput | None = None  # a pipeline that is one concatenation: computed in the store by ``plan``


@dataclass(frozen=True)
class RunResult:
    """What ``rerank.run`` did: the pipeline run, the summary of its last stage, its cost, and the
    metrics before and after it when ``eval`` was asked for."""

    pipeline: PipelineSpec
    output: Path | None  # the written file; None when the run is kept in memory (``ranked``)
    output_format: str
    summary: dict[str, Any]
    metrics: Any = None  # eval's BeforeAfter: the input's and the output's measures, with paired tests
    ranked: Run | None = field(default=None, repr=False)

    @property
    def cost(self) -> Cost:
        return Cost(**self.summary["cost"])

    @property
    def up_to_date(self) -> bool:
        """The output was already there for the same job, and nothing was computed."""
        return bool(self.summary.get("up_to_date"))

    def run(self) -> Run:
        """The reranked run (read from ``output`` when it was written to a file)."""
        if self.ranked is not None:
            return self.ranked
        assert self.output is not None
        return read_output(self.output, self.output_format, "reranked")


def read_output(path: Path, output_format: str, name: str) -> Run:
    from data.trec import read_trec_run

    if output_format == "trec":
        return read_trec_run(path, name=name)
    from data.jsonl import read_candidates_jsonl
    from data.rankllm import read_rankllm_requests

    read = read_rankllm_requests if output_format == "rankllm" else read_candidates_jsonl
    return Run.from_rankings((Ranking.sorted(r.query.qid, r.candidates) for r in read(path)), name=name)


def _positive(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be at least 1, not {value!r}")


def pipeline_of(
    pipeline: Any,
    dataset: Any,
    given: str | Path | None,
    input_format: str = "trec",
    top_k: int = 100,
    keep_rest: bool = False,
) -> PipelineSpec:
    """The whole pipeline, checked: ``pipeline`` alone, or with ``given`` (a run of the dataset or a file)
    the given run's top ``top_k`` followed by ``pipeline``'s rerankers; ``keep_rest`` concatenates the
    rest of the given run after them (``(run % K >> P) ^ run``, as deep as the given run)."""
    from rerank.spec import as_pipeline, concatenate

    if given is None:
        return check_pipeline(as_pipeline(pipeline), environment=True)
    name = str(given)
    if input_format == "trec" and dataset is not None and name in dataset.runs:
        first = MethodSpec.of(GIVEN, {"name": name})
    elif not Path(name).is_file():
        known = f"; {dataset.name} has runs {', '.join(dataset.runs)}" if dataset else ""
        raise DatasetNotFoundError(f"--run {name!r} is neither a file nor a run of the dataset{known}")
    elif input_format == "trec":
        first = MethodSpec.of(GIVEN, {"path": name})
    else:
        first = MethodSpec.of(GIVEN, {"path": name, "format": input_format})
    reranked = first % top_k >> as_pipeline(pipeline)
    if not keep_rest:
        return check_pipeline(reranked, environment=True)
    depth = max((len(r) for r in given_rankings(first, dataset)), default=1)
    return check_pipeline(concatenate(reranked, as_pipeline(first % depth)) % depth, environment=True)


def plan(
    pipeline: PipelineSpec,
    source: Source,
    executor: Executor,
    *,
    output_format: str = "trec",
    tag: str = "rerank",
) -> Job:
    """Compute (or reuse) every stage but the last, and name the last stage's job by its key. A pipeline that
    is one concatenation (``A ^ B``) is computed whole in the store, each member stage resumable there."""
    if len(pipeline.stages) == 1 and pipeline.first.spec.name == CONCAT:
        if output_format != "trec":
            raise ValueError(f"--output-format {output_format}: a concatenation ({pipeline}) is written as TREC")
        whole = executor.output(pipeline, source)
        members = fusion_members(resolve_pipeline(pipeline))
        previous = executor.output(members[-1], source)
        assert whole is not None and previous is not None
        return Job(pipeline, source, executor, previous, {**whole.manifest["key"], "tag": tag}, whole)
    if len(pipeline.stages) == 1 or last_kind(pipeline) != "reranker":
        raise ValueError(f"--pipeline {str(pipeline)!r} must end with a reranking method or be a concatenation")
    previous = executor.output(pipeline.prefix(len(pipeline.stages) - 1), source)
    assert previous is not None
    # The key holds the batch size: batched floating point differs in the last digits across batch
    # shapes, and a resumed job must write the same bytes as an uninterrupted one.
    key = {**executor.key(pipeline, source, previous, []), "format": output_format, "tag": tag}
    return Job(pipeline, source, executor, previous, key)


def make_engine(engine: Any, workers: int | None = None, address: str | None = None) -> Any:
    """An engine by name (``local``: None, ``ray``) or as given."""
    if engine is None or engine == "local":
        if workers is not None or address is not None:
            raise ValueError(f"{'--workers' if workers is not None else '--address'} goes with --engine ray")
        return None
    if engine == "ray":
        from data.optional import optional_import
        from rerank.ray_engine import RayEngine

        optional_import("ray")  # a missing extra is reported before any work
        _positive("--workers", workers)
        return RayEngine(workers=workers or 1, address=address)
    if isinstance(engine, str):
        raise ValueError(f"--engine {engine!r}: choose local or ray")
    return engine


def run(
    pipeline: Any,
    *,
    dataset: Any = None,
    run: str | Path | None = None,
    input_format: str = "trec",
    topics: str | Path | None = None,
    corpus: str | Path | None = None,
    output: str | Path | None = None,
    output_format: str = "trec",
    top_k: int = 100,
    keep_rest: bool = False,
    batch_queries: int = 8,
    max_queries: int | None = None,
    cache: str | Path | None = None,
    work_dir: str | Path | None = None,
    resume: bool = False,
    fresh: bool = False,
    tag: str = "rerank",
    engine: Any = None,
    workers: int | None = None,
    address: str | None = None,
    eval: bool = False,
    qrels: str | Path | Qrels | None = None,
    data_dir: str | Path | None = None,
    download: bool = False,
) -> RunResult:
    """Run a pipeline (or rerank a given run) and write or return the result, as ``rerank run`` does.

    ``pipeline`` is a spec string, a ``PipelineSpec`` or a composed pipeline; with ``run`` (a run of
    ``dataset``, e.g. ``"bm25"``, or a TREC/RankLLM/JSONL file per ``input_format``) it is the
    rerankers applied to that run's top ``top_k``. Queries and texts come from ``dataset`` (a name
    or a ``data.Dataset``), or ``topics`` and ``corpus`` files. ``output`` is the file written
    (None keeps the run in memory: ``result.run()``). ``engine`` is ``"local"``, ``"ray"`` (with
    ``workers`` and ``address``) or an engine object; the call shuts it down when it ends.
    ``eval`` measures the input and the output against ``qrels`` (the dataset's by default).
    """
    _positive("--top-k", top_k)
    _positive("--batch-queries", batch_queries)
    _positive("--max-queries", max_queries)
    if resume and fresh:
        raise ValueError("--resume and --fresh contradict each other")
    for name, value in (("--input-format", input_format), ("--output-format", output_format)):
        if value not in OUTPUT_FORMATS:
            raise ValueError(f"{name} {value!r}: choose {', '.join(OUTPUT_FORMATS)}")
    if keep_rest and (run is None or output_format != "trec"):
        raise ValueError("--keep-rest goes with --run and a TREC --output-format")
    if eval:
        from rerank.plugins import command_module

        command_module("eval", needed_by="--eval")  # no package gives the eval command: fail before any work
    engine = make_engine(engine, workers, address)
    if isinstance(dataset, str):
        from data.datasets import load

        dataset = load(dataset, str(data_dir) if data_dir else None, download=download)
    the_qrels = eval_qrels(qrels, dataset) if eval else None
    try:
        if engine is not None:
            engine.connect()  # a wrong --address fails before any work; a local cluster starts meanwhile
        job = prepare(
            pipeline, dataset=dataset, run=run, input_format=input_format, topics=topics, corpus=corpus,
            output_format=output_format, top_k=top_k, keep_rest=keep_rest, batch_queries=batch_queries,
            max_queries=max_queries, cache=cache, work_dir=work_dir, tag=tag, engine=engine,
        )  # fmt: skip
        if engine is not None:
            engine.stop_after_job = True  # the last stage: its cluster stops while the output is written
        return run_job(job, dataset, output, output_format, tag, resume, fresh, the_qrels)
    finally:
        if engine is not None:
            engine.shutdown()  # a local cluster this job started; Ctrl-C included


def compute(
    pipeline: Any,
    *,
    dataset: Any = None,
    topics: str | Path | None = None,
    corpus: str | Path | None = None,
    batch_queries: int = 8,
    work_dir: str | Path | None = None,
) -> Computed:
    """A whole pipeline computed in the store, its last stage kept like the others: what a later call with the
    same key reads back instead of computing (a teacher's labels for ``rerank train``, a dev set's candidates)."""
    from data.config import cache_dir

    spec = pipeline_of(pipeline, dataset, None)  # checked, with its models, before any work
    source = source_for(spec, dataset=dataset, topics=topics, corpus=corpus)
    executor = Executor(Path(work_dir) if work_dir else cache_dir() / "stages", index_cache=cache_dir(),
                        batch_queries=batch_queries, retrieve_batch=256)  # fmt: skip
    found = executor.output(spec, source)
    assert found is not None  # computed when missing
    seconds = sum(stage.manifest.get("seconds") or 0.0 for stage in executor.stored(spec, source))
    return Computed(found, round(seconds, 3))


@dataclass(frozen=True)
class Computed:
    """A pipeline's stored output, and what computing its stages cost when they were computed: their manifests'
    seconds, whichever sitting computed them (a stage read back from the store costs nothing now)."""

    output: StageOutput
    seconds: float


def prepare(
    pipeline: Any,
    *,
    dataset: Any = None,
    run: str | Path | None = None,
    input_format: str = "trec",
    topics: str | Path | None = None,
    corpus: str | Path | None = None,
    output_format: str = "trec",
    top_k: int = 100,
    keep_rest: bool = False,
    batch_queries: int = 8,
    max_queries: int | None = None,
    cache: str | Path | None = None,
    work_dir: str | Path | None = None,
    tag: str = "rerank",
    engine: Any = None,
) -> Job:
    """Everything ``run`` does before its last stage: the checked pipeline, its source, every earlier stage
    computed or reused, and the last stage's job with its key (``dataset`` is a ``data.Dataset`` here)."""
    from data.config import cache_dir

    spec = pipeline_of(pipeline, dataset, run, input_format, top_k, keep_rest)
    if engine is not None and len(spec.stages) == 2 and stage_kind(spec.first.spec, True) == "given":
        from rerank.engine import rerank_work

        # Nothing before the last stage runs on the engine: its replicas load while the inputs are read.
        engine.warm(rerank_work(spec.last.spec, Path(cache) if cache else None))
    source = source_for(spec, dataset=dataset, topics=topics, corpus=corpus, max_queries=max_queries)
    executor = Executor(
        Path(work_dir) if work_dir else cache_dir() / "stages", index_cache=cache_dir(),
        batch_queries=batch_queries, retrieve_batch=256, output_cache=Path(cache) if cache else None,
        engine=engine,
    )  # fmt: skip
    return plan(spec, source, executor, output_format=output_format, tag=tag)


def run_job(
    job: Job,
    dataset: Any,
    output: str | Path | None,
    output_format: str,
    tag: str,
    resume: bool,
    fresh: bool,
    qrels: Qrels | None,
) -> RunResult:
    from data.textio import atomic_writer, is_special_output
    from data.trec import iter_run_rankings, write_trec_run
    from rerank.core.store import work_file

    if next(iter_run_rankings(job.previous.run_path), None) is None:
        warnings.warn(f"{job.previous.pipeline} gives no candidates: the output is empty", RerankWarning, stacklevel=1)
    target = None if output is None else Path(output)
    # Standard output, a device or a FIFO gets the finished run copied in; the job (and its
    # checkpoint) works on a file in the cache, never beside a device. So does a run kept in memory.
    special = target is None or is_special_output(target)
    written = work_file(job.key, output_format) if special else target
    assert written is not None
    manifest_path = written.with_name(written.name + ".manifest.json")
    earlier = read_job_manifest(manifest_path) if written.is_file() and not fresh and not special else None
    if earlier is not None and earlier.get("job") == job.key:
        summary = {**earlier["summary"], "up_to_date": True}
    else:
        if job.whole is not None:
            write_trec_run(job.whole.run(), written, tag=tag)
            details = {"summary": concatenation_summary(job)}
        else:
            _, _, details = job.executor.rerank_stage(
                job.pipeline.last, job.source, job.previous, written, job.key, output=written, resume=resume,
                fresh=fresh, output_format=output_format, tag=tag,
            )  # fmt: skip
        summary = {
            **details["summary"],
            "pipeline": str(job.pipeline),
            "output": None if output is None else str(output),
        }
        if target is not None and special:
            copy_out(written, target)
        elif not special:
            with atomic_writer(manifest_path) as out:
                json.dump({"job": job.key, "summary": summary, "stages": [str(job.previous.directory)]}, out, indent=2)
    metrics = None
    if qrels is not None:
        metrics = before_after(job, dataset, written, output_format, qrels)
    ranked = read_output(written, output_format, "reranked") if target is None else None
    if special:
        written.unlink(missing_ok=True)
    return RunResult(job.pipeline, None if target is None else target, output_format, summary, metrics, ranked)


def concatenation_summary(job: Job) -> dict[str, Any]:
    """What ``rerank run`` reports of a concatenation: its queries and candidates, and the seconds and cost of
    every stage it needed (from their manifests in the store)."""
    assert job.whole is not None
    manifests = [stage.manifest for stage in job.executor.stored(job.whole.pipeline, job.source)]
    run = job.whole.run()
    return {
        "spec": str(job.pipeline), "queries": len(run), "candidates": sum(len(r) for r in run), "resumed": 0,
        "resumed_seconds": 0.0, "seconds": sum(m.get("seconds") or 0.0 for m in manifests),
        "cost": sum((Cost(**m.get("cost") or {}) for m in manifests), Cost()).as_dict(),
    }  # fmt: skip


def eval_qrels(qrels: str | Path | Qrels | None, dataset: Any) -> Qrels:
    """The qrels ``eval`` compares with, read (and so checked) before any reranking."""
    if isinstance(qrels, Qrels):
        return qrels
    if qrels is not None:
        from data.beir import read_qrels

        return read_qrels(str(qrels))
    if dataset is None:
        raise ValueError("--eval needs qrels: give --dataset or --qrels")
    return dataset.qrels()


def copy_out(work: Path, target: Path) -> None:
    from data.textio import atomic_writer, open_binary

    with atomic_writer(target) as out, open_binary(work) as source:
        for line in source:  # streamed: the output may be larger than memory
            out.write(line.decode("utf-8"))


def read_job_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest ``rerank.run`` writes beside an output, or None when it is missing or not one."""
    value = read_manifest(path)
    return value if value is not None and "job" in value and "summary" in value else None


def before_after(job: Job, dataset: Any, output: Path, output_format: str, qrels: Qrels) -> Any:
    """Measures of the reranked stage's input (its top K) and of the output, read from their files."""
    from data.trec import read_trec_run
    from rerank.plugins import command_module

    # The metrics and tests are the eval command's, found as a plugin (rerank/ does not import eval/).
    evaluator = command_module("eval", needed_by="--eval")
    before_run = read_trec_run(job.previous.run_path)
    # the label says how deep the input really is: a 20-candidate run cut at 100 is the top 20
    depth = max((len(ranking) for ranking in before_run), default=0)
    cutoff = job.previous.pipeline.last.cutoff
    before_run = type(before_run)(before_run.rankings, f"input (top {min(depth, cutoff) if cutoff else depth})")
    after_run = read_output(output, output_format, "reranked")
    return evaluator.before_after(before_run, after_run, qrels, dataset.measures if dataset else None)
