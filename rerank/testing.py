"""The contract every reranking method honours, as a reusable test base class.

Subclass ``RerankerContract`` in a pytest module and give it a ``reranker``
fixture; each ``test_*`` method then checks one clause of the contract in
``docs/design.md`` against the real method. Plugins can reuse it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from data.errors import BackendError
from data.records import Candidate, Document, Query, RerankRequest
from rerank.base import Reranker, RerankResult
from rerank.llm.backend import BACKENDS, Generation, LLMBackend, Message, Prompt, TokenScores, cut_at_stop

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


CONVERSATIONS: tuple[tuple[Message, ...], ...] = (
    ({"role": "system", "content": "You rank passages."}, {"role": "user", "content": "Which passage, A or B, answers: what causes ocean tides?\nA: The Moon's pull.\nB: Tax returns."}),
    ({"role": "user", "content": "Say A, B or C."},),
    ({"role": "user", "content": "Is the sky blue because of scattering? Answer A for yes, B for no."},),
)  # fmt: skip
LABELS = ("A", "B", "C")


class LLMBackendContract:
    """Checks one LLM backend; subclasses provide a ``backend`` fixture (an ``LLMBackend``).

    The clauses are what the ranking methods rely on: rendering, token counts, greedy generation
    within its bounds, label log-probabilities (with ``prefix``, ``read_at`` and ``top``), cutting
    text to a number of tokens, determinism and independence from the batch. ``decoded`` is
    False for a backend whose answers are scripted rather than decoded (its lengths are the script's).
    """

    score_tolerance = 1e-3  # batched floating point may differ in the last digits
    decoded = True

    def test_render_holds_every_message_and_is_deterministic(self, backend: LLMBackend) -> None:
        for conversation in CONVERSATIONS:
            prompt = backend.render(conversation)
            assert isinstance(prompt, str) and prompt
            assert all(m["content"] in prompt for m in conversation)
            assert backend.render(conversation) == prompt

    def test_token_counts_grow_with_the_text(self, backend: LLMBackend) -> None:
        short, long = "ocean tides", "ocean tides are caused by the Moon and the Sun " * 4
        assert 0 < backend.count_tokens(short) < backend.count_tokens(long)
        assert backend.count_tokens("") <= backend.count_tokens(short)

    def test_generate_answers_each_conversation_within_its_bounds(self, backend: LLMBackend) -> None:
        answers = backend.generate(CONVERSATIONS, max_new_tokens=6)
        assert len(answers) == len(CONVERSATIONS)
        for conversation, answer in zip(CONVERSATIONS, answers, strict=True):
            assert isinstance(answer, Generation) and isinstance(answer.text, str)
            assert answer.input_tokens >= backend.count_tokens(conversation[-1]["content"]) > 0
            if self.decoded:
                assert 0 <= answer.output_tokens <= 6
        if self.decoded:
            (held,) = backend.generate(CONVERSATIONS[1:2], max_new_tokens=4, min_new_tokens=4)
            assert held.output_tokens == 4, "no end of text before min_new_tokens"

    def test_generation_ends_before_a_stop_string(self, backend: LLMBackend) -> None:
        """A stop string ends the text before it, as if the text had been cut there (greedy decoding writes the
        same tokens up to it), and never costs more tokens than writing on."""
        # (a ranking prompt too: the scripted backend answers only those)
        asked = [*CONVERSATIONS, ({"role": "user", "content": "Rank the passages.\n[1] grade 1\n[2] grade 3"},)]
        free = backend.generate(asked, max_new_tokens=8)
        written = [(c, g) for c, g in zip(asked, free, strict=True) if len(g.text.strip()) >= 2]
        assert written, "the model wrote nothing to stop in"
        conversation, whole = written[0]
        stop = whole.text.strip()[1]  # a character it writes after its first
        (stopped,) = backend.generate([conversation], max_new_tokens=8, stop=[stop, "never written \x00"])
        assert stopped.text == whole.text[: whole.text.index(stop)]
        if self.decoded:  # the engine stopped there, not only the text: fewer tokens written than without
            assert stopped.output_tokens < whole.output_tokens, "the stop string did not end the generation"

    def test_generate_is_greedy_and_batch_independent(self, backend: LLMBackend) -> None:
        together = backend.generate(CONVERSATIONS, max_new_tokens=5)
        alone = [backend.generate([c], max_new_tokens=5)[0] for c in CONVERSATIONS]
        assert [g.text for g in together] == [g.text for g in alone]
        assert [g.text for g in backend.generate(CONVERSATIONS, max_new_tokens=5)] == [g.text for g in together]

    def test_next_token_scores_give_every_label_a_log_probability(self, backend: LLMBackend) -> None:
        assert all(backend.single_token(label) for label in LABELS)
        scores = backend.next_token_scores(CONVERSATIONS, LABELS)
        assert len(scores) == len(CONVERSATIONS)
        for conversation, score in zip(CONVERSATIONS, scores, strict=True):
            assert set(score.logprobs) == set(LABELS) and score.missing == 0
            assert all(value <= 1e-6 for value in score.logprobs.values()), "log-probabilities are at most 0"
            assert score.input_tokens >= backend.count_tokens(conversation[-1]["content"])

    def test_next_token_scores_are_deterministic_and_batch_independent(self, backend: LLMBackend) -> None:
        together = backend.next_token_scores(CONVERSATIONS, LABELS)
        alone = [backend.next_token_scores([c], LABELS)[0] for c in CONVERSATIONS]
        for a, b in zip(together, alone, strict=True):
            assert all(abs(a.logprobs[label] - b.logprobs[label]) <= self.score_tolerance for label in LABELS)
        again = backend.next_token_scores(CONVERSATIONS, LABELS)
        assert [s.logprobs for s in again] == [s.logprobs for s in together]

    def test_a_prefix_is_read_before_the_labels(self, backend: LLMBackend) -> None:
        (plain,) = backend.next_token_scores(CONVERSATIONS[:1], LABELS)
        (prefixed,) = backend.next_token_scores(CONVERSATIONS[:1], LABELS, prefix="Passage")
        assert set(prefixed.logprobs) == set(LABELS)
        if self.decoded:
            assert prefixed.input_tokens > plain.input_tokens or prefixed.logprobs != plain.logprobs

    def test_read_at_scores_a_later_position(self, backend: LLMBackend) -> None:
        (first,) = backend.next_token_scores(CONVERSATIONS[1:2], LABELS)
        (later,) = backend.next_token_scores(CONVERSATIONS[1:2], LABELS, read_at=1)
        assert set(later.logprobs) == set(LABELS)
        assert all(value <= 1e-6 for value in later.logprobs.values())
        if self.decoded:
            assert later.logprobs != first.logprobs, "read one token further on, the distribution differs"

    def test_top_scores_only_the_most_likely_and_floors_the_rest(self, backend: LLMBackend) -> None:
        (full,) = backend.next_token_scores(CONVERSATIONS[:1], LABELS)
        (top1,) = backend.next_token_scores(CONVERSATIONS[:1], LABELS, top=1)
        assert set(top1.logprobs) == set(LABELS)
        assert top1.missing >= len(LABELS) - 1, "at most one label is the single most likely token"
        scored = [label for label in LABELS if top1.logprobs[label] == full.logprobs[label]]
        floored = [label for label in LABELS if label not in scored]
        assert len(floored) == top1.missing, "every label not scored is counted missing"
        assert all(top1.logprobs[f] < top1.logprobs[s] for f in floored for s in scored), "floored below the scored"
        assert len({top1.logprobs[label] for label in floored}) <= 1, "one floor for every missing label"

    def test_truncate_tokens_cuts_to_the_limit_or_says_it_cannot(self, backend: LLMBackend) -> None:
        text = "Ocean tides are caused by the gravitational pull of the Moon and the Sun on the oceans."
        try:
            cut = backend.truncate_tokens(text, 5)
        except ValueError as err:
            assert "cannot cut" in str(err)
            return
        assert text.startswith(cut.strip()[:3]) and backend.count_tokens(cut) <= 5 < backend.count_tokens(text)
        assert backend.truncate_tokens(text, 10_000) == text

    def test_identity_names_backend_and_model(self, backend: LLMBackend) -> None:
        assert backend.name in backend.identity and backend.model in backend.identity


class RetrieverContract:
    """Checks one retriever; subclasses provide a ``built`` fixture: ``(retriever, index_dir, params)``, an
    index built by ``Retriever.build`` over ``documents()`` with those index-time parameters.

    The clauses: the index records its retriever and parameters, loads back to the same results, and
    answers a batch of queries with at most ``k`` unique, known documents per query, sorted by score,
    the same whichever queries share the batch and on a second call.
    """

    score_tolerance = 1e-4

    @staticmethod
    def documents() -> list[Document]:
        return [Document(docid, text) for docid, text in PASSAGES]

    @staticmethod
    def queries() -> list[Query]:
        return [Query("q-tides", "what causes ocean tides"), Query("q-sky", "why is the sky blue"),
                Query("q-none", "zzzz qqqq")]  # fmt: skip

    def test_the_index_records_its_retriever_and_parameters(self, built) -> None:  # type: ignore[no-untyped-def]
        from retrievers.base import IndexMeta

        retriever, index_dir, params = built
        meta = IndexMeta.load(index_dir)
        assert meta.retriever == retriever.name
        assert meta.corpus.get("documents") == len(PASSAGES)
        recorded = {**meta.params}
        assert all(recorded.get(name) == value for name, value in params.items()), (recorded, params)
        assert set(retriever.parameters()) >= set(params)

    def test_results_are_ranked_unique_known_and_cut_to_k(self, built) -> None:  # type: ignore[no-untyped-def]
        retriever, _, _ = built
        known = {docid for docid, _ in PASSAGES}
        run = retriever.retrieve(self.queries(), 3)
        for ranking in run:
            docids = [c.docid for c in ranking.candidates]
            assert len(docids) <= 3 and len(set(docids)) == len(docids) and set(docids) <= known
            scores = [c.score for c in ranking.candidates]
            assert scores == sorted(scores, reverse=True)
        assert set(run.qids) <= {q.qid for q in self.queries()}
        assert run["q-tides"].candidates[0].docid in {"p-tides", "p-moon"}
        (cut,) = (retriever % 2).retrieve(self.queries()[:1])
        assert [c.docid for c in cut.candidates] == [c.docid for c in run["q-tides"].candidates[:2]]

    def test_batch_invariance_and_determinism(self, built) -> None:  # type: ignore[no-untyped-def]
        retriever, _, _ = built
        together = retriever.retrieve(self.queries(), 4)
        for query in self.queries():
            alone = retriever.retrieve([query], 4)
            if query.qid not in together:
                assert query.qid not in alone or not alone[query.qid].candidates
                continue
            a, b = together[query.qid].candidates, alone[query.qid].candidates
            assert [c.docid for c in a] == [c.docid for c in b]
            assert all(abs(x.score - y.score) <= self.score_tolerance for x, y in zip(a, b, strict=True))
        assert list(retriever.retrieve(self.queries(), 4)) == list(together)

    def test_saved_index_loads_to_the_same_results(self, built) -> None:  # type: ignore[no-untyped-def]
        from retrievers.registry import open_index

        retriever, index_dir, _ = built
        loaded = open_index(index_dir)
        assert type(loaded) is type(retriever)
        assert list(loaded.retrieve(self.queries(), 4)) == list(retriever.retrieve(self.queries(), 4))

    def test_search_is_one_query_of_the_batch(self, built) -> None:  # type: ignore[no-untyped-def]
        retriever, _, _ = built
        (one,) = retriever.search("what causes ocean tides", 2)
        (batched,) = retriever.retrieve(self.queries()[:1], 2)
        assert [c.docid for c in one.candidates] == [c.docid for c in batched.candidates]


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

    @staticmethod
    def _messages(prompt: Prompt) -> Sequence[Message]:
        """A rendered prompt (a chat template's) read as one user turn."""
        return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt

    def _grades(self, conversation: Sequence[Message]) -> dict[str, int]:
        shown = self._SHOWN.findall(conversation[-1]["content"])
        return {bracketed or passage: int(grade or 0) for bracketed, passage, grade in shown}

    def next_token_scores(
        self,
        conversations: Sequence[Prompt],
        labels: Sequence[str],
        prefix: str = "",
        read_at: int = 0,
        top: int = 0,
    ) -> list[TokenScores]:
        """``sort``: each label scores its passage's grade; any other script scores every label alike."""
        out = []
        for conversation in map(self._messages, conversations):
            grades = self._grades(conversation)
            scores = {label: float(grades.get(label.strip(), 0)) if self.model == "sort" else 0.0 for label in labels}
            outside = sorted(labels, key=lambda label: -scores[label])[top:] if top else []  # as an API's top few
            floor = min(scores.values(), default=0.0) - 1.0
            scores.update(dict.fromkeys(outside, floor))
            out.append(TokenScores(scores, self.count_tokens(self.render(conversation)), len(outside)))
        return out

    # Reasoning scripts: "think" thinks briefly, then answers as "sort"; "think-long" thinks until its token budget
    # runs out (answering as "sort" once a prompt closes its thinking: budget forcing); "think-stops" stops inside;
    # "r1" answers as Rank-R1 does, the best passage's number in <answer> tags.
    THINKING = ("think", "think-long", "think-stops", "r1")

    def _thought(self, conversation: Sequence[Message], max_new_tokens: int) -> Generation:
        content = self.render(conversation)
        answer = ScriptedBackend("sort").generate([conversation], max_new_tokens)[0].text
        if self.model == "r1":  # Rank-R1's form: the best passage's number in answer tags
            grades = self._grades([{"role": "user", "content": content}])
            text = f"<think>\nWeighing them.\n</think>\n<answer>[{max(grades, key=lambda i: grades[i])}]</answer>"
        elif content.endswith("</think>\n\n"):  # the reasoning was closed for it: the answer alone
            text = answer
        elif self.model == "think":
            text = f"<think>\nWeighing the passages against the query.\n</think>\n\n{answer}"
        elif self.model == "think-long":
            text = "<think> " + " ".join(["hmm"] * (max_new_tokens - 1))
        else:
            text = "<think> I cannot decide between"
        return Generation(text, self.count_tokens(content), len(text.split()))

    def generate(
        self, conversations: Sequence[Prompt], max_new_tokens: int, min_new_tokens: int = 0, stop: Sequence[str] = ()
    ) -> list[Generation]:
        # the script writes its whole answer; a stop string cuts it as an engine would have stopped
        answers = self._answers(conversations, max_new_tokens)
        return [Generation(cut_at_stop(a.text, stop), a.input_tokens, a.output_tokens) for a in answers]

    def _answers(self, conversations: Sequence[Prompt], max_new_tokens: int) -> list[Generation]:
        if self.model in self.THINKING:
            return [self._thought(c, max_new_tokens) for c in map(self._messages, conversations)]
        out = []
        for conversation in map(self._messages, conversations):
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
