"""The cross-encoder agrees with sentence-transformers and handles truncation and labels."""

import numpy as np
import pytest
import torch

import data
from rerank import load_reranker
from rerank.methods.cross_encoder import CrossEncoderReranker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dl19_pairs(data_dir):
    requests = data.load("msmarco-passage/trec-dl-2019", data_dir).candidates("bm25")[:3]
    queries = [r.query.text for r in requests for _ in r.candidates]
    texts = [c.text for r in requests for c in r.candidates]
    return queries, texts


@pytest.mark.slow
@pytest.mark.parametrize("max_length", [512, 64])
def test_scores_equal_sentence_transformers(cross_encoder_dir, dl19_pairs, max_length):
    from sentence_transformers import CrossEncoder

    queries, texts = dl19_pairs
    ours = CrossEncoderReranker(cross_encoder_dir, max_length=max_length, batch_size=16).score_pairs(queries, texts)
    reference = CrossEncoder(cross_encoder_dir, max_length=max_length).predict(
        list(zip(queries, texts, strict=True)), batch_size=32, activation_fn=torch.nn.Identity()
    )
    assert np.abs(np.array(ours.scores) - reference).max() < 1e-4
    if max_length == 64:
        assert sum(ours.truncated) > 200  # most of these 300 DL passages exceed 64 tokens with their query
    else:
        assert sum(ours.truncated) == 0


def test_truncation_policies_and_long_queries(cross_encoder_dir):
    long_query = " ".join(["tides"] * 80)
    doc = " ".join(["moon gravity"] * 40)
    document_first = CrossEncoderReranker(cross_encoder_dir, max_length=48, truncation="document")
    both = CrossEncoderReranker(cross_encoder_dir, max_length=48, truncation="both")
    ids, _, cut = document_first._encode_pairs(["short query", long_query], [doc, doc])
    assert cut == [True, True] and all(len(x) == 48 for x in ids)
    # the short query survives whole under "document"; a query longer than the budget is cut too
    assert ids[0][:4] == both._encode_pairs(["short query"], [doc])[0][0][:4]
    assert document_first.score_pairs(["short query"], ["tiny"]).truncated == [False]


def test_two_label_models_score_by_softmax(tmp_path):
    from transformers import AutoTokenizer, BertForSequenceClassification

    from data.models import resolve_model

    torch.manual_seed(1)
    model = BertForSequenceClassification.from_pretrained(resolve_model("minilm"), num_labels=2)
    model.save_pretrained(tmp_path / "two")
    AutoTokenizer.from_pretrained(resolve_model("minilm")).save_pretrained(tmp_path / "two")
    reranker = CrossEncoderReranker(str(tmp_path / "two"))
    scores = reranker.score_pairs(["q", "q"], ["a text", "another text"]).scores
    with torch.no_grad():
        tok = AutoTokenizer.from_pretrained(tmp_path / "two")
        logits = model.eval()(**tok(["q", "q"], ["a text", "another text"], padding=True, return_tensors="pt")).logits
    assert scores == pytest.approx(torch.softmax(logits, -1)[:, 1].tolist(), abs=1e-5)


@pytest.mark.slow
def test_int8_agrees_with_fp32_in_order(cross_encoder_dir, dl19_pairs):
    # OpenVINO's static int8 is the same export path: its order is checked on MiniLM in tests/test_inference.py
    # (a model whose scores mean something), and this head runs it in the method contract.
    from scipy.stats import spearmanr

    queries, texts = dl19_pairs
    fp32 = CrossEncoderReranker(cross_encoder_dir).score_pairs(queries, texts).scores
    int8 = CrossEncoderReranker(cross_encoder_dir, precision="int8", backend="onnx").score_pairs(queries, texts).scores
    assert spearmanr(fp32, int8).statistic > 0.9  # this model's head is random: its scores are nearly flat


def test_spec_names_the_model(cross_encoder_dir):
    reranker = load_reranker(f'cross-encoder(model="{cross_encoder_dir}", max_length=256)')
    assert reranker.spec.kwargs["max_length"] == 256
    assert load_reranker(str(reranker.spec)).spec == reranker.spec
