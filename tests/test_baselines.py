"""The random control ranker: a reproducible, uniform permutation, reachable from the registry and the CLI."""

import collections

import pytest

import data
from rerank.cli import main
from rerank.registry import load_reranker, method_names
from rerank.testing import PASSAGES, RerankerContract, request


@pytest.fixture(scope="module")
def reranker():
    return load_reranker("random(seed=0)")


@pytest.mark.contract
class TestRandomContract(RerankerContract):
    def test_cost_is_recorded(self, reranker):
        # no model: the cost is time only
        results = reranker.rerank([request("q", "tides", PASSAGES)])
        assert results[0].cost.calls == 0 and results[0].cost.input_tokens == 0
        assert results[0].cost.seconds >= 0


@pytest.mark.unit
def test_random_is_registered_through_the_plugin_group():
    assert "random" in method_names()
    assert str(load_reranker("random").spec) == "random(seed=0)"


def order(seed, passages):
    req = request("q1", "anything", passages)
    return [c.docid for c in load_reranker(f"random(seed={seed})").rerank([req])[0].ranking.candidates]


@pytest.mark.unit
def test_the_order_depends_on_the_seed_and_not_on_the_input_order():
    passages = [(f"d{i}", f"passage {i}") for i in range(20)]
    assert order(0, passages) == order(0, passages[::-1])
    assert order(0, passages) != order(1, passages)
    assert order(0, passages) not in ([d for d, _ in passages], [d for d, _ in passages][::-1])


@pytest.mark.unit
def test_every_candidate_is_equally_likely_to_come_first():
    reranker = load_reranker("random(seed=7)")
    passages = [(f"d{i}", "same text") for i in range(10)]
    requests = [request(f"q{n}", "query", passages) for n in range(2000)]
    top = collections.Counter(r.ranking.candidates[0].docid for r in reranker.rerank(requests))
    # 200 expected per candidate; a binomial(2000, 0.1) stays within 200 ± 60 with overwhelming probability
    assert set(top) == {d for d, _ in passages}
    assert all(140 <= n <= 260 for n in top.values()), top


@pytest.mark.integration
def test_the_cli_runs_the_random_control_on_the_example(capsys, tmp_path):
    out = tmp_path / "random.trec"
    args = ["run", "--dataset", "example", "--run", "bm25", "--reranker", "random(seed=0)", "--output", str(out)]
    assert main(args) == 0
    ranked, first = data.read_trec_run(out), data.load("example").run("bm25")
    assert {r.qid: sorted(r.docids) for r in ranked} == {r.qid: sorted(r.docids) for r in first}
    assert [r.docids for r in ranked] != [r.docids for r in first]


@pytest.mark.integration
def test_a_seed_of_the_wrong_type_is_one_clear_line(capsys, tmp_path):
    from rerank.cli import main

    with pytest.raises(TypeError, match="seed must be an integer"):
        load_reranker("random(seed=abc)")
    code = main(["run", "--dataset", "example", "--run", "bm25", "--reranker", "random(seed=abc)",
                 "--output", str(tmp_path / "out.trec")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3 and err == "rerank: error: random(seed=abc): seed must be an integer, not 'abc'\n"
    assert not list(tmp_path.iterdir())  # no output, no checkpoint to refuse the next run
