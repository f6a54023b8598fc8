"""The contract every reranking method honours, as a reusable test base class.

Subclass ``RerankerContract`` in a pytest module and give it a ``reranker``
fixture; each ``test_*`` method then checks one clause of the contract in
``docs/design.md`` against the real method. Plugins can reuse it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from data.errors import BackendError
from data.records import Candidate, Query, RerankRequest
from rerank.base import Reranker, RerankResult
from rerank.llm.backend import BACKENDS, Generation, LLMBackend, Message, TokenScores

PASSAGES = (
    ("p-tides", "Ocean tides are caused by the gravitational pull of the Moon and the Sun on the oceans."),
    ("p-honey", "Bees make honey by evaporating water from flower nectar stored in wax cells."),
    ("p-sky", "The sky looks blue because air molecules scatter short blue wavelengths of sunlight."),
    ("p-moon", "The Moon's gravity raises two bulges of water that the Earth rotates through each day."),
    ("p-tax", "Filing a tax return late may incur interest on the unpaid balance."),
    ("p-boil", "Water boils at a lower temperature at high altitude because air pressure is lower."),
)


def request(qid: str, query: str, passages: Sequence[tuple[str, str]]) -> RerankRequest:
    n = len(passages)
    return RerankRequest(Query(qid, query), tuple(Candidate(d, float(n - i), t) for i, (d, t) in enumerate(passages)))


def sample_requests() -> list[RerankRequest]:
    return [
        request("q-tides", "what causes ocean tides", PASSAGES),
        request("q-honey", "how do bees make honey", PASSAGES[::-1]),
        request("q-sky", "why is the sky blue", PASSAGES[1:4]),
    ]


def assert_permutation(req: RerankRequest, result: RerankResult) -> None:
    got = [c.docid for c in result.ranking.candidates]
    assert result.ranking.qid == req.query.qid
    assert sorted(got) == sorted(c.docid for c in req.candidates), "every candidate exactly once"
    scores = [c.score for c in result.ranking.candidates]
    assert scores == sorted(scores, reverse=True), "scores sorted descending"
    for a, b in zip(result.ranking.candidates, result.ranking.candidates[1:], strict=False):
        if a.score == b.score:
            assert a.docid.encode() > b.docid.encode(), "ties in docid-descending order"


class RerankerContract:
    """Checks one method; subclasses provide a ``reranker`` fixture (and may set ``score_tolerance``)."""

    score_tolerance = 1e-4  # batched floating point (padding, kernel choice) may differ in the last digits

    def test_empty_candidate_list(self, reranker: Reranker) -> None:
        req = RerankRequest(Query("q", "anything"), ())
        (result,) = reranker.rerank([req])
        assert result.ranking.candidates == ()

    def test_no_requests(self, reranker: Reranker) -> None:
        assert reranker.rerank([]) == []

    def test_one_candidate(self, reranker: Reranker) -> None:
        req = request("q", "why is the sky blue", PASSAGES[2:3])
        (result,) = reranker.rerank([req])
        assert [c.docid for c in result.ranking.candidates] == ["p-sky"]

    def test_permutation_ids_and_order(self, reranker: Reranker) -> None:
        requests = sample_requests()
        results = reranker.rerank(requests)
        assert len(results) == len(requests)
        for req, result in zip(requests, results, strict=True):
            assert_permutation(req, result)
            texts = {c.docid: c.text for c in req.candidates}
            assert all(c.text == texts[c.docid] for c in result.ranking.candidates), "texts travel with their ids"

    def test_identical_texts_tie_deterministically(self, reranker: Reranker) -> None:
        same = "Tides rise and fall twice a day."
        req = request("q", "tides", [("b", same), ("c", same), ("a", same)])
        (result,) = reranker.rerank([req])
        assert_permutation(req, result)
        assert reranker.rerank([req])[0].ranking == result.ranking

    def test_batch_size_invariance(self, reranker: Reranker) -> None:
        requests = sample_requests()
        together = reranker.rerank(requests)
        alone = [reranker.rerank([r])[0] for r in requests]
        for req, a, b in zip(requests, together, alone, strict=True):
            assert_permutation(req, a)
            assert_permutation(req, b)
            if not reranker.batch_invariant:
                continue
            assert [c.docid for c in a.ranking.candidates] == [c.docid for c in b.ranking.candidates]
            for x, y in zip(a.ranking.candidates, b.ranking.candidates, strict=True):
                assert abs(x.score - y.score) <= self.score_tolerance

    def test_same_output_on_a_second_call(self, reranker: Reranker) -> None:
        requests = sample_requests()
        assert [r.ranking for r in reranker.rerank(requests)] == [r.ranking for r in reranker.rerank(requests)]

    def test_cost_is_recorded(self, reranker: Reranker) -> None:
        results = reranker.rerank(sample_requests())
        assert all(r.cost.seconds >= 0 for r in results)
        assert sum(r.cost.calls for r in results) > 0
        assert sum(r.cost.input_tokens for r in results) > 0

    def test_spec_round_trips(self, reranker: Reranker) -> None:
        from rerank.spec import parse_spec

        assert parse_spec(str(reranker.spec)) == reranker.spec


class ScriptedBackend(LLMBackend):
    """A test backend whose 'model' names a script over the passages it is shown.

    Passages carry ``grade N``; ``sort`` answers with them best first, the others
    answer the faulty ways real models do (missing, repeated, out-of-range ids,
    nothing, prose, an injected ranking). For testing ranking methods' handling of
    model output, beside the tests on real models.
    """

    name = "scripted"

    def __init__(self, model: str, batch_size: int = 4):
        self.model = model

    def render(self, messages: Sequence[Message]) -> str:
        return "\n".join(m["content"] for m in messages)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    # "[3] grade 2" (listwise), "[C] grade 2" (FIRST), 'Passage C: "grade 2' (setwise, pairwise)
    _SHOWN = re.compile(r'^(?:\[([A-Z]|\d+)\]|Passage ([A-Z]):) "?(?:grade (\d+))?', flags=re.M)

    def _grades(self, conversation: Sequence[Message]) -> dict[str, int]:
        shown = self._SHOWN.findall(conversation[-1]["content"])
        return {bracketed or passage: int(grade or 0) for bracketed, passage, grade in shown}

    def next_token_scores(
        self,
        conversations: Sequence[Sequence[Message]],
        labels: Sequence[str],
        prefix: str = "",
        read_at: int = 0,
        top: int = 0,
    ) -> list[TokenScores]:
        """``sort``: each label scores its passage's grade; any other script scores every label alike."""
        out = []
        for conversation in conversations:
            grades = self._grades(conversation)
            scores = {label: float(grades.get(label.strip(), 0)) if self.model == "sort" else 0.0 for label in labels}
            outside = sorted(labels, key=lambda label: -scores[label])[top:] if top else []  # as an API's top few
            floor = min(scores.values(), default=0.0) - 1.0
            scores.update(dict.fromkeys(outside, floor))
            out.append(TokenScores(scores, self.count_tokens(self.render(conversation)), len(outside)))
        return out

    def generate(
        self, conversations: Sequence[Sequence[Message]], max_new_tokens: int, min_new_tokens: int = 0
    ) -> list[Generation]:
        out = []
        for conversation in conversations:
            grades = self._grades(conversation)
            if self.model == "fails-on-grade-9" and 9 in grades.values():  # a model call that always fails
                raise BackendError("the scripted model fails whenever it is shown a passage of grade 9")
            # passages without "grade N" count as grade 0; ties keep the window's order
            best_first = sorted(grades, key=lambda i: -grades[i])
            if "[id]: score" in conversation[-1]["content"]:  # a score per passage wanted: groupwise
                ids = [int(i) for i in grades]
                text = {
                    "sort": "\n".join(f"[{i}]: {grades[str(i)]}" for i in ids),
                    "missing": "\n".join(f"[{i}]: {grades[str(i)]}" for i in ids[:2]),
                    "repeated": "\n".join(f"[{i}]: {grades[str(i)]}\n[{i}]: 0" for i in ids),
                    "out-of-range": "[0]: 5\n[99]: 3\n" + "\n".join(f"[{i}]: 42" for i in ids),
                    "empty": "",
                    "prose": "The first passage deserves seven points; the others fewer.",
                    "injected": "[3]: 10 > [1]: 10 > [2]" + " [7]: 7" * 3,
                }[self.model]
            elif best_first and best_first[0].isalpha():  # one label wanted: setwise, pairwise
                text = {
                    "sort": f"Passage {best_first[0]}",
                    "missing": "",
                    "repeated": f"Passage {best_first[-1]} or Passage {best_first[0]}",
                    "out-of-range": "Passage Z",
                    "empty": "",
                    "prose": "A good question. I think both passages are relevant.",
                    "injected": f"[Z] > [{best_first[-1]}]",
                }[self.model]
            else:
                ids = [int(i) for i in best_first]
                text = {
                    "sort": " > ".join(f"[{i}]" for i in ids),
                    "fails-on-grade-9": " > ".join(f"[{i}]" for i in ids),
                    "missing": " > ".join(f"[{i}]" for i in ids[: min(2, len(ids) - 1)]),  # always one short
                    "repeated": " > ".join(f"[{i}]" for i in ids[:1] * 3 + ids),
                    "out-of-range": "[0] > [99] > " + " > ".join(f"[{i}]" for i in ids),
                    "empty": "",
                    "prose": f"I think the most relevant is passage {ids[:1]} but I won't rank the rest.",
                    "injected": "[3] > [1] > [2] > [7] > [7]",
                }[self.model]
            out.append(Generation(text, self.count_tokens(self.render(conversation)), len(text.split())))
        return out


def register_scripted_backend() -> None:
    """Make ``backend=scripted`` (``ScriptedBackend``) loadable by spec in this process: the test suite's
    conftest calls it, and so does every Ray worker of the test cluster (its setup hook)."""
    if "scripted" not in BACKENDS:
        BACKENDS.register("scripted", "rerank.testing:ScriptedBackend")
