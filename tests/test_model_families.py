"""The model families beyond encoders and LLM prompts: monoT5 and duoT5 in pipelines, their costs, and the
models and templates they refuse before any work. Their parity with pyterrier-t5 and rank-llm is in
tests/test_fidelity.py; their contract in tests/test_contract.py."""

from __future__ import annotations

import json

import pytest

from data.errors import InvalidSpecError

pytestmark = pytest.mark.integration


def test_a_cascade_of_mono_and_duo_t5_runs_from_the_cli_and_counts_duo_calls(t5_dir, tmp_path):
    import rerank
    from data.trec import read_trec_run
    from rerank.cli import main

    model = json.dumps(t5_dir)
    pipeline = f"run(name=bm25) % 6 >> mono-t5(model={model}) % 3 >> duo-t5(model={model}, batch_size=4)"
    out = tmp_path / "cascade.trec"
    code = main(["run", "-q", "--dataset", "example", "--pipeline", pipeline, "--output", str(out),
                 "--work-dir", str(tmp_path / "work")])  # fmt: skip
    assert code == 0
    written = read_trec_run(out)
    assert written.qids and all(len(r) == 3 for r in written)  # duo-t5 reranked mono-t5's top 3 of 6
    result = rerank.run(pipeline, dataset="example", work_dir=tmp_path / "work")  # the same, from Python
    assert {r.qid: r.docids for r in result.run()} == {r.qid: r.docids for r in written}
    # duo-t5's cost: every ordered pair of 3 candidates per query, in batches of 4 (the example's queries
    # fit one call of rerank.run's 8 queries), so the forward passes are ⌈pairs / 4⌉
    assert len(written.qids) <= 8
    pairs = 3 * 2 * len(written.qids)
    assert result.cost.calls == pytest.approx(-(-pairs // 4))
    assert result.cost.input_tokens > 0


def test_a_model_of_another_architecture_is_refused_before_it_loads(cross_encoder_dir):
    from rerank import load_reranker

    for method in ("mono-t5", "duo-t5"):
        with pytest.raises(
            InvalidSpecError, match=rf"{method} needs a sequence-to-sequence \(T5\) model; .* is a bert"
        ):
            load_reranker(f"{method}(model={json.dumps(cross_encoder_dir)})")


def test_colbert_refuses_a_seq2seq_or_causal_model_before_it_loads(t5_dir):
    from rerank import load_reranker

    with pytest.raises(InvalidSpecError, match=r"colbert needs an encoder \(BERT-like\) checkpoint; .* is a t5"):
        load_reranker(f"colbert(model={json.dumps(t5_dir)})")


def test_a_label_word_that_is_not_one_token_is_refused_with_its_tokens(tmp_path, dl19):
    from rerank import load_reranker
    from rerank.methods.random_t5 import build_random_t5

    texts = [c.text for r in dl19.candidates("bm25")[:5] for c in r.candidates[:20]]
    model = build_random_t5(str(tmp_path / "t5-true-false"), texts, symbols=("▁true", "▁false"))
    load_reranker(f"mono-t5(model={json.dumps(model)})")  # monoT5's words are single tokens here
    with pytest.raises(InvalidSpecError, match=r"the label '(yes|no)' is \d tokens .*\['▁"):
        load_reranker(f"mono-t5(model={json.dumps(model)}, template=mt5)")


def test_the_output_cache_tells_apart_what_changes_t5_scores(t5_dir):
    """variant=pyterrier-t5's scores depend on batch_size (a pair reads its batch's padding), so cached scores of
    one batch size are never read back for another; batch_tokens only groups pairs, so it shares them."""
    from rerank import load_reranker
    from rerank.identity import cache_identity

    def identity(params: str) -> str:
        return cache_identity(load_reranker(f"mono-t5(model={json.dumps(t5_dir)}, {params})"))

    assert identity("variant=pyterrier-t5, batch_size=4") != identity("variant=pyterrier-t5, batch_size=8")
    assert identity("batch_tokens=512") == identity("batch_tokens=2048")


# -- Causal rerankers (llm-pointwise with a chat template) ------------------------------------------------------


def test_llm_pointwise_refuses_a_seq2seq_model_before_it_loads(t5_dir):
    from rerank import load_reranker

    with pytest.raises(InvalidSpecError, match=r"llm-pointwise needs a causal LM; .* is a T5ForConditionalGeneration"):
        load_reranker(f"llm-pointwise(model={json.dumps(t5_dir)}, template=qwen3-reranker)")


def test_a_chat_template_file_of_ones_own_runs_and_its_labels_are_checked(qwen3_dir, tmp_path):
    """A .jinja path is a template like the shipped ones (its digest keys it); a label word the model's tokenizer
    splits is refused, with the tokens it found, before any pair is scored."""
    from rerank import load_reranker
    from rerank.identity import cache_identity
    from rerank.prompts import load_chat_template

    shipped = load_chat_template("qwen3-reranker").text
    mine = tmp_path / "mine.jinja"
    mine.write_text(shipped.replace("retrieve relevant passages", "find passages"), encoding="utf-8")
    model = json.dumps(qwen3_dir)
    reranker = load_reranker(f"llm-pointwise(model={model}, template={json.dumps(str(mine))})")
    assert "find passages that answer the query" in reranker.render_prompt("q", "d")
    assert reranker.score_pairs(["q"], ["d"]).scores[0] < 0  # a log-probability
    shipped_identity = cache_identity(load_reranker(f"llm-pointwise(model={model}, template=qwen3-reranker)"))
    assert cache_identity(reranker) != shipped_identity
    split = tmp_path / "split.jinja"
    split.write_text(shipped.replace('{"yes": "yes"', '{"yes": "definitely"'), encoding="utf-8")
    with pytest.raises(InvalidSpecError, match=r"label 'definitely' is 2 tokens for .* \('def', 'initely'\)"):
        load_reranker(f"llm-pointwise(model={model}, template={json.dumps(str(split))})")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("instruction=x", "instruction belongs to chat templates; template pointwise_yes_no is plain"),
        ("max_length=64", "max_length belongs to chat templates"),
        ("template=qwen3-reranker, max_words=50", "max_words cuts the plain template's passage"),
        ("template=no-such-template", "template is pointwise_yes_no, a chat template .* not 'no-such-template'"),
        ('template=qwen3-reranker, backend="openai(base_url=http://127.0.0.1:9/v1)"', "needs tokenizer="),
        ('template=bge-reranker-gemma, backend="openai(base_url=http://127.0.0.1:9/v1, tokenizer=smollm2-135m)"',
         "raw logit of 'Yes'"),
    ],
)  # fmt: skip
def test_settings_a_template_cannot_take_are_refused_before_it_loads(params, message):
    from rerank.registry import check_reranker

    with pytest.raises(InvalidSpecError, match=message):
        check_reranker(f"llm-pointwise(model=smollm2-135m, {params})")


def test_colberts_embedding_cache_reads_back_what_it_computed(colbert_dir, dl19, tmp_path, monkeypatch):
    """With embedding_cache=true a second reranker (a later run) encodes no passage and scores exactly as the first,
    in both variants; both score as without the cache (within 1e-5: a passage's embeddings move in their last bits
    with the padding of the batch that encoded them). The setting changes no key."""
    from data.records import RerankRequest
    from rerank import load_reranker
    from rerank.identity import cache_identity

    monkeypatch.setenv("RERANK_CACHE_DIR", str(tmp_path))
    requests = [RerankRequest(r.query, r.candidates[:6]) for r in dl19.candidates("bm25")[:3]]
    model = json.dumps(colbert_dir)

    def scores(results) -> list[dict[str, float]]:
        return [{c.docid: c.score for c in r.ranking.candidates} for r in results]

    for variant in ("rerank", "pylate"):
        spec = f"colbert(model={model}, batch_size=4, variant={variant}"
        plain = load_reranker(spec + ")").rerank(requests)
        first, second = (load_reranker(spec + ", embedding_cache=true)").rerank(requests) for _ in range(2))
        assert (
            [r.ranking.docids for r in second] == [r.ranking.docids for r in first] == [r.ranking.docids for r in plain]
        )
        assert scores(second) == scores(first)
        for ours, theirs in zip(scores(first), scores(plain), strict=True):
            assert max(abs(ours[d] - theirs[d]) for d in theirs) < 1e-5
        assert sum(r.cost.calls for r in second) < sum(r.cost.calls for r in plain)  # queries only
        assert [r.cost.truncated for r in second] == [r.cost.truncated for r in plain]
    cached = load_reranker(f"colbert(model={model}, embedding_cache=true)")
    assert cache_identity(cached) == cache_identity(load_reranker(f"colbert(model={model})"))


@pytest.mark.slow
def test_t5_and_colbert_exports_score_as_torch(t5_dir, colbert_dir, dl19):
    """monoT5's encoder and first decoder step, and ColBERT's encoder and projection, exported: fp32 on ONNX
    Runtime (and monoT5's on OpenVINO, converted from the same graph) within 1e-4 of torch on DL19 pairs; monoT5 in
    dynamic int8 keeps Spearman >= 0.99."""
    from scipy.stats import spearmanr

    from rerank import load_reranker

    ranked = dl19.candidates("bm25")[:3]
    queries = [r.query.text for r in ranked for _ in r.candidates[:16]]
    texts = [c.text for r in ranked for c in r.candidates[:16]]
    for method, model, exports in (
        ("mono-t5", t5_dir, ["backend=onnx", "backend=openvino", "backend=onnx, precision=int8"]),
        ("colbert", colbert_dir, ["backend=onnx"]),
    ):
        torch_scores = load_reranker(f"{method}(model={json.dumps(model)})").score_pairs(queries, texts).scores
        for options in exports:
            scores = load_reranker(f"{method}(model={json.dumps(model)}, {options})").score_pairs(queries, texts).scores
            if "int8" in options:
                assert spearmanr(scores, torch_scores).statistic >= 0.99
                assert scores != torch_scores  # quantised: not the fp32 graph
            else:
                assert max(abs(a - b) for a, b in zip(scores, torch_scores, strict=True)) < 1e-4, (method, options)
