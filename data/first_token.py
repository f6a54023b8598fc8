"""A sequence classifier's logits with its last layer computed for the first token only.

A BERT-style cross-encoder reads one position: its classification head (BERT's pooler, RoBERTa's
and ELECTRA's heads) looks at the first token of the last layer and nothing else. So the last
layer needs every token's keys and values but only the first token's query, attention output and
feed-forward block: about a seventh of a 6-layer model's work is skipped, and the logits are those
of the full forward to float rounding (``tests/test_inference.py``).

Architectures this does not know run the model's own forward.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from data.optional import optional_import

Logits = Callable[..., Any]  # (input_ids, attention_mask, token_type_ids=None) -> logits


def _heads() -> dict[type, Callable[[Any, Any], Any]]:
    """Each known classifier class's head, applied to the first token's hidden state (batch, 1, width)."""
    transformers = optional_import("transformers")
    heads: dict[type, Callable[[Any, Any], Any]] = {}
    for name in ("BertForSequenceClassification",):  # pooler (a dense layer on token 0), dropout, classifier
        heads[getattr(transformers, name)] = lambda net, x: net.classifier(net.dropout(net.base_model.pooler(x)))
    for name in ("RobertaForSequenceClassification", "XLMRobertaForSequenceClassification",
                 "ElectraForSequenceClassification"):  # fmt: skip
        heads[getattr(transformers, name)] = lambda net, x: net.classifier(x)  # the head takes features[:, 0]
    return heads


def first_token_logits(net: Any) -> Logits | None:
    """``net``'s logits with its last layer computed for the first token only, or None when ``net`` is not
    an encoder classifier whose head reads the first token alone."""
    head = _heads().get(type(net))
    base: Any = getattr(net, "base_model", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if head is None or not layers or net.config.is_decoder:
        return None
    last = layers[-1]
    attention = getattr(getattr(last, "attention", None), "self", None)
    if attention is None or getattr(last, "crossattention", None) is not None:
        return None
    torch = optional_import("torch")
    # The body: the same modules (no weights copied), without the last layer and without a pooler.
    body: Any = copy.copy(base)
    body._modules = dict(base._modules)
    body.encoder = copy.copy(base.encoder)
    body.encoder._modules = dict(base.encoder._modules)
    body.encoder.layer = torch.nn.ModuleList(list(layers)[:-1])
    if "pooler" in body._modules:
        body._modules["pooler"] = None
    heads, width = attention.num_attention_heads, attention.attention_head_size

    def logits(input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = body(**inputs).last_hidden_state
        batch, length, _ = hidden.shape
        first = hidden[:, :1]
        query = attention.query(first).view(batch, 1, heads, width).transpose(1, 2)
        key = attention.key(hidden).view(batch, length, heads, width).transpose(1, 2)
        value = attention.value(hidden).view(batch, length, heads, width).transpose(1, 2)
        # as transformers' eager attention: scaled scores, padding at the dtype's minimum, softmax
        scores = torch.matmul(query, key.transpose(2, 3)) * width**-0.5
        padding = (attention_mask == 0)[:, None, None, :]
        scores = scores.masked_fill(padding, torch.finfo(scores.dtype).min)
        context = torch.matmul(scores.softmax(dim=-1), value).transpose(1, 2).reshape(batch, 1, heads * width)
        state = last.attention.output(context, first)
        state = last.output(last.intermediate(state), state)
        return head(net, state)

    return logits
