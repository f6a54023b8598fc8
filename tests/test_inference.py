"""ONNX Runtime and OpenVINO encoders: the same scores as torch in fp32, int8 that keeps the ranking, exports built once."""

from __future__ import annotations

import numpy as np
import pytest

import data
from data.export import EncoderRuntime
from eval import evaluate
from rerank.registry import load_reranker

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def dl19_pairs(dl19):
    """The BM25 top 100 of three DL19 queries: 300 real (query, passage) pairs."""
    requests = dl19.candidates("bm25")[:3]
    return [r.query.text for r in requests for _ in r.candidates], [c.text for r in requests for c in r.candidates]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
@pytest.mark.integration
def test_fp32_cross_encoder_scores_equal_torch(backend, cross_encoder_dir, dl19_pairs):
    queries, texts = dl19_pairs
    spec = f'cross-encoder(model="{cross_encoder_dir}", max_length=256'
    torch_scores = np.array(load_reranker(spec + ")").score_pairs(queries, texts).scores)
    exported = np.array(load_reranker(f"{spec}, backend={backend})").score_pairs(queries, texts).scores)
    assert np.abs(exported - torch_scores).max() < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
@pytest.mark.integration
def test_fp32_bi_encoder_scores_equal_torch(backend, minilm_bi_encoder, dl19_pairs):
    queries, texts = dl19_pairs
    torch_scores = np.array(minilm_bi_encoder.score_pairs(queries, texts).scores)
    exported = load_reranker(f"bi-encoder(model=minilm, backend={backend})").score_pairs(queries, texts)
    assert np.abs(np.array(exported.scores) - torch_scores).max() < 1e-4
    assert exported.truncated == minilm_bi_encoder.score_pairs(queries, texts).truncated


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize(
    "spec",
    [
        "bi-encoder(model=minilm, backend=openvino, precision=int8, calibration=64)",  # static: calibrated scales
        "bi-encoder(model=minilm, backend=onnx, precision=int8)",  # dynamic: scales per batch
    ],
    ids=["static", "dynamic"],
)
def test_int8_bi_encoder_keeps_the_order_of_dl19_pairs(spec, minilm_bi_encoder, dl19_pairs):
    """What int8 keeps is the order of the pairs: dynamic int8 quantises activations per batch, so its nDCG moves
    with batch composition (0.6430 with 32-text batches, 0.6365 with 4,096-token ones). DL19's nDCG@10 over the
    whole BM25 top 100 (static int8 0.6432 against fp32's 0.6424) is measured by benchmarks/encoders.py."""
    from scipy.stats import spearmanr

    queries, texts = dl19_pairs
    fp32 = minilm_bi_encoder.score_pairs(queries, texts).scores
    int8 = load_reranker(spec).score_pairs(queries, texts).scores
    assert fp32 != int8 and spearmanr(fp32, int8).statistic >= 0.99


@pytest.mark.slow
@pytest.mark.integration
def test_an_export_is_built_once_and_reused(cross_encoder_dir):
    # The session's cache: the fp32 and int8 exports the tests before built (or this one builds) are reused.
    first = EncoderRuntime(cross_encoder_dir, "logits", "onnx")
    built = (first.folder / "model.onnx").stat().st_mtime_ns
    second = EncoderRuntime(cross_encoder_dir, "logits", "onnx")
    assert second.folder == first.folder and (second.folder / "model.onnx").stat().st_mtime_ns == built
    int8 = EncoderRuntime(cross_encoder_dir, "logits", "onnx", "int8")
    assert int8.folder != first.folder and int8.folder.parent == first.folder.parent


@pytest.mark.slow
@pytest.mark.integration
def test_an_int8_export_starts_from_the_cached_fp32_graph(cross_encoder_dir, tmp_path, monkeypatch):
    import shutil

    import torch

    fp32 = EncoderRuntime(cross_encoder_dir, "logits", "onnx")  # the session's, built by torch
    monkeypatch.setenv("RERANK_CACHE_DIR", str(tmp_path))
    shutil.copytree(fp32.folder, tmp_path / "exports" / fp32.folder.name)

    def refused(*args, **kwargs):
        raise AssertionError("torch exported the model again")

    monkeypatch.setattr(torch.onnx, "export", refused)
    int8 = EncoderRuntime(cross_encoder_dir, "logits", "onnx", "int8")
    assert int8.folder.parent == tmp_path / "exports" and (int8.folder / "model.onnx").is_file()
    ids = np.array([[101, 2023, 2003, 102]])
    assert np.abs(int8.run(ids, np.ones_like(ids)) - fp32.run(ids, np.ones_like(ids))).max() < 0.1


@pytest.mark.slow
@pytest.mark.integration
def test_a_failed_export_leaves_nothing(cross_encoder_dir, tmp_path, monkeypatch):
    import shutil

    # the session's fp32 ONNX export (shared with the other tests) in a cache of this test's own, so the int8
    # export starts from it, as it would in a user's cache, instead of exporting torch again
    fp32 = EncoderRuntime(cross_encoder_dir, "logits", "onnx").folder
    monkeypatch.setenv("RERANK_CACHE_DIR", str(tmp_path))
    shutil.copytree(fp32, tmp_path / "exports" / fp32.name)
    wrong = [{"input_ids": np.ones((1, 4), dtype=np.int64)}]  # the sample lacks the mask the model needs
    with pytest.raises(Exception):  # noqa: B017  # whatever the quantiser raises, nothing may stay behind
        EncoderRuntime(cross_encoder_dir, "logits", "openvino", "int8", wrong)
    assert [p.name for p in (tmp_path / "exports").iterdir()] == [fp32.name]


@pytest.mark.slow
@pytest.mark.integration
def test_static_int8_calibrates_on_the_first_pairs_and_is_keyed_by_them(cross_encoder_dir, dl19_pairs):
    queries, texts = dl19_pairs
    spec = f'cross-encoder(model="{cross_encoder_dir}", backend=onnx, precision=int8, calibration=64)'
    one, other = load_reranker(spec), load_reranker(spec)
    first = one.score_pairs(queries, texts).scores
    other.score_pairs(queries[100:], texts[100:])  # another calibration sample: another export
    assert one._runtime.folder != other._runtime.folder
    assert one.score_pairs(queries, texts).scores == first  # the export stays fixed after the first call


@pytest.mark.slow
@pytest.mark.integration
def test_a_dense_index_keeps_its_export_and_encodes_queries_with_it(tmp_path):
    from retrievers.dense import DenseRetriever

    example = data.load("example")
    DenseRetriever.build(
        example.iter_documents(), tmp_path / "idx", model="minilm", backend="onnx", precision="int8",
        calibration=16,
    )  # fmt: skip
    assert (tmp_path / "idx" / "export" / "export.json").is_file()
    reopened = DenseRetriever.load(tmp_path / "idx")
    # the index's document vectors are what the kept export computes: queries meet the same model
    stored = reopened._index.reconstruct_n(0, reopened._index.ntotal)
    again = reopened.encoder.encode([d.full_text for d in example.iter_documents()], "")
    assert np.abs(stored - again).max() < 1e-6
    assert len(reopened.retrieve(example.queries(), k=10)) == len(example.queries())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
@pytest.mark.integration
def test_fp32_splade_weights_equal_torch(backend, dl19_pairs):
    from retrievers.splade import SpladeEncoder

    texts = list(dict.fromkeys(dl19_pairs[1]))[:64]
    ours = SpladeEncoder("splade-tiny", backend=backend).encode(texts)
    for want, got in zip(SpladeEncoder("splade-tiny").encode(texts), ours, strict=True):
        assert max(abs(want.get(t, 0.0) - got.get(t, 0.0)) for t in want.keys() | got.keys()) < 1e-4


@pytest.mark.slow
@pytest.mark.integration
def test_an_int8_splade_index_keeps_its_export_and_retrieves(tmp_path):
    from retrievers.splade import SpladeRetriever

    example = data.load("example")
    SpladeRetriever.build(
        example.iter_documents(), tmp_path / "idx", backend="openvino", precision="int8", calibration=16
    )
    assert (tmp_path / "idx" / "export" / "export.json").is_file()
    reopened = SpladeRetriever.load(tmp_path / "idx")
    assert reopened.encoder.runtime is not None and reopened.encoder.runtime.folder == tmp_path / "idx" / "export"
    run = reopened.retrieve(example.queries(), 10)
    assert run["q2"].docids[0] == "sky1"  # as in fp32 (tests/test_retrievers.py)
    bm25 = evaluate(example.run("bm25"), example.qrels(), "nDCG@10").aggregate["nDCG@10"]
    assert evaluate(run, example.qrels(), "nDCG@10").aggregate["nDCG@10"] > bm25
