import re

import pytest

import rerank
from data import InvalidSpecError
from rerank.registry import load_reranker, method_names
from rerank.spec import MethodSpec, format_value, parse_pipeline, parse_spec

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"model": "minilm", "max_length": 512, "batch_size": 64},
        {"model": "cross-encoder/ms-marco-MiniLM-L-6-v2", "fp16": True, "temperature": 0.5, "device": None},
        {"prompt": 'Rank these, "carefully", please (1, 2)', "n": -3, "x": 1e-05, "s": "1.0", "t": "true", "u": ""},
        {"path": "/models/qwen2.5/model.gguf", "unicode": "naïve café"},
    ],
)
def test_specs_print_and_parse_back(params):
    spec = MethodSpec.of("cross-encoder", params)
    text = str(spec)
    assert parse_spec(text) == spec
    assert str(parse_spec(text)) == text
    assert hash(parse_spec(text)) == hash(spec)


def test_parameter_order_does_not_matter():
    assert parse_spec("m(b=1, a=2)") == parse_spec("m(a=2,b=1)")
    assert str(parse_spec("m(b=1, a=2)")) == "m(a=2, b=1)"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "(x=1)",
        "m(x=1",
        "m(x=1, x=2)",
        "m(x=)",
        'm(x="unterminated)',
        "m(1x=2)",
        "m(a | b, c)",
        "m(x=[1, 2)",
        "m(x=1) y",
    ],
)
def test_bad_specs_are_refused(bad):
    with pytest.raises(InvalidSpecError):
        parse_spec(bad)


def test_value_formatting():
    assert format_value("minilm") == "minilm"
    assert format_value("1.0") == '"1.0"'
    assert format_value(None) == "none"


def test_registry_uses_explicit_names():
    assert "bi-encoder" in method_names()
    with pytest.raises(InvalidSpecError, match="unknown reranking method 'minilm'"):
        load_reranker("minilm")
    with pytest.raises(InvalidSpecError, match=r"has no parameter 'modle'; it takes .*model"):
        load_reranker("bi-encoder(modle=minilm)")
    with pytest.raises(InvalidSpecError, match="takes no input pipelines"):
        load_reranker("bi-encoder(bm25 | dense)")


PIPELINES = [
    "run(name=bm25) % 100 >> bi-encoder(model=minilm)",
    "bm25(b=0.4, k1=0.9) % 100 >> bi-encoder(model=minilm) % 20 >> first(backend=llama.cpp, model=qwen2.5-coder-0.5b)",
    "rrf(bm25 % 100 | dense(model=minilm) >> bi-encoder(model=minilm) % 50, k=60) % 20 >> random(seed=0)",
    "interpolate(bm25 | splade(model=splade-tiny), normalization=zscore, weights=[0.6, 0.4]) % 100",
    "run(name=bm25) % 20 >> jointrank(inner=first(backend=llama.cpp, model=qwen2.5-coder-0.5b))",
    'dense(model=nomic-embed-text-v1.5, query_prefix="search_query: ") % 100',
    "run(path=/tmp/a run.trec) % 10 >> listwise(backend=none, model=m, template=x())",
    "concat(run(name=bm25) % 10 >> bi-encoder(model=minilm) | run(name=bm25) % 100) % 100 >> random",
]


def test_concatenation_parses_as_python_builds_it_and_prints_as_its_stage():
    bm25, bi = MethodSpec.of("run", {"name": "bm25"}), MethodSpec.of("bi-encoder", {"model": "minilm"})
    dense = MethodSpec.of("dense", {"model": "minilm"})
    # ^ binds more loosely than >> (as in Python), folds left into one stage, and parentheses group
    built = bm25 % 10 >> bi ^ bm25 ^ dense
    assert built == parse_pipeline(
        "run(name=bm25) % 10 >> bi-encoder(model=minilm) ^ run(name=bm25) ^ dense(model=minilm)"
    )
    assert built == parse_pipeline(
        "(run(name=bm25) % 10 >> bi-encoder(model=minilm)) ^ run(name=bm25) ^ dense(model=minilm)"
    )
    assert (
        str(built) == "concat(run(name=bm25) % 10 >> bi-encoder(model=minilm) | run(name=bm25) | dense(model=minilm))"
    )
    assert parse_pipeline(str(built)) == built
    # a cutoff after the group cuts the concatenation; what follows reranks it
    after = parse_pipeline("(run(name=bm25) % 10 >> bi-encoder(model=minilm) ^ run(name=bm25)) % 50 >> random")
    assert after == ((bm25 % 10 >> bi) ^ bm25) % 50 >> MethodSpec.of("random")
    assert str(after) == "concat(run(name=bm25) % 10 >> bi-encoder(model=minilm) | run(name=bm25)) % 50 >> random"
    # a concatenation with a cutoff of its own is a member, not opened
    assert (
        str(((bm25 ^ dense) % 5) ^ bm25) == "concat(concat(run(name=bm25) | dense(model=minilm)) % 5 | run(name=bm25))"
    )
    # parentheses around a chain splice its stages
    assert parse_pipeline("bm25 >> (random >> random) % 3") == parse_pipeline("bm25 >> random >> random % 3")
    for bad, says in (
        ("(bm25 ^ dense", "expected ')'"),
        ("bm25 ^", "expected a method name"),
        ("bm25 ^^ x", "a method name"),
    ):
        with pytest.raises(InvalidSpecError, match=re.escape(says)):
            parse_pipeline(bad)


@pytest.mark.parametrize("text", PIPELINES)
def test_pipelines_print_and_parse_back(text):
    pipeline = parse_pipeline(text)
    assert parse_pipeline(str(pipeline)) == pipeline
    assert str(parse_pipeline(str(pipeline))) == str(pipeline)
    assert hash(parse_pipeline(str(pipeline))) == hash(pipeline)


def test_nested_specs_are_specs_and_quoted_strings_are_strings():
    nested = parse_spec("jointrank(inner=first(model=m, backend=llama.cpp))").kwargs["inner"]
    assert nested == MethodSpec.of("first", {"model": "m", "backend": "llama.cpp"})
    assert parse_spec('jointrank(inner="first(model=m)")').kwargs["inner"] == "first(model=m)"
    fused = parse_pipeline("rrf(bm25 % 100 | dense(model=minilm), k=60) % 20").first.spec
    assert fused.inputs == (parse_pipeline("bm25 % 100"), parse_pipeline("dense(model=minilm)"))
    assert fused.kwargs == {"k": 60}


def test_operator_algebra_builds_the_spec_the_parser_reads():
    bm25, bi = MethodSpec.of("bm25"), MethodSpec.of("bi-encoder", {"model": "minilm"})
    first = MethodSpec.of("first", {"model": "qwen2.5-coder-0.5b"})
    built = bm25 % 100 >> bi % 20 >> first
    assert built == rerank.pipeline("bm25 % 100 >> bi-encoder(model=minilm) % 20 >> first(model=qwen2.5-coder-0.5b)")
    assert (bm25 >> bi) % 7 == parse_pipeline("bm25 >> bi-encoder(model=minilm) % 7")
    fused = MethodSpec.of("rrf", {"k": 60}, [bm25 % 100, MethodSpec.of("dense", {"model": "minilm"})])
    assert fused % 20 == parse_pipeline("rrf(bm25 % 100 | dense(model=minilm), k=60) % 20").first


def test_live_objects_give_their_spec():
    from rerank.registry import load_reranker as load

    reranker = load("random(seed=3)")
    assert rerank.pipeline(reranker) == parse_pipeline("random(seed=3)")
    assert str(reranker.spec) == "random(seed=3)"
    live = reranker % 5 >> load("jointrank(inner=random(seed=1), replicas=2)")
    expected = "random(seed=3) % 5 >> jointrank(aggregation=pagerank, block_size=10, design=shuffles, inner=random(seed=1), replicas=2, seed=0)"
    assert rerank.pipeline(live) == live.spec == parse_pipeline(expected) and str(live) == expected


@pytest.mark.parametrize("text", [*PIPELINES[:2], PIPELINES[4]])
def test_every_parameter_survives_printing(text):
    pipeline = parse_pipeline(text)
    for stage, again in zip(pipeline.stages, parse_pipeline(str(pipeline)).stages, strict=True):
        assert stage.spec.kwargs == again.spec.kwargs and stage.cutoff == again.cutoff


def test_one_registry_type_refuses_duplicates_and_lets_constructor_errors_through():
    from data.models import PACKS
    from rerank.llm.backend import BACKENDS
    from rerank.registry import METHODS
    from retrievers.registry import RETRIEVERS

    for registry, name in ((METHODS, "listwise"), (BACKENDS, "llama.cpp"), (RETRIEVERS, "bm25"), (PACKS, "minilm")):
        with pytest.raises(ValueError, match=f"{name!r} is registered twice: .* and somewhere:Else"):
            registry.register(name, "somewhere:Else")
    # a constructor's own check keeps its message (it used to read "bad parameters")
    with pytest.raises(ValueError, match="window_size must be at least 2"):
        load_reranker("listwise(model=sort, backend=scripted, window_size=1)")
    with pytest.raises(InvalidSpecError, match=r"'llama\.cpp' has no parameter 'nonesuch'"):
        load_reranker("listwise(model=sort, backend=llama.cpp(nonesuch=1))")
    with pytest.raises(InvalidSpecError, match="needs model"):
        load_reranker("listwise(backend=scripted)")


def test_parameters_are_declared_once_by_the_constructor():
    from rerank.registry import METHODS

    specs = ["random(seed=4)", "listwise(model=sort, backend=scripted, stride=3)", "first(model=sort, backend=scripted)",
             "pairwise(model=sort, backend=scripted)", "setwise(model=sort, backend=scripted)",
             "groupwise(model=sort, backend=scripted)", "jointrank(inner=random(seed=1))"]  # fmt: skip
    for text in specs:
        built = load_reranker(text)
        assert set(built.params()) == set(METHODS.signature(built.method)), text
        assert load_reranker(built.spec).spec == built.spec  # the spec rebuilds the same method
    listwise = load_reranker(specs[1])
    assert listwise.params()["stride"] == 3 and listwise.params()["window_size"] == 20  # defaults included
