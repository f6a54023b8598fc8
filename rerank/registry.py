"""The method registry: explicit names mapped to the classes that implement them.

Entries are import paths, so looking a name up imports only that method's
module (and its heavy libraries only when it is constructed). Plugins add
methods through the ``rerank.methods`` entry-point group.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from data.errors import InvalidSpecError
from rerank.base import Reranker
from rerank.spec import MethodSpec, parse_spec

_METHODS: dict[str, str] = {}


def register_method(name: str, target: str) -> None:
    """Register ``name`` as ``"package.module:ClassName"``; a name is registered once."""
    if name in _METHODS:
        raise ValueError(f"method {name!r} is already registered as {_METHODS[name]}")
    _METHODS[name] = target


def _load_plugins() -> None:
    for entry in entry_points(group="rerank.methods"):
        if entry.name not in _METHODS:
            _METHODS[entry.name] = entry.value


def method_names() -> list[str]:
    _load_plugins()
    return sorted(_METHODS)


def method_class(name: str) -> type[Reranker]:
    _load_plugins()
    try:
        target = _METHODS[name]
    except KeyError:
        raise InvalidSpecError(f"unknown reranking method {name!r}; known: {', '.join(sorted(_METHODS))}") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Reranker)):
        raise TypeError(f"{target} is not a Reranker")
    return cls


def load_reranker(spec: str | MethodSpec) -> Reranker:
    """Construct the method a spec names, with the spec's parameters."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    cls = method_class(parsed.name)
    try:
        return cls(**parsed.kwargs)
    except TypeError as err:
        raise InvalidSpecError(f"bad parameters in {parsed}: {err}") from None


register_method("bi-encoder", "rerank.methods.bi_encoder:BiEncoderReranker")
register_method("cross-encoder", "rerank.methods.cross_encoder:CrossEncoderReranker")
register_method("llm-pointwise", "rerank.methods.llm_pointwise:LLMPointwiseReranker")
register_method("listwise", "rerank.methods.listwise:ListwiseReranker")
register_method("first", "rerank.methods.first:FirstReranker")
register_method("pairwise", "rerank.methods.pairwise:PairwiseReranker")
register_method("setwise", "rerank.methods.setwise:SetwiseReranker")
register_method("groupwise", "rerank.methods.groupwise:GroupwiseReranker")
register_method("jointrank", "rerank.methods.jointrank:JointRankReranker")
