"""LLM backends and LLM pointwise ranking, on the tiny smollm2-135m pack."""

import pytest

from rerank import load_reranker
from rerank.llm.backend import load_backend

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def backend():
    return load_backend("transformers", "smollm2-135m", batch_size=3)


def test_batched_next_token_scores_equal_one_at_a_time(backend):
    """Left padding must not change a prompt's scores (positions count real tokens only)."""
    conversations = [
        [{"role": "user", "content": "Is the sky blue? Answer Yes or No."}],
        [
            {
                "role": "user",
                "content": "A much longer question about whether the ocean tides are caused by the Moon. Answer Yes or No.",
            }
        ],
        [{"role": "user", "content": "Short?"}],
    ]
    together = backend.next_token_scores(conversations, ["Yes", "No"])
    alone = [backend.next_token_scores([c], ["Yes", "No"])[0] for c in conversations]
    for a, b in zip(together, alone, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
        assert a.input_tokens == b.input_tokens > 5


def test_scores_match_a_plain_forward_pass(backend):
    import torch

    conversation = [
        {
            "role": "user",
            "content": "Query: tides\nPassage: The Moon pulls the oceans.\nDoes the passage answer the query? Answer Yes or No.",
        }
    ]
    got = backend.next_token_scores([conversation], ["Yes", "No"])[0].logprobs
    ids = backend._tokenizer(backend.render(conversation), return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logprobs = torch.log_softmax(backend._lm(ids).logits[0, -1].float(), -1)
    yes, no = (
        backend._tokenizer.encode("Yes", add_special_tokens=False),
        backend._tokenizer.encode("No", add_special_tokens=False),
    )
    assert got["Yes"] == pytest.approx(float(logprobs[yes[0]]), abs=1e-4)
    assert got["No"] == pytest.approx(float(logprobs[no[0]]), abs=1e-4)


def test_multi_token_labels_are_refused(backend):
    with pytest.raises(ValueError, match="single tokens"):
        backend.next_token_scores([[{"role": "user", "content": "x"}]], ["Absolutely-not-a-token"])


def test_generation_is_greedy_and_counted(backend):
    conversation = [{"role": "user", "content": "Say hello."}]
    first, second = backend.generate([conversation, conversation], max_new_tokens=8)
    assert first == second and 0 < first.output_tokens <= 8 and first.text


def test_llm_pointwise_costs_and_truncation():
    reranker = load_reranker("llm-pointwise(model=smollm2-135m, max_words=5, batch_size=2)")
    result = reranker.rank(
        "why is the sky blue", ["Rayleigh scattering of sunlight by air molecules makes it blue.", "Blue paint."]
    )
    assert result.cost.truncated == 1 and result.cost.calls == 2 and result.cost.input_tokens > 20


@pytest.mark.slow
def test_llm_pointwise_from_the_cli(tmp_path, capsys):
    from rerank.cli import main

    out = tmp_path / "llm.trec"
    args = [
        "run",
        "--dataset",
        "example",
        "--run",
        "bm25",
        "--top-k",
        "3",
        "--method",
        "llm-pointwise",
        "--model",
        "smollm2-135m",
        "--output",
        str(out),
    ]
    assert main(args) == 0
    assert "24 candidates" in capsys.readouterr().out
    import data

    assert [len(r) for r in data.read_trec_run(out)] == [3] * 8
