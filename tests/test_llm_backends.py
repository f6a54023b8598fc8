"""The llama.cpp and OpenAI-compatible backends, and the generation cache, on the real smollm2-135m pack.

The OpenAI backend talks to llama.cpp's own OpenAI-compatible server, started
on loopback by the fixture: the same engine and weights, so its answers must
match the in-process llama.cpp backend's.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import free_port

from rerank import load_reranker
from rerank.cache import OutputCache
from rerank.llm.backend import BackendError, load_backend
from rerank.testing import assert_permutation, sample_requests

pytest.importorskip("llama_cpp")

CONVERSATIONS = [
    [{"role": "user", "content": "Is Paris the capital of France? Answer Yes or No."}],
    [{"role": "user", "content": "Is the moon made of cheese? Answer Yes or No."}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Is water wet? Yes or No."}],
]


@pytest.fixture(scope="module")
def llama():
    return load_backend("llama.cpp(n_ctx=2048, threads=2)", "smollm2-135m")


@pytest.mark.integration
def test_next_token_scores_are_the_same_with_and_without_a_reused_prefix(llama):
    scores = [llama.next_token_scores([c], ["Yes", "No"])[0] for c in CONVERSATIONS]
    # Again in another order: the KV cache now holds other prompts' prefixes.
    again = [llama.next_token_scores([c], ["Yes", "No"])[0] for c in reversed(CONVERSATIONS)][::-1]
    for a, b in zip(scores, again, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
        assert a.input_tokens == b.input_tokens
    assert all(v < 0 for s in scores for v in s.logprobs.values())  # log-probabilities
    assert scores[0].logprobs != scores[1].logprobs


@pytest.mark.integration
def test_prefix_moves_the_scored_position(llama):
    plain = llama.next_token_scores(CONVERSATIONS[:1], ["A", "B"])[0]
    opened = llama.next_token_scores(CONVERSATIONS[:1], ["A", "B"], prefix="[")[0]
    assert opened.input_tokens == plain.input_tokens + 1
    assert opened.logprobs != plain.logprobs


@pytest.mark.integration
def test_read_at_scores_after_the_greedy_tokens(llama):
    """``read_at=1`` reads where the prompt plus the model's own first token would be read, and the first
    token may not end the answer; ``top`` leaves labels outside the top tokens missing, below the rest."""
    (first,) = llama.generate(CONVERSATIONS[:1], max_new_tokens=1, min_new_tokens=1)
    (two,) = llama.generate(CONVERSATIONS[:1], max_new_tokens=2, min_new_tokens=2)
    labels = [two.text[len(first.text) :], "No", "A", "The"]  # the model's second token is one of them
    (after,) = llama.next_token_scores(CONVERSATIONS[:1], labels, prefix=first.text)
    (read,) = llama.next_token_scores(CONVERSATIONS[:1], labels, read_at=1)
    (here,) = llama.next_token_scores(CONVERSATIONS[:1], labels)
    assert read.logprobs == pytest.approx(after.logprobs, abs=1e-4)
    assert read.logprobs != here.logprobs and read.missing == 0
    (cut,) = llama.next_token_scores(CONVERSATIONS[:1], labels, read_at=1, top=2)
    outside = [label for label in labels if cut.logprobs[label] != read.logprobs[label]]
    inside = [label for label in labels if label not in outside]
    assert 2 <= len(outside) == cut.missing < len(labels) and len({cut.logprobs[label] for label in outside}) == 1
    assert max(cut.logprobs[label] for label in outside) < min(read.logprobs[label] for label in inside)


@pytest.mark.integration
def test_generation_is_greedy_and_counted(llama):
    first, second = llama.generate([CONVERSATIONS[0], CONVERSATIONS[0]], max_new_tokens=8)
    assert first.text == second.text and first.text.strip()
    assert 0 < first.output_tokens <= 8
    assert first.input_tokens == llama.count_tokens(llama.render(CONVERSATIONS[0]))


@pytest.mark.integration
def test_multi_token_labels_are_refused(llama):
    assert llama.single_token("A") and not llama.single_token("Absolutely-not-a-token")
    with pytest.raises(ValueError, match="single tokens"):
        llama.next_token_scores(CONVERSATIONS[:1], ["Absolutely-not-a-token"])


@pytest.mark.integration
def test_chat_template_comes_from_the_gguf(llama):
    rendered = llama.render(CONVERSATIONS[0])
    assert "<|im_start|>user" in rendered and rendered.rstrip().endswith("<|im_start|>assistant")


@pytest.mark.unit
def test_unknown_backend_and_bad_options_are_spec_errors():
    from data.errors import InvalidSpecError

    with pytest.raises(InvalidSpecError, match="unknown LLM backend"):
        load_backend("nonesuch", "smollm2-135m")
    with pytest.raises(InvalidSpecError, match=r"LLM backend .llama\.cpp. has no parameter .nonesuch_option."):
        load_backend("llama.cpp(nonesuch_option=1)", "smollm2-135m")


# --- the generation cache ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("method", ["listwise(window_size=4, stride=2)", "first(window_size=4, stride=2)"])
@pytest.mark.integration
def test_cache_makes_a_rerun_free_and_identical(method, tmp_path):
    spec = method.replace("(", '(model=smollm2-135m, backend="llama.cpp(n_ctx=2048)", ', 1)
    requests = sample_requests()
    reranker = load_reranker(spec)
    reranker.use_cache(OutputCache(tmp_path))
    first = reranker.rerank(requests)
    assert sum(r.cost.calls for r in first) > 0
    again = load_reranker(spec)
    again.use_cache(OutputCache(tmp_path))
    second = again.rerank(requests)
    assert [r.ranking for r in second] == [r.ranking for r in first]
    assert sum(r.cost.calls for r in second) == 0 and sum(r.cost.input_tokens for r in second) == 0
    for req, result in zip(requests, second, strict=True):
        assert_permutation(req, result)


# --- the OpenAI-compatible backend against llama.cpp's server ------------------------------------------------


@pytest.fixture(scope="module")
def server(llama_server):
    return llama_server


@pytest.fixture(scope="module")
def openai(server):
    return load_backend(f'openai(base_url="{server}", concurrency=2)', "smollm2-135m")


@pytest.mark.integration
def test_openai_generation_matches_llama_cpp_in_process(openai, llama):
    remote = openai.generate(CONVERSATIONS, max_new_tokens=8)
    local = llama.generate(CONVERSATIONS, max_new_tokens=8)
    assert [g.text for g in remote] == [g.text for g in local]
    assert [g.input_tokens for g in remote] == [g.input_tokens for g in local]


@pytest.mark.integration
def test_openai_logprobs_match_llama_cpp_in_process(openai, llama):
    remote = openai.next_token_scores(CONVERSATIONS, ["Yes", "No"])
    local = llama.next_token_scores(CONVERSATIONS, ["Yes", "No"])
    for r, lo in zip(remote, local, strict=True):
        assert r.missing == 0
        assert r.logprobs == pytest.approx(lo.logprobs, abs=0.05)


@pytest.fixture(scope="module")
def rendered(server):
    """The completions path: prompts rendered here with the GGUF's template, the server's repeat penalty off."""
    return load_backend(f"openai(base_url={server}, tokenizer=smollm2-135m, repeat_penalty=1.0)", "smollm2-135m")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("labels", "options"),
    [(["Yes", "No"], {}), (["A", "B", "C"], {"prefix": "[", "top": 20}),
     (["Yes", "No", "A", "The"], {"read_at": 1, "top": 3})],
)  # fmt: skip
def test_completions_read_labels_where_llama_cpp_does(rendered, llama, labels, options):
    """Through /completions the labels are scored at the in-process position: after the prefix, or after the
    model's own first token, with the same labels left outside the top log-probabilities (in process every
    label is scored unless ``top`` is set; a server returns its top few)."""
    remote = rendered.next_token_scores(CONVERSATIONS, labels, **options)
    local = llama.next_token_scores(CONVERSATIONS, labels, **options)
    assert rendered.render(CONVERSATIONS[2]) == llama.render(CONVERSATIONS[2])
    for r, lo in zip(remote, local, strict=True):
        assert r.missing == lo.missing and r.input_tokens == lo.input_tokens
        # Both sides keep the KV cache of the longest prefix they saw last, so which earlier request ran last
        # decides how the prompt's evaluation is split into batches: on this Q4 model that moves a log-prob by
        # up to about 0.02 (seen once after the model's first token, read_at=1). A wrong position or label moves
        # it by whole units.
        assert r.logprobs == pytest.approx(lo.logprobs, abs=0.03)
    assert any(s.missing for s in local) or "top" not in options


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize(
    "method",
    ["first(window_size=4, stride=2)", "setwise(num_child=2, k=2)", "pairwise(strategy=heapsort, k=2)",
     "pairwise(strategy=allpairs)", "listwise(window_size=4, stride=2)", "llm-pointwise"],
)  # fmt: skip
def test_logit_methods_through_completions_rank_as_in_process(server, method):
    """FIRST, setwise and PRP through the server (prompts rendered here) give llama.cpp's in-process order."""
    name, _, options = method.partition("(")
    options = f", {options}" if options else ")"
    # top_logprobs: enough that the server returns every label in process scores (all but FIRST ask for all)
    served = f"openai(base_url={server}, tokenizer=smollm2-135m, repeat_penalty=1.0, top_logprobs=2000)"
    backends = (f'"{served}"', '"llama.cpp(n_ctx=2048)"')
    remote, local = (
        load_reranker(f"{name}(model=smollm2-135m, backend={b}{options}").rank(
            "what causes ocean tides", [text for _, text in TIDES]
        )
        for b in backends
    )
    assert [c.docid for c in remote.ranking.candidates] == [c.docid for c in local.ranking.candidates]
    assert (remote.cost.calls, remote.cost.parse_failures) == (local.cost.calls, local.cost.parse_failures)


TIDES = [
    ("tax", "Filing a tax return late brings a penalty."),
    ("moon", "The Moon's gravity pulls on the oceans, which causes the tides."),
    ("bake", "Bake the bread for forty minutes."),
    ("sun", "The Sun also raises tides, about half as strongly as the Moon."),
]


@pytest.mark.parametrize(
    "method",
    ["pairwise(strategy=bubblesort, k=2)", "setwise(num_child=2, k=2)", "groupwise(group_size=3, rounds=1)",
     "jointrank(block_size=3, replicas=2)"],
)  # fmt: skip
@pytest.mark.slow
@pytest.mark.integration
def test_part_two_methods_rank_through_the_server(server, method):
    """The comparison and group methods through the server: every candidate once, costs counted.

    Generated answers (groupwise) match llama.cpp in process exactly. Through chat completions the
    comparison methods read their label after an answer prefix ("Passage") that a chat server cannot be
    made to write: the backend reads it where the model wrote the prefix, so their order may differ
    (with ``tokenizer`` they match: ``test_logit_methods_through_completions_rank_as_in_process``).
    """
    name, _, options = method.partition("(")

    def ranked(backend: str):
        if name == "jointrank":
            inner = f"first(model=smollm2-135m, backend={backend}, window_size=3)".replace('"', '\\"')
            reranker = load_reranker(f'jointrank(inner="{inner}", {options}')
        else:
            reranker = load_reranker(f"{name}(model=smollm2-135m, backend={backend}, {options}")
        return reranker.rank("what causes ocean tides", [text for _, text in TIDES])

    remote = ranked(f'"openai(base_url={server})"')
    assert sorted(c.docid for c in remote.ranking.candidates) == ["0", "1", "2", "3"]
    assert remote.cost.calls > 0 and remote.cost.input_tokens > 0
    if name == "groupwise":  # only its order is comparable in process (above): the others' is not ranked there
        local = ranked('"llama.cpp(n_ctx=2048)"')
        assert [c.docid for c in remote.ranking.candidates] == [c.docid for c in local.ranking.candidates]
        assert remote.cost.calls == local.cost.calls and remote.cost.parse_failures == local.cost.parse_failures


# --- failures: retries, then a clear error ----------------------------------------------------------------


class _Flaky(BaseHTTPRequestHandler):
    failures_left = 2
    seen = 0

    def do_POST(self) -> None:
        type(self).seen += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.end_headers()
            return
        body = json.dumps({"choices": [{"message": {"content": "[2] > [1]"}}],
                           "usage": {"prompt_tokens": 7, "completion_tokens": 5}}).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.integration
def test_openai_retries_server_errors_then_succeeds():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        backend = load_backend(f'openai(base_url="http://127.0.0.1:{httpd.server_port}/v1")', "m")
        (answer,) = backend.generate(CONVERSATIONS[:1], max_new_tokens=4)
        assert answer.text == "[2] > [1]" and answer.input_tokens == 7 and answer.output_tokens == 5
        assert _Flaky.seen == 3
    finally:
        httpd.shutdown()


@pytest.mark.integration
def test_openai_unreachable_server_is_a_clear_error():
    port = free_port()  # nothing listens there
    backend = load_backend(f'openai(base_url="http://127.0.0.1:{port}/v1", max_retries=1)', "m")
    with pytest.raises(BackendError, match=r"failed after 2 attempts.*base_url"):
        backend.generate(CONVERSATIONS[:1], max_new_tokens=4)


@pytest.mark.integration
def test_every_backend_cuts_text_to_the_same_first_tokens(llama):
    """``truncate_tokens`` (pairwise and setwise ``max_tokens``): the text's first N tokens back as text, the
    same from llama.cpp, from a server's local GGUF tokenizer, and from transformers on the same model; a
    text already short enough comes back unchanged; a server without a local tokenizer refuses."""
    from rerank.llm.openai_backend import OpenAIBackend
    from rerank.llm.transformers_backend import TransformersBackend

    text = ("The Manhattan Project was a research and development undertaking during World War II that "
            "produced the first nuclear weapons; it was led by the United States with support from Canada.")  # fmt: skip
    served = OpenAIBackend("smollm2", base_url="http://127.0.0.1:9/v1", tokenizer="smollm2-135m")
    in_process = TransformersBackend("smollm2-135m")
    for limit in (1, 7, 20):
        cut = llama.truncate_tokens(text, limit)
        assert llama.count_tokens(cut) == limit and text.startswith(cut) and len(cut) < len(text)
        assert served.truncate_tokens(text, limit) == cut == in_process.truncate_tokens(text, limit)
    assert llama.truncate_tokens(text, 500) == text == in_process.truncate_tokens(text, 500)
    with pytest.raises(ValueError, match="local tokenizer"):
        OpenAIBackend("smollm2", base_url="http://127.0.0.1:9/v1").truncate_tokens(text, 5)


@pytest.mark.integration
@pytest.mark.parametrize(
    "template",
    # Qwen3's (two labels, through the server too) in make check; bge's raw logit (in process only) in the full
    # suite; mxbai's differs from Qwen3's only in its words, which tests/test_fidelity.py checks
    [pytest.param(t, marks=() if t == "qwen3-reranker" else pytest.mark.slow)
     for t in ("qwen3-reranker", "bge-reranker-gemma")],
)  # fmt: skip
def test_a_chat_template_is_read_alike_on_every_backend(template, server):
    """A causal reranker's template is rendered here and the model reads that text as it is: llama.cpp in
    process, llama.cpp's server through /completions and transformers on the same weights read the same number
    of tokens and give the same scores (the server within llama.cpp's batch-split noise; transformers, in fp32,
    within what Q4 arithmetic moves). bge's raw logit needs an in-process backend: a server is refused. (The
    server returns every token's log-probability: this tiny model puts yes and no far down its list.)"""
    backends = {"llama.cpp": '"llama.cpp(n_ctx=2048)"', "transformers": "transformers"}
    if template != "bge-reranker-gemma":
        backends["openai"] = (
            f'"openai(base_url={server}, tokenizer=smollm2-135m, repeat_penalty=1.0, top_logprobs=60000)"'
        )
    else:
        with pytest.raises(Exception, match="raw logit"):
            load_reranker(f'llm-pointwise(model=smollm2-135m, backend="openai(base_url={server}, tokenizer=smollm2-135m)", '
                          f"template={template})")  # fmt: skip
    texts = [text for _, text in TIDES]
    scored = {
        name: load_reranker(f"llm-pointwise(model=smollm2-135m, backend={spec}, template={template})").score_pairs(
            ["what causes ocean tides"] * len(texts), texts
        )
        for name, spec in backends.items()
    }
    local = scored["llama.cpp"]
    assert len({tuple(s.input_tokens) for s in scored.values()}) == 1
    if "openai" in scored:
        assert scored["openai"].scores == pytest.approx(local.scores, abs=0.03)
    assert scored["transformers"].scores == pytest.approx(local.scores, abs=0.3)
    assert len(set(local.scores)) == len(texts)  # the passages are told apart: a score per prompt, not a constant
