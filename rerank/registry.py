"""The method registry: explicit names mapped to the classes that implement them.

Entries are import paths, so looking a name up imports only that method's module (and its heavy
libraries only when it is constructed). Plugins add methods through the ``rerank.methods``
entry-point group. Parameters are checked against the constructor's signature before anything is
built; a constructor's own error (a bad value) surfaces with its message.
"""

from __future__ import annotations

from data.errors import InvalidSpecError
from data.registry import Registry
from rerank.base import Reranker
from rerank.spec import MethodSpec, parse_spec

METHODS: Registry[type[Reranker]] = Registry("reranking method", "rerank.methods")


def register_method(name: str, target: str | type[Reranker]) -> None:
    """Register ``name`` as ``"package.module:ClassName"`` (or the class); a name is registered once."""
    METHODS.register(name, target)


def method_names() -> list[str]:
    return METHODS.names()


def method_class(name: str) -> type[Reranker]:
    cls = METHODS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, Reranker)):
        raise TypeError(f"{name!r} is registered as {cls!r}, which is not a Reranker")
    return cls


def _parsed(spec: str | MethodSpec) -> MethodSpec:
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if parsed.inputs:
        raise InvalidSpecError(f"{parsed}: a reranking method takes no input pipelines")
    return parsed


def resolve_spec(spec: str | MethodSpec) -> MethodSpec:
    """The spec with every constructor default filled in: what a stage key holds."""
    parsed = _parsed(spec)
    method_class(parsed.name)
    return MethodSpec.of(parsed.name, METHODS.resolve(parsed.name, parsed.kwargs))


def check_reranker(spec: str | MethodSpec) -> MethodSpec:
    """Everything about a method spec that can be known before it loads, here: its parameters, their
    types, and that its model and device exist on this machine. Returns the resolved spec."""
    parsed = _parsed(spec)
    method_class(parsed.name)
    METHODS.check(parsed.name, parsed.kwargs, given=str(parsed), environment=True)
    return resolve_spec(parsed)


def load_reranker(spec: str | MethodSpec) -> Reranker:
    """Construct the method a spec names, with the spec's parameters (checked before construction)."""
    parsed = _parsed(spec)
    method_class(parsed.name)
    reranker: Reranker = METHODS.create(parsed.name, parsed.kwargs, given=str(parsed))
    return reranker


register_method("bi-encoder", "rerank.methods.bi_encoder:BiEncoderReranker")
register_method("cross-encoder", "rerank.methods.cross_encoder:CrossEncoderReranker")
register_method("llm-pointwise", "rerank.methods.llm_pointwise:LLMPointwiseReranker")
register_method("listwise", "rerank.methods.listwise:ListwiseReranker")
register_method("first", "rerank.methods.first:FirstReranker")
register_method("pairwise", "rerank.methods.pairwise:PairwiseReranker")
register_method("setwise", "rerank.methods.setwise:SetwiseReranker")
register_method("groupwise", "rerank.methods.groupwise:GroupwiseReranker")
register_method("fuse", "rerank.methods.fuse:FusedReranker")
register_method("jointrank", "rerank.methods.jointrank:JointRankReranker")
register_method("split", "rerank.methods.split:SplitReranker")
register_method("remote", "rerank.methods.remote:RemoteReranker")
register_method("mono-t5", "rerank.methods.t5:MonoT5Reranker")
register_method("duo-t5", "rerank.methods.t5:DuoT5Reranker")
register_method("colbert", "rerank.methods.colbert:ColBERTReranker")
