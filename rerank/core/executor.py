"""The stored executor: a plan run against a store of stage outputs, for ``rerank.run``, ``rerank
retrieve`` and the leaderboard.

A pipeline runs over a ``Source`` (``rerank.core.plan``). Every stage (each prefix, each fusion
member) has its output in the store under ``SOURCE/FOLDER`` with a manifest whose ``key``
(``rerank.core.keys``) holds what determines it. A stage whose key is unchanged is reused, by any
pipeline that shares it; a changed one is recomputed. Stages that call a model or an index run in
the batch loop (``rerank.core.loop``), checkpointed per batch of queries, and resume to the
identical file; every file appears atomically.

Stages: ``run(name=N)`` (a run the dataset ships) or ``run(path=FILE)``; a retriever over an
index it builds from the source's corpus (or ``index_dir=DIR``); fusion (``rrf``, ``interpolate``)
over sub-pipelines; and any registered reranking method. ``% K`` after a first stage is its
depth (100 when omitted); after a reranker, how many of its candidates go on.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.errors import InvalidSpecError
from data.records import Run
from data.textio import atomic_writer
from rerank.core.keys import folder, index_name, slug, stage_key, stage_models
from rerank.core.plan import (
    DEFAULT_DEPTH,
    FUSION,
    GIVEN,
    GIVEN_INDEX,
    Source,
    cut,
    fusion_members,
    fusion_params,
    given_format,
    last_kind,
    needs,
    previous,
    read_given_run,
    resolve_pipeline,
)
from rerank.core.store import (
    MANIFEST_FILE,
    RUN_FILE,
    StageOutput,
    StageStatus,
    environment,
    relative,
    stored,
    write_manifest,
)
from rerank.spec import MethodSpec, PipelineSpec, StageSpec

log = logging.getLogger("rerank")


@dataclass
class Executor:
    """Runs pipelines over sources, keeping each stage's output in ``store`` and reusing unchanged ones.

    ``batch_queries`` is how many queries go to a reranker per call and per checkpoint line batch
    (it is part of a reranking stage's key: batched floating point differs in the last digits).
    ``recompute`` names pipelines (glob patterns over their printed form) to compute again.
    """

    store: Path
    index_cache: Path | None = None
    batch_queries: int = 8
    retrieve_batch: int | None = None  # queries per retrieval call; None: all at once
    recompute: Sequence[str] = ()
    output_cache: Path | None = None
    engine: Any = None  # runs the batches (rerank.engine); None: in this process
    computed: list[str] = field(default_factory=list)
    _memo: dict[tuple[str, str], StageOutput] = field(default_factory=dict)

    # -- what exists --------------------------------------------------------------------------
    def directory(self, pipeline: PipelineSpec, source: Source) -> Path:
        return folder(self.store, pipeline, source)

    def output(self, pipeline: PipelineSpec, source: Source, *, compute: bool = True) -> StageOutput | None:
        """The last stage's output, computing it (and what it needs) unless up to date; ``compute=False``
        only looks, and gives None when anything is missing or stale."""
        resolved = resolve_pipeline(pipeline)
        memo = (source.name, str(resolved))
        if memo in self._memo:
            return self._memo[memo]
        inputs = [self.output(needed, source, compute=compute) for needed in needs(resolved)]
        if any(found is None for found in inputs):
            return None
        before, members = self._split([i for i in inputs if i is not None], resolved)
        key = self.key(resolved, source, before, members)
        directory = self.directory(resolved, source)
        manifest = stored(directory)
        forced = any(fnmatch.fnmatchcase(str(pipeline), p) for p in self.recompute)
        if manifest is not None and manifest.get("key") == key and not forced:
            found: StageOutput | None = StageOutput(resolved, directory, manifest)
        elif compute:
            found = self._compute(resolved, source, directory, key, before, members)
        else:
            found = None
        if found is not None:
            self._memo[memo] = found
        return found

    @staticmethod
    def _split(inputs: list[StageOutput], pipeline: PipelineSpec) -> tuple[StageOutput | None, list[StageOutput]]:
        """The outputs ``needs`` gave, as the previous stage's and a fusion's members'."""
        if previous(pipeline) is not None:
            return inputs[0], inputs[1:]
        return None, inputs

    def stored(self, pipeline: PipelineSpec, source: Source) -> list[StageOutput]:
        """Every stage the pipeline needs that the store holds up to date, computing none (their manifests hold
        what each cost when it was computed)."""
        from rerank.core.plan import every_stage

        found = [self.output(stage, source, compute=False) for stage in every_stage(pipeline)]
        return [stage for stage in found if stage is not None]

    def status(self, pipeline: PipelineSpec, source: Source) -> list[StageStatus]:
        """Every stage the pipeline needs (prefixes and fusion members): fresh, stale (what changed) or missing."""
        from rerank.core.plan import every_stage

        return [self._status_of(stage, source) for stage in every_stage(pipeline)]

    def _status_of(self, pipeline: PipelineSpec, source: Source) -> StageStatus:
        from rerank.core.keys import changed_fields

        directory = self.directory(pipeline, source)
        manifest = stored(directory)
        if manifest is None:
            return StageStatus(pipeline, directory, "missing")
        before = previous(pipeline)
        prior = None if before is None else self.output(before, source, compute=False)
        if before is not None and prior is None:
            return StageStatus(pipeline, directory, "stale", ("inputs.previous",))
        members = [self.output(m, source, compute=False) for m in fusion_members(pipeline)]
        if any(m is None for m in members):
            return StageStatus(pipeline, directory, "stale", ("inputs.members",))
        key = self.key(pipeline, source, prior, [m for m in members if m is not None])
        if manifest.get("key") == key:
            return StageStatus(pipeline, directory, "fresh")
        return StageStatus(pipeline, directory, "stale", tuple(changed_fields(manifest.get("key"), key)))

    def key(
        self, pipeline: PipelineSpec, source: Source, before: StageOutput | None, members: Sequence[StageOutput]
    ) -> dict[str, Any]:
        """The last stage's key, with this executor's batch sizes."""
        return stage_key(
            pipeline, source, before, members, batch_queries=self.batch_queries, retrieve_batch=self.retrieve_batch
        )

    # -- computing ----------------------------------------------------------------------------
    def _compute(
        self,
        pipeline: PipelineSpec,
        source: Source,
        directory: Path,
        key: dict[str, Any],
        before: StageOutput | None,
        members: Sequence[StageOutput],
    ) -> StageOutput:
        log.info(f"computing {source.name}: {pipeline}")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MANIFEST_FILE).unlink(missing_ok=True)  # a stale manifest never vouches for a new run
        run_path = directory / RUN_FILE
        stage = pipeline.last
        kind = last_kind(pipeline)
        tag = slug(str(pipeline), 40)
        details: dict[str, Any] = {}
        cost: dict[str, Any] = {}
        seconds: float | None = None
        start = time.perf_counter()
        if kind == "reranker":
            assert before is not None
            seconds, cost, details = self.rerank_stage(stage, source, before, run_path, key)
            details.pop("summary")
        elif kind == "given" and given_format(stage.spec) == "trec":
            from data.trec import iter_run_groups, write_trec_run

            wanted = {q.qid for q in source.queries}
            depth = stage.cutoff or DEFAULT_DEPTH
            given = iter_run_groups(source.run_file(stage.spec))  # streamed: runs of any size
            write_trec_run((r.cut(depth) for r in given if r.qid in wanted), run_path, tag=tag)
        elif kind == "retriever":
            from rerank.core.jobs import retrieve_to_file
            from rerank.engine import RetrieveWork

            index_dir, search, details = self.retriever_index(stage.spec, source)
            work = RetrieveWork(str(index_dir), stage.cutoff or DEFAULT_DEPTH, tuple(search.items()))
            retrieve_to_file(
                work, source.queries, run_path, key, batch_queries=self.retrieve_batch, engine=self.engine, tag=tag
            )
            seconds = time.perf_counter() - start
        else:
            from data.trec import write_trec_run

            run, details = self._first_stage(stage, source, members)
            seconds = None if kind == "given" else time.perf_counter() - start
            write_trec_run(run, run_path, tag=tag)
        manifest = {
            "key": key,
            "dataset": source.name,
            "pipeline": str(pipeline),
            "queries": len(source.queries),
            "seconds": None if seconds is None else round(seconds, 3),
            "timed_queries": len(source.queries),
            "cost": cost,
            "prefix": None if before is None else relative(before.directory, self.store.parent),
            "models": [m for s in pipeline.stages for m in stage_models(s)],
            "computed": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **details,
            **environment(),
        }
        write_manifest(directory / MANIFEST_FILE, manifest)
        self.computed.append(f"{source.name}: {pipeline}")
        return StageOutput(pipeline, directory, manifest)

    def _first_stage(
        self, stage: StageSpec, source: Source, members: Sequence[StageOutput]
    ) -> tuple[Run, dict[str, Any]]:
        """A given run in RankLLM or JSONL form (their candidates carry texts), or fusion."""
        depth = stage.cutoff or DEFAULT_DEPTH
        qids = {q.qid for q in source.queries}
        spec = stage.spec
        if spec.name == GIVEN:
            given = read_given_run(spec, source.run_file(spec))
            return cut(Run.from_rankings(r for r in given if r.qid in qids), depth), {}
        assert spec.name in FUSION
        from retrievers.fusion import concatenate, interpolate, reciprocal_rank_fusion

        params = fusion_params(spec)
        runs = [m.run() for m in members]
        if spec.name == "concat":
            fused = concatenate(runs)
        elif spec.name == "rrf":
            fused = reciprocal_rank_fusion(runs, k=int(params["k"]))  # type: ignore[arg-type]
        else:
            weights = params["weights"]
            normalization = params["normalization"]
            if normalization not in ("minmax", "zscore", "none"):
                raise InvalidSpecError(f"{spec}: normalization is minmax, zscore or none")
            fused = interpolate(
                runs,
                [float(w) for w in weights] if isinstance(weights, tuple) else None,  # type: ignore[arg-type]
                normalization,  # type: ignore[arg-type]
            )
        return cut(fused, depth), {"member_seconds": [m.manifest.get("seconds") for m in members]}

    def retriever_index(self, spec: MethodSpec, source: Source) -> tuple[Path, dict[str, Any], dict[str, Any]]:
        """The index a retriever stage searches (``index_dir=DIR``, or one of the source's corpus built once),
        its search options and the details for the manifest."""
        from retrievers.registry import retriever_class

        cls = retriever_class(spec.name)
        search = {k: v for k, v in spec.params if k in cls.search_params}
        build = {k: v for k, v in spec.params if k not in cls.search_params and k != GIVEN_INDEX}
        if GIVEN_INDEX in spec.kwargs:
            return Path(str(spec.kwargs[GIVEN_INDEX])), search, {}
        if (source.dataset is None and source.corpus_file is None) or self.index_cache is None:
            raise InvalidSpecError(f"{spec}: a retriever without index_dir=DIR needs a dataset or a corpus to index")
        build_spec = MethodSpec.of(spec.name, build)
        # a dataset's indexes under its name; a corpus file's by its digest alone (index_name holds it), so every
        # topics file over one corpus (each training run's) searches the one index
        where = slug(source.name) if source.corpus_file is None else "corpus-files"
        index_dir = self.index_cache / "indexes" / where / f"{spec.name}-{index_name(build_spec, source)}"
        info_path = index_dir / "executor-index.json"
        if not info_path.is_file():
            log.info(f"indexing {source.name} with {build_spec}")
            staging = index_dir.with_name(index_dir.name + ".building")
            shutil.rmtree(staging, ignore_errors=True)
            start = time.perf_counter()
            if source.corpus_file is not None:  # a corpus file (--corpus, rerank train): the texts the docs are
                from data.corpus import iter_corpus_file

                documents, corpus = iter_corpus_file(source.corpus_file), {"file": str(source.corpus_file)}
            else:
                documents, corpus = source.dataset.iter_documents(), {"dataset": source.dataset.name}
            cls.build(documents, staging, corpus=corpus, **build)
            seconds = time.perf_counter() - start
            with atomic_writer(staging / "executor-index.json") as out:
                json.dump({"spec": str(spec), "build": build, "seconds": round(seconds, 3)}, out, sort_keys=True)
            shutil.rmtree(index_dir, ignore_errors=True)
            os.replace(staging, index_dir)
        info = json.loads(info_path.read_text(encoding="utf-8"))
        return index_dir, search, {"index_seconds": info["seconds"]}

    def rerank_stage(
        self, stage: StageSpec, source: Source, before: StageOutput, run_path: Path, key: dict[str, Any],
        *, output: Path | None = None, resume: bool = True, fresh: bool = False, output_format: str = "trec",
        tag: str | None = None,
    ) -> tuple[float, dict[str, Any], dict[str, Any]]:  # fmt: skip
        """Rerank the previous stage's candidates in checkpointed batches, streamed from its file.

        Writes ``output`` when given (``rerank.run``), else the stage's ``run_path`` cut to the
        stage's depth. Returns the seconds (spanning every resumed piece), the cost record and the
        details for the manifest (``details["summary"]`` is the job summary ``rerank.run`` reports).
        """
        from rerank.checkpoint import Checkpoint, checkpoint_job
        from rerank.core.jobs import rerank_to_file
        from rerank.inputs import RunRequests

        by_qid = {q.qid: q for q in source.queries}
        requests = RunRequests(before.run_path, by_qid, source.docs, str(before.pipeline), grouped=True)
        work = output or run_path
        checkpoint = work.with_name(work.name + ".checkpoint")
        if output is None and checkpoint.exists() and checkpoint_job(checkpoint) != Checkpoint(checkpoint, key).header:
            log.info(f"  discarding {checkpoint}: it belongs to an earlier version of this stage")
            checkpoint.unlink()
        summary = rerank_to_file(
            stage.spec, requests, work, key, batch_queries=self.batch_queries, resume=resume, fresh=fresh,
            cache=self.output_cache, output_format=output_format, tag=tag or slug(stage.spec.name, 40),
            keep=stage.cutoff, engine=self.engine, total=len(source.queries),
        )  # fmt: skip
        # Resumed queries count with the reranker time their checkpoint recorded (an earlier
        # piece's model loading is not in it), so the stage's seconds cover all its queries.
        resumed = {"queries": summary["resumed"], "seconds": summary["resumed_seconds"]}
        seconds = summary["seconds"] + summary["resumed_seconds"]
        return seconds, summary["cost"], {"resumed": resumed, "summary": summary}
