"""fuse(...): rerankers over the same candidates, fused by RRF or by interpolated scores."""

import pytest

from data.errors import InvalidSpecError
from rerank.registry import check_reranker, load_reranker
from rerank.testing import assert_permutation, request, sample_requests

GRADED = "listwise(model=sort, backend=scripted, window_size=4, stride=2)"  # orders by the "grade N" in each text
MINILM = "bi-encoder(model=minilm)"
PASSAGES = [
    ("d1", "grade 1 Honey bees make honey from nectar."),
    ("d2", "grade 3 The stock market fell on Tuesday."),
    ("d3", "grade 2 Wasps build paper nests."),
    ("d4", "grade 0 Bees evaporate water from nectar in the hive."),
]


def _ranks(spec: str, req) -> dict[str, int]:
    (result,) = load_reranker(spec).rerank([req])
    return {c.docid: rank for rank, c in enumerate(result.ranking.candidates, 1)}


@pytest.mark.integration
def test_rrf_of_two_rerankers_is_the_hand_computed_sum_of_reciprocal_ranks():
    req = request("q", "how do bees make honey", PASSAGES)
    graded, minilm = _ranks(GRADED, req), _ranks(MINILM, req)
    assert list(graded) == ["d2", "d3", "d1", "d4"] and list(minilm)[:2] in (["d1", "d4"], ["d4", "d1"])
    (fused,) = load_reranker(f"fuse(rerankers=[{GRADED}, {MINILM}], k=10)").rerank([req])
    expected = {d: 1 / (10 + graded[d]) + 1 / (10 + minilm[d]) for d in graded}
    assert {c.docid: c.score for c in fused.ranking.candidates} == pytest.approx(expected, abs=1e-12)
    assert [c.score for c in fused.ranking.candidates] == sorted(expected.values(), reverse=True)
    assert {c.docid: c.text for c in fused.ranking.candidates} == dict(PASSAGES)  # texts go on to the next stage


@pytest.mark.integration
def test_interpolation_weights_the_members_normalised_scores():
    req = request("q", "how do bees make honey", PASSAGES)
    only_graded = load_reranker(f"fuse(rerankers=[{GRADED}, {MINILM}], method=interpolate, weights=[1.0, 0.0])")
    assert only_graded.rerank([req])[0].ranking.docids == ["d2", "d3", "d1", "d4"]
    only_minilm = load_reranker(f"fuse(rerankers=[{GRADED}, {MINILM}], method=interpolate, weights=[0.0, 1.0])")
    assert only_minilm.rerank([req])[0].ranking.docids == list(_ranks(MINILM, req))
    (half,) = load_reranker(f"fuse(rerankers=[{MINILM}, {MINILM}], method=interpolate)").rerank([req])
    assert half.ranking.candidates[0].score == pytest.approx(1.0) and half.ranking.candidates[-1].score == 0.0


@pytest.mark.integration
def test_fusion_is_a_deterministic_permutation_of_each_request_and_keeps_requests_apart():
    fused = load_reranker(f"fuse(rerankers=[{GRADED}, {MINILM}])")
    requests = sample_requests()
    first, again = fused.rerank(requests), fused.rerank(requests)
    for req, result in zip(requests, first, strict=True):
        assert_permutation(req, result)
    assert [r.ranking for r in first] == [r.ranking for r in again]
    twice = fused.rerank([requests[0], requests[0]])  # the same qid twice in one batch: two answers
    assert twice[0].ranking == twice[1].ranking == first[0].ranking
    assert sum(r.cost.calls for r in first) > 0


@pytest.mark.unit
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (f"fuse(rerankers=[{MINILM}])", "two or more"),
        (f"fuse(rerankers=[{MINILM}, {MINILM}], weights=[0.5, 0.5])", "only with method=interpolate"),
        (f"fuse(rerankers=[{MINILM}, {MINILM}], method=interpolate, weights=[1.0])", "one per reranker"),
        (f"fuse(rerankers=[{MINILM}, {MINILM}], method=borda)", "method"),
        (f"fuse(rerankers=[{MINILM}, bi-encoder(model=./no-such-model)])", "no-such-model"),
    ],
)
def test_a_wrong_fusion_is_refused_before_any_model_loads(spec, message):
    with pytest.raises((InvalidSpecError, ValueError, FileNotFoundError), match=message):
        check_reranker(spec)
