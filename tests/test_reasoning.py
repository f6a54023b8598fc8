"""Reasoning before the answer (rerank.methods.reasoning): the answer after </think>, budget forcing, the cost.

The scripted backend thinks as a reasoning model does: briefly ("think"), past any budget ("think-long": it
answers only once a prompt closes its thinking), or never to an end ("think-stops"). Its answers are the
"sort" script's, so the right ranking is known.
"""

from __future__ import annotations

import pytest

from data.records import Candidate, Query, RerankRequest
from rerank import load_reranker

pytestmark = pytest.mark.unit

GRADES = [1, 4, 2, 5, 3]


def _request(qid: str = "q") -> RerankRequest:
    return RerankRequest(Query(qid, "tides"), tuple(Candidate(f"d{i}", 0.0, f"grade {g} passage {i}")
                                                    for i, g in enumerate(GRADES)))  # fmt: skip


def _ranked(result) -> list[str]:
    return [c.docid for c in result.ranking]


BEST = ["d3", "d1", "d4", "d2", "d0"]  # by grade


@pytest.mark.parametrize("method", ["listwise(window_size=5", "setwise(scoring=generate, num_child=2, k=5"])
def test_a_short_reasoning_is_read_past_its_think_block_and_counted_apart(method):
    reranker = load_reranker(f"{method}, model=think, backend=scripted, reasoning=true)")
    plain = load_reranker(f"{method}, model=sort, backend=scripted)")
    (result,), (reference,) = reranker.rerank([_request()]), plain.rerank([_request()])
    assert _ranked(result) == _ranked(reference) == BEST
    cost = result.cost
    assert cost.parse_failures == 0 and cost.calls == reference.cost.calls
    thought = 8  # the words of "<think> Weighing the passages against the query. </think>"
    assert cost.reasoning_tokens == thought * cost.calls
    assert cost.output_tokens == reference.cost.output_tokens  # the answers' own tokens, as without reasoning


def test_a_reasoning_over_budget_is_closed_and_the_answer_asked_for():
    reranker = load_reranker("listwise(model=think-long, backend=scripted, window_size=5, reasoning=true, "
                             "reasoning_budget=40)")  # fmt: skip
    calls: list[int] = []
    generate = reranker.backend.generate

    def watched(conversations, max_new_tokens, min_new_tokens=0):
        calls.append(max_new_tokens)
        return generate(conversations, max_new_tokens, min_new_tokens)

    reranker.backend.generate = watched
    (result,) = reranker.rerank([_request()])
    answer = reranker.answer_tokens(5)
    assert calls == [40 + answer, answer]  # the reasoning, cut at the budget; then the answer alone
    assert _ranked(result) == BEST and result.cost.parse_failures == 0
    assert result.cost.calls == 2 and result.cost.reasoning_tokens == 40 + answer


def test_without_forcing_a_cut_reasoning_is_parsed_as_rankllm_parses_it():
    """budget_forcing=false is RankLLM's cut: the reasoning's numbers are the answer (here, none)."""
    reranker = load_reranker("listwise(model=think-long, backend=scripted, window_size=5, reasoning=true, "
                             "reasoning_budget=40, budget_forcing=false)")  # fmt: skip
    (result,) = reranker.rerank([_request()])
    assert _ranked(result) == ["d0", "d1", "d2", "d3", "d4"]  # the window keeps its order
    assert result.cost.calls == 1 and result.cost.parse_failures == 1


@pytest.mark.parametrize("method", ["listwise(window_size=3, stride=1", "setwise(scoring=generate, num_child=2, k=5"])
def test_a_reasoning_that_never_ends_is_a_parse_failure_and_every_candidate_comes_back_once(method):
    reranker = load_reranker(f"{method}, model=think-stops, backend=scripted, reasoning=true)")
    (result,) = reranker.rerank([_request()])
    assert sorted(_ranked(result)) == sorted(c.docid for c in _request().candidates)
    assert result.cost.parse_failures == result.cost.calls > 0


def test_llm_pointwise_reads_its_labels_after_the_reasoning():
    """The yes/no question is asked after the model's reasoning, closed: each passage's score is the one the
    same prompt with the reasoning before the label gives."""
    reranker = load_reranker("llm-pointwise(model=think, backend=scripted, reasoning=true)")
    (result,) = reranker.rerank([_request()])
    assert len(result.ranking) == 5 and result.cost.reasoning_tokens > 0 and result.cost.parse_failures == 0
    assert result.cost.calls == 10  # a reasoning and a reading per passage


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("listwise(model=sort, backend=scripted, reasoning_budget=100)", "reasoning_budget applies with reasoning"),
        ("listwise(model=sort, backend=scripted, budget_forcing=false)", "budget_forcing applies with reasoning"),
        ("listwise(model=sort, backend=scripted, reasoning=true, reasoning_budget=0)", "at least 1 token"),
        ("first(model=sort, backend=scripted, reasoning=true)", "reasoning does not apply"),
        ("setwise(model=sort, backend=scripted, reasoning=true)", "scoring=generate"),
    ],
)
def test_reasoning_settings_that_would_be_ignored_are_refused(spec, says):
    from rerank.registry import check_reranker

    with pytest.raises(ValueError, match=says):
        check_reranker(spec)
        load_reranker(spec)


def test_rank_r1_finds_the_top_whatever_the_batch_and_shuffles_each_comparison_of_its_own():
    """Rank-R1's shuffle is drawn from the comparison itself (seed, query, passages), so three queries ranked
    together rank as each alone, and the passages are shown out of their first-stage order."""
    spec = "setwise(template=rank-r1, reasoning=true, scoring=generate, model=r1, backend=scripted, num_child=2, k=3)"
    requests = [_request("a"), _request("b"), _request("c")]
    together = load_reranker(spec).rerank(requests)
    alone = [load_reranker(spec).rerank([r])[0] for r in requests]
    assert [_ranked(r) for r in together] == [_ranked(r) for r in alone]
    assert all(_ranked(r)[:3] == BEST[:3] for r in together)
    reranker = load_reranker(spec)
    shown = [reranker._shown("tides", [f"p{i}" for i in range(6)]) for _ in range(2)]
    assert shown[0] == shown[1] != list(range(6))  # deterministic, and shuffled


def test_rank_r1_needs_its_reasoning():
    with pytest.raises(ValueError, match="give reasoning=true and scoring=generate"):
        load_reranker("setwise(template=rank-r1, model=r1, backend=scripted)")
