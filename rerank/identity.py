"""What decides a component's outputs besides its inputs: the identity that stage keys and the output cache share.

A method's identity is its resolved spec (every parameter, defaults included), its ``version``,
the sha256 of its weights, the versions of the libraries that compute it, the device and dtype,
and the digest of its prompt file (prompts are data). The source text is never part of it: a
comment or docstring edit changes nothing, while a new library version, dtype or weights file
changes exactly the keys that depend on it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rerank.spec import MethodSpec, Value, parse_spec


def installed_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Each distribution's version as installed, build label included (``2.13.0+cpu``): what ran, for provenance."""
    found: dict[str, str | None] = {}
    for name in sorted(set(names)):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Each distribution's public version, for keys: without the local label that names a build (torch's
    ``+cpu`` or ``+cu130``). The CPU and CUDA builds of torch 2.13.0 computed byte-identical leaderboard
    cells on a CPU (docs/leaderboard.md), and the device is in the key on its own, so a machine that got the
    other build reuses the cells. The manifests' provenance keeps the label (``installed_versions``)."""
    return {name: found.split("+")[0] if found else found for name, found in installed_versions(names).items()}


def digest_text(*parts: str) -> str:
    """A short sha256 of text parts (each ended by a NUL, so the parts' boundaries count)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def digest_path(path: Path, skip: frozenset[str] = frozenset()) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents) but those named in ``skip``,
    remembered by size and mtime."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and p.name not in skip)
    stamp = json.dumps([[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files])
    return _digest_files(str(path), stamp, tuple(sorted(skip)))


@functools.lru_cache(maxsize=256)
def _digest_files(path: str, stamp: str, skip: tuple[str, ...] = ()) -> str:
    root = Path(path)
    memo = _memo_file()
    known = _read_memo(memo)
    memo_key = hashlib.sha256(stamp.encode()).hexdigest()
    if memo_key in known:
        return known[memo_key]
    digest = hashlib.sha256()
    for file in [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and p.name not in skip):
        digest.update(file.relative_to(root).as_posix().encode() if file != root else b"")
        with open(file, "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
    value = digest.hexdigest()
    _write_memo(memo, {**_read_memo(memo), memo_key: value})
    return value


def _memo_file() -> Path:
    from data.config import cache_dir

    return cache_dir() / "digests.json"


def _read_memo(path: Path) -> dict[str, str]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_memo(path: Path, memo: dict[str, str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs a re-hash


def model_identity(name: str) -> dict[str, Any]:
    """The weights a model name stands for: a pack's checksum, a local path's digest, or a hub id as given."""
    from data.models import TRAINED_CARD, find_pack, trained_model

    if not name.strip():  # no model named (remote's default: the service picks): not the current folder's files
        return {"name": name, "sha256": None}
    pack = find_pack(name)
    known = getattr(pack, "sha256", "") if pack is not None else ""
    if known:
        return {"name": name, "sha256": known}
    path = Path(pack.path()) if pack is not None else (trained_model(name) or Path(name))
    if (path / TRAINED_CARD).is_file():  # what rerank train wrote: the model's files, not its card's times
        return {"name": name, "sha256": digest_path(path, skip=frozenset({TRAINED_CARD, "README.md"}))}
    if path.exists():
        return {"name": name, "sha256": digest_path(path)}
    return {"name": name, "sha256": None}  # a hub id not downloaded here: its revision is the library's


def prompt_digest(name: str) -> str:
    from importlib.resources import files

    root = files("rerank.prompts")
    for suffix in (".json", ".txt", ".jinja"):
        candidate = root.joinpath(name + suffix)
        if candidate.is_file():
            return hashlib.sha256(candidate.read_bytes()).hexdigest()
    if name.endswith(".jinja") and Path(name).expanduser().is_file():  # a chat template of the user's
        return hashlib.sha256(Path(name).expanduser().read_bytes()).hexdigest()
    return hashlib.sha256(b"missing:" + name.encode()).hexdigest()  # the method reports it when built


def _target(params: Mapping[str, Value], options: Mapping[str, Value], libraries: Iterable[str]) -> dict[str, Any]:
    """Device and dtype: as given, else the device this machine would pick (dtype follows from it)."""
    device = params.get("device") or options.get("device")
    if device is None:
        device = "cpu"
        if "torch" in libraries and _cuda_available():
            device = "cuda"
        elif options.get("n_gpu_layers"):
            device = "gpu"
    dtype = params.get("dtype") or params.get("precision") or options.get("dtype") or "default"
    return {"device": str(device), "dtype": str(dtype)}


@functools.cache
def _cuda_available() -> bool:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def without_neutral(cls: Any, params: Mapping[str, Value]) -> dict[str, Value]:
    """The parameters minus those at their neutral value (``neutral_params``): added later, changing nothing."""
    neutral = getattr(cls, "neutral_params", {})
    return {k: v for k, v in params.items() if not (k in neutral and neutral[k] == v)}


def component_identity(
    cls: Any, params: Mapping[str, Value], *, execution: bool = True, nested: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    """Everything besides its inputs that decides a reranking method's output, from its class and resolved parameters.

    ``execution=False`` leaves out the parameters that change only speed (``batch_size``): the
    model-output cache's identity, so differently batched runs share answers. ``nested`` gives the
    identity of a parameter that holds another method's spec (JointRank's ``inner``).
    """
    from rerank.llm.backend import BACKENDS

    params = without_neutral(cls, params)
    libraries = set(cls.libraries_for(params))
    options: dict[str, Value] = {}
    backend = params.get(cls.llm_backend_param) if cls.llm_backend_param else None
    if isinstance(backend, (str, MethodSpec)):
        backend_spec = parse_spec(backend) if isinstance(backend, str) else backend
        libraries.update(BACKENDS.get(backend_spec.name).libraries)
        options = backend_spec.kwargs
    kept = {k: v for k, v in params.items() if execution or k not in cls.execution_params}
    identity: dict[str, Any] = {
        "spec": str(MethodSpec.of(cls.method, kept)),
        "version": cls.version,
        "libraries": package_versions(libraries),
        "models": [model_identity(v) for k, v in sorted(params.items()) if k == "model" and isinstance(v, str)],
        **_target(params, options, libraries),
    }
    prompt = params.get(cls.prompt_param) if cls.prompt_param else None
    if isinstance(prompt, str):
        identity["prompt"] = prompt_digest(prompt)
    for name in cls.nested_params:
        value = params.get(name)
        if value is not None:
            describe = nested or str
            # a list of specs (fuse's rerankers) is keyed member by member, in order
            keyed = [describe(v) for v in value] if isinstance(value, (list, tuple)) else describe(value)
            identity.setdefault("nested", {})[name] = keyed
    return identity


def retriever_identity(spec: MethodSpec) -> dict[str, Any]:
    """A retriever's identity: its parameters (index-time ones pick the index), version, libraries, weights."""
    from retrievers.registry import retriever_class

    cls = retriever_class(spec.name)
    # every parameter, defaults included; a given index is an input (its metadata's digest), not a parameter
    params = {**cls.parameters(), **{k: v for k, v in spec.kwargs.items() if k != "index_dir"}}
    params = without_neutral(cls, params)
    libraries = set(cls.libraries_for(params))
    return {
        "spec": str(MethodSpec.of(spec.name, params)),
        "version": cls.version,
        "libraries": package_versions(libraries),
        "models": [model_identity(v) for k, v in sorted(params.items()) if k == "model" and isinstance(v, str)],
        **_target(params, {}, libraries),
    }


def cache_identity(reranker: Any) -> str:
    """The model-output cache's namespace for a method: its identity without execution-only parameters."""
    return json.dumps(component_identity(type(reranker), reranker.params(), execution=False), sort_keys=True)
