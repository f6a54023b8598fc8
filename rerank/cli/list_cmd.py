"""List what is registered: reranking methods (with each parameter and its default), LLM backends,
retrievers, model packs (installed or not, and how to install them) and datasets (present or not).

  rerank list methods|backends|retrievers|models|datasets [--format text|json]
"""

from __future__ import annotations

import argparse
import inspect
from typing import Any

from rerank.cli.common import add_format_argument, output_format, print_json

KINDS = ("methods", "backends", "retrievers", "models", "datasets")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help="what to list")
    parser.add_argument("--data-dir", metavar="DIR", help="where datasets are looked for (default: $RERANK_DATA_DIR)")
    add_format_argument(parser, "the list")


def _parameters(found: dict[Any, Any]) -> dict[str, Any]:
    """Parameter -> default (``"required"`` when it has none), printable."""
    shown: dict[str, Any] = {}
    for name, default in found.items():
        if not isinstance(name, str):
            continue  # the marker of a constructor that takes any keyword
        shown[name] = "required" if default is inspect.Parameter.empty else default
    return shown


def _summary(obj: Any) -> str:
    """The first paragraph of the class's own docstring, else of its module's (never a base class's)."""
    import sys

    doc = obj.__dict__.get("__doc__") or getattr(sys.modules.get(obj.__module__), "__doc__", None) or ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def entries(kind: str, data_dir: str | None = None) -> list[dict[str, Any]]:
    from data.registry import constructor_parameters

    if kind == "methods":
        from rerank.registry import method_class, method_names

        return [
            {"name": n, "summary": _summary(method_class(n)), "parameters": _parameters(constructor_parameters(method_class(n)))}
            for n in method_names()
        ]  # fmt: skip
    if kind == "backends":
        from rerank.llm.backend import BACKENDS

        return [
            {"name": n, "summary": _summary(BACKENDS.get(n)), "parameters": _parameters(BACKENDS.signature(n))}
            for n in BACKENDS.names()
        ]
    if kind == "retrievers":
        from retrievers.registry import RETRIEVERS

        return [
            {"name": n, "summary": _summary(RETRIEVERS.get(n)), "parameters": dict(RETRIEVERS.get(n).parameters())}
            for n in RETRIEVERS.names()
        ]
    if kind == "models":
        from data.models import packs, trained_models

        return [
            *({"name": p.name, "installed": p.installed(), "upstream": p.upstream, "role": p.role, "install": p.install}
              for p in packs()),
            *({"name": name, "installed": True, "upstream": str(path), "role": "cross-encoder trained by rerank train",
               "install": None} for name, path in trained_models()),
        ]  # fmt: skip
    from data.datasets import info, load, registered
    from data.errors import DatasetNotFoundError

    found = []
    for name in registered():
        meta = info(name)
        try:
            load(name, data_dir)
            present = True
        except DatasetNotFoundError:
            present = False
        found.append({"name": name, "present": present, "measures": list(meta.measures),
                      "runs": [r for r, _ in meta.runs], "description": meta.description})  # fmt: skip
    return found


def _show(value: Any) -> str:
    from rerank.spec import format_value

    try:
        return format_value(value)
    except Exception:  # a default that is no spec value (a path, a callable)
        return repr(value)


def run(args: argparse.Namespace) -> int:
    found = entries(args.kind, args.data_dir)
    if output_format(args) == "json":
        print_json(found)
        return 0
    for entry in found:
        if args.kind in ("methods", "backends", "retrievers"):
            print(f"{entry['name']}: {entry['summary']}")
            params = ", ".join(k if v == "required" else f"{k}={_show(v)}" for k, v in entry["parameters"].items())
            print(f"    {entry['name']}({params})")
        elif args.kind == "models":
            state = "installed" if entry["installed"] else f"not installed: {entry['install']}"
            print(f"{entry['name']}: {entry['upstream']} ({entry['role']}); {state}")
        else:
            state = "present" if entry["present"] else "absent"
            runs = f"; runs: {', '.join(entry['runs'])}" if entry["runs"] else ""
            print(f"{entry['name']}: {state}; measures: {', '.join(entry['measures'])}{runs}")
    return 0
