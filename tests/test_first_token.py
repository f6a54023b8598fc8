"""A classifier's last layer computed for the first token only gives the full forward's logits."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from data.first_token import first_token_logits  # noqa: E402

SMALL = {"vocab_size": 120, "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4,
         "intermediate_size": 64, "max_position_embeddings": 64}  # fmt: skip


def _padded_batch(seed: int = 0):
    """Rows of 11, 7 and 4 real tokens, right-padded as the cross-encoder pads them."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (3, 11), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:], mask[2, 4:] = 0, 0
    return ids, mask


@pytest.mark.unit
@pytest.mark.parametrize(
    "name",
    ["Bert", "Roberta", "XLMRoberta", "Electra"],  # BERT's pooler; the others' heads read features[:, 0]
)
@pytest.mark.parametrize("labels", [1, 2])
def test_first_token_logits_equal_the_full_forward(name, labels):
    torch.manual_seed(0)
    config = getattr(transformers, f"{name}Config")(**SMALL, num_labels=labels)
    net = getattr(transformers, f"{name}ForSequenceClassification")(config).eval()
    logits = first_token_logits(net)
    assert logits is not None
    ids, mask = _padded_batch()
    with torch.inference_mode():
        full = net(input_ids=ids, attention_mask=mask).logits
        assert torch.allclose(logits(ids, mask), full, atol=1e-6, rtol=0)
        # the shortened body shares the weights: a changed weight changes both alike
        for dense in (
            net.base_model.encoder.layer[0].output.dense,
            net.base_model.encoder.layer[-1].intermediate.dense,
        ):
            dense.weight.add_(torch.randn(dense.weight.shape, generator=torch.Generator().manual_seed(1)))
        changed = net(input_ids=ids, attention_mask=mask).logits
        assert not torch.allclose(changed, full, atol=1e-4)
        assert torch.allclose(logits(ids, mask), changed, atol=1e-6, rtol=0)


@pytest.mark.unit
def test_a_classifier_it_does_not_know_runs_its_own_forward():
    config = transformers.DistilBertConfig(vocab_size=120, dim=32, n_layers=2, n_heads=4, hidden_dim=64)
    assert first_token_logits(transformers.DistilBertForSequenceClassification(config)) is None
    decoder = transformers.BertConfig(**SMALL, is_decoder=True)
    assert first_token_logits(transformers.BertForSequenceClassification(decoder)) is None


@pytest.mark.integration
def test_the_cross_encoder_scores_dl19_pairs_as_the_full_forward(cross_encoder_dir, dl19):
    """The real MiniLM-shaped cross-encoder on a DL19 query's BM25 top 100: the reranker's scores (first-token
    last layer) equal transformers' own forward's within 1e-6."""
    import numpy as np

    from rerank.registry import load_reranker

    requests = dl19.candidates("bm25")[:1]
    queries = [r.query.text for r in requests for _ in r.candidates]
    texts = [c.text for r in requests for c in r.candidates]
    reranker = load_reranker(f'cross-encoder(model="{cross_encoder_dir}", allow_untrained=true)')
    assert reranker._first_token is not None
    ours = np.array(reranker.score_pairs(queries, texts).scores)
    reranker._first_token = None  # the model's own forward, every position of every layer
    full = np.array(reranker.score_pairs(queries, texts).scores)
    assert np.abs(ours - full).max() < 1e-6
