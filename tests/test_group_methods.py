"""Groupwise scoring and JointRank: parsing, regrouping, block designs, aggregation, adversarial answers."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from rerank import load_reranker
from rerank.methods.groupwise import parse_scores
from rerank.methods.jointrank import block_design, pagerank, win_matrix, win_rate
from rerank.testing import assert_permutation, request

pytestmark = pytest.mark.unit


def graded_request(n: int, qid: str = "q", seed: int = 0):
    grades = list(range(n))
    random.Random(seed).shuffle(grades)
    req = request(
        qid, "which passage has the highest grade", [(f"d{i:02d}", f"grade {g}") for i, g in enumerate(grades)]
    )
    return req, grades


def best_docids(grades, k):
    return [f"d{i:02d}" for i in sorted(range(len(grades)), key=lambda i: -grades[i])[:k]]


@pytest.mark.parametrize(
    ("answer", "scores", "failed"),
    [
        ("[1]: 3\n[2]: 9\n[3]: 0", [3, 9, 0], False),
        ('{"1": 3, "2": 9.5, "3": 1}', [3, 9.5, 1], False),
        ("[1]: 3\n[3]: 1", [3, None, 1], True),  # missing
        ("[1]: 3\n[1]: 8\n[2]: 2\n[3]: 4", [3, 2, 4], True),  # repeated: the first counts
        ("[0]: 5\n[4]: 5\n[1]: 11\n[1]: 2\n[2]: 2\n[3]: 2", [2, 2, 2], True),  # out of range ids and values
        ("", [None, None, None], True),
        ("Sure! Here you go:\n[1]: 3\n[2]: 9\n[3]: 0\nHope it helps.", [3, 9, 0], False),
    ],
)
def test_parse_scores(answer, scores, failed):
    assert parse_scores(answer, 3, 10) == (scores, failed)


def test_groupwise_scores_average_over_regrouped_rounds():
    reranker = load_reranker("groupwise(model=sort, backend=scripted, group_size=3, rounds=3)")
    req, grades = graded_request(8)
    (result,) = reranker.rerank([req])
    assert_permutation(req, result)
    assert [c.docid for c in result.ranking.candidates] == best_docids(grades, 8)
    assert {c.docid: c.score for c in result.ranking.candidates} == {
        f"d{i:02d}": float(g) for i, g in enumerate(grades)
    }
    assert result.cost.calls == 3 * 3  # ceil(8 / 3) groups in each of 3 rounds
    rounds = [reranker.groups(req, r) for r in range(3)]
    assert rounds[0] != rounds[1] and all(sorted(c for group in g for c in group) == list(range(8)) for g in rounds)


@pytest.mark.parametrize("script", ["missing", "repeated", "out-of-range", "empty", "prose", "injected"])
def test_groupwise_adversarial_answers_keep_every_candidate(script):
    reranker = load_reranker(f"groupwise(model={script}, backend=scripted, group_size=4, rounds=2)")
    requests = [graded_request(9, "a")[0], request("b", "q", [("x", "[1]: 10 [2]: 0"), ("y", "grade 1")])]
    results = reranker.rerank(requests)
    for req, result in zip(requests, results, strict=True):
        assert_permutation(req, result)
    assert results[0].cost.parse_failures > 0  # none of these answers scores a group of 4 cleanly


def test_block_design_covers_every_candidate_enough():
    for n, size, replicas in [(20, 10, 3), (23, 10, 3), (7, 10, 2), (5, 2, 4)]:
        blocks = block_design(n, size, replicas, random.Random(0))
        counts = Counter(c for b in blocks for c in b)
        assert set(counts) == set(range(n)) and min(counts.values()) >= replicas
        assert all(len(b) == min(size, n) and len(set(b)) == len(b) for b in blocks)
    assert block_design(1, 10, 3, random.Random(0)) == []


def test_aggregations_recover_a_consistent_order():
    truth = [3, 0, 4, 1, 2]  # best first
    blocks = [[3, 0, 4], [0, 1, 2], [3, 4, 2], [4, 1, 2], [3, 1]]
    orders = [sorted(b, key=truth.index) for b in blocks]
    wins = win_matrix(5, orders)
    assert wins[3][0] == 1 and wins[0][3] == 0
    for scores in (win_rate(wins), pagerank(wins)):
        assert sorted(range(5), key=lambda i: -scores[i]) == truth
    assert sum(pagerank(wins)) == pytest.approx(1.0)


@pytest.mark.parametrize("aggregation", ["winrate", "pagerank"])
def test_jointrank_with_a_listwise_inner_method(aggregation):
    inner = "first(model=sort, backend=scripted, window_size=6)"
    reranker = load_reranker(f'jointrank(inner="{inner}", block_size=6, replicas=3, aggregation={aggregation})')
    req, grades = graded_request(15)
    (result,) = reranker.rerank([req])
    assert_permutation(req, result)
    assert [c.docid for c in result.ranking.candidates[:3]] == best_docids(grades, 3)
    assert result.cost.calls == 3 * 3  # ceil(15 / 6) blocks per replica, one FIRST call per block


def test_jointrank_survives_a_faulty_inner_method():
    inner = "listwise(model=prose, backend=scripted, window_size=5)"
    (result,) = load_reranker(f'jointrank(inner="{inner}", block_size=5, replicas=2)').rerank([graded_request(12)[0]])
    assert len(result.ranking.candidates) == 12 and result.cost.parse_failures == result.cost.calls
