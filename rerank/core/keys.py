"""Keys: what determines a stage's output, and the names derived from it.

A stage's key holds its kind, its cutoff, the identity of its component (``rerank.identity``:
resolved spec, version, weights, library versions, device, dtype, prompt digest), the batch size
where batching changes floating point, and the digests of its inputs (queries, the previous
stage's run, the corpus, a fusion's members). Equal keys, equal files: the store reuses a stage
whose key is unchanged and recomputes one whose key changed. Provenance (git commit, machine) is
never in a key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rerank.core.plan import GIVEN_INDEX, Source, fusion_params, last_kind, resolve_pipeline
from rerank.identity import digest_text
from rerank.spec import MethodSpec, PipelineSpec, StageSpec

if TYPE_CHECKING:
    from rerank.core.store import StageOutput


def slug(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:limit]


def stage_folder(pipeline: PipelineSpec) -> str:
    """A readable, unique folder name: the stages' names and a digest of the whole (resolved) pipeline."""
    names = "_".join(slug(s.spec.name + (f"-{s.cutoff}" if s.cutoff else "")) for s in pipeline.stages)
    return f"{names}-{hashlib.sha256(str(pipeline).encode()).hexdigest()[:10]}"


def digest_file(path: Path) -> str:
    from rerank.identity import digest_path

    return digest_path(path)


def stage_key(
    pipeline: PipelineSpec,
    source: Source,
    previous: StageOutput | None,
    members: Sequence[StageOutput],
    *,
    batch_queries: int,
    retrieve_batch: int | None,
) -> dict[str, Any]:
    """What determines the last stage's output; equal keys, equal files.

    ``batch_queries`` (queries per reranker call) is in a reranking stage's key and ``retrieve_batch``
    in a retriever's: batched floating point differs in the last digits across batch shapes."""
    from rerank.identity import retriever_identity

    stage = pipeline.last
    kind = last_kind(pipeline)
    inputs: dict[str, Any] = {"queries": source.queries_digest}
    key: dict[str, Any] = {"kind": kind, "cutoff": stage.cutoff}
    if kind == "given":
        key["stage"] = str(stage.spec)
        inputs["run"] = digest_file(source.run_file(stage.spec))
    elif kind == "fusion":
        key["stage"] = str(MethodSpec.of(stage.spec.name, fusion_params(stage.spec)))
        inputs["members"] = [digest_file(m.run_path) for m in members]
    elif kind == "retriever":
        key["identity"] = retriever_identity(stage.spec)
        if GIVEN_INDEX in stage.spec.kwargs:
            from retrievers.base import META_FILE

            inputs["index"] = digest_file(Path(str(stage.spec.kwargs[GIVEN_INDEX])) / META_FILE)
        else:
            inputs["corpus"] = source.corpus_digest
        key["batch_queries"] = retrieve_batch
    else:
        assert previous is not None
        key["identity"] = method_identity(stage.spec)
        inputs["previous"] = digest_file(previous.run_path)
        inputs["documents"] = source.corpus_digest
        key["batch_queries"] = batch_queries
    key["inputs"] = inputs
    return key


def index_name(spec: MethodSpec, source: Source) -> str:
    """The cache folder's name of an index a retriever builds over a source's corpus."""
    import json

    from rerank.identity import retriever_identity

    return digest_text(json.dumps(retriever_identity(spec), sort_keys=True), source.corpus_digest or "")


def method_identity(spec: MethodSpec | str, *, execution: bool = True) -> dict[str, Any]:
    """A reranking method's identity by spec: its resolved parameters (defaults included) and what they name."""
    from rerank.identity import component_identity
    from rerank.registry import method_class, resolve_spec

    resolved = resolve_spec(spec)
    return component_identity(
        method_class(resolved.name), resolved.kwargs, execution=execution,
        nested=lambda value: method_identity(value, execution=execution),
    )  # fmt: skip


def pipeline_identity(pipeline: PipelineSpec | str) -> dict[str, Any]:
    """What decides a pipeline's output besides its source, before it is computed: the pipeline resolved (defaults
    in, spacing out), and each stage's method or retriever identity (weights, libraries, version), fusion members
    included. For a key that names a pipeline whose output it depends on (``rerank train``'s teacher)."""
    from rerank.identity import retriever_identity
    from rerank.registry import METHODS
    from rerank.spec import as_pipeline
    from retrievers.registry import RETRIEVERS

    resolved = resolve_pipeline(as_pipeline(pipeline))
    stages: list[dict[str, Any]] = []
    for stage in resolved.stages:
        spec = stage.spec
        identity = (method_identity(spec) if spec.name in METHODS
                    else retriever_identity(spec) if spec.name in RETRIEVERS else None)  # fmt: skip
        stages.append(
            {"stage": str(stage), "identity": identity, "members": [pipeline_identity(m) for m in spec.inputs]}
        )
    return {"pipeline": str(resolved), "stages": stages}


def changed_fields(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted paths where two keys differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for name in sorted(set(old) | set(new)):
            found += changed_fields(old.get(name), new.get(name), f"{path}.{name}" if path else name)
        return found
    return [] if old == new else [path or "key"]


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


def folder(store: Path, pipeline: PipelineSpec, source: Source) -> Path:
    """Where a stage's output lives in a store."""
    return store / slug(source.name) / stage_folder(resolve_pipeline(pipeline))
