"""Long documents: windows, scores of every window, a document score (rerank.passages and the split method).

The reference is PyTerrier's own ``pt.text.sliding`` and ``max_passage``/``first_passage``/``mean_passage``
on the same texts with the same scorer (the MiniLM bi-encoder), on scifact's titled abstracts.
"""

from __future__ import annotations

import itertools
import json
import math
import re

import pytest

import data
from data.records import Candidate, Query, RerankRequest
from rerank.cost import Cost
from rerank.passages import Splitter, body_and_title, spans


@pytest.mark.unit
def test_dropping_the_tail_is_pyterriers_window_schedule_and_keeping_it_reads_every_token():
    import pyterrier as pt

    for length, window, stride in itertools.product(range(1, 30), (1, 2, 5, 8), (1, 2, 3, 5, 8)):
        if stride > window or length < window:
            continue
        tokens = [f"w{i}" for i in range(length)]
        theirs = [list(w) for w in pt.text.slidingWindow(tokens, window, stride)]
        assert [tokens[s : s + window] for s in spans(length, window, stride, "drop")] == theirs
        kept = spans(length, window, stride, "keep")
        # the same windows, then at most one more, ending at the last token; every token is in a window
        assert kept[: len(theirs)] == spans(length, window, stride, "drop") and len(kept) - len(theirs) <= 1
        assert kept[-1] + window == length or kept == spans(length, window, stride, "drop")
        assert {i for s in kept for i in range(s, s + window)} == set(range(length))
    assert spans(3, 5, 2) == []  # shorter than a window: one passage, whole


@pytest.mark.unit
def test_a_title_goes_on_every_window_and_a_cut_is_reported():
    splitter = Splitter(window=3, stride=2, tail="drop")
    assert splitter.split("a b c d e f", "T") == (["T a b c", "T c d e"], True)  # f is in no window
    assert Splitter(3, 2).split("a b c d e f", "T") == (["T a b c", "T c d e", "T d e f"], False)
    assert Splitter(3, 2, max_windows=1).split("a b c d e f") == (["a b c"], True)
    assert Splitter(8, 4).split("short  text", "T") == (["T short text"], False)  # re-joined as PyTerrier does
    assert body_and_title("T a b", "T") == ("a b", "T") and body_and_title("a b", None) == ("a b", None)
    with pytest.raises(ValueError, match="does not begin with its title"):
        Candidate("d", 0.0, "body only", title="Title")


@pytest.fixture(scope="module")
def scifact_requests(data_dir):
    """Four scifact queries with BM25's top 8 each, texts and titles from the corpus (``attach_texts``)."""
    scifact = data.load("beir/scifact", data_dir)
    requests = _requests(scifact, "bm25-flat", 8)[:4]
    assert all(c.title for r in requests for c in r.candidates)  # scifact's documents have titles
    return requests


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    """The MiniLM bi-encoder through a model-output cache: a pair scored once reads back the same number, so
    PyTerrier's pipeline and ours score identical windows identically whatever batches each forms."""
    from rerank.cache import OutputCache
    from rerank.registry import load_reranker

    scorer = load_reranker("bi-encoder(model=minilm, batch_size=16)")
    scorer.use_cache(OutputCache(tmp_path_factory.mktemp("passage-scores")))
    return scorer


def _requests(dataset, run, k=None):
    from rerank.inputs import requests_from_run

    return list(requests_from_run(dataset.run(run), {q.qid: q for q in dataset.queries()}, dataset.docs(), k))


def _pyterrier_frame(requests):
    import pandas as pd

    rows = []
    for r in requests:
        for rank, c in enumerate(r.candidates):
            body, title = body_and_title(c.text, c.title)
            rows.append({"qid": r.query.qid, "query": r.query.text, "docno": c.docid, "title": title, "body": body,
                         "score": c.score, "rank": rank})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.integration
@pytest.mark.parametrize("unit", ["words", "tokens"])
def test_split_is_pyterriers_sliding_and_passage_aggregation(scifact_requests, minilm, unit):
    """The same windows (texts and ``%p`` ids) and the same document scores as PyTerrier's transformers with
    the same scorer, for MaxP, FirstP and MeanP, in words and in the model's tokens."""
    import numpy as np
    import pyterrier as pt

    from rerank.methods.split import SplitReranker

    window, stride = (64, 32) if unit == "words" else (96, 48)
    tokenizer = minilm.tokenizer() if unit == "tokens" else None
    sliding = pt.text.sliding(text_attr="body", length=window, stride=stride, prepend_attr="title",
                              tokenizer=tokenizer)  # fmt: skip
    documents = _pyterrier_frame(scifact_requests)
    passages = sliding(documents)
    splitter = Splitter(window, stride, "drop", tokenizer)
    ours = {
        f"{c.docid}%p{i}": text
        for r in scifact_requests
        for c in r.candidates
        for i, text in enumerate(splitter.split(*body_and_title(c.text, c.title))[0])
    }
    assert dict(zip(passages.docno, passages.body, strict=True)) == ours
    assert len(ours) > 2 * sum(len(r.candidates) for r in scifact_requests)  # long abstracts: several windows each

    def score(frame):  # after ours has scored every window: read back from the cache
        return np.array(minilm.score_cached(list(frame["query"]), list(frame["body"]), list(frame["docno"])).scores)

    scorer = pt.apply.doc_score(score, batch_size=10_000)
    for aggregate, theirs in (("maxp", pt.text.max_passage()), ("firstp", pt.text.first_passage()),
                              ("meanp", pt.text.mean_passage())):  # fmt: skip
        split = SplitReranker(minilm, aggregate=aggregate, window=window, stride=stride, unit=unit, tail="drop")
        results = split.rerank(scifact_requests)
        got = {(r.ranking.qid, c.docid): c.score for r in results for c in r.ranking.candidates}
        reference = (sliding >> scorer >> theirs)(documents)
        expected = {(q, d): s for q, d, s in zip(reference.qid, reference.docno, reference.score, strict=True)}
        assert got.keys() == expected.keys()  # every candidate once
        if aggregate == "meanp":  # pandas' mean and math.fsum may round the last bit apart
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)
        else:
            assert got == expected
        windows = sum(r.cost.windows for r in results)
        assert windows == (len(ours) if aggregate != "firstp" else len(expected))  # FirstP scores one window


@pytest.mark.integration
def test_keeping_the_tail_adds_the_last_words_and_dropping_it_counts_them(scifact_requests, minilm):
    from rerank.methods.split import SplitReranker

    # windows short enough that the model cuts none: every truncation counted is a dropped tail
    requests = scifact_requests[:2]
    drop = SplitReranker(minilm, window=40, stride=20, tail="drop").rerank(requests)
    keep = SplitReranker(minilm, window=40, stride=20).rerank(requests)
    bodies = [body_and_title(c.text, c.title)[0] for r in requests for c in r.candidates]
    lengths = [len(re.split(r"\s+", body)) for body in bodies]  # PyTerrier's tokens
    unread = sum(n >= 40 and (n - 40) % 20 != 0 for n in lengths)
    assert unread > 0 and sum(r.cost.truncated for r in drop) == unread
    assert sum(r.cost.truncated for r in keep) == 0
    assert sum(r.cost.windows for r in keep) == sum(r.cost.windows for r in drop) + unread
    for d, k in zip(drop, keep, strict=True):  # one more window can only raise a maximum (cached: same numbers)
        before = {c.docid: c.score for c in d.ranking.candidates}
        assert all(c.score >= before[c.docid] for c in k.ranking.candidates)


@pytest.mark.integration
def test_split_from_the_cli_reads_titles_from_the_store_and_counts_windows(tmp_path, capsys, minilm_bi_encoder):
    """``rerank run`` with a split reranker: each window carries the document's title (the example collection
    has titles), the summary counts the windows, and the run equals the Python API's on the same requests."""
    from rerank.cli import main
    from rerank.registry import load_reranker

    spec = "split(inner=bi-encoder(model=minilm), window=12, stride=6)"
    out = tmp_path / "split.trec"
    assert main(["run", "--dataset", "example", "--run", "bm25", "--reranker", spec, "--output", str(out)]) == 0
    captured = capsys.readouterr()
    summary = captured.out + captured.err
    example = data.load("example")
    requests = _requests(example, "bm25")
    assert all(c.title for r in requests for c in r.candidates)
    results = load_reranker(spec).rerank(requests)
    windows = sum(r.cost.windows for r in results)
    assert f"{windows} windows" in summary and windows > sum(len(r.candidates) for r in requests)
    written = {(r.qid, c.docid): c.score for r in data.read_trec_run(out) for c in r.candidates}
    assert written == pytest.approx({(r.ranking.qid, c.docid): c.score for r in results for c in r.ranking}, abs=1e-6)
    # without titles the windows differ, so the scores do: the title did travel
    bare = [RerankRequest(r.query, tuple(Candidate(c.docid, c.score, c.text) for c in r.candidates)) for r in requests]
    untitled = load_reranker(spec).rerank(bare)
    assert [c.score for r in untitled for c in r.ranking] != [c.score for r in results for c in r.ranking]


@pytest.mark.unit
def test_split_prints_and_parses_back_and_keys_its_inner_method():
    from rerank.identity import cache_identity
    from rerank.methods.split import SplitReranker
    from rerank.registry import load_reranker, resolve_spec

    spec = resolve_spec('split(inner="llm-pointwise(model=sort, backend=scripted)", aggregate=sump, window=20, '
                        "stride=10)")  # fmt: skip
    assert resolve_spec(str(spec)) == spec
    reranker = load_reranker(spec)
    assert isinstance(reranker, SplitReranker) and str(reranker.spec) == str(spec)
    other = load_reranker(str(spec).replace("window=20", "window=21"))
    assert json.dumps(cache_identity(reranker), sort_keys=True) != json.dumps(cache_identity(other), sort_keys=True)
    # a reranker object as the inner method prints as its spec
    assert str(SplitReranker(reranker.inner, window=20, stride=10).spec).startswith("split(aggregate=maxp, inner=")


@pytest.mark.unit
def test_a_failed_model_call_fails_the_batch_whole_and_a_retry_ranks_every_candidate_once():
    """A scorer error reaches the caller whole (nothing aggregated from a partial batch); the next call works."""
    from rerank.base import PairScores, PointwiseReranker
    from rerank.methods.split import SplitReranker

    class Flaky(PointwiseReranker):
        method = "flaky"
        calls = 0

        def score_pairs(self, queries, texts, docids=()):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("the model failed")
            return PairScores([float(len(t)) for t in texts], [1] * len(texts), [False] * len(texts), 1)

    request = RerankRequest(
        Query("q", "x"), (Candidate("a", 0.0, "one two three four five"), Candidate("b", 0.0, "six"))
    )
    split = SplitReranker(Flaky(), window=2, stride=1)
    with pytest.raises(RuntimeError, match="the model failed"):
        split.rerank([request])
    (result,) = split.rerank([request])
    assert sorted(c.docid for c in result.ranking) == ["a", "b"] and result.cost.windows == 5
    assert result.ranking.candidates[0].score == max(
        len(w) for w in ("one two", "two three", "three four", "four five")
    )
    assert math.isclose(result.ranking.candidates[1].score, 3.0)


@pytest.mark.unit
def test_the_service_refuses_passages_for_a_pipeline_that_does_not_score_documents_one_by_one():
    import asyncio

    from rerank.serve.api import Passages
    from rerank.serve.app import APIError, ServeSettings, Service
    from rerank.serve.batcher import BatchLimits

    service = Service(lambda requests: [], ServeSettings("listwise(model=sort, backend=scripted)", BatchLimits()))
    with pytest.raises(APIError, match="does not score each document on its own") as refused:
        asyncio.run(service.rank("q", ["a b c"], passages=Passages(window=2, stride=1)))
    assert refused.value.status == 422 and refused.value.field == "passages"


INNER = {
    "cross-encoder": 'cross-encoder(model="{cross_encoder}", max_length=64)',
    "mono-t5": 'mono-t5(model="{t5}", max_length=64)',
    "colbert": 'colbert(model="{colbert}")',
    "llm-pointwise": "llm-pointwise(model=sort, backend=scripted)",
}


@pytest.mark.integration
@pytest.mark.parametrize("method", sorted(INNER))
def test_split_runs_over_every_pointwise_method_and_knows_its_limit(method, request):
    """MaxP over any pointwise method is the best of that method's scores of the windows, and a window over
    what the method reads of a document is refused."""
    from data.errors import InvalidSpecError
    from rerank.methods.split import SplitReranker
    from rerank.registry import load_reranker

    dirs = {name: request.getfixturevalue(f"{name}_dir") if f"{{{name}}}" in INNER[method] else ""
            for name in ("cross_encoder", "t5", "colbert")}  # fmt: skip
    inner = load_reranker(INNER[method].format(**dirs))
    split = SplitReranker(inner, window=6, stride=3)
    text = "tides rise and fall twice a day because the moon pulls the oceans while the earth turns"
    query = Query("q", "what causes tides")
    (result,) = split.rerank([RerankRequest(query, (Candidate("long", 0.0, text), Candidate("short", 0.0, "tides")))])
    windows = Splitter(6, 3).split(text)[0]
    (alone,) = inner.rerank([RerankRequest(query, tuple(Candidate(f"w{i}", 0.0, w) for i, w in enumerate(windows)))])
    scores = {c.docid: c.score for c in result.ranking}
    assert scores["long"] == pytest.approx(max(c.score for c in alone.ranking), abs=1e-5)
    assert result.cost.windows == len(windows) + 1
    limit, _ = inner.document_limit()
    with pytest.raises(InvalidSpecError, match=rf"window={limit + 1} words is more than {method} reads"):
        SplitReranker(inner, window=limit + 1, stride=1)


@pytest.mark.unit
def test_titles_travel_to_ray_workers_and_through_llm_methods():
    """A batch sent to a Ray worker keeps each candidate's title (a split stage there cuts the same windows as
    here), and so does an LLM method's output (a split stage after it still finds the title)."""
    from rerank.methods.llm_common import ranked_results
    from rerank.ray_engine import pack_items, unpack_items

    request = RerankRequest(Query("q", "x"), (Candidate("a", 1.0, "Title body", "Title"), Candidate("b", 0.5, "c")))
    (back,) = unpack_items(pack_items([request]))
    assert [c.title for c in back.candidates] == ["Title", None]
    (result,) = ranked_results([request], [[1, 0]], [Cost()], 0.0)
    assert {c.docid: c.title for c in result.ranking} == {"a": "Title", "b": None}
