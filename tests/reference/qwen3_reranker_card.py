"""The Qwen3-Reranker model card's reference code (huggingface.co/Qwen/Qwen3-Reranker-0.6B, "Transformers Usage"),
as the card gives it, made a function: its prefix and suffix, its format_instruction, process_inputs and
compute_logits. The card's model id is replaced by a model folder; nothing else changes."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def card_scores(model_dir: str, pairs: list[tuple[str, str]], instruction: str | None = None,
                max_length: int = 8192) -> tuple[list[list[int]], list[float]]:  # fmt: skip
    """The card's input ids (padding dropped) and scores (P(yes) over yes and no) for (query, document) pairs."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    token_false_id = tokenizer.convert_tokens_to_ids("no")
    token_true_id = tokenizer.convert_tokens_to_ids("yes")
    prefix = '<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    prefix_tokens = tokenizer.encode(prefix, add_special_tokens=False)
    suffix_tokens = tokenizer.encode(suffix, add_special_tokens=False)

    def format_instruction(instruction, query, doc):
        if instruction is None:
            instruction = "Given a web search query, retrieve relevant passages that answer the query"
        return "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}".format(  # noqa: UP032 (the card's)
            instruction=instruction, query=query, doc=doc
        )

    def process_inputs(pairs):
        inputs = tokenizer(pairs, padding=False, truncation="longest_first", return_attention_mask=False,
                           max_length=max_length - len(prefix_tokens) - len(suffix_tokens))  # fmt: skip
        for i, ele in enumerate(inputs["input_ids"]):
            inputs["input_ids"][i] = prefix_tokens + ele + suffix_tokens
        inputs = tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)
        for key in inputs:
            inputs[key] = inputs[key].to(model.device)
        return inputs

    @torch.no_grad()
    def compute_logits(inputs, **kwargs):
        batch_scores = model(**inputs).logits[:, -1, :]
        true_vector = batch_scores[:, token_true_id]
        false_vector = batch_scores[:, token_false_id]
        batch_scores = torch.stack([false_vector, true_vector], dim=1)
        batch_scores = torch.nn.functional.log_softmax(batch_scores, dim=1)
        return batch_scores[:, 1].exp().tolist()

    inputs = process_inputs([format_instruction(instruction, query, doc) for query, doc in pairs])
    ids = [[int(t) for t, m in zip(row, mask, strict=True) if m] for row, mask in
           zip(inputs["input_ids"].tolist(), inputs["attention_mask"].tolist(), strict=True)]  # fmt: skip
    return ids, compute_logits(inputs)
