"""The pipeline language: specs that print and parse back, for Python, the CLI, the leaderboard and the server.

A **method spec** names a registered component and its parameters::

    cross-encoder(model=minilm, max_length=512)
    jointrank(inner=first(backend=llama.cpp, model=qwen2.5-coder-0.5b))   # a nested spec is a spec
    rrf(bm25 % 100 | dense(model=minilm) % 100, k=60)                   # fusion over sub-pipelines

A **pipeline** is stages joined by ``>>``; each stage is a method spec with an optional ``% K``
(after a first stage: how many candidates it passes on; after a reranker: how many of its
reranked candidates the next stage gets)::

    run(name=bm25) % 100 >> bi-encoder(model=minilm) % 20 >> first(model=qwen2.5-coder-0.5b)

``A ^ B`` is PyTerrier's concatenation: A's ranking, then B's candidates that A lacks, scored below A's
lowest. It binds more loosely than ``>>`` (as in Python), parentheses group, and it prints as the fusion
stage it is, ``concat(A | B)``::

    (run(name=bm25) % 10 >> listwise(model=m)) ^ run(name=bm25)    # the reranked top 10, then BM25's rest

Values are integers, floats, booleans (``true``/``false``), ``none``, strings, lists
(``[0.6, 0.4]``) and nested method specs. A string is written bare when it reads back as the same
string, else in JSON double quotes (so ``inner="first(model=m)"`` is a string, ``inner=first(model=m)``
a spec). Keyword parameters print sorted by name and positional sub-pipelines first, so equal specs
print equally and ``parse(str(x)) == x`` for every spec. The operators build the same values from
Python: ``MethodSpec.of("bm25") % 100 >> MethodSpec.of("bi-encoder", {"model": "minilm"})``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

from data.errors import InvalidSpecError

Value = Union[bool, int, float, str, None, "MethodSpec", tuple["Value", ...]]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)")
_BARE = re.compile(r"[A-Za-z0-9_./:@+-][A-Za-z0-9_./:@+\-]*")
_INT = re.compile(r"\d+")


CONCAT = "concat"  # the fusion stage ``A ^ B`` builds


class _Chains:
    """``a >> b`` and ``a ^ b`` for a method spec or a stage: both become one-stage pipelines first."""

    __slots__ = ()

    def __rshift__(self, other: Any) -> PipelineSpec:
        return as_pipeline(self) >> other

    def __rrshift__(self, other: Any) -> PipelineSpec:
        return as_pipeline(other) >> self

    def __xor__(self, other: Any) -> PipelineSpec:
        return concatenate(as_pipeline(self), as_pipeline(other))

    def __rxor__(self, other: Any) -> PipelineSpec:
        return concatenate(as_pipeline(other), as_pipeline(self))


@dataclass(frozen=True, slots=True)
class MethodSpec(_Chains):
    """A registered name, its keyword parameters (sorted) and, for fusion, the pipelines it combines."""

    name: str
    params: tuple[tuple[str, Value], ...] = ()
    inputs: tuple[PipelineSpec, ...] = ()

    @classmethod
    def of(cls, name: str, params: Mapping[str, Any] | None = None, inputs: Iterable[Any] = ()) -> MethodSpec:
        return cls(
            name,
            tuple(sorted((k, _as_value(v)) for k, v in (params or {}).items())),
            tuple(as_pipeline(i) for i in inputs),
        )

    @property
    def kwargs(self) -> dict[str, Value]:
        return dict(self.params)

    def replace(self, **params: Any) -> MethodSpec:
        """The same spec with some parameters set (``None`` values are kept: ``none`` is a value)."""
        return MethodSpec.of(self.name, {**self.kwargs, **params}, self.inputs)

    def __str__(self) -> str:
        parts = [" | ".join(str(i) for i in self.inputs)] if self.inputs else []
        parts += [f"{k}={format_value(v)}" for k, v in self.params]
        return f"{self.name}({', '.join(parts)})" if parts else self.name

    # The algebra: ``spec % 100`` is a stage with a cutoff, ``a >> b`` a pipeline.
    def __mod__(self, k: int) -> StageSpec:
        return StageSpec(self) % k


@dataclass(frozen=True, slots=True)
class StageSpec(_Chains):
    spec: MethodSpec
    cutoff: int | None = None

    def __str__(self) -> str:
        return f"{self.spec}" + (f" % {self.cutoff}" if self.cutoff is not None else "")

    def __mod__(self, k: int) -> StageSpec:
        return StageSpec(self.spec, check_cutoff(k))


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    stages: tuple[StageSpec, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise InvalidSpecError("a pipeline needs at least one stage")

    def __str__(self) -> str:
        return " >> ".join(str(s) for s in self.stages)

    def __rshift__(self, other: Any) -> PipelineSpec:
        return PipelineSpec(self.stages + as_pipeline(other).stages)

    def __rrshift__(self, other: Any) -> PipelineSpec:
        return as_pipeline(other) >> self

    def __mod__(self, k: int) -> PipelineSpec:
        return PipelineSpec((*self.stages[:-1], self.stages[-1] % k))

    def __xor__(self, other: Any) -> PipelineSpec:
        return concatenate(self, as_pipeline(other))

    def __rxor__(self, other: Any) -> PipelineSpec:
        return concatenate(as_pipeline(other), self)

    @property
    def first(self) -> StageSpec:
        return self.stages[0]

    @property
    def last(self) -> StageSpec:
        return self.stages[-1]

    def prefix(self, length: int) -> PipelineSpec:
        """The first ``length`` stages."""
        return PipelineSpec(self.stages[:length])

    def prefixes(self) -> list[PipelineSpec]:
        return [self.prefix(n) for n in range(1, len(self.stages) + 1)]


def concatenate(*pipelines: PipelineSpec) -> PipelineSpec:
    """``A ^ B ^ C``: one ``concat`` stage over the pipelines (a concat that is all of its pipeline, with no
    cutoff of its own, is opened, so the left fold prints flat: ``concat(A | B | C)``)."""
    members: list[PipelineSpec] = []
    for pipeline in pipelines:
        only = pipeline.first if len(pipeline.stages) == 1 else None
        if only is not None and only.spec.name == CONCAT and only.cutoff is None and not only.spec.params:
            members += only.spec.inputs
        else:
            members.append(pipeline)
    return PipelineSpec((StageSpec(MethodSpec(CONCAT, (), tuple(members))),))


def check_cutoff(k: object) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InvalidSpecError(f"a cutoff must be a positive integer, not {k!r}")
    return k


def as_pipeline(value: Any) -> PipelineSpec:
    """A pipeline from a pipeline, a stage, a method spec, a string, or anything with a ``spec``."""
    if isinstance(value, PipelineSpec):
        return value
    if isinstance(value, StageSpec):
        return PipelineSpec((value,))
    if isinstance(value, MethodSpec):
        return PipelineSpec((StageSpec(value),))
    if isinstance(value, str):
        return parse_pipeline(value)
    spec = getattr(value, "spec", None)
    if spec is not None and spec is not value:
        return as_pipeline(spec)
    raise InvalidSpecError(f"cannot make a pipeline of {type(value).__name__}")


def _as_value(value: Any) -> Value:
    if isinstance(value, list):
        return tuple(_as_value(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_as_value(v) for v in value)
    return value


def format_value(value: Value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, MethodSpec):
        # a nested spec always prints its parentheses, so it never reads back as a bare string
        return str(value) if value.params or value.inputs else f"{value.name}()"
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, str):
        if _BARE.fullmatch(value) and parse_value(value) == value:
            return value
        return json.dumps(value, ensure_ascii=False)
    raise InvalidSpecError(f"a spec value must be a number, string, boolean, none, list or spec, not {value!r}")


def parse_value(text: str) -> Value:
    """A bare scalar: boolean, none, integer, float, else the text itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_pipeline(text: str) -> PipelineSpec:
    """Parse ``stage >> stage >> ...``; errors name the text and where it went wrong."""
    parser = _Parser(text)
    pipeline = parser.pipeline()
    parser.end()
    return pipeline


def parse_spec(text: str) -> MethodSpec:
    """Parse one method spec: ``name`` or ``name(key=value, ...)``; a repeated key is an error."""
    parser = _Parser(text)
    spec = parser.call()
    parser.end()
    return spec


class _Parser:
    """Recursive descent over the text; ``pos`` is the next character to read."""

    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def fail(self, expected: str) -> InvalidSpecError:
        rest = self.text[self.pos :]
        found = repr(rest[:30]) if rest else "the end"
        return InvalidSpecError(f"spec {self.text!r}: expected {expected} at {found}")

    def space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, token: str) -> bool:
        self.space()
        return self.text.startswith(token, self.pos)

    def take(self, token: str) -> bool:
        if self.peek(token):
            self.pos += len(token)
            return True
        return False

    def end(self) -> None:
        self.space()
        if self.pos != len(self.text):
            raise self.fail("'>>', '^', '%' or the end")

    def pipeline(self) -> PipelineSpec:
        """Chains joined by ``^`` (looser than ``>>``)."""
        chains = [self.chain()]
        while self.take("^"):
            chains.append(self.chain())
        return chains[0] if len(chains) == 1 else concatenate(*chains)

    def chain(self) -> PipelineSpec:
        stages = list(self.stages())
        while self.take(">>"):
            stages += self.stages()
        return PipelineSpec(tuple(stages))

    def stages(self) -> tuple[StageSpec, ...]:
        """One stage, or a parenthesised pipeline's stages (a ``%`` after it cuts its last)."""
        if self.take("("):
            grouped = self.pipeline()
            if not self.take(")"):
                raise self.fail("')'")
            cutoff = self.cutoff()
            return (grouped % cutoff).stages if cutoff is not None else grouped.stages
        spec = self.call()
        return (StageSpec(spec, self.cutoff()),)

    def cutoff(self) -> int | None:
        if not self.take("%"):
            return None
        self.space()
        match = _INT.match(self.text, self.pos)
        if match is None or int(match.group()) < 1:
            raise self.fail("a positive integer after '%'")
        self.pos = match.end()
        return int(match.group())

    def call(self) -> MethodSpec:
        self.space()
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.fail("a method name")
        name, self.pos = match.group(), match.end()
        if not self.peek("("):
            return MethodSpec(name)
        self.take("(")
        params: dict[str, Value] = {}
        inputs: list[PipelineSpec] = []
        while not self.take(")"):
            if (params or inputs) and not self.take(","):
                raise self.fail("',' or ')'")
            self.space()
            key = _KEY.match(self.text, self.pos)
            if key is None:
                if inputs:
                    raise self.fail("'key=value' (sub-pipelines are given once, joined by '|')")
                inputs = [self.pipeline()]
                while self.take("|"):
                    inputs.append(self.pipeline())
                continue
            if key.group(1) in params:
                raise InvalidSpecError(f"spec {self.text!r}: parameter {key.group(1)!r} given twice")
            self.pos = key.end()
            params[key.group(1)] = self.value(key.group(1))
        return MethodSpec.of(name, params, inputs)

    def value(self, key: str) -> Value:
        self.space()
        if self.peek('"'):
            try:
                value, self.pos = json.JSONDecoder().raw_decode(self.text, self.pos)
            except json.JSONDecodeError as err:
                raise InvalidSpecError(f"spec {self.text!r}: bad quoted string for {key!r}: {err.msg}") from None
            if not isinstance(value, str):
                raise self.fail(f"a string for {key!r}")
            return value
        if self.take("["):
            items: list[Value] = []
            while not self.take("]"):
                if items and not self.take(","):
                    raise self.fail("',' or ']'")
                items.append(self.value(key))
            return tuple(items)
        nested = _NAME.match(self.text, self.pos)
        if nested is not None and self.text.startswith("(", nested.end()):
            return self.call()
        end = self.pos
        while end < len(self.text) and self.text[end] not in ",)]":
            end += 1
        raw = self.text[self.pos : end].strip()
        if not raw:
            raise self.fail(f"a value for {key!r}")
        self.pos = end
        return parse_value(raw)
