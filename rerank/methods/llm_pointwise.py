"""LLM pointwise relevance: the log-probabilities of a yes and a no label after a relevance prompt.

Two kinds of template, both data in ``rerank/prompts``:

- **The plain template** (``pointwise_yes_no.txt``, the default): a user turn the backend renders with the
  model's own chat template, the passage cut to ``max_words`` words, score = log P(Yes) − log P(No)
  (Nogueira et al., 2020, "Document Ranking with a Pretrained Sequence-to-Sequence Model"; RankLLaMA).
- **A causal reranker's chat template** (``qwen3-reranker``, ``mxbai-rerank-v2``, ``bge-reranker-gemma``, or a
  ``.jinja`` path): the whole prompt, rendered here from ``query``/``document`` messages (and the
  ``instruction`` as a system message) exactly as sentence-transformers' causal-LM ``CrossEncoder`` renders
  it, and read by the model as it is. Its header names the labels and the score (``rerank.prompts.SCORES``).
  A prompt over ``max_length`` tokens loses the end of its document, never the template's text after it.

Prompts are batched across queries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from data.errors import InvalidSpecError
from rerank.base import PairScores, PointwiseReranker
from rerank.llm.backend import Prompt, load_backend
from rerank.methods.reasoning import CLOSE, DEFAULT_BUDGET, THINK_END, check_reasoning, reason
from rerank.methods.reasoning import PARAMS as REASONING
from rerank.prompts import ChatTemplate, chat_template_names, chat_template_path, load_chat_template, load_text

PLAIN = {"yes": "Yes", "no": "No", "max_words": 100}  # the plain template's defaults: kept in every key


class LLMPointwiseReranker(PointwiseReranker):
    method = "llm-pointwise"
    prompt_param = "template"
    llm_backend_param = "backend"
    neutral_params = MappingProxyType({"instruction": None, "max_length": None, **REASONING})

    def __init__(
        self,
        model: str,
        backend: str = "transformers",
        template: str = "pointwise_yes_no",
        yes: str = "Yes",
        no: str = "No",
        max_words: int = 100,
        batch_size: int = 8,
        instruction: str | None = None,
        max_length: int | None = None,
        reasoning: bool = False,
        reasoning_budget: int = DEFAULT_BUDGET,
        budget_forcing: bool = True,
    ):
        """``yes``/``no`` and ``max_words`` are the plain template's; a chat template names its own labels (a
        ``yes``/``no`` other than the defaults replaces them) and cuts in tokens (``max_length``, default the
        template's). ``instruction`` is a chat template's task instruction (default the template's).
        ``reasoning`` (plain template) lets the model think first, ``reasoning_budget`` tokens at most; the
        labels are then read right after its closed reasoning (``rerank.methods.reasoning``)."""
        self._check_pointwise_reasoning({"reasoning": reasoning, "reasoning_budget": reasoning_budget,
                                         "budget_forcing": budget_forcing, "template": template})  # fmt: skip
        self.reasoning, self.reasoning_budget, self.budget_forcing = reasoning, reasoning_budget, budget_forcing
        self.model, self.backend_name, self.template_name = model, backend, template
        self.max_words, self.batch_size, self.instruction = max_words, batch_size, instruction
        self.chat: ChatTemplate | None = None
        self.max_length: int | None = None
        if chat_template_path(template) is not None:
            self.chat = load_chat_template(template)
            self.yes = yes if yes != PLAIN["yes"] else self.chat.yes
            self.no = no if no != PLAIN["no"] or self.chat.no is None else self.chat.no
            self.max_length = max_length or self.chat.max_length
        else:
            self.template, self.yes, self.no, self.max_length = load_text(template), yes, no, None
        self.backend = load_backend(backend, model, batch_size=batch_size)
        if self.chat is not None:
            self._special = self.backend.special_tokens()
            for label in self.labels:
                if not self.backend.single_token(label):
                    found = self.backend.label_tokens(label)
                    raise InvalidSpecError(
                        f"llm-pointwise: template {template}'s label {label!r} is {len(found)} tokens for {model} "
                        f"({', '.join(map(repr, found))}); a label must be one token"
                    )

    @property
    def labels(self) -> list[str]:
        return [self.yes] if self.chat is not None and self.chat.score == "logit" else [self.yes, self.no]

    @classmethod
    def check_params(cls, params: dict[str, Any], where: str) -> None:
        from rerank.methods.llm_common import check_backend_model

        super().check_params(params, where)
        cls._check_pointwise_reasoning(params)
        check_backend_model(cls, params, where)
        if str(params.get("backend", "transformers")).startswith("transformers"):
            check_causal(str(params.get("model")), where)
        template = str(params.get("template", "pointwise_yes_no"))
        if chat_template_path(template) is None:
            from importlib.resources import files

            if not files("rerank.prompts").joinpath(f"{template}.txt").is_file():
                raise InvalidSpecError(f"{where}: template is pointwise_yes_no, a chat template (one of "
                                       f"{', '.join(chat_template_names())}) or a .jinja path, not {template!r}")  # fmt: skip
            for name in ("instruction", "max_length"):
                if params.get(name) is not None:
                    raise InvalidSpecError(f"{where}: {name} belongs to chat templates; template {template} is plain")
            return
        try:
            chat = load_chat_template(template, where=f"{where}: template")
        except ValueError as error:
            raise InvalidSpecError(str(error)) from None
        if params.get("max_words", PLAIN["max_words"]) != PLAIN["max_words"]:
            raise InvalidSpecError(f"{where}: max_words cuts the plain template's passage; the chat template "
                                   f"{template} cuts the document in tokens: set max_length")  # fmt: skip
        backend = str(params.get("backend", "transformers"))
        if backend.startswith("openai") and chat.score == "logit":
            raise InvalidSpecError(f"{where}: template {template} scores the raw logit of {chat.yes!r}; a server "
                                   "returns log-probabilities only: use the transformers or llama.cpp backend")  # fmt: skip
        if backend.startswith("openai") and "tokenizer" not in backend:
            raise InvalidSpecError(f"{where}: template {template} is rendered here: the openai backend needs "
                                   "tokenizer=… (the served model's GGUF, pack or folder)")  # fmt: skip

    @classmethod
    def _check_pointwise_reasoning(cls, params: dict[str, Any]) -> None:
        check_reasoning(cls.method, params)
        if params.get("reasoning") and chat_template_path(str(params.get("template", "pointwise_yes_no"))):
            raise InvalidSpecError(f"{cls.method}: reasoning=true applies to the plain template; a causal reranker's "
                                   "chat template fixes what comes before its label")  # fmt: skip

    def score_pairs(self, queries: Sequence[str], texts: Sequence[str], docids: Sequence[str] = ()) -> PairScores:
        pairs = [self._prompt(q, t) for q, t in zip(queries, texts, strict=True)]
        prompts: list[Prompt] = [prompt for prompt, _ in pairs]
        thought = reason(self.backend, prompts, self.reasoning_budget, 1, self.budget_forcing) if self.reasoning else []
        if thought:  # the labels are read right after each reasoning, closed (by the model, or here)
            prompts = [self.backend.prompt_text(p) + r.reasoning + ("" if THINK_END in r.reasoning else CLOSE.rstrip())
                       + "\n\n" for p, r in zip(prompts, thought, strict=True)]  # fmt: skip
        results = self.backend.next_token_scores(prompts, self.labels)
        return PairScores(
            scores=[self._score(r.logprobs, r.normalizer) for r in results],
            input_tokens=[r.input_tokens + int(t.cost.input_tokens) for r, t in zip(results, thought, strict=True)]
            if thought
            else [r.input_tokens for r in results],
            truncated=[cut for _, cut in pairs],
            calls=len(results) + sum(int(t.cost.calls) for t in thought),
            reasoning_tokens=[int(t.cost.reasoning_tokens) for t in thought],
            failed=[t.answer is None and not t.forced for t in thought],
        )

    def render_prompt(self, query: str, text: str) -> str:
        """The exact text the model reads for this pair, cut as scoring cuts it."""
        return self.backend.prompt_text(self._prompt(query, text)[0])

    def document_limit(self) -> tuple[int, str]:
        # a chat template cuts the whole prompt in tokens; the plain one, the passage in words
        if self.chat is not None and self.max_length:
            return int(self.max_length), "tokens"
        return self.max_words, "words"

    def _prompt(self, query: str, text: str) -> tuple[Prompt, bool]:
        """One pair's prompt and whether its passage was cut: a chat template's rendered text, or the plain
        template's conversation for the backend to render."""
        if self.chat is not None:
            return self._fit(query, text)
        words = text.split()
        passage = " ".join(words[: self.max_words])
        content = self.template.format(query=query, passage=passage)
        return [{"role": "user", "content": content}], len(words) > self.max_words

    def _score(self, logprobs: dict[str, float], normalizer: float | None) -> float:
        kind = self.chat.score if self.chat is not None else "log-odds"
        if kind == "logit":
            if normalizer is None:
                raise ValueError(
                    f"the {self.backend.name} backend returns no raw logits; {self.template_name} needs them"
                )
            return logprobs[self.yes] + normalizer
        yes, no = logprobs[self.yes], logprobs[self.no]
        if kind == "log-odds":
            return yes - no
        return yes - max(yes, no) - math.log1p(math.exp(-abs(yes - no)))  # log P(yes) over {yes, no}

    def _render(self, query: str, document: str) -> str:
        assert self.chat is not None
        return self.chat.render(query, document, self.instruction, self._special)

    def _fit(self, query: str, document: str) -> tuple[str, bool]:
        """The prompt within ``max_length`` tokens: the document's end is cut, the template around it kept."""
        prompt = self._render(query, document)
        excess = self.backend.count_tokens(prompt) - int(self.max_length or 0)
        if excess <= 0:
            return prompt, False
        budget = max(0, self.backend.count_tokens(document) - excess)
        while True:  # a cut can tokenize differently at its edge: cut again until it fits
            prompt = self._render(query, self.backend.truncate_tokens(document, budget))
            excess = self.backend.count_tokens(prompt) - int(self.max_length or 0)
            if excess <= 0 or budget == 0:
                return prompt, True
            budget = max(0, budget - excess)


ENCODER_FAMILIES = frozenset({"bert", "roberta", "xlm-roberta", "distilbert", "electra", "deberta", "deberta-v2",
                              "modernbert", "mpnet", "nomic_bert", "t5", "mt5", "umt5"})  # fmt: skip


def check_causal(model: str, where: str) -> None:
    """Refuse, before the weights load, a local model folder that is an encoder-decoder or an encoder (a T5, a
    BERT): its config says so. Anything else is left to transformers, which knows more architectures than a list
    here would (multimodal causal LMs among them)."""
    from data.models import resolve_model

    config_file = Path(resolve_model(model)) / "config.json"
    if not config_file.is_file():
        return  # a GGUF file, a hub id: checked when it loads
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("is_encoder_decoder") or config.get("model_type") in ENCODER_FAMILIES:
        found = ", ".join(config.get("architectures") or ()) or config.get("model_type") or "unknown"
        raise InvalidSpecError(f"{where}: llm-pointwise needs a causal LM; {model} is a {found}")
