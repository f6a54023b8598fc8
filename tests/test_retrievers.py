"""First-stage retrievers on real data: BM25 (Lucene), SPLADE-tiny, dense MiniLM, fusion."""

import json
import os

import pytest

import data
from data import Candidate, MissingDependencyError, Query, Ranking, Run
from eval import evaluate
from rerank.cli import main
from rerank.cli.exit_codes import ExitCode
from retrievers.base import META_FILE, IndexMeta
from retrievers.fusion import FusionRetriever, interpolate, reciprocal_rank_fusion
from retrievers.registry import open_index

pytestmark = pytest.mark.pyserini


@pytest.fixture(scope="module")
def example_bm25(tmp_path_factory):
    from retrievers.bm25 import BM25Retriever

    ds = data.load("example")
    return BM25Retriever.build(ds.iter_documents(), tmp_path_factory.mktemp("bm25"), {"dataset": "example"})


@pytest.mark.acceptance
def test_bm25_scifact_flat_reproduces_pyserini_from_the_cli(tmp_path, data_dir, capsys):
    index = tmp_path / "scifact-bm25"
    assert main(["index", "--dataset", "beir/scifact", "--retriever", "bm25", "--out", str(index)]) == 0
    run_file = tmp_path / "bm25.trec"
    assert (
        main(["retrieve", "--index", str(index), "--dataset", "beir/scifact", "--k", "100", "--output", str(run_file)])
        == 0
    )
    assert "queries/s" in capsys.readouterr().out
    ds = data.load("beir/scifact", data_dir)
    result = evaluate(data.read_trec_run(run_file), ds.qrels(), ds.measures)
    assert round(result.aggregate["nDCG@10"], 4) == 0.6789
    assert round(result.aggregate["R@100"], 4) == 0.9253
    meta = IndexMeta.load(index)
    assert meta.retriever == "bm25" and meta.corpus["documents"] == 5183 and "pyserini" in meta.versions


@pytest.mark.integration
def test_bm25_parameters_and_cutoff(example_bm25):
    ds = data.load("example")
    default = example_bm25.retrieve(ds.queries(), 5)
    assert max(len(r) for r in default) == 5 and len(default) == 8
    tuned = open_index(example_bm25.index_dir, k1=1.2, b=0.75).retrieve(ds.queries(), 5)
    assert default["q1"].candidates[0].score != tuned["q1"].candidates[0].score
    assert max(len(r) for r in (example_bm25 % 3).retrieve(ds.queries())) == 3
    assert example_bm25.search("why is the sky blue", 1)["0"].docids == ["sky2"]  # lexical match on "blue"


@pytest.mark.integration
def test_missing_java_names_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    from retrievers.bm25 import BM25Retriever

    with pytest.raises(MissingDependencyError, match="openjdk-17"):
        BM25Retriever.build([], tmp_path / "idx")
    code = main(["index", "--dataset", "example", "--retriever", "bm25", "--out", str(tmp_path / "idx")])
    assert code == ExitCode.MISSING_DEPENDENCY and "Java" in capsys.readouterr().err


@pytest.mark.integration
def test_open_index_refuses_a_folder_without_metadata(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match=META_FILE):
        open_index(tmp_path)


@pytest.mark.integration
def test_splade_encoder_matches_the_definition():
    """Our pooled weights equal log(1 + ReLU(logits)) max-pooled over real tokens, computed naively."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from data.models import resolve_model
    from retrievers.splade import SpladeEncoder

    texts = [
        "why is the sky blue",
        "Ocean tides are caused mainly by the Moon's gravity pulling on the near side of the Earth.",
    ]
    encoder = SpladeEncoder("splade-tiny", batch_size=2)
    ours = encoder.encode(texts)
    path = resolve_model("splade-tiny")
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForMaskedLM.from_pretrained(path).eval()
    vocab = {i: t for t, i in tokenizer.get_vocab().items()}
    for text, got in zip(texts, ours, strict=True):
        with torch.no_grad():
            logits = model(**tokenizer(text, return_tensors="pt")).logits[0]
        expected = torch.log1p(torch.relu(logits)).max(dim=0).values
        want = {vocab[i]: float(expected[i]) for i in torch.nonzero(expected).squeeze(-1).tolist()}
        assert got.keys() == want.keys()
        assert all(abs(got[t] - want[t]) < 1e-4 for t in want)
    assert "sky" in ours[0] and ours[0]["sky"] > 1.0


@pytest.mark.integration
def test_splade_index_retrieves(tmp_path):
    from retrievers.splade import SpladeRetriever

    ds = data.load("example")
    SpladeRetriever.build(ds.iter_documents(), tmp_path / "splade", {"dataset": "example"})
    run = open_index(tmp_path / "splade").retrieve(ds.queries(), 10)
    assert run["q2"].docids[0] == "sky1"
    # SPLADE's expansion beats BM25 on this collection, where distractors share the query's words
    assert (
        evaluate(run, ds.qrels(), ["nDCG@10"]).aggregate["nDCG@10"]
        > evaluate(ds.run("bm25"), ds.qrels(), ["nDCG@10"]).aggregate["nDCG@10"]
    )
    assert json.loads((tmp_path / "splade" / META_FILE).read_text())["params"]["quantization"] == 100.0


@pytest.mark.integration
def test_dense_flat_and_hnsw_agree_on_the_example(tmp_path):
    from retrievers.dense import DenseRetriever

    ds = data.load("example")
    flat = DenseRetriever.build(ds.iter_documents(), tmp_path / "flat", batch_size=8)
    hnsw = DenseRetriever.build(ds.iter_documents(), tmp_path / "hnsw", index="hnsw", hnsw_m=8, ef_construction=64)
    a, b = flat.retrieve(ds.queries(), 5), open_index(tmp_path / "hnsw", ef_search=64).retrieve(ds.queries(), 5)
    assert [r.docids for r in a] == [r.docids for r in b]  # 32 documents: HNSW is exact at this size
    assert a["q6"].docids[0] == "hon1"
    assert hnsw.params["hnsw_m"] == 8 and IndexMeta.load(tmp_path / "hnsw").params["index"] == "hnsw"


@pytest.mark.slow
@pytest.mark.integration
def test_dense_index_vectors_are_sentence_transformers_on_scifact_abstracts(tmp_path, data_dir):
    """A dense index holds what sentence-transformers encodes for MTEB's corpus text (title, a space, the
    text) at MiniLM's 256-token cut: scifact's first 48 abstracts, most of them long enough to be cut. With
    faiss's exact inner product on top, that is what the full-corpus check below reproduces MTEB with."""
    import itertools

    import numpy as np
    from sentence_transformers import SentenceTransformer

    from data.models import resolve_model
    from retrievers.dense import DenseRetriever

    docs = list(itertools.islice(data.load("beir/scifact", data_dir).iter_documents(), 48))
    retriever = DenseRetriever.build(docs, tmp_path / "dense", {"dataset": "beir/scifact"}, batch_size=16)
    stored = retriever._index.reconstruct_n(0, retriever._index.ntotal)
    model = SentenceTransformer(resolve_model("minilm"))
    texts = [f"{d.title} {d.text}".strip() for d in docs]
    assert sum(len(model.tokenizer(t)["input_ids"]) > model.max_seq_length for t in texts) > len(docs) // 2
    assert np.abs(stored - model.encode(texts, batch_size=16, normalize_embeddings=True)).max() < 1e-5


@pytest.mark.slow
@pytest.mark.acceptance
@pytest.mark.reference  # 5,183 abstracts through MiniLM: minutes on 2 cores, so with the reference runs
def test_dense_minilm_scifact_matches_mteb(tmp_path, data_dir):
    """MTEB's published nDCG@10 for all-MiniLM-L6-v2 on scifact, from a dense index of the whole corpus."""
    from retrievers.dense import DenseRetriever

    ds = data.load("beir/scifact", data_dir)
    retriever = DenseRetriever.build(
        ds.iter_documents(), tmp_path / "dense", {"dataset": "beir/scifact"}, batch_size=16
    )
    ndcg = evaluate(retriever.retrieve(ds.queries(), 100), ds.qrels(), ["nDCG@10"]).aggregate["nDCG@10"]
    assert abs(ndcg - 0.6451) <= 0.005


def _run(rankings):
    return Run.from_rankings([Ranking.sorted(q, [Candidate(d, s) for d, s in cands]) for q, cands in rankings.items()])


@pytest.mark.unit
def test_reciprocal_rank_fusion_by_hand():
    a = _run({"q": [("x", 3.0), ("y", 2.0), ("z", 1.0)]})
    b = _run({"q": [("y", 9.0), ("w", 8.0)], "r": [("x", 1.0)]})
    fused = reciprocal_rank_fusion([a, b], k=60)
    scores = {c.docid: c.score for c in fused["q"]}
    assert scores["y"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["x"] == pytest.approx(1 / 61)
    assert scores["w"] == pytest.approx(1 / 62)
    assert fused["q"].docids == ["y", "x", "w", "z"]
    assert fused.qids == ["q", "r"]
    assert reciprocal_rank_fusion([a, b], k=60, depth=1)["q"].docids == ["y", "x"]


@pytest.mark.unit
def test_interpolation_with_normalisation():
    a = _run({"q": [("x", 10.0), ("y", 0.0)]})
    b = _run({"q": [("y", 1.0), ("z", 0.5), ("x", 0.0)]})
    fused = interpolate([a, b], [0.7, 0.3], "minmax")
    scores = {c.docid: c.score for c in fused["q"]}
    assert scores == pytest.approx({"x": 0.7, "y": 0.3, "z": 0.15})  # z is missing from a: a's floor (0)
    with pytest.raises(ValueError, match="2 weights for 1 runs"):
        interpolate([a], [0.5, 0.5])


@pytest.mark.integration
def test_fusion_retriever_and_cli(example_bm25, tmp_path, capsys):
    ds = data.load("example")
    fused = FusionRetriever([example_bm25, example_bm25 % 2]).retrieve(ds.queries(), 4)
    assert all(len(r) == 4 for r in fused)
    out = tmp_path / "fused.trec"
    assert main(["fuse", "--dataset", "example", "bm25", "bm25", "--output", str(out)]) == 0
    assert (
        data.read_trec_run(out)["q1"].docids == ds.run("bm25")["q1"].docids
    )  # fusing a run with itself keeps its order
    assert os.path.getsize(out) > 0 and "fused 2 runs" in capsys.readouterr().out


@pytest.mark.integration
def test_retrieve_with_a_topics_file(example_bm25, tmp_path):
    topics = tmp_path / "topics.tsv"
    data.write_topics([Query("a", "honey bees nectar"), Query("b", "solar panels")], topics)
    out = tmp_path / "r.trec"
    assert (
        main(
            [
                "retrieve",
                "--index",
                str(example_bm25.index_dir),
                "--topics",
                str(topics),
                "--k",
                "3",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    run = data.read_trec_run(out)
    assert run["a"].docids[0] == "hon1" and run["b"].docids[0].startswith("sol")


@pytest.mark.slow
@pytest.mark.integration
def test_dense_llama_cpp_encoder_builds_saves_and_reloads(tmp_path):
    """The GGUF embedding path (nomic-embed's runtime), on the tiny GGUF that is always installed."""
    from retrievers.dense import DenseRetriever

    ds = data.load("example")
    built = DenseRetriever.build(
        ds.iter_documents(), tmp_path / "gguf", model="smollm2-135m", encoder="llama.cpp", max_length=512,
        query_prefix="q: ", document_prefix="d: ", threads=2, pooling="mean",
    )  # fmt: skip
    assert IndexMeta.load(tmp_path / "gguf").params["encoder"] == "llama.cpp"
    first = built.retrieve(ds.queries(), 5)
    again = open_index(tmp_path / "gguf").retrieve(ds.queries(), 5)
    assert [r.docids for r in first] == [r.docids for r in again]
    assert all(len(r) == 5 for r in first)
    vectors = built.encoder.encode(["a passage", "another passage"], "")
    assert vectors.shape == (2, built.encoder.dimension) and abs(float((vectors[0] ** 2).sum()) - 1) < 1e-5


@pytest.mark.integration
@pytest.mark.slow  # loading the 274 MB GGUF takes most of its 4 to 6 s: make test runs it, make check does not
def test_nomic_embed_on_the_example_when_its_pack_is_installed(tmp_path):
    from data.models import PACKS
    from retrievers.dense import DenseRetriever

    if not PACKS.get("nomic-embed-text-v1.5").installed():
        pytest.skip(
            "optional pack nomic-embed-text-v1.5 is not installed (rerank models install nomic-embed-text-v1.5)"
        )
    ds = data.load("example")
    retriever = DenseRetriever.build(
        ds.iter_documents(), tmp_path / "nomic", model="nomic-embed-text-v1.5", encoder="llama.cpp",
        query_prefix="search_query: ", document_prefix="search_document: ",
    )  # fmt: skip
    ndcg = evaluate(retriever.retrieve(ds.queries(), 10), ds.qrels(), ["nDCG@10"]).aggregate["nDCG@10"]
    assert ndcg > 0.9  # BM25 gets 0.6977 here
