"""The pipeline algebra: bm25 % k >> reranker % n >> reranker."""

import pytest

import data
from rerank import load_reranker
from rerank.pipeline import Pipeline, RerankStage

pytestmark = pytest.mark.pyserini


@pytest.fixture(scope="module")
def bm25(tmp_path_factory):
    from retrievers.bm25 import BM25Retriever

    return BM25Retriever.build(data.load("example").iter_documents(), tmp_path_factory.mktemp("bm25"))


def test_cutoffs_and_chaining(bm25, minilm_bi_encoder, cross_encoder_dir):
    ds = data.load("example")
    cross = load_reranker(f'cross-encoder(model="{cross_encoder_dir}")')
    pipeline = bm25 % 6 >> minilm_bi_encoder % 3 >> cross
    assert isinstance(pipeline, Pipeline) and len(pipeline.stages) == 3
    assert pipeline.stages[0].k == 6  # the cutoff became the retriever's own k
    assert bm25.k == 1000  # and the original retriever is unchanged
    run, costs = pipeline.run_with_cost(ds.queries(), docs=ds.docs())
    assert max(len(r) for r in run) == 3 and len(costs) == 2
    first = bm25.retrieve(ds.queries(), 6)
    kept = (minilm_bi_encoder % 3)(first, docs=ds.docs(), queries=ds.queries())
    for ranking in run:  # the cross-encoder reordered exactly what the bi-encoder kept
        assert sorted(ranking.docids) == sorted(kept[ranking.qid].docids)


def test_pipeline_improves_bm25_on_the_example(bm25, minilm_bi_encoder):
    from eval import evaluate

    ds = data.load("example")
    run = (bm25 % 10 >> minilm_bi_encoder)(ds.queries(), docs=ds.docs())
    before = evaluate(bm25.retrieve(ds.queries(), 10), ds.qrels(), ["nDCG@10"]).aggregate["nDCG@10"]
    assert evaluate(run, ds.qrels(), ["nDCG@10"]).aggregate["nDCG@10"] > before + 0.2


def test_candidates_with_texts_need_no_store(dl19, minilm_bi_encoder):
    requests = [data.RerankRequest(r.query, r.candidates[:5]) for r in dl19.candidates("bm25")[:2]]
    run = Pipeline.of(minilm_bi_encoder)(requests)
    assert [len(r) for r in run] == [5, 5]


def test_misuse_is_explained(bm25, minilm_bi_encoder):
    ds = data.load("example")
    with pytest.raises(ValueError, match="starts with a retriever"):
        Pipeline.of(minilm_bi_encoder)(ds.queries())
    with pytest.raises(TypeError, match="only the first stage"):
        minilm_bi_encoder >> bm25
    with pytest.raises(ValueError, match="positive integer"):
        minilm_bi_encoder % 0
    with pytest.raises(ValueError, match="no texts"):
        (bm25 >> minilm_bi_encoder)(ds.queries())
    assert isinstance(minilm_bi_encoder % 2, RerankStage)
