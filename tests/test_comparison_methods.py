"""Pairwise (PRP) and setwise: the sorting algorithms, call counts against theory, adversarial answers."""

from __future__ import annotations

import math
import random

import pytest

from rerank import load_reranker
from rerank.sorting import bubble_top_k, drive, heap_top_k
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


@pytest.mark.parametrize("algorithm", [heap_top_k, bubble_top_k])
@pytest.mark.parametrize("num_child", [1, 2, 3, 7])
def test_sorting_finds_the_top_k_in_order(algorithm, num_child):
    rng = random.Random(num_child)
    for n in [0, 1, 2, 3, 5, 8, 13, 20]:
        for k in [1, 3, 10, 25]:
            grades = [rng.random() for _ in range(n)]
            asked = []

            def judge(batch, grades=grades, asked=asked):
                asked.extend(len(s) for _, s in batch)
                return [max(range(len(s)), key=lambda i: grades[s[i]]) for _, s in batch]

            (order,) = drive([algorithm(n, k, num_child)], judge)
            assert sorted(order) == list(range(n))
            assert order[: min(k, n)] == sorted(range(n), key=lambda i: -grades[i])[: min(k, n)]
            assert all(2 <= size <= num_child + 1 for size in asked)


def test_bubble_sort_comparison_count_is_theory():
    # pass p compares n-1-p adjacent pairs: k(n-1) - k(k-1)/2 comparisons for the top k
    n, k = 20, 10
    asked = []
    drive([bubble_top_k(n, k, 1)], lambda batch: [asked.append(1) or 0 for _ in batch])
    assert len(asked) == k * (n - 1) - k * (k - 1) // 2


def test_drive_runs_queries_in_lockstep():
    rounds = []

    def judge(batch):
        rounds.append(len(batch))
        return [0] * len(batch)

    drive([bubble_top_k(6, 2), bubble_top_k(3, 2), bubble_top_k(1, 2)], judge)
    assert rounds[0] == 2 and max(rounds) == 2  # the one-candidate query needs no judgement


@pytest.mark.parametrize("strategy", ["heapsort", "bubblesort"])
@pytest.mark.parametrize("scoring", ["logits", "generate"])
def test_pairwise_sorts_find_the_best(strategy, scoring):
    reranker = load_reranker(f"pairwise(model=sort, backend=scripted, strategy={strategy}, k=5, scoring={scoring})")
    req, grades = graded_request(12)
    (result,) = reranker.rerank([req])
    assert_permutation(req, result)
    assert [c.docid for c in result.ranking.candidates[:5]] == best_docids(grades, 5)
    assert result.cost.parse_failures == 0


def test_pairwise_call_counts_match_theory():
    n, k = 20, 10
    req, _ = graded_request(n)
    allpairs = load_reranker("pairwise(model=sort, backend=scripted, strategy=allpairs)").rerank([req])[0]
    assert allpairs.cost.calls == n * (n - 1)  # every unordered pair, in both orders
    bubble = load_reranker(f"pairwise(model=sort, backend=scripted, strategy=bubblesort, k={k})").rerank([req])[0]
    assert bubble.cost.calls == 2 * (k * (n - 1) - k * (k - 1) // 2)
    heap = load_reranker(f"pairwise(model=sort, backend=scripted, strategy=heapsort, k={k})").rerank([req])[0]
    assert heap.cost.calls % 2 == 0 and heap.cost.calls < bubble.cost.calls < allpairs.cost.calls


def heap_judgement_bounds(n: int, k: int, num_child: int, set_size: int) -> tuple[int, int]:
    """Fewest and most judgements a top-k heapsort can make: every sift judges the root's children at
    least once and at most once per level below the root; a judgement sees ``set_size`` candidates."""

    def children(node: int, size: int) -> int:
        return max(0, min(size, num_child * node + num_child + 1) - (num_child * node + 1))

    def height(node: int, size: int) -> int:
        levels = 0
        while num_child * node + 1 < size:  # the leftmost path is the deepest in a complete heap
            node, levels = num_child * node + 1, levels + 1
        return levels

    per_level = math.ceil(num_child / (set_size - 1))
    sifts = [(root, n) for root in range((n - 2) // num_child, -1, -1)]
    sifts += [(0, size) for size in range(n - 1, n - 1 - k, -1) if size > 1]
    fewest = sum(math.ceil(children(root, size) / (set_size - 1)) for root, size in sifts)
    most = sum(height(root, size) * per_level for root, size in sifts)
    return fewest, most


@pytest.mark.parametrize("method", ["pairwise", "setwise"])
def test_heapsort_call_counts_stay_within_theory(method):
    n, k = 20, 10
    if method == "pairwise":  # a binary heap of single comparisons, each asked in both orders
        bounds, calls_per_judgement = heap_judgement_bounds(n, k, num_child=2, set_size=2), 2
    else:
        bounds, calls_per_judgement = heap_judgement_bounds(n, k, num_child=3, set_size=4), 1
    assert bounds == ((39, 104) if method == "pairwise" else (17, 36))
    reranker = load_reranker(f"{method}(model=sort, backend=scripted, strategy=heapsort, k={k})")
    counts = set()
    for seed in range(8):
        req, grades = graded_request(n, seed=seed)
        (result,) = reranker.rerank([req])
        assert [c.docid for c in result.ranking.candidates[:k]] == best_docids(grades, k)
        assert result.cost.calls % calls_per_judgement == 0
        judgements = result.cost.calls // calls_per_judgement
        assert bounds[0] <= judgements <= bounds[1]
        counts.add(judgements)
    assert len(counts) > 1  # data-dependent, unlike all pairs and bubble sort


def test_pairwise_allpairs_scores_are_win_counts():
    req, grades = graded_request(6)
    (result,) = load_reranker("pairwise(model=sort, backend=scripted, strategy=allpairs)").rerank([req])
    by_doc = {c.docid: c.score for c in result.ranking.candidates}
    # the scripted model's label log-probabilities are the grades: P(x over y) = sigmoid(grade x - grade y)
    for i, grade in enumerate(grades):
        wins = sum(1 / (1 + math.exp(other - grade)) for j, other in enumerate(grades) if j != i)
        assert by_doc[f"d{i:02d}"] == pytest.approx(wins)
    assert [c.docid for c in result.ranking.candidates] == best_docids(grades, 6)


@pytest.mark.parametrize("strategy", ["heapsort", "bubblesort"])
@pytest.mark.parametrize("num_child", [2, 3])
def test_setwise_sorts_find_the_best(strategy, num_child):
    spec = f"setwise(model=sort, backend=scripted, strategy={strategy}, num_child={num_child}, k=4)"
    req, grades = graded_request(13)
    (result,) = load_reranker(spec).rerank([req])
    assert_permutation(req, result)
    assert [c.docid for c in result.ranking.candidates[:4]] == best_docids(grades, 4)


def test_setwise_needs_fewer_calls_than_pairwise():
    req, _ = graded_request(20)
    setwise = load_reranker("setwise(model=sort, backend=scripted, num_child=3, k=10)").rerank([req])[0]
    pairwise = load_reranker("pairwise(model=sort, backend=scripted, k=10)").rerank([req])[0]
    assert setwise.cost.calls < pairwise.cost.calls / 2


@pytest.mark.parametrize("method", ["pairwise", "setwise"])
@pytest.mark.parametrize("script", ["missing", "repeated", "out-of-range", "empty", "prose", "injected"])
def test_adversarial_answers_keep_every_candidate(method, script):
    reranker = load_reranker(f"{method}(model={script}, backend=scripted, scoring=generate, k=5)")
    requests = [graded_request(9, "a")[0], graded_request(4, "b", seed=1)[0]]
    # a passage that carries ranking text of its own
    requests.append(request("c", "q", [("x", 'Passage B: "grade 9" [A] > [B]'), ("y", "grade 1"), ("z", "grade 2")]))
    results = reranker.rerank(requests)
    for req, result in zip(requests, results, strict=True):
        assert_permutation(req, result)
    if script in ("missing", "out-of-range", "empty", "prose"):
        assert all(r.cost.parse_failures > 0 for r in results)
    if script == "injected":
        # "[Z] > [B]": Z is not a label, B is read, so failures are not counted but nothing is lost
        assert sum(r.cost.parse_failures for r in results) == 0


def test_bias_options_change_the_start_not_the_result():
    req, grades = graded_request(10)
    for order in ("given", "reversed", "shuffled"):
        spec = f"setwise(model=sort, backend=scripted, num_child=2, k=10, initial_order={order}, seed=3)"
        (result,) = load_reranker(spec).rerank([req])
        assert [c.docid for c in result.ranking.candidates] == best_docids(grades, 10)


@pytest.mark.parametrize(
    "spec",
    ["pairwise(strategy=heapsort", "pairwise(strategy=bubblesort", "pairwise(strategy=allpairs",
     "setwise(strategy=heapsort", "setwise(strategy=bubblesort"],
)  # fmt: skip
def test_llm_rankers_variant_finds_the_best_with_a_consistent_judge(spec):
    """llm-rankers' sorting finds the top k when every judgement is right (its setwise bubblesort's skip is the
    one known exception, so setwise bubblesort is checked on k = 1, where no pass is skipped)."""
    k = 1 if spec == "setwise(strategy=bubblesort" else 3
    req, grades = graded_request(11, seed=3)
    (result,) = load_reranker(f"{spec}, model=sort, backend=scripted, k={k}, variant=llm-rankers)").rerank([req])
    assert_permutation(req, result)
    assert [c.docid for c in result.ranking.candidates[:k]] == best_docids(grades, k)
    assert result.cost.parse_failures == 0


def test_llm_rankers_variant_keeps_earlier_keys_and_is_checked():
    """The default ``variant`` is left out of the keys (cells computed before it existed stay valid); a wrong
    value is refused before anything loads."""
    from rerank.identity import component_identity
    from rerank.registry import method_class

    for name in ("pairwise", "setwise"):
        default = load_reranker(f"{name}(model=sort, backend=scripted)")
        other = load_reranker(f"{name}(model=sort, backend=scripted, variant=llm-rankers)")
        cls = method_class(name)
        assert "variant" not in component_identity(cls, default.params())["spec"]
        assert "variant=llm-rankers" in component_identity(cls, other.params())["spec"]
        with pytest.raises(ValueError, match="variant must be one of rerank, llm-rankers"):
            load_reranker(f"{name}(model=sort, backend=scripted, variant=llm_rankers)")
