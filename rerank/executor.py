"""The staged executor: one way to run a pipeline spec, for ``rerank run``, ``rerank retrieve`` and the leaderboard.

A pipeline runs over a ``Source`` (queries, where document texts come from, a dataset's runs
and corpus). Every prefix of the pipeline is a stage whose output (``run.trec.gz`` and
``manifest.json``) lives in the store under ``SOURCE/FOLDER``. The manifest's ``key`` holds what
determines the output (``stage_key``): the resolved spec, the component's identity
(``rerank.identity``: version, weights, library versions, device, dtype, prompt digest) and the
digests of its inputs (queries, the previous stage's run, the corpus). A stage whose key is
unchanged is reused, by any pipeline that shares it; a changed one is recomputed. Stages that take
long checkpoint per batch of queries and resume to the identical file; every file appears
atomically. The git commit is recorded in the manifest as provenance, never in the key.

Stages: ``run(name=N)`` (a run the dataset ships) or ``run(path=FILE)``; a retriever over an
index it builds from the source's corpus (or ``index_dir=DIR``); fusion (``rrf``, ``interpolate``)
over sub-pipelines; and any registered reranking method. ``% K`` after a first stage is its
depth (100 when omitted); after a reranker, how many of its candidates go on.
"""

from __future__ import annotations

import datetime
import fnmatch
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.docstore import DocumentStore
from data.errors import InvalidSpecError, RerankWarning
from data.records import Query, Ranking, Run
from data.textio import atomic_writer
from data.trec import iter_run_groups, read_trec_run, write_trec_run
from rerank.engine import RetrieveWork
from rerank.spec import MethodSpec, PipelineSpec, StageSpec, Value

DEFAULT_DEPTH = 100
GIVEN = "run"
GIVEN_INDEX = "index_dir"  # a retriever stage over an index built elsewhere (rerank retrieve)
GIVEN_FORMATS = ("trec", "rankllm", "jsonl")
FUSION = ("rrf", "interpolate")
REPO = Path(__file__).resolve().parents[1]
PROVENANCE_PACKAGES = (
    "torch", "transformers", "sentence-transformers", "faiss-cpu", "pyserini", "ir-measures", "llama_cpp_python",
)  # fmt: skip


@dataclass(frozen=True)
class Source:
    """What a pipeline runs over: queries, document texts, and a dataset's runs and corpus when there is one."""

    name: str  # the store's folder for this source
    queries: tuple[Query, ...]
    docs: DocumentStore | None = None
    dataset: Any = None  # a data.Dataset: run(name=...), retrievers over its corpus
    corpus_file: Path | None = None  # the documents' file, for the key (the dataset's when None)

    @functools.cached_property
    def queries_digest(self) -> str:
        return digest_text(*(f"{q.qid}\t{q.text}" for q in self.queries))

    @functools.cached_property
    def corpus_digest(self) -> str | None:
        from rerank.identity import digest_path

        path = self.corpus_file or _dataset_corpus(self.dataset)
        return digest_path(path) if path is not None else None

    def run_file(self, spec: MethodSpec) -> Path:
        return given_run_path(spec, self.dataset)


def given_run_path(spec: MethodSpec, dataset: Any) -> Path:
    """The file of a given run: ``run(name=N)`` of the dataset, or ``run(path=FILE[, format=F])``."""
    params = spec.kwargs
    if set(params) == {"name"} and dataset is not None:
        return Path(dataset.run_path(str(params["name"])))
    if set(params) in ({"path"}, {"path", "format"}):
        path = Path(str(params["path"]))
        if not path.is_file():
            from data.errors import DatasetNotFoundError

            raise DatasetNotFoundError(f"{spec}: no such run file {path}")
        return path
    raise InvalidSpecError(f"{spec}: a given run is run(name=NAME) over a dataset, or run(path=FILE)")


def _dataset_corpus(dataset: Any) -> Path | None:
    if dataset is None:
        return None
    from data.beir import find_file

    beir = dataset.info.layout == "beir"
    return Path(find_file(dataset.root if beir else dataset.root.parent, "corpus.jsonl" if beir else "passages.tsv"))


@dataclass(frozen=True)
class StageOutput:
    pipeline: PipelineSpec
    directory: Path
    manifest: dict[str, Any]

    @property
    def run_path(self) -> Path:
        return self.directory / "run.trec.gz"

    def run(self) -> Run:
        return read_trec_run(self.run_path, name=str(self.pipeline))


@dataclass(frozen=True)
class StageStatus:
    pipeline: PipelineSpec
    directory: Path
    state: str  # fresh, stale or missing
    changed: tuple[str, ...] = ()  # for a stale stage: the key fields that differ


def digest_text(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def slug(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:limit]


def stage_folder(pipeline: PipelineSpec) -> str:
    """A readable, unique folder name: the stages' names and a digest of the whole (resolved) pipeline."""
    names = "_".join(slug(s.spec.name + (f"-{s.cutoff}" if s.cutoff else "")) for s in pipeline.stages)
    return f"{names}-{hashlib.sha256(str(pipeline).encode()).hexdigest()[:10]}"


def stage_kind(spec: MethodSpec, first: bool) -> str:
    """given, fusion, retriever or reranker: by the stage's explicit name."""
    from rerank.registry import METHODS
    from retrievers.registry import RETRIEVERS

    if first:
        if spec.name == GIVEN:
            return "given"
        if spec.name in FUSION:
            return "fusion"
        if spec.name in RETRIEVERS:
            return "retriever"
        raise InvalidSpecError(
            f"{spec}: a pipeline starts with run(...), a retriever ({', '.join(RETRIEVERS.names())}) "
            f"or fusion ({', '.join(FUSION)}), not {spec.name!r}"
        )
    if spec.name in METHODS:
        return "reranker"
    raise InvalidSpecError(
        f"unknown reranking method {spec.name!r} in a later stage; known: {', '.join(METHODS.names())}"
    )


def resolve_pipeline(pipeline: PipelineSpec) -> PipelineSpec:
    """The pipeline with the first stage's default depth written out, fusion inputs too."""
    first = pipeline.first
    spec = first.spec
    if spec.inputs:
        spec = MethodSpec(spec.name, spec.params, tuple(resolve_pipeline(p) for p in spec.inputs))
    return PipelineSpec((StageSpec(spec, first.cutoff or DEFAULT_DEPTH), *pipeline.stages[1:]))


def check_pipeline(pipeline: PipelineSpec, *, environment: bool = False) -> PipelineSpec:
    """Check every stage's name and parameters before any work starts; returns the resolved pipeline.

    With ``environment``, also that each stage's model and device exist here (for a pipeline about
    to run, not for one only parsed or keyed)."""
    from data.models import check_model
    from data.registry import check_values, constructor_annotations, function_annotations
    from rerank.registry import check_reranker, resolve_spec
    from retrievers.registry import RETRIEVERS

    resolved = resolve_pipeline(pipeline)
    depth: int | None = None
    for position, stage in enumerate(resolved.stages):
        if stage.cutoff is not None:
            if depth is not None and stage.cutoff > depth:
                warnings.warn(
                    f"{resolved}: {stage.spec.name} keeps {stage.cutoff} but gets only {depth} candidates",
                    RerankWarning,
                    stacklevel=2,
                )
            depth = min(stage.cutoff, depth or stage.cutoff)
        kind = stage_kind(stage.spec, position == 0)
        if kind == "reranker":
            (check_reranker if environment else resolve_spec)(stage.spec)
        elif kind == "given":
            if set(stage.spec.kwargs) not in ({"name"}, {"path"}, {"path", "format"}):
                raise InvalidSpecError(f"{stage.spec}: a given run is run(name=NAME) or run(path=FILE[, format=F])")
            if stage.spec.kwargs.get("format", "trec") not in GIVEN_FORMATS:
                raise InvalidSpecError(f"{stage.spec}: format is one of {', '.join(GIVEN_FORMATS)}")
        elif kind == "fusion":
            _fusion_params(stage.spec)
            for member in stage.spec.inputs:
                check_pipeline(member, environment=environment)
        elif kind == "retriever":
            retriever = RETRIEVERS.get(stage.spec.name)
            accepted = {*retriever.parameters(), GIVEN_INDEX}
            unknown = sorted(set(stage.spec.kwargs) - accepted)
            if unknown:
                raise InvalidSpecError(
                    f"{stage.spec}: retriever {stage.spec.name!r} has no parameter {unknown[0]!r}; "
                    f"it takes {', '.join(sorted(accepted))}"
                )
            types = {**function_annotations(retriever.build), **constructor_annotations(retriever)}  # type: ignore[attr-defined]
            check_values(stage.spec.kwargs, types, str(stage.spec))
            if environment and isinstance(stage.spec.kwargs.get("model"), str):
                check_model(str(stage.spec.kwargs["model"]), what=f"{stage.spec}: model")
    return resolved


def _fusion_params(spec: MethodSpec) -> dict[str, Value]:
    defaults: dict[str, dict[str, Value]] = {
        "rrf": {"k": 60},
        "interpolate": {"weights": None, "normalization": "minmax"},
    }
    allowed = defaults[spec.name]
    unknown = set(spec.kwargs) - set(allowed)
    if unknown:
        raise InvalidSpecError(f"{spec}: {spec.name} takes {', '.join(sorted(allowed))}, not {sorted(unknown)[0]!r}")
    if len(spec.inputs) < 2:
        raise InvalidSpecError(f"{spec}: {spec.name} fuses at least two pipelines: {spec.name}(A | B, ...)")
    return {**allowed, **spec.kwargs}


def environment() -> dict[str, Any]:
    """Provenance for a manifest (never part of a key): Python, packages, git commit, machine."""
    from rerank.identity import package_versions

    try:
        commit: str | None = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        ).stdout
        commit = f"{commit}-dirty" if dirty.strip() else commit
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "python": platform.python_version(),
        "packages": package_versions(PROVENANCE_PACKAGES),
        "git_commit": commit,
        "machine": {"platform": platform.platform(), "processor": _cpu_model(), "cpus": os.cpu_count()},
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def changed_fields(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted paths where two keys differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for name in sorted(set(old) | set(new)):
            found += changed_fields(old.get(name), new.get(name), f"{path}.{name}" if path else name)
        return found
    return [] if old == new else [path or "key"]


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _sha256(path: Path) -> str:
    from rerank.identity import digest_path

    return digest_path(path)


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
    engine: Any = None  # runs reranking batches (rerank.engine); None: in this process
    log: Callable[[str], None] = print
    computed: list[str] = field(default_factory=list)
    _memo: dict[tuple[str, str], StageOutput] = field(default_factory=dict)

    # -- what exists --------------------------------------------------------------------------
    def directory(self, pipeline: PipelineSpec, source: Source) -> Path:
        return self.store / slug(source.name) / stage_folder(resolve_pipeline(pipeline))

    def output(self, pipeline: PipelineSpec, source: Source, *, compute: bool = True) -> StageOutput | None:
        """The last stage's output, computing it (and what it needs) unless up to date; ``compute=False``
        only looks, and gives None when anything is missing or stale."""
        resolved = resolve_pipeline(pipeline)
        memo = (source.name, str(resolved))
        if memo in self._memo:
            return self._memo[memo]
        previous = (
            self.output(resolved.prefix(len(resolved.stages) - 1), source, compute=compute)
            if len(resolved.stages) > 1
            else None
        )
        members = [self.output(m, source, compute=compute) for m in self.fusion_members(resolved)]
        if (len(resolved.stages) > 1 and previous is None) or any(m is None for m in members):
            return None
        key = self.stage_key(resolved, source, previous, [m for m in members if m is not None])
        directory = self.directory(resolved, source)
        manifest = read_manifest(directory / "manifest.json")
        forced = any(fnmatch.fnmatchcase(str(pipeline), p) for p in self.recompute)
        if manifest is not None and manifest.get("key") == key and (directory / "run.trec.gz").is_file() and not forced:
            found: StageOutput | None = StageOutput(resolved, directory, manifest)
        elif compute:
            found = self._compute(resolved, source, directory, key, previous, [m for m in members if m is not None])
        else:
            found = None
        if found is not None:
            self._memo[memo] = found
        return found

    def status(self, pipeline: PipelineSpec, source: Source) -> list[StageStatus]:
        """Every stage the pipeline needs (prefixes and fusion members): fresh, stale (what changed) or missing."""
        resolved = resolve_pipeline(pipeline)
        found: list[StageStatus] = []
        for prefix in resolved.prefixes():
            for member in self.fusion_members(prefix):
                found += self.status(member, source)
            found.append(self._status_of(prefix, source))
        unique = {str(s.pipeline): s for s in found}
        return list(unique.values())

    def _status_of(self, pipeline: PipelineSpec, source: Source) -> StageStatus:
        directory = self.directory(pipeline, source)
        manifest = read_manifest(directory / "manifest.json")
        if manifest is None or not (directory / "run.trec.gz").is_file():
            return StageStatus(pipeline, directory, "missing")
        previous = None
        if len(pipeline.stages) > 1:
            previous = self.output(pipeline.prefix(len(pipeline.stages) - 1), source, compute=False)
            if previous is None:
                return StageStatus(pipeline, directory, "stale", ("inputs.previous",))
        members = [self.output(m, source, compute=False) for m in self.fusion_members(pipeline)]
        if any(m is None for m in members):
            return StageStatus(pipeline, directory, "stale", ("inputs.members",))
        key = self.stage_key(pipeline, source, previous, [m for m in members if m is not None])
        if manifest.get("key") == key:
            return StageStatus(pipeline, directory, "fresh")
        return StageStatus(pipeline, directory, "stale", tuple(changed_fields(manifest.get("key"), key)))

    @staticmethod
    def fusion_members(pipeline: PipelineSpec) -> list[PipelineSpec]:
        if len(pipeline.stages) > 1 or pipeline.first.spec.name not in FUSION:
            return []
        return [resolve_pipeline(m) for m in pipeline.first.spec.inputs]

    # -- keys ---------------------------------------------------------------------------------
    def stage_key(
        self, pipeline: PipelineSpec, source: Source, previous: StageOutput | None, members: Sequence[StageOutput]
    ) -> dict[str, Any]:
        """What determines the last stage's output; equal keys, equal files."""
        from rerank.identity import retriever_identity

        stage = pipeline.last
        kind = stage_kind(stage.spec, len(pipeline.stages) == 1)
        inputs: dict[str, Any] = {"queries": source.queries_digest}
        key: dict[str, Any] = {"kind": kind, "cutoff": stage.cutoff}
        if kind == "given":
            key["stage"] = str(stage.spec)
            inputs["run"] = _sha256(source.run_file(stage.spec))
        elif kind == "fusion":
            key["stage"] = str(MethodSpec.of(stage.spec.name, _fusion_params(stage.spec)))
            inputs["members"] = [_sha256(m.run_path) for m in members]
        elif kind == "retriever":
            key["identity"] = retriever_identity(stage.spec)
            if GIVEN_INDEX in stage.spec.kwargs:
                from retrievers.base import META_FILE

                inputs["index"] = _sha256(Path(str(stage.spec.kwargs[GIVEN_INDEX])) / META_FILE)
            else:
                inputs["corpus"] = source.corpus_digest
            key["batch_queries"] = self.retrieve_batch
        else:
            assert previous is not None
            key["identity"] = method_identity(stage.spec)
            inputs["previous"] = _sha256(previous.run_path)
            inputs["documents"] = source.corpus_digest
            key["batch_queries"] = self.batch_queries
        key["inputs"] = inputs
        return key

    # -- computing ----------------------------------------------------------------------------
    def _compute(
        self,
        pipeline: PipelineSpec,
        source: Source,
        directory: Path,
        key: dict[str, Any],
        previous: StageOutput | None,
        members: Sequence[StageOutput],
    ) -> StageOutput:
        self.log(f"computing {source.name}: {pipeline}")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "manifest.json").unlink(missing_ok=True)  # a stale manifest never vouches for a new run
        run_path = directory / "run.trec.gz"
        stage = pipeline.last
        kind = stage_kind(stage.spec, len(pipeline.stages) == 1)
        details: dict[str, Any] = {}
        cost: dict[str, Any] = {}
        seconds: float | None
        if kind == "reranker":
            assert previous is not None
            seconds, cost, details = self.rerank_stage(stage, source, previous, run_path, key)
            details.pop("summary")
        elif kind == "given" and stage.spec.kwargs.get("format", "trec") == "trec":
            wanted = {q.qid for q in source.queries}
            depth = stage.cutoff or DEFAULT_DEPTH
            given = iter_run_groups(source.run_file(stage.spec))  # streamed: runs of any size
            write_trec_run((r.cut(depth) for r in given if r.qid in wanted), run_path, tag=slug(str(pipeline), 40))
            seconds = None
        elif kind == "retriever":
            start = time.perf_counter()
            index_dir, search, details = self.retriever_index(stage.spec, source)
            work = RetrieveWork(str(index_dir), stage.cutoff or DEFAULT_DEPTH, tuple(search.items()))
            self.retrieve_stage(work, source.queries, run_path, key, tag=slug(str(pipeline), 40))
            seconds = time.perf_counter() - start
        else:
            start = time.perf_counter()
            run, details = self._first_stage(stage, source, members)
            seconds = None if kind == "given" else time.perf_counter() - start
            write_trec_run(run, run_path, tag=slug(str(pipeline), 40))
        manifest = {
            "key": key,
            "dataset": source.name,
            "pipeline": str(pipeline),
            "queries": len(source.queries),
            "seconds": None if seconds is None else round(seconds, 3),
            "timed_queries": len(source.queries),
            "cost": cost,
            "prefix": None if previous is None else _relative(previous.directory, self.store.parent),
            "models": [m for s in pipeline.stages for m in stage_models(s)],
            "computed": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **details,
            **environment(),
        }
        with atomic_writer(directory / "manifest.json") as out:
            json.dump(manifest, out, indent=2, sort_keys=True)
            out.write("\n")
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
        if spec.name in FUSION:
            from retrievers.fusion import interpolate, reciprocal_rank_fusion

            params = _fusion_params(spec)
            runs = [m.run() for m in members]
            if spec.name == "rrf":
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
        if source.dataset is None or self.index_cache is None:
            raise InvalidSpecError(f"{spec}: a retriever without index_dir=DIR needs a dataset to index")
        from rerank.identity import retriever_identity

        identity = retriever_identity(MethodSpec.of(spec.name, build))
        name = digest_text(json.dumps(identity, sort_keys=True), source.corpus_digest or "")
        index_dir = self.index_cache / "indexes" / slug(source.name) / f"{spec.name}-{name}"
        info_path = index_dir / "executor-index.json"
        if not info_path.is_file():
            self.log(f"indexing {source.name} with {MethodSpec.of(spec.name, build)}")
            staging = index_dir.with_name(index_dir.name + ".building")
            shutil.rmtree(staging, ignore_errors=True)
            start = time.perf_counter()
            cls.build(source.dataset.iter_documents(), staging, corpus={"dataset": source.dataset.name}, **build)
            seconds = time.perf_counter() - start
            with atomic_writer(staging / "executor-index.json") as out:
                json.dump({"spec": str(spec), "build": build, "seconds": round(seconds, 3)}, out, sort_keys=True)
            shutil.rmtree(index_dir, ignore_errors=True)
            os.replace(staging, index_dir)
        info = json.loads(info_path.read_text(encoding="utf-8"))
        return index_dir, search, {"index_seconds": info["seconds"]}

    def retrieve_stage(
        self, work: RetrieveWork, queries: Sequence[Query], output: Path, key: dict[str, Any],
        *, target: Path | None = None, tag: str = "rerank", resume: bool = True, fresh: bool = False,
    ) -> tuple[int, int]:  # fmt: skip
        """Search every query in batches, checkpointing each beside ``output``, then write the run to ``target``
        (``output`` when None) from the checkpoint; returns the candidates written and the queries resumed.

        The index is opened (by the executor's engine) only when there is something left to search.
        """
        import sys

        from tqdm import tqdm

        from rerank.checkpoint import open_checkpoint
        from rerank.engine import LocalEngine

        checkpoint = open_checkpoint(output, key, resume=resume, fresh=fresh)
        try:
            size = self.retrieve_batch or max(1, len(queries))
            chunks = [list(queries[i : i + size]) for i in range(0, len(queries), size)]
            todo = [(i, c) for i, c in enumerate(chunks) if any(q.qid not in checkpoint for q in c)]
            resumed = len(queries) - sum(len(c) for _, c in todo)
            if todo:
                runner = (self.engine or LocalEngine()).start(work)
                try:
                    with tqdm(total=len(queries), initial=resumed, unit="query", file=sys.stderr, disable=None) as bar:
                        for _, results in runner.run(todo):
                            checkpoint.add(results)
                            bar.update(len(results))
                finally:
                    runner.close()
            written = 0

            def rankings() -> Iterator[Ranking]:  # read back one query at a time, in the queries' order
                nonlocal written
                for query in queries:
                    ranking = checkpoint.result(query.qid).ranking
                    written += len(ranking)
                    yield ranking

            write_trec_run(rankings(), target or output, tag=tag)
        finally:
            checkpoint.close()
        checkpoint.remove()
        return written, resumed

    def rerank_stage(
        self, stage: StageSpec, source: Source, previous: StageOutput, run_path: Path, key: dict[str, Any],
        *, output: Path | None = None, resume: bool = True, fresh: bool = False, output_format: str = "trec",
        tag: str | None = None,
    ) -> tuple[float, dict[str, Any], dict[str, Any]]:  # fmt: skip
        """Rerank the previous stage's candidates in checkpointed batches, streamed from its file.

        Writes ``output`` when given (``rerank run``), else the stage's ``run_path`` cut to the
        stage's depth. Returns the seconds (spanning every resumed piece), the cost record and the
        details for the manifest (``details["summary"]`` is the job summary ``rerank run`` prints).
        """
        from rerank.checkpoint import Checkpoint, checkpoint_job
        from rerank.inputs import RunRequests
        from rerank.jobs import rerank_to_file

        by_qid = {q.qid: q for q in source.queries}
        requests = RunRequests(previous.run_path, by_qid, source.docs, str(previous.pipeline), grouped=True)
        work = output or run_path
        checkpoint = work.with_name(work.name + ".checkpoint")
        if output is None and checkpoint.exists() and checkpoint_job(checkpoint) != Checkpoint(checkpoint, key).header:
            self.log(f"  discarding {checkpoint}: it belongs to an earlier version of this stage")
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


def method_identity(spec: MethodSpec | str, *, execution: bool = True) -> dict[str, Any]:
    """A reranking method's identity by spec: its resolved parameters (defaults included) and what they name."""
    from rerank.identity import component_identity
    from rerank.registry import method_class, resolve_spec

    resolved = resolve_spec(spec)
    return component_identity(
        method_class(resolved.name), resolved.kwargs, execution=execution,
        nested=lambda value: method_identity(value, execution=execution),
    )  # fmt: skip


def stage_models(stage: StageSpec) -> list[dict[str, Any]]:
    """The weights a stage uses, for its manifest (nested specs included)."""
    from rerank.identity import model_identity

    found = []
    for name, value in stage.spec.params:
        if name == "model" and isinstance(value, str):
            found.append(_model_record(value, model_identity(value)))
        else:  # a nested spec, or a list of them (fuse's rerankers)
            for nested in value if isinstance(value, tuple) else (value,):
                if isinstance(nested, MethodSpec):
                    found += stage_models(StageSpec(nested))
    for member in stage.spec.inputs:
        for inner in member.stages:
            found += stage_models(inner)
    return found


def _model_record(name: str, identity: Mapping[str, Any]) -> dict[str, Any]:
    from data.models import find_pack

    pack = find_pack(name)
    record: dict[str, Any] = {"name": name, "upstream": pack.upstream if pack else name}
    if identity.get("sha256"):
        record["sha256"] = identity["sha256"]
    return record


def read_given_run(spec: MethodSpec, path: Path) -> Run:
    """A given run: a TREC file, or candidates in RankLLM JSON or JSONL (their order and scores)."""
    fmt = spec.kwargs.get("format", "trec")
    if fmt == "trec":
        return read_trec_run(path)
    from data.jsonl import read_candidates_jsonl
    from data.rankllm import read_rankllm_requests

    read = read_rankllm_requests if fmt == "rankllm" else read_candidates_jsonl
    return Run.from_rankings(Ranking.sorted(r.query.qid, r.candidates) for r in read(path))


def cut(run: Run, depth: int) -> Run:
    return Run.from_rankings((Ranking(r.qid, r.candidates[:depth]) for r in run), name=run.name)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def source_for_dataset(dataset: Any, queries: Iterable[Query] | None = None, name: str | None = None) -> Source:
    """A dataset as a source: its queries (or the given ones), its document store, runs and corpus."""
    chosen = tuple(queries) if queries is not None else tuple(dataset.queries())
    return Source(name or dataset.name, chosen, dataset.docs(), dataset)
