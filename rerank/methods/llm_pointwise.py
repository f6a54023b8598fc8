"""LLM pointwise relevance: P("Yes") against P("No") after a relevance question.

The monoT5 / RankLLaMA-style scorer (Nogueira et al., 2020, "Document Ranking
with a Pretrained Sequence-to-Sequence Model"): score = log P(Yes) − log P(No)
for the next token, i.e. the logit difference. Prompts are batched across
queries. The template is data (``rerank/prompts/pointwise_yes_no.txt``);
passages are cut to ``max_words`` words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rerank.base import PairScores, PointwiseReranker
from rerank.llm.backend import load_backend
from rerank.prompts import load_text


class LLMPointwiseReranker(PointwiseReranker):
    method = "llm-pointwise"
    prompt_param = "template"
    llm_backend_param = "backend"

    def __init__(
        self,
        model: str,
        backend: str = "transformers",
        template: str = "pointwise_yes_no",
        yes: str = "Yes",
        no: str = "No",
        max_words: int = 100,
        batch_size: int = 8,
    ):
        self.model, self.backend_name, self.template_name = model, backend, template
        self.yes, self.no, self.max_words, self.batch_size = yes, no, max_words, batch_size
        self.template = load_text(template)
        self.backend = load_backend(backend, model, batch_size=batch_size)

    @classmethod
    def check_params(cls, params: dict[str, Any], where: str) -> None:
        from rerank.methods.llm_common import check_backend_model

        super().check_params(params, where)
        check_backend_model(cls, params, where)

    def score_pairs(self, queries: Sequence[str], texts: Sequence[str], docids: Sequence[str] = ()) -> PairScores:
        conversations = []
        truncated = []
        for query, text in zip(queries, texts, strict=True):
            words = text.split()
            truncated.append(len(words) > self.max_words)
            passage = " ".join(words[: self.max_words])
            conversations.append([{"role": "user", "content": self.template.format(query=query, passage=passage)}])
        results = self.backend.next_token_scores(conversations, [self.yes, self.no])
        return PairScores(
            scores=[r.logprobs[self.yes] - r.logprobs[self.no] for r in results],
            input_tokens=[r.input_tokens for r in results],
            truncated=truncated,
            calls=len(results),
        )
