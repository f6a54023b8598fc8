"""Every registered method, LLM backend and retriever runs its contract (rerank.testing)."""

import pytest

from rerank.registry import load_reranker, method_names
from rerank.testing import LLMBackendContract, RerankerContract, RetrieverContract, request

# One spec per registered method, on the offline model packs; a new method must add itself here.
# The LLM methods run on the scripted backend (and llm-pointwise on a real model): what a method promises does
# not depend on the backend, and every backend passes LLMBackendContract below (determinism and batch
# independence included), so methods and backends are checked once each, never multiplied. The real models
# rank where their answers are what is tested: tests/test_fidelity.py, tests/test_llm_backends.py.
CONTRACT_SPECS = {
    "bi-encoder": "bi-encoder(model=minilm, batch_size=4)",
    "cross-encoder": "cross-encoder(model={cross_encoder}, batch_size=4, max_length=64)",
    # a random T5 (tests/conftest.py: t5_dir); its parity with pyterrier-t5 and rank-llm is in test_fidelity.py
    "mono-t5": "mono-t5(model={t5}, batch_size=4, max_length=64)",
    "mono-t5/pyterrier-t5": "mono-t5(model={t5}, batch_size=4, variant=pyterrier-t5)",
    "duo-t5": "duo-t5(model={t5}, batch_size=8, max_length=96)",
    # a ColBERT PyLate built from MiniLM (tests/conftest.py: colbert_dir); parity with PyLate in test_fidelity.py
    "colbert": "colbert(model={colbert}, batch_size=4)",
    "colbert/pylate": "colbert(model={colbert}, variant=pylate)",
    "cross-encoder/onnx-int8": "cross-encoder(model={cross_encoder}, batch_size=4, backend=onnx, precision=int8)",
    "cross-encoder/openvino-int8": (
        "cross-encoder(model={cross_encoder}, batch_size=4, backend=openvino, precision=int8, calibration=16)"
    ),
    "bi-encoder/onnx": "bi-encoder(model=minilm, batch_size=4, backend=onnx)",
    "bi-encoder/openvino": "bi-encoder(model=minilm, batch_size=4, backend=openvino)",
    "bi-encoder/llama.cpp": (
        'bi-encoder(model=nomic-embed-text-v1.5, encoder=llama.cpp, query_prefix="search_query: ", '
        'document_prefix="search_document: ")'
    ),
    "llm-pointwise": "llm-pointwise(model=smollm2-135m, batch_size=4)",
    "listwise": "listwise(model=sort, backend=scripted, window_size=4, stride=2)",
    "listwise/tdpart": "listwise(model=sort, backend=scripted, window_size=4, strategy=tdpart, buffer=3, cutoff=2)",
    "first": "first(model=sort, backend=scripted, window_size=4, stride=2)",
    "first/tournament": "first(model=sort, backend=scripted, strategy=tournament, tournaments=2)",
    "pairwise": "pairwise(model=sort, backend=scripted, k=3)",
    "pairwise/allpairs": "pairwise(model=sort, backend=scripted, strategy=allpairs)",
    "setwise": "setwise(model=sort, backend=scripted, num_child=2, k=3)",
    "setwise/rank-r1": (
        "setwise(template=rank-r1, reasoning=true, scoring=generate, model=r1, backend=scripted, num_child=2, k=3)"
    ),
    "groupwise": "groupwise(model=sort, backend=scripted, group_size=3, rounds=2)",
    "jointrank": 'jointrank(inner="first(model=sort, backend=scripted, window_size=4)", block_size=4, replicas=2)',
    # every window of every candidate scored by the inner method in one call (rerank.methods.split)
    "split": "split(inner=bi-encoder(model=minilm, batch_size=4), window=4, stride=2)",
    # through `rerank serve` of the MiniLM bi-encoder on loopback (tests/conftest.py: minilm_server)
    "remote": 'remote(base_url="{served}")',
    "fuse": "fuse(rerankers=[bi-encoder(model=minilm, batch_size=4), pairwise(model=sort, backend=scripted, k=3)])",
    "fuse/interpolate": (
        "fuse(rerankers=[bi-encoder(model=minilm), setwise(model=sort, backend=scripted, num_child=2, k=3)], "
        "method=interpolate, weights=[0.7, 0.3], normalization=zscore)"
    ),
}


@pytest.mark.contract
def test_every_registered_method_runs_the_contract():
    # random (eval.baselines) runs the contract in test_baselines.py: it has no model, so no calls to count
    assert set(method_names()) == {name.split("/")[0] for name in CONTRACT_SPECS} | {"random"}


# Real LLMs, exports and the server take seconds to minutes per method: the slow tier. `make check` keeps the
# scripted LLM methods and the torch encoders.
SLOW_SPECS = {
    "llm-pointwise",
    "bi-encoder/onnx",
    "bi-encoder/openvino",
    "cross-encoder/onnx-int8",
    "cross-encoder/openvino-int8",
    "remote",
    "bi-encoder/llama.cpp",
    "mono-t5/pyterrier-t5",  # the reference variants: the default paths run in make check
    "colbert/pylate",
}


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(name, marks=pytest.mark.slow if name in SLOW_SPECS else ()) for name in sorted(CONTRACT_SPECS)
    ],
)
def reranker(request, cross_encoder_dir):
    served = request.getfixturevalue("minilm_server") if request.param == "remote" else ""
    t5 = request.getfixturevalue("t5_dir") if "t5" in request.param else ""
    colbert = request.getfixturevalue("colbert_dir") if "colbert" in request.param else ""
    spec = CONTRACT_SPECS[request.param].format(
        cross_encoder=f'"{cross_encoder_dir}"', served=served, t5=f'"{t5}"', colbert=f'"{colbert}"'
    )
    return load_reranker(spec)


@pytest.mark.contract
class TestContract(RerankerContract):
    pass


@pytest.mark.integration
def test_bi_encoder_prefers_the_answer(minilm_bi_encoder):
    req = request(
        "q",
        "what causes ocean tides",
        [("tax", "Filing a tax return late."), ("moon", "The Moon's gravity pulls the oceans, causing tides.")],
    )
    assert minilm_bi_encoder.rank(req.query, req.candidates).ranking.candidates[0].docid == "moon"


@pytest.mark.integration
def test_bi_encoder_matches_sentence_transformers_cosine(minilm_bi_encoder):
    from sentence_transformers import SentenceTransformer, util

    from data.models import resolve_model

    model = SentenceTransformer(resolve_model("minilm"))
    query, texts = "why is the sky blue", ["Rayleigh scattering of sunlight.", "Blue paint for doors."]
    expected = util.cos_sim(model.encode([query]), model.encode(texts))[0].tolist()
    result = minilm_bi_encoder.rank(query, texts)
    got = {c.docid: c.score for c in result.ranking.candidates}
    assert [got["0"], got["1"]] == pytest.approx(expected, abs=1e-5)


@pytest.mark.integration
def test_bi_encoder_counts_truncated_inputs():
    reranker = load_reranker("bi-encoder(model=minilm, max_length=16)")
    result = reranker.rank("tides", ["short text", " ".join(["long"] * 50)])
    assert result.cost.truncated == 1


@pytest.mark.integration
@pytest.mark.slow
def test_nomic_as_a_reranker_gives_the_dense_retrievers_scores_and_caches_its_passages(tmp_path, monkeypatch):
    from dataclasses import replace

    import data
    from data.models import PACKS
    from data.records import RerankRequest
    from retrievers.dense import DenseRetriever

    if not PACKS.get("nomic-embed-text-v1.5").installed():
        pytest.skip(
            "optional pack nomic-embed-text-v1.5 is not installed (rerank models install nomic-embed-text-v1.5)"
        )
    from data.config import models_dir

    monkeypatch.setenv("RERANK_MODELS_DIR", str(models_dir()))  # the joined pack stays where it is
    monkeypatch.setenv("RERANK_CACHE_DIR", str(tmp_path / "cache"))  # an empty vector cache
    prefixes = {"query_prefix": "search_query: ", "document_prefix": "search_document: "}
    ds = data.load("example")
    retriever = DenseRetriever.build(
        ds.iter_documents(), tmp_path / "nomic", model="nomic-embed-text-v1.5", encoder="llama.cpp", **prefixes
    )
    run = retriever.retrieve(ds.queries(), 10)
    texts, queries = {d.docid: d.full_text for d in ds.iter_documents()}, {q.qid: q for q in ds.queries()}
    requests = [
        RerankRequest(queries[r.qid], tuple(replace(c, text=texts[c.docid]) for c in r.candidates)) for r in run
    ]
    spec = 'bi-encoder(model=nomic-embed-text-v1.5, encoder=llama.cpp, query_prefix="search_query: ", document_prefix="search_document: ")'
    first = load_reranker(spec).rerank(requests)
    for ranked, result in zip(run, first, strict=True):
        got = {c.docid: c.score for c in result.ranking.candidates}
        assert [got[c.docid] for c in ranked.candidates] == pytest.approx(
            [c.score for c in ranked.candidates], abs=1e-6
        )
    passages = len({c.docid for r in run for c in r.candidates})
    assert sum(r.cost.calls for r in first) == pytest.approx(len(run) + passages)
    again = load_reranker(spec).rerank(requests)  # a new instance: the passages come from the vector cache
    assert [r.ranking for r in again] == [r.ranking for r in first]
    assert sum(r.cost.calls for r in again) == pytest.approx(len(run))  # only the queries are encoded


# -- LLM backends: every registered backend runs the backend contract on a real model ---------------------

BACKEND_SPECS = {
    "transformers": ("transformers", "smollm2-135m"),
    "llama.cpp": ("llama.cpp", "smollm2-135m"),
    # llama.cpp's OpenAI-compatible server on loopback (tests/conftest.py: llama_server), rendering locally
    "openai": (
        'openai(base_url="{server}", tokenizer=smollm2-135m, repeat_penalty=1.0, top_logprobs=2000)',
        "smollm2-135m",
    ),
    "scripted": ("scripted", "sort"),  # the test helper the method tests use (rerank.testing)
}


@pytest.mark.contract
def test_every_registered_backend_runs_the_contract():
    from rerank.llm.backend import backend_names

    # vllm pins its own torch and transformers: it runs the same contract in its own environment (test_vllm.py)
    assert set(backend_names()) == {*BACKEND_SPECS, "vllm"}


@pytest.fixture(
    scope="module",
    params=[pytest.param(name, marks=() if name == "scripted" else pytest.mark.slow) for name in BACKEND_SPECS],
)
def backend(request):
    from rerank.llm.backend import load_backend

    spec, model = BACKEND_SPECS[request.param]
    served = request.getfixturevalue("llama_server") if request.param == "openai" else ""
    return load_backend(spec.format(server=served), model)


@pytest.mark.contract
class TestLLMBackendContract(LLMBackendContract):
    @pytest.fixture(autouse=True)
    def _decoded(self, backend):
        from rerank.testing import ScriptedBackend

        self.decoded = not isinstance(backend, ScriptedBackend)  # its answers are scripted, not decoded


# -- retrievers: every registered retriever builds, saves, loads and searches by the retriever contract -------

RETRIEVER_PARAMS = {
    "bm25": {},
    "splade": {"model": "splade-tiny", "max_length": 64},
    "dense": {"model": "minilm", "index": "flat"},
}


@pytest.mark.contract
def test_every_registered_retriever_runs_the_contract():
    from retrievers.registry import RETRIEVERS

    assert set(RETRIEVERS.names()) == set(RETRIEVER_PARAMS)


@pytest.fixture(scope="module", params=sorted(RETRIEVER_PARAMS))
def built(request, tmp_path_factory):
    from retrievers.registry import retriever_class

    params = RETRIEVER_PARAMS[request.param]
    index_dir = tmp_path_factory.mktemp(request.param) / "index"
    retriever = retriever_class(request.param).build(
        RetrieverContract.documents(), index_dir, corpus={"dataset": "contract"}, **params
    )
    return retriever, index_dir, params


@pytest.mark.contract
class TestRetrieverContract(RetrieverContract):
    pass
