"""`rerank serve`: a real server on loopback, called with the Cohere SDK, httpx and remote(...)."""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import SERVE_KEY
from serving import Served

import data
from rerank.cli import main

pytestmark = pytest.mark.integration

httpx = pytest.importorskip("httpx")
DL19 = "msmarco-passage/trec-dl-2019"
AUTH = {"Authorization": f"Bearer {SERVE_KEY}"}


def run_scores(tmp_path: Path, *args: str) -> dict[tuple[str, str], float]:
    out = tmp_path / f"run-{len(list(tmp_path.iterdir()))}.trec"
    code = main(["run", "--dataset", DL19, "--max-queries", "3", *args, "--output", str(out)])
    assert code == 0
    return {(r.qid, c.docid): c.score for r in data.read_trec_run(out) for c in r.candidates}


def first_requests(dl19, n: int, depth: int):
    return [(r.query, r.candidates[:depth]) for r in dl19.candidates("bm25")[:n]]


@pytest.mark.slow
def test_cohere_sdk_httpx_and_remote_give_the_scores_rerank_run_writes(minilm_server, dl19, tmp_path):
    cohere = pytest.importorskip("cohere")
    expected = run_scores(tmp_path, "--run", "bm25", "--top-k", "10", "--reranker", "bi-encoder(model=minilm)")
    client = cohere.ClientV2(api_key=SERVE_KEY, base_url=minilm_server)
    http = httpx.Client(base_url=minilm_server, headers=AUTH)
    queries = first_requests(dl19, 3, 10)
    assert {(q.qid, c.docid) for q, cands in queries for c in cands} == set(expected)
    for query, candidates in queries:
        texts = [c.text for c in candidates]
        want = [expected[(query.qid, c.docid)] for c in candidates]
        answer = client.rerank(model="minilm", query=query.text, documents=texts, top_n=len(texts))
        got = {r.index: r.relevance_score for r in answer.results}
        assert [got[i] for i in range(len(texts))] == pytest.approx(want, abs=1e-6)
        assert [r.relevance_score for r in answer.results] == sorted(got.values(), reverse=True)
        old_sdk = cohere.Client(api_key=SERVE_KEY, base_url=minilm_server).rerank(
            model="minilm", query=query.text, documents=texts, return_documents=True
        )  # the v1 API, documents returned
        assert {r.index: r.relevance_score for r in old_sdk.results} == pytest.approx(got, abs=1e-9)
        assert all(r.document.text == texts[r.index] for r in old_sdk.results)
        v1 = http.post("/v1/rerank", json={"query": query.text, "documents": texts, "return_documents": True}).json()
        assert {r["index"]: r["relevance_score"] for r in v1["results"]} == pytest.approx(got, abs=1e-9)
        assert all(r["document"] == {"text": texts[r["index"]]} for r in v1["results"])
        assert v1["usage"]["total_tokens"] > 0
        tei = http.post("/rerank", json={"query": query.text, "texts": texts, "raw_scores": True, "top_n": 3}).json()
        assert [t["index"] for t in tei] == [r.index for r in answer.results[:3]]
        assert [t["score"] for t in tei] == pytest.approx([r.relevance_score for r in answer.results[:3]], abs=1e-9)
    # remote(...) in a `rerank run`: the service's scores, written as a run
    remote = run_scores(tmp_path, "--run", "bm25", "--top-k", "10", "--reranker", f'remote(base_url="{minilm_server}")')
    assert remote.keys() == expected.keys()
    assert all(remote[key] == pytest.approx(expected[key], abs=1e-6) for key in expected)


@pytest.mark.slow
def test_a_served_pipeline_ending_in_the_cross_encoder_matches_rerank_run(cross_encoder_dir, dl19, tmp_path):
    stages = f'bi-encoder(model=minilm) % 5 >> cross-encoder(model="{cross_encoder_dir}", max_length=128)'
    expected = run_scores(tmp_path, "--pipeline", f"run(name=bm25) % 10 >> {stages}")
    served = Served("--pipeline", stages)
    try:
        url = served.wait_listening()
        for query, candidates in first_requests(dl19, 3, 10):
            texts = [c.text for c in candidates]
            answer = httpx.post(f"{url}/v2/rerank", json={"query": query.text, "documents": texts}).json()
            got = {candidates[r["index"]].docid: r["relevance_score"] for r in answer["results"]}
            want = {docid: s for (qid, docid), s in expected.items() if qid == query.qid}
            assert got.keys() == want.keys() and len(got) == 5  # the pipeline keeps the bi-encoder's top 5
            assert all(got[d] == pytest.approx(want[d], abs=1e-6) for d in want)
        info = httpx.get(f"{url}/info").json()
        assert info["spec"].startswith("bi-encoder(model=minilm) % 5 >> cross-encoder(")
        assert [len(stage["models"]) for stage in info["stages"]] == [1, 1]
    finally:
        assert served.stop() == 0


@pytest.mark.slow
def test_32_concurrent_clients_each_get_their_own_results(minilm_server, minilm_bi_encoder, dl19):
    requests = [r for r in dl19.candidates("bm25")[:32]]
    expected = {r.query.qid: {c.docid: c.score for c in minilm_bi_encoder.rerank([r])[0].ranking.candidates}
                for r in [type(r)(r.query, r.candidates[:8]) for r in requests]}  # fmt: skip
    before = metric(minilm_server, "rerank_batch_requests_count")
    start = threading.Barrier(len(requests))

    def call(request):
        candidates = request.candidates[:8]
        with httpx.Client(base_url=minilm_server, headers=AUTH, timeout=300) as http:
            start.wait()
            body = {"query": request.query.text, "documents": [c.text for c in candidates]}
            answer = http.post("/v2/rerank", json=body).json()
        return request.query.qid, {candidates[r["index"]].docid: r["relevance_score"] for r in answer["results"]}

    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(call, requests))
    for qid, scores in answers:
        assert scores.keys() == expected[qid].keys()
        assert all(scores[d] == pytest.approx(expected[qid][d], abs=1e-5) for d in scores)
    batches = metric(minilm_server, "rerank_batch_requests_count") - before
    assert batches < len(requests)  # requests were coalesced into shared model calls


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_truncation_is_reported_and_max_tokens_per_doc_cuts(minilm_server):
    long = " ".join(["sky"] * 600)
    answer = httpx.post(f"{minilm_server}/v2/rerank", headers=AUTH,
                        json={"query": "blue sky", "documents": [long, "a short one"]})  # fmt: skip
    assert answer.status_code == 200 and answer.headers["X-Rerank-Truncated"] == "1"
    assert "truncated" in answer.json()["meta"]["warnings"][0]
    cut = httpx.post(f"{minilm_server}/v2/rerank", headers=AUTH,
                     json={"query": "blue sky", "documents": [long], "max_tokens_per_doc": 4}).json()  # fmt: skip
    short = httpx.post(f"{minilm_server}/v2/rerank", headers=AUTH,
                       json={"query": "blue sky", "documents": ["sky sky sky sky"]}).json()  # fmt: skip
    assert cut["results"][0]["relevance_score"] == pytest.approx(short["results"][0]["relevance_score"], abs=1e-6)
    assert "warnings" not in cut["meta"]


def test_passages_split_long_documents_as_the_split_method_does(minilm_server, minilm_bi_encoder):
    """``passages`` on every wire format gives the scores of ``split`` over the served model, counts the
    windows the model cut or left out, and Cohere v1's ``max_chunks_per_doc`` is MaxP over that many windows."""
    from data.records import Candidate, Query, RerankRequest
    from rerank.methods.split import SplitReranker

    words = ["sky", "blue", "clouds", "rain", "storm", "sun", "wind", "night", "stars", "moon"]
    documents = [" ".join(words[i % 10] for i in range(k, k + 90)) for k in range(3)] + ["the sky is blue"]
    query = "when is the sky blue"
    request = RerankRequest(Query("q", query), tuple(Candidate(str(i), 0.0, d) for i, d in enumerate(documents)))

    def expected(**options):
        (result,) = SplitReranker(minilm_bi_encoder, **options).rerank([request])
        return {int(c.docid): c.score for c in result.ranking}, result.cost.truncated

    passages = {"aggregate": "meanp", "window": 20, "stride": 10}
    scores, _ = expected(aggregate="meanp", window=20, stride=10)
    v2 = httpx.post(f"{minilm_server}/v2/rerank", headers=AUTH,
                    json={"query": query, "documents": documents, "passages": passages}).json()  # fmt: skip
    tei = httpx.post(f"{minilm_server}/rerank", headers=AUTH,
                     json={"query": query, "texts": documents, "passages": passages, "raw_scores": True}).json()  # fmt: skip
    assert {r["index"]: r["relevance_score"] for r in v2["results"]} == pytest.approx(scores, abs=1e-6)
    assert {r["index"]: r["score"] for r in tei} == pytest.approx(scores, abs=1e-6)
    # max_chunks_per_doc=2: each document's first two windows, the best of them; the rest counted as cut
    scores, cut = expected(window=20, stride=10, max_windows=2)
    v1 = httpx.post(
        f"{minilm_server}/v1/rerank",
        headers=AUTH,
        json={
            "query": query,
            "documents": documents,
            "max_chunks_per_doc": 2,
            "passages": {"window": 20, "stride": 10},
        },
    )
    assert {r["index"]: r["relevance_score"] for r in v1.json()["results"]} == pytest.approx(scores, abs=1e-6)
    assert cut == 3 and v1.headers["X-Rerank-Truncated"] == "3"


BAD_REQUESTS = [
    # (name, method, route, body or raw bytes, headers, status, field)
    ("missing query", "POST", "/v2/rerank", {"documents": ["a"]}, AUTH, 422, "query"),
    ("blank query", "POST", "/v2/rerank", {"query": "  ", "documents": ["a"]}, AUTH, 422, "query"),
    ("query not a string", "POST", "/v1/rerank", {"query": 3, "documents": ["a"]}, AUTH, 422, "query"),
    ("no documents", "POST", "/v2/rerank", {"query": "q"}, AUTH, 422, "documents"),
    ("empty documents", "POST", "/v2/rerank", {"query": "q", "documents": []}, AUTH, 422, "documents"),
    ("a number as a document", "POST", "/v2/rerank", {"query": "q", "documents": ["a", 3]}, AUTH, 422, "documents.1"),
    ("documents a string", "POST", "/v1/rerank", {"query": "q", "documents": "abc"}, AUTH, 422, "documents"),
    ("object without text", "POST", "/v1/rerank", {"query": "q", "documents": [{"title": "t"}]}, AUTH, 422, "documents.0"),
    ("top_n zero", "POST", "/v2/rerank", {"query": "q", "documents": ["a"], "top_n": 0}, AUTH, 422, "top_n"),
    ("top_n a word", "POST", "/v1/rerank", {"query": "q", "documents": ["a"], "top_n": "x"}, AUTH, 422, "top_n"),
    ("tei without texts", "POST", "/rerank", {"query": "q"}, AUTH, 422, "texts"),
    ("tei empty texts", "POST", "/rerank", {"query": "q", "texts": []}, AUTH, 422, "texts"),
    ("too many documents", "POST", "/v2/rerank", {"query": "q", "documents": ["a"] * 51}, AUTH, 413, "documents"),
    ("oversized body", "POST", "/v2/rerank", {"query": "q", "documents": ["a" * 60_000] * 2}, AUTH, 413, "body"),
    ("invalid JSON", "POST", "/v2/rerank", b'{"query": "q", "documents": [', AUTH, 400, None),
    ("a JSON list", "POST", "/v2/rerank", [1, 2], AUTH, 422, "body"),
    ("no key", "POST", "/v2/rerank", {"query": "q", "documents": ["a"]}, {}, 401, "Authorization"),
    ("wrong key", "POST", "/v2/rerank", {"query": "q", "documents": ["a"]}, {"Authorization": "Bearer no"}, 401, "Authorization"),
    ("info without a key", "GET", "/info", None, {}, 401, "Authorization"),
    ("unknown route", "POST", "/v3/rerank", {"query": "q", "documents": ["a"]}, AUTH, 404, None),
    ("wrong method", "GET", "/v2/rerank", None, AUTH, 405, None),
    ("tei too many texts", "POST", "/rerank", {"query": "q", "texts": ["a"] * 51}, AUTH, 413, "texts"),
    ("docs without a key", "GET", "/docs", None, {}, 401, "Authorization"),
    ("passages stride over window", "POST", "/v2/rerank", {"query": "q", "documents": ["a"], "passages": {"window": 5, "stride": 9}}, AUTH, 422, "passages"),
    ("passages unknown aggregation", "POST", "/v2/rerank", {"query": "q", "documents": ["a"], "passages": {"aggregate": "kmax"}}, AUTH, 422, "passages.aggregate"),
    ("passages window over the model's", "POST", "/rerank", {"query": "q", "texts": ["a"], "passages": {"window": 400, "stride": 200}}, AUTH, 422, "passages"),
    ("passages and max_tokens_per_doc", "POST", "/v2/rerank", {"query": "q", "documents": ["a"], "passages": {}, "max_tokens_per_doc": 5}, AUTH, 422, "passages"),
    ("passages unknown field", "POST", "/v2/rerank", {"query": "q", "documents": ["a"], "passages": {"windw": 5}}, AUTH, 422, "passages.windw"),
    ("openapi without a key", "GET", "/openapi.json", None, {}, 401, "Authorization"),
    ("a form body", "POST", "/v2/rerank", b"query=q&documents=a", {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type"),
    ("no content type", "POST", "/v2/rerank", b'{"query": "q", "documents": ["a"]}', {**AUTH, "Content-Type": ""}, 415, "Content-Type"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_a_bad_request_gets_its_documented_status_and_names_the_field(minilm_server, case):
    _, method, route, body, headers, status, field = case
    content = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    answer = httpx.request(method, f"{minilm_server}{route}", content=content,
                           headers={"Content-Type": "application/json", **headers})  # fmt: skip
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert error["field"] == field and error["message"] and "Traceback" not in answer.text


def test_health_ready_metrics_and_openapi(minilm_server):
    assert httpx.get(f"{minilm_server}/health").json() == {"status": "ok"}
    assert httpx.get(f"{minilm_server}/ready").json()["status"] == "ready"
    # the server has a key: the API's description is behind it
    assert "/v2/rerank" in httpx.get(f"{minilm_server}/openapi.json", headers=AUTH).json()["paths"]
    assert httpx.get(f"{minilm_server}/docs", headers=AUTH).status_code == 200
    text = httpx.get(f"{minilm_server}/metrics").text
    for name in ("rerank_requests_total", "rerank_request_seconds_bucket", "rerank_batch_pairs_bucket",
                 "rerank_queue_depth", "rerank_pairs_total", "rerank_input_tokens_total"):  # fmt: skip
        assert name in text


def wait_until(url: str, condition) -> None:
    """Polls /ready until the server reports the state a test waits for (progress, not time)."""
    while not condition(httpx.get(f"{url}/ready").json()):
        threading.Event().wait(0.02)


@contextmanager
def gated_server(gate: Path, *flags: str, params: str = "", closed: bool = True):
    """A served GatedReranker (closed: the gate file exists, so the model waits); it must stop with exit 0."""
    if closed:
        gate.touch()
    served = Served("--reranker", f'gated(gate="{gate}"{params})', *flags, gated=True)
    served.wait_listening()
    try:
        yield served
    finally:
        assert served.stop() == 0


def test_a_model_that_cannot_answer_is_never_served(tmp_path):
    # The warm-up request fails before the port opens: one line, exit 6 (UNAVAILABLE), never a ready server.
    fail = tmp_path / "fail"
    fail.touch()
    served = Served("--reranker", f'gated(gate="{tmp_path / "open"}", fail="{fail}")', gated=True)
    with pytest.raises(RuntimeError, match="did not start"):
        served.wait_listening()
    assert served.stop() == 6
    assert "the warm-up request failed, so nothing is served: the gated model is told to fail" in served.log
    assert "Traceback" not in served.log


def test_ready_tells_the_truth_while_the_model_fails(tmp_path):
    fail = tmp_path / "fail"
    body = {"query": "q", "texts": ["a", "bb"]}
    with gated_server(tmp_path / "open", params=f', fail="{fail}"', closed=False) as served:
        url = served.url
        assert httpx.get(f"{url}/ready").status_code == 200  # the warm-up answered before the port opened
        fail.touch()
        failed = httpx.post(f"{url}/rerank", json=body)
        assert failed.status_code == 503 and "told to fail" in failed.json()["message"]
        ready = httpx.get(f"{url}/ready")
        assert ready.status_code == 503 and ready.json()["message"].startswith("the model's last batch failed")
        fail.unlink()
        assert [r["index"] for r in httpx.post(f"{url}/rerank", json=body).json()] == [1, 0]
        assert httpx.get(f"{url}/ready").status_code == 200


def test_a_served_concatenation_reranks_the_top_and_keeps_the_tail(tmp_path):
    # the gated model scores by length: its top 2 go to random(seed=1), the others follow in its order
    gated = f'gated(gate="{tmp_path / "open"}")'
    served = Served("--pipeline", f"({gated} % 2 >> random(seed=1)) ^ {gated}", gated=True)
    served.wait_listening()
    try:
        texts = ["a" * n for n in (3, 9, 1, 7, 5, 2)]
        answer = httpx.post(f"{served.url}/rerank", json={"query": "q", "texts": texts}, timeout=300).json()
        order = [item["index"] for item in answer]
        assert sorted(order[:2]) == [1, 3] and order[2:] == [4, 0, 5, 2]
        scores = [item["score"] for item in answer]
        assert scores == sorted(scores, reverse=True)
        info = httpx.get(f"{served.url}/info").json()
        assert [s["spec"] for s in info["stages"]][-1].startswith("gated(") and len(info["stages"]) == 3
    finally:
        assert served.stop() == 0


def test_a_full_queue_answers_429_with_retry_after(tmp_path):
    gate = tmp_path / "gate"
    with gated_server(gate, "--max-queue", "1") as served, ThreadPoolExecutor(2) as pool:
        url = served.url
        body = {"query": "q", "documents": ["a", "bbb", "cc"]}
        first = pool.submit(httpx.post, f"{url}/v2/rerank", json=body, timeout=300)
        wait_until(url, lambda r: r["in_flight"] == 1)
        second = pool.submit(httpx.post, f"{url}/v2/rerank", json=body, timeout=300)
        wait_until(url, lambda r: r["queue_depth"] == 1)
        refused = httpx.post(f"{url}/v2/rerank", json=body)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        assert refused.json()["message"].startswith("the server is busy")
        gate.unlink()
        for answer in (first.result(), second.result()):
            assert [r["index"] for r in answer.json()["results"]] == [1, 2, 0]


@pytest.mark.slow
def test_a_request_that_would_outwait_its_timeout_gets_429_at_once(tmp_path):
    # A model of 20 pairs/s at most and a 2 s timeout: 30 pairs in flight and 30 more would wait ~3 s.
    gate = tmp_path / "open"
    with gated_server(gate, "--request-timeout", "2", params=", seconds_per_pair=0.05", closed=False) as served:
        url = served.url
        assert httpx.post(f"{url}/rerank", json={"query": "q", "texts": ["a"] * 10}, timeout=300).status_code == 200
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(httpx.post, f"{url}/rerank", json={"query": "q", "texts": ["a"] * 30}, timeout=300)
            wait_until(url, lambda r: r["in_flight"] == 1)
            refused = httpx.post(f"{url}/rerank", json={"query": "q", "texts": ["b"] * 30}, timeout=300)
            assert refused.status_code == 429 and "request timeout" in refused.json()["message"]
            assert int(refused.headers["Retry-After"]) >= 1
            assert first.result().status_code == 200


def test_a_request_over_its_timeout_gets_504(tmp_path):
    gate = tmp_path / "gate"
    with gated_server(gate, "--request-timeout", "0.5") as served:
        url = served.url
        answer = httpx.post(f"{url}/rerank", json={"query": "q", "texts": ["a"]}, timeout=300)
        assert answer.status_code == 504 and "0.5 s" in answer.json()["message"]
        gate.unlink()
        assert httpx.post(f"{url}/rerank", json={"query": "q", "texts": ["a"]}, timeout=300).status_code == 200


def test_sigterm_under_load_answers_every_accepted_request_once(tmp_path):
    gate = tmp_path / "gate"
    with gated_server(gate, "--max-queue", "64") as served:
        url = served.url
        sent = 20
        bodies = [{"query": f"q{i}", "documents": ["y" * 5, "x" * (i + 1)]} for i in range(sent)]
        with ThreadPoolExecutor(sent) as pool:
            futures = [pool.submit(httpx.post, f"{url}/v2/rerank", json=b, timeout=300) for b in bodies]
            wait_until(url, lambda r: r["queue_depth"] + r["in_flight"] == sent)
            served.process.send_signal(signal.SIGTERM)
            # Stopping: no new connection is accepted (the listening socket closes first)
            host, port = url.removeprefix("http://").rsplit(":", 1)
            while True:
                try:
                    socket.create_connection((host, int(port)), timeout=5).close()
                except OSError:
                    break
                threading.Event().wait(0.02)
            gate.unlink()
            answers = [f.result() for f in futures]
        assert served.stop() == 0
        assert [a.status_code for a in answers] == [200] * sent
        # each its own answer: the gated model scores a document by its length
        for i, answer in enumerate(answers):
            assert {r["index"]: r["relevance_score"] for r in answer.json()["results"]} == {0: 5.0, 1: float(i + 1)}
        assert f"answered {sent} of {sent} accepted requests" in served.log


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--reranker", "bi-encoder(model=minilm"], 3, "expected"),
        (["--reranker", "no-such-method"], 3, "no-such-method"),
        (["--reranker", "bi-encoder(batch=3)"], 3, "batch"),
        (["--reranker", "bi-encoder(model=./no/such/dir)"], 5, "no/such/dir"),
        (["--pipeline", "bm25 % 10 >> bi-encoder(model=minilm)"], 3, "every stage is a reranking method"),
        (["--reranker", "bi-encoder(model=minilm)", "--api-key-env", "RERANK_NO_SUCH_VARIABLE"], 3, "--api-key-env"),
        (["--reranker", "bi-encoder(model=minilm)", "--max-batch-pairs", "0"], 3, "max_batch_pairs"),
        (["--reranker", "bi-encoder(model=minilm, batch_size=0)"], 3, "batch_size must be at least 1, not 0"),
        ([], 2, "give one of"),
    ],
)
def test_serve_refuses_to_start_with_one_line(capsys, args, code, message):
    assert main(["serve", *args, "--port", "0"]) == code
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_serve_refuses_a_port_in_use(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--reranker", "bi-encoder(model=minilm)", "--port", str(port)]) == 3
    err = capsys.readouterr().err.strip()
    assert f"--port {port}" in err and "in use" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_a_schema_fuzz_gets_no_500_and_ready_tells_the_truth(tmp_path):
    """Schemathesis drives every operation of the server's own OpenAPI with valid and invalid requests, first
    with a model that answers, then with one that fails every call (a model server gone): never a 500, the
    server stays up, and ``/ready`` says which of the two it is."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    fail = tmp_path / "fail"
    with gated_server(tmp_path / "open", "--max-documents", "20", params=f', fail="{fail}"', closed=False) as served:
        url = served.url
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        seen: list[tuple[str, int]] = []

        def fuzz(mode: schemathesis.GenerationMode) -> None:
            @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
            @given(schema.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                response = case.call(base_url=url, timeout=60)
                assert response.status_code < 500 or response.status_code == 503, (case, response.text)
                if response.status_code >= 400:  # always the documented body, never a traceback
                    assert set(response.json()) == {"message", "field"}, response.text
                seen.append((case.method, response.status_code))

            check()

        for broken in (False, True):
            if broken:
                fail.touch()
            seen.clear()
            for mode in schemathesis.GenerationMode:
                fuzz(mode)
            codes = {method: {code for m, code in seen if m == method} for method in ("GET", "POST")}
            assert 200 in codes["GET"] and any(400 <= code < 500 for code in codes["POST"]), codes
            # valid rerank requests: answered by a model that answers, 503 (never 500) from one that fails
            assert (200 in codes["POST"]) != broken and (503 in codes["POST"]) == broken, codes
            assert served.process.poll() is None and httpx.get(f"{url}/health").status_code == 200
            assert httpx.get(f"{url}/ready").status_code == (503 if broken else 200)
