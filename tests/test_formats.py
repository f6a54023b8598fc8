"""Topics, BEIR folders, JSONL candidates and RankLLM JSON."""

import gzip
import json
from pathlib import Path

import pytest

from data import (
    Candidate,
    ParseError,
    Query,
    RerankRequest,
    read_candidates_jsonl,
    read_rankllm_requests,
    read_topics,
    write_candidates_jsonl,
    write_rankllm_requests,
    write_topics,
)
from data.beir import iter_beir_corpus, read_beir_qrels


@pytest.mark.unit
def test_topics_round_trip_and_errors(tmp_path):
    queries = [Query("1", "what is a qrel"), Query("b7", "ünïcode query")]
    write_topics(queries, tmp_path / "t.tsv")
    assert read_topics(tmp_path / "t.tsv") == queries
    (tmp_path / "bad.tsv").write_text("1\tok\n2 no tab here\n")
    with pytest.raises(ParseError, match=r"bad.tsv:2: expected 'query id<TAB>text'"):
        read_topics(tmp_path / "bad.tsv")
    (tmp_path / "dup.tsv").write_text("1\tok\n1\tagain\n")
    with pytest.raises(ParseError, match=r"dup.tsv:2: duplicate query id '1' \(first on line 1\)"):
        read_topics(tmp_path / "dup.tsv")


@pytest.mark.unit
def test_beir_corpus_and_qrels_errors(tmp_path):
    corpus = tmp_path / "corpus.jsonl.gz"
    corpus.write_bytes(
        gzip.compress(b'{"_id": "1", "title": "T", "text": "x"}\n{"_id": "2", "text": "y"}\n{"_id": 3\n')
    )
    docs = iter_beir_corpus(corpus)
    assert next(docs).title == "T"
    assert next(docs).title == ""
    with pytest.raises(ParseError, match=r"corpus.jsonl.gz:3: invalid JSON"):
        next(docs)
    (tmp_path / "q.tsv").write_text("query-id\tcorpus-id\tscore\n1\t2\t1\n1\t3\n")
    with pytest.raises(ParseError, match=r"q.tsv:3: expected 3 tab-separated columns"):
        read_beir_qrels(tmp_path / "q.tsv")
    (tmp_path / "ids.jsonl").write_text('{"_id": "", "text": "x"}\n')
    with pytest.raises(ParseError, match=r"ids.jsonl:1: '_id' is empty"):
        list(iter_beir_corpus(tmp_path / "ids.jsonl"))


@pytest.mark.unit
def test_candidates_jsonl_round_trip_and_errors(tmp_path):
    requests = [
        RerankRequest(Query("q1", "text"), (Candidate("a", 2.0, "alpha"), Candidate("b", 1.0))),
        RerankRequest(Query("q2", "empty"), ()),
    ]
    write_candidates_jsonl(requests, tmp_path / "c.jsonl")
    assert read_candidates_jsonl(tmp_path / "c.jsonl") == requests
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qid": "q", "query": "x", "candidates": [{"docid": "a", "score": "high"}]}\n')
    with pytest.raises(ParseError, match=r"bad.jsonl:1: candidate 0: expected a finite number for 'score'"):
        read_candidates_jsonl(bad)


@pytest.mark.integration
def test_dl19_rankllm_json_round_trips(dl19, tmp_path):
    source = dl19.root / "runs" / "bm25.top100.rankllm.json.gz"
    first = read_rankllm_requests(source)
    assert len(first) == 43 and all(len(r.candidates) == 100 for r in first)
    assert all(c.text for r in first for c in r.candidates)
    write_rankllm_requests(first, tmp_path / "copy.json")
    assert read_rankllm_requests(tmp_path / "copy.json") == first
    # the candidates are the TREC run's, in its order
    run = dl19.run("bm25")
    assert [c.docid for c in first[0].candidates] == run[first[0].query.qid].docids


@pytest.mark.unit
def test_rankllm_errors_name_the_request_line(tmp_path):
    rows = [
        {"query": "q", "hits": [{"qid": 1, "docid": "a", "rank": 1, "score": 1.0, "content": "x"}]},
        {"query": "r", "hits": [{"qid": 2, "docid": "b", "rank": 1, "content": "y"}]},
    ]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(rows, indent=2))
    second_line = path.read_text().splitlines().index("  {", 2) + 1
    with pytest.raises(ParseError) as err:
        read_rankllm_requests(path)
    assert err.value.line == second_line
    assert "hit 0: expected a finite number for 'score'" in str(err.value)
    (tmp_path / "trunc.json").write_text('[{"query": "q", "hits": []')
    with pytest.raises(ParseError, match=r"trunc.json:1"):
        read_rankllm_requests(tmp_path / "trunc.json")


@pytest.mark.unit
def test_rankllm_request_without_hits_keeps_its_qid(tmp_path):
    requests = [RerankRequest(Query("7", "q"), ())]
    write_rankllm_requests(requests, tmp_path / "r.json")
    assert read_rankllm_requests(tmp_path / "r.json") == requests


@pytest.mark.unit
def test_readers_accept_paths_as_strings(tmp_path):
    write_topics([Query("1", "x")], tmp_path / "t.tsv")
    assert read_topics(str(Path(tmp_path / "t.tsv"))) == [Query("1", "x")]
