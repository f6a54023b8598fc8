"""Store: stage outputs and their manifests, in a folder per source and stage.

A stage's output is ``run.trec.gz`` with ``manifest.json`` beside it, under
``STORE/SOURCE/FOLDER`` (``rerank.core.keys.folder``). The manifest's ``key`` vouches for the run:
it is written last, atomically, and removed before a stage is recomputed, so a manifest never
describes a run other than the one beside it. Provenance (Python, packages, git commit, machine)
is recorded in the manifest, never in the key.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.records import Run
from rerank.spec import PipelineSpec

REPO = Path(__file__).resolve().parents[2]
RUN_FILE = "run.trec.gz"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class StageOutput:
    pipeline: PipelineSpec
    directory: Path
    manifest: dict[str, Any]

    @property
    def run_path(self) -> Path:
        return self.directory / RUN_FILE

    def run(self) -> Run:
        from data.trec import read_trec_run

        return read_trec_run(self.run_path, name=str(self.pipeline))


@dataclass(frozen=True)
class StageStatus:
    pipeline: PipelineSpec
    directory: Path
    state: str  # fresh, stale or missing
    changed: tuple[str, ...] = ()  # for a stale stage: the key fields that differ


def read_manifest(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing or damaged."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def stored(directory: Path) -> dict[str, Any] | None:
    """The manifest of a stage folder whose run is there too, else None."""
    manifest = read_manifest(directory / MANIFEST_FILE)
    return manifest if manifest is not None and (directory / RUN_FILE).is_file() else None


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    from data.textio import atomic_writer

    with atomic_writer(path) as out:
        json.dump(manifest, out, indent=2, sort_keys=True)
        out.write("\n")


def work_file(key: dict[str, Any], output_format: str) -> Path:
    """Where a job whose output is standard output, a device or memory writes (and checkpoints) first: the cache."""
    from data.config import cache_dir
    from rerank.identity import digest_text

    suffix = {"trec": ".trec", "rankllm": ".json", "jsonl": ".jsonl"}[output_format]
    return cache_dir() / "outputs" / (digest_text(json.dumps(key, sort_keys=True))[:20] + suffix)


@functools.lru_cache(maxsize=1)
def provenance_packages() -> tuple[str, ...]:
    """The libraries whose versions a manifest records: what every registered method, LLM backend and
    retriever declares it computes with (their ``libraries``, as their keys do), and the metrics' library."""
    from rerank.llm.backend import BACKENDS
    from rerank.registry import METHODS
    from retrievers.registry import RETRIEVERS

    names = {"ir-measures"}
    for registry in (METHODS, BACKENDS, RETRIEVERS):
        for name in registry.names():
            try:
                names.update(registry.get(name).libraries)
            except Exception:
                continue
    return tuple(sorted(names))


def environment() -> dict[str, Any]:
    """Provenance for a manifest (never part of a key): Python, packages, git commit, machine."""
    from rerank.identity import installed_versions

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
        "packages": installed_versions(provenance_packages()),
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


def relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
