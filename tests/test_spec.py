import pytest

from data import InvalidSpecError
from rerank.registry import load_reranker, method_names
from rerank.spec import MethodSpec, format_value, parse_spec


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


@pytest.mark.parametrize("bad", ["", "(x=1)", "m(x)", "m(x=1", "m(x=1, x=2)", "m(x=)", 'm(x="unterminated)', "m(1x=2)"])
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
    with pytest.raises(InvalidSpecError, match="bad parameters"):
        load_reranker("bi-encoder(modle=minilm)")
