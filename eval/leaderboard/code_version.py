"""The code version of a leaderboard cell: a digest of the source its result depends on.

A cell is recomputed when the code that produced it changes, and only then: the digest covers
the modules a method or retriever imports from this repository (followed through every import
statement, lazy ones inside functions too), the LLM backends (chosen by name at run time) and
the prompt files. Editing an unrelated method leaves a finished cell alone.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("data", "eval", "rerank", "retrievers")
# modules reached by name at run time rather than by import: (trigger module, folder always included)
RUNTIME_LOOKUPS = (("rerank.llm.backend", "rerank/llm"), ("rerank.prompts", "rerank/prompts"))


def module_path(name: str) -> Path | None:
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def imported_modules(name: str) -> frozenset[str]:
    """Repository modules that ``name`` imports anywhere in its source (and their parent packages)."""
    path = module_path(name)
    if path is None:
        return frozenset()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for target in targets:
            parts = target.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(m for m in found if module_path(m) is not None)


def source_files(modules: Iterable[str]) -> list[Path]:
    seen: set[str] = set()
    todo = [m for m in modules if module_path(m) is not None]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imported_modules(name) - seen)
    files = {module_path(m) for m in seen}
    for trigger, folder in RUNTIME_LOOKUPS:
        if trigger in seen:
            files.update(p for p in (REPO / folder).rglob("*") if p.is_file() and p.suffix in (".py", ".json", ".txt"))
    return sorted(p for p in files if p is not None)


def code_version(modules: Iterable[str]) -> str:
    """A digest of the named modules' source and of everything they import from this repository."""
    digest = hashlib.sha256()
    for path in source_files(modules):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
