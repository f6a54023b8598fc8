"""The pipeline algebra: bm25 % k >> reranker % n >> reranker."""

import pytest

import data
from rerank import load_reranker
from rerank.compose import Pipeline, RerankStage
from rerank.inputs import requests_from_run

pytestmark = [pytest.mark.integration, pytest.mark.pyserini]


@pytest.fixture(scope="module")
def bm25(tmp_path_factory):
    from retrievers.bm25 import BM25Retriever

    return BM25Retriever.build(data.load("example").iter_documents(), tmp_path_factory.mktemp("bm25"))


@pytest.mark.slow
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


def test_a_python_pipeline_is_the_core_loop_without_a_store(tmp_path, capfd, caplog, minilm_bi_encoder):
    """Run in memory, a composed pipeline batches, reports progress and scores as ``rerank.run`` does: with
    the same batches (two queries a call here; all at once differs in the last bits), the same scores."""
    import logging

    import rerank

    caplog.set_level(logging.INFO, logger="rerank")  # progress shows unless --quiet set it higher (a CLI test may)
    ds = data.load("example")
    given = ds.run("bm25").cut(10)
    in_memory = Pipeline.of(minilm_bi_encoder)(given, docs=ds.docs(), queries=ds.queries(), batch_queries=2)
    assert f"{len(given)}/{len(given)}" in capfd.readouterr().err  # the loop's progress bar, in queries
    stored = rerank.run(
        "bi-encoder(model=minilm, batch_size=16)", dataset="example", run="bm25", top_k=10, batch_queries=2,
        work_dir=tmp_path,
    ).run()  # fmt: skip
    assert {r.qid: [(c.docid, c.score) for c in r] for r in in_memory} == {
        r.qid: [(c.docid, c.score) for c in r] for r in stored
    }


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


def test_output_cache_makes_reruns_free(tmp_path, minilm_bi_encoder):
    from rerank.cache import OutputCache
    from rerank.testing import sample_requests

    reranker = load_reranker("bi-encoder(model=minilm, batch_size=8)")
    reranker.use_cache(OutputCache(tmp_path / "cache"))
    first = reranker.rerank(sample_requests())
    assert sum(r.cost.calls for r in first) > 0
    again = reranker.rerank(sample_requests())
    assert [r.ranking for r in again] == [r.ranking for r in first]
    assert sum(r.cost.calls for r in again) == 0 and sum(r.cost.input_tokens for r in again) == 0
    other = load_reranker("bi-encoder(model=minilm, batch_size=8, query_prefix=x)")
    other.use_cache(OutputCache(tmp_path / "cache"))  # a different spec never reads these entries
    assert sum(r.cost.calls for r in other.rerank(sample_requests())) > 0


def test_bi_encoder_reuses_a_dense_index(tmp_path):
    from retrievers.dense import DenseRetriever

    ds = data.load("example")
    DenseRetriever.build(ds.iter_documents(), tmp_path / "dense", batch_size=8)
    plain = load_reranker("bi-encoder(model=minilm)")
    cached = load_reranker(f'bi-encoder(model=minilm, embeddings="{tmp_path / "dense"}")')
    requests = list(requests_from_run(ds.run("bm25"), {q.qid: q for q in ds.queries()}, ds.docs()))
    a, b = plain.rerank(requests), cached.rerank(requests)
    for x, y in zip(a, b, strict=True):
        assert x.ranking.docids == y.ranking.docids
        assert [c.score for c in x.ranking] == pytest.approx([c.score for c in y.ranking], abs=1e-5)
    assert sum(r.cost.input_tokens for r in b) == 0  # no passage was encoded again
    from data.models import resolve_model

    other = resolve_model("minilm")  # the same weights named by their folder: not the model the index records
    with pytest.raises(ValueError, match="not dense vectors"):
        load_reranker(f'bi-encoder(model="{other}", embeddings="{tmp_path / "dense"}")')


def test_live_objects_concatenate_as_their_spec_says(bm25, minilm_bi_encoder):
    """``(bm25 % 4 >> minilm) ^ bm25`` of live objects: the spec the language prints, and the run rerank.run
    gives for that spec (the reranked top 4, then BM25's other candidates below them)."""
    import rerank
    from rerank.compose import Concatenation
    from rerank.spec import parse_pipeline

    ds = data.load("example")
    live = (bm25 % 4 >> minilm_bi_encoder) ^ bm25 % 10
    assert isinstance(live, Concatenation) and len(live.members) == 2
    members = [(bm25 % 4 >> minilm_bi_encoder).spec, Pipeline.of(bm25 % 10).spec]
    assert live.spec == parse_pipeline(f"({members[0]}) ^ {members[1]}") == parse_pipeline(str(live.spec))
    assert f"index_dir={bm25.index_dir}" in str(live.spec)  # the index it searches, which rerank.run finds
    run = live(ds.queries(), docs=ds.docs())
    top, rest = bm25.retrieve(ds.queries(), 4), bm25.retrieve(ds.queries(), 10)
    reranked = Pipeline.of(minilm_bi_encoder)(top, docs=ds.docs(), queries=ds.queries())
    for ranking in run:
        assert ranking.docids[:4] == reranked[ranking.qid].docids
        assert ranking.docids[4:] == [d for d in rest[ranking.qid].docids if d not in ranking.docids[:4]]
    by_spec = rerank.run(live.spec, dataset=ds).run()  # the printed spec runs: the same index, the same run
    assert {r.qid: r.docids for r in by_spec} == {r.qid: r.docids for r in run}
