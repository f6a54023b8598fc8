"""Pipeline strings of the leaderboard: ``run(name=bm25) % 20 >> first(model=qwen2.5-coder-0.5b)``.

A pipeline is stages joined by ``>>``, each a spec (``rerank.spec`` grammar) with an optional
``% K``. The first stage produces candidates: ``run(name=N)`` is a run the dataset ships, ``bm25``,
``splade(...)`` and ``dense(...)`` are retrievers over an index built from the dataset's corpus, and
``rrf(runs="A | B", k=60)`` fuses first stages. ``% K`` after it is the candidate depth (100 when
omitted). Every later stage is a registered reranking method; ``% K`` after one keeps its top K for
the next stage. Pipelines print canonically, so equal pipelines are one cell.
"""

from __future__ import annotations

from dataclasses import dataclass

from data.errors import InvalidSpecError
from rerank.spec import MethodSpec, parse_spec

RETRIEVERS = ("bm25", "dense", "splade")
DEFAULT_DEPTH = 100


@dataclass(frozen=True, slots=True)
class Stage:
    spec: MethodSpec
    cutoff: int | None = None  # first stage: candidate depth; reranker: how many it passes on

    def __str__(self) -> str:
        return f"{self.spec}" + (f" % {self.cutoff}" if self.cutoff is not None else "")


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    stages: tuple[Stage, ...]

    def __str__(self) -> str:
        return " >> ".join(str(s) for s in self.stages)

    @property
    def first(self) -> Stage:
        return self.stages[0]

    @property
    def depth(self) -> int:
        """How many candidates the first stage passes on."""
        return self.first.cutoff or DEFAULT_DEPTH

    def prefix(self) -> PipelineSpec:
        """The pipeline without its last stage (whose output feeds the last stage)."""
        if len(self.stages) < 2:
            raise ValueError(f"{self} has no prefix")
        return PipelineSpec(self.stages[:-1])

    def first_stage(self) -> PipelineSpec:
        return PipelineSpec(self.stages[:1])


def split_top_level(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside parentheses and double-quoted strings."""
    parts, depth, quoted, start, pos = [], 0, False, 0, 0
    while pos < len(text):
        char = text[pos]
        if quoted:
            if char == "\\":
                pos += 1
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0 and text.startswith(separator, pos):
            parts.append(text[start:pos])
            start = pos + len(separator)
            pos = start
            continue
        pos += 1
    parts.append(text[start:])
    return parts


def parse_stage(text: str) -> Stage:
    pieces = split_top_level(text, "%")
    if len(pieces) > 2:
        raise InvalidSpecError(f"stage {text.strip()!r}: more than one '%'")
    cutoff = None
    if len(pieces) == 2:
        raw = pieces[1].strip()
        if not raw.isdigit() or int(raw) < 1:
            raise InvalidSpecError(f"stage {text.strip()!r}: '% K' needs a positive integer, not {raw!r}")
        cutoff = int(raw)
    return Stage(parse_spec(pieces[0]), cutoff)


def parse_pipeline(text: str) -> PipelineSpec:
    """Parse and check a pipeline string; errors name the pipeline and the faulty stage."""
    from rerank.registry import method_names

    if not text.strip():
        raise InvalidSpecError("empty pipeline")
    stages = tuple(parse_stage(part) for part in split_top_level(text, ">>"))
    check_first_stage(stages[0].spec, text)
    known = set(method_names())
    for stage in stages[1:]:
        if stage.spec.name not in known:
            raise InvalidSpecError(
                f"pipeline {text!r}: {stage.spec.name!r} is not a reranking method; known: {', '.join(sorted(known))}"
            )
    return PipelineSpec(stages)


def fusion_members(spec: MethodSpec) -> list[MethodSpec]:
    runs = spec.kwargs.get("runs")
    if not isinstance(runs, str):
        raise InvalidSpecError(f'{spec}: rrf needs runs="A | B | ..."')
    members = [parse_spec(part) for part in split_top_level(runs, "|")]
    if len(members) < 2:
        raise InvalidSpecError(f"{spec}: rrf fuses at least two runs")
    return members


def check_first_stage(spec: MethodSpec, pipeline: str) -> None:
    if spec.name == "run":
        if set(spec.kwargs) != {"name"}:
            raise InvalidSpecError(f"pipeline {pipeline!r}: a given run is run(name=NAME)")
    elif spec.name == "rrf":
        if set(spec.kwargs) - {"runs", "k", "depth"}:
            raise InvalidSpecError(f"pipeline {pipeline!r}: rrf takes runs, k and depth")
        for member in fusion_members(spec):
            check_first_stage(member, pipeline)
    elif spec.name not in RETRIEVERS:
        raise InvalidSpecError(
            f"pipeline {pipeline!r} must start with run(name=...), rrf(...) or a retriever "
            f"({', '.join(RETRIEVERS)}), not {spec.name!r}"
        )
