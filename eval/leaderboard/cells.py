"""Leaderboard cells: one pipeline on one dataset, computed once and kept with its manifest.

A cell is a folder holding ``run.trec.gz`` and ``manifest.json``. The manifest's ``key`` names
everything the result depends on (dataset, pipeline, queries, inputs, code version, batch size);
a cell whose key still matches is never recomputed. A pipeline's prefix is a cell of its own, so
``run(name=bm25) % 20`` is retrieved once for every reranker on top of it. Reranking cells
checkpoint per batch of queries and resume after an interruption; files appear atomically.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.datasets import Dataset
from data.records import Query, Ranking, Run
from data.textio import atomic_writer
from data.trec import read_trec_run, write_trec_run
from eval.leaderboard.code_version import REPO, code_version
from eval.leaderboard.pipelines import PipelineSpec, Stage, fusion_members
from rerank.spec import MethodSpec, parse_spec

PACKAGES = (
    "torch", "transformers", "sentence-transformers", "faiss-cpu", "pyserini", "ir-measures", "llama_cpp_python",
)  # fmt: skip
# search-time parameters of each retriever; the rest are index-time and pick the index
SEARCH_PARAMS = {"bm25": {"k1", "b", "threads"}, "dense": {"ef_search", "batch_size"}, "splade": {"threads"}}


@dataclass(frozen=True, slots=True)
class Cell:
    dataset: str
    pipeline: PipelineSpec
    directory: Path
    manifest: dict[str, Any]

    @property
    def run_path(self) -> Path:
        return self.directory / "run.trec.gz"

    def run(self) -> Run:
        return read_trec_run(self.run_path, name=str(self.pipeline))


def slug(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:limit]


def cell_folder(pipeline: PipelineSpec) -> str:
    """A readable, unique folder name: the stages' names and a digest of the whole pipeline."""
    names = "_".join(slug(stage.spec.name + (f"-{stage.cutoff}" if stage.cutoff else "")) for stage in pipeline.stages)
    return f"{names}-{hashlib.sha256(str(pipeline).encode()).hexdigest()[:10]}"


def digest_text(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


@functools.cache
def digest_path(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names and contents)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode() if file != path else b"")
        with open(file, "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


def models_in(spec: MethodSpec) -> list[str]:
    """Model names a spec uses, nested specs (JointRank's ``inner``) included."""
    found = []
    for key, value in spec.params:
        if key == "model" and isinstance(value, str):
            found.append(value)
        elif isinstance(value, str) and "(" in value:
            with contextlib.suppress(ValueError):
                found.extend(models_in(parse_spec(value)))
    return found


def model_record(name: str) -> dict[str, Any]:
    from data.models import _PACKS, SplitFilePack, resolve_model

    pack = _PACKS.get(name)
    record: dict[str, Any] = {"name": name, "upstream": pack.upstream if pack else name}
    try:
        path = Path(resolve_model(name))
    except Exception as err:  # a missing pack: the cell itself will fail with the fix
        return {**record, "error": str(err)}
    if isinstance(pack, SplitFilePack):
        record["sha256"] = pack.sha256
    elif path.exists():
        record["sha256"] = digest_path(path)
    return record


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        ).stdout
        commit += "-dirty" if dirty.strip() else ""
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "python": platform.python_version(),
        "packages": versions,
        "git_commit": commit,
        "machine": {"platform": platform.platform(), "processor": cpu_model(), "cpus": os.cpu_count()},
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def stage_module(spec: MethodSpec) -> list[str]:
    """The modules whose code decides a stage's output."""
    from rerank.registry import method_class
    from retrievers.registry import retriever_class

    if spec.name == "run":
        return ["data.trec"]
    if spec.name == "rrf":
        return ["retrievers.fusion", *(m for member in fusion_members(spec) for m in stage_module(member))]
    if spec.name in SEARCH_PARAMS:
        return [retriever_class(spec.name).__module__]
    modules = [method_class(spec.name).__module__]
    for _, value in spec.params:
        if isinstance(value, str) and "(" in value:
            try:
                nested = parse_spec(value)
                modules.append(method_class(nested.name).__module__)
            except ValueError:
                pass
    return modules


class CellRunner:
    """Computes cells under ``output/cells`` (indexes under ``cache``), reusing every cell whose key matches."""

    def __init__(
        self,
        output: Path,
        cache: Path,
        *,
        query_limit: int | None = None,
        batch_queries: int = 4,
        log: Callable[[str], None] = print,
    ):
        self.output, self.cache, self.query_limit, self.batch_queries = output, cache, query_limit, batch_queries
        self.log = log
        self.computed: list[str] = []
        self._cells: dict[tuple[str, str], Cell] = {}
        self._datasets: dict[str, Dataset] = {}

    def dataset(self, name: str) -> Dataset:
        import data

        if name not in self._datasets:
            self._datasets[name] = data.load(name)
        return self._datasets[name]

    def queries(self, name: str) -> list[Query]:
        """The judged queries in the dataset's order; with ``query_limit``, the first of them."""
        dataset = self.dataset(name)
        judged = set(dataset.qrels().qids)
        return [q for q in dataset.queries() if q.qid in judged][: self.query_limit]

    def cell(self, dataset: str, pipeline: PipelineSpec) -> Cell:
        """The cell of a pipeline on a dataset, computed (with its prefixes) unless up to date."""
        found = self._cell(dataset, pipeline, compute=True)
        assert found is not None
        return found

    def existing(self, dataset: str, pipeline: PipelineSpec) -> Cell | None:
        """The cell if it and everything it depends on are up to date; nothing is computed."""
        return self._cell(dataset, pipeline, compute=False)

    def _cell(self, dataset: str, pipeline: PipelineSpec, compute: bool) -> Cell | None:
        memo = (dataset, str(pipeline))
        if memo in self._cells:
            return self._cells[memo]
        directory = self.output / "cells" / slug(dataset) / cell_folder(pipeline)
        queries = self.queries(dataset)
        prefix = self._cell(dataset, pipeline.prefix(), compute) if len(pipeline.stages) > 1 else None
        members = [self._cell(dataset, m, compute) for m in fusion_cells(pipeline)]
        if (len(pipeline.stages) > 1 and prefix is None) or None in members:
            return None
        last = pipeline.stages[-1]
        key: dict[str, Any] = {
            "dataset": dataset,
            "pipeline": str(pipeline),
            "queries": digest_text(*(f"{q.qid}\t{q.text}" for q in queries)),
            "code": code_version(stage_module(last.spec)),
            "inputs": self._inputs_digest(dataset, last.spec, prefix, members),
        }
        if prefix is not None:
            key["batch_queries"] = self.batch_queries  # batched floating point differs in the last digits
        manifest = read_manifest(directory / "manifest.json")
        if manifest is not None and manifest.get("key") == key and (directory / "run.trec.gz").is_file():
            cell: Cell | None = Cell(dataset, pipeline, directory, manifest)
        elif compute:
            cell = self._compute(dataset, pipeline, directory, key, queries, prefix)
        else:
            cell = None
        if cell is not None:
            self._cells[memo] = cell
        return cell

    def _inputs_digest(self, dataset: str, spec: MethodSpec, prefix: Cell | None, members: list[Cell | None]) -> str:
        if prefix is not None:
            return digest_path(prefix.run_path)  # the candidates; their texts come from the same dataset
        if spec.name == "run":
            return digest_path(self.dataset(dataset).run_path(str(spec.kwargs["name"])))
        if spec.name == "rrf":
            return digest_text(*(digest_path(m.run_path) for m in members if m is not None))
        return self._corpus_digest(dataset)

    def _corpus_digest(self, dataset: str) -> str:
        from data.beir import find_file

        ds = self.dataset(dataset)
        beir = ds.info.layout == "beir"
        return digest_path(
            Path(find_file(ds.root if beir else ds.root.parent, "corpus.jsonl" if beir else "passages.tsv"))
        )

    def _compute(
        self,
        dataset: str,
        pipeline: PipelineSpec,
        directory: Path,
        key: dict[str, Any],
        queries: list[Query],
        prefix: Cell | None,
    ) -> Cell:
        self.log(f"computing {dataset}: {pipeline}")
        directory.mkdir(parents=True, exist_ok=True)
        run_path = directory / "run.trec.gz"
        stage = pipeline.stages[-1]
        details: dict[str, Any] = {}
        if prefix is None:
            start = time.perf_counter()
            run, details = self._first_stage(dataset, stage.spec, pipeline.depth, queries)
            seconds: float | None = time.perf_counter() - start if stage.spec.name != "run" else None
            write_trec_run(run, run_path, tag=slug(str(pipeline), 40))
            cost: dict[str, Any] = {}
            timed = len(queries)
        else:
            seconds, cost, details = self._rerank(dataset, stage.spec, stage.cutoff, prefix, run_path, key, queries)
            timed = len(queries)
        manifest = {
            "key": key,
            "dataset": dataset,
            "pipeline": str(pipeline),
            "queries": len(queries),
            "seconds": None if seconds is None else round(seconds, 3),
            "timed_queries": timed,
            "cost": cost,
            "prefix": None if prefix is None else prefix.directory.relative_to(self.output).as_posix(),
            "models": [model_record(m) for s in pipeline.stages for m in models_in(s.spec)],
            "computed": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **details,
            **environment(),
        }
        with atomic_writer(directory / "manifest.json") as out:
            json.dump(manifest, out, indent=2, sort_keys=True)
            out.write("\n")
        self.computed.append(f"{dataset}: {pipeline}")
        return Cell(dataset, pipeline, directory, manifest)

    def _first_stage(
        self, dataset: str, spec: MethodSpec, depth: int, queries: list[Query]
    ) -> tuple[Run, dict[str, Any]]:
        qids = {q.qid for q in queries}
        if spec.name == "run":
            given = self.dataset(dataset).run(str(spec.kwargs["name"]))
            return cut(Run.from_rankings(r for r in given if r.qid in qids), depth), {}
        if spec.name == "rrf":
            from retrievers.fusion import reciprocal_rank_fusion

            members = [self.cell(dataset, m) for m in fusion_cells(PipelineSpec((Stage(spec, depth),)))]
            fused = reciprocal_rank_fusion([m.run() for m in members], k=int(spec.kwargs.get("k", 60)))  # type: ignore[arg-type]
            seconds = [m.manifest.get("seconds") for m in members]
            return cut(fused, depth), {"member_seconds": seconds}
        retriever, built = self._retriever(dataset, spec)
        return retriever.retrieve(queries, depth), built

    def _retriever(self, dataset: str, spec: MethodSpec) -> tuple[Any, dict[str, Any]]:
        from retrievers.registry import open_index, retriever_class

        search = {k: v for k, v in spec.params if k in SEARCH_PARAMS[spec.name]}
        build = {k: v for k, v in spec.params if k not in SEARCH_PARAMS[spec.name]}
        name = digest_text(spec.name, json.dumps(build, sort_keys=True), self._corpus_digest(dataset),
                           code_version(stage_module(spec)))  # fmt: skip
        index_dir = self.cache / "leaderboard-indexes" / slug(dataset) / f"{spec.name}-{name}"
        info_path = index_dir / "leaderboard-index.json"
        if not info_path.is_file():
            self.log(f"indexing {dataset} with {spec.name}({', '.join(f'{k}={v}' for k, v in build.items())})")
            staging = index_dir.with_name(index_dir.name + ".building")
            shutil.rmtree(staging, ignore_errors=True)
            start = time.perf_counter()
            documents = self.dataset(dataset).iter_documents()
            retriever_class(spec.name).build(documents, staging, corpus={"dataset": dataset}, **build)
            seconds = time.perf_counter() - start
            with atomic_writer(staging / "leaderboard-index.json") as out:
                json.dump({"spec": str(spec), "build": build, "seconds": round(seconds, 3)}, out, sort_keys=True)
            shutil.rmtree(index_dir, ignore_errors=True)
            os.replace(staging, index_dir)
        info = json.loads(info_path.read_text(encoding="utf-8"))
        return open_index(index_dir, **search), {"index_seconds": info["seconds"]}

    def _rerank(
        self,
        dataset: str,
        spec: MethodSpec,
        keep: int | None,
        prefix: Cell,
        run_path: Path,
        key: dict[str, Any],
        queries: list[Query],
    ) -> tuple[float, dict[str, Any], dict[str, Any]]:
        """Seconds over every piece of the work, the cost record, and what was resumed from a checkpoint."""
        from rerank.checkpoint import Checkpoint, checkpoint_job
        from rerank.inputs import requests_from_run
        from rerank.jobs import rerank_to_file

        by_qid = {q.qid: q for q in queries}
        requests = list(requests_from_run(prefix.run(), by_qid, self.dataset(dataset).docs()))
        work = run_path.with_name("rerank.trec.gz")
        checkpoint = work.with_name(work.name + ".checkpoint")
        if checkpoint.exists() and checkpoint_job(checkpoint) != Checkpoint(checkpoint, key).header:
            self.log(f"  discarding {checkpoint}: it belongs to an earlier version of this cell")
            checkpoint.unlink()
        summary, results = rerank_to_file(
            parse_spec(str(spec)), requests, work, key, batch_queries=self.batch_queries, resume=True
        )
        rankings = [Ranking(r.ranking.qid, r.ranking.candidates[:keep]) for r in results]
        write_trec_run(Run.from_rankings(rankings), run_path, tag=slug(spec.name, 40))
        work.unlink()
        # Resumed queries count with the reranker time their checkpoint recorded (an earlier
        # piece's model loading is not in it), so the cell's seconds cover all its queries.
        resumed = {"queries": summary["resumed"], "seconds": summary["resumed_seconds"]}
        return summary["seconds"] + summary["resumed_seconds"], summary["cost"], {"resumed": resumed}


def fusion_cells(pipeline: PipelineSpec) -> list[PipelineSpec]:
    """The member pipelines a fusion first stage fuses (none for other pipelines)."""
    first = pipeline.first.spec
    if len(pipeline.stages) > 1 or first.name != "rrf":
        return []
    depth = int(first.kwargs.get("depth", 100))  # type: ignore[arg-type]
    return [PipelineSpec((Stage(member, depth),)) for member in fusion_members(first)]


def cut(run: Run, depth: int) -> Run:
    return Run.from_rankings((Ranking(r.qid, r.candidates[:depth]) for r in run), name=run.name)


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
