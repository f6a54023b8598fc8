"""The small interface every LLM backend offers the ranking methods.

Prompts are chat messages; a backend renders them with the model's chat
template. Methods ask for what they need: generated text, or the
log-probabilities of a few chosen next tokens (yes/no labels, passage ids).

A backend is named by a spec like a method: ``llama.cpp``, ``llama.cpp(threads=2)``
or ``openai(base_url="http://127.0.0.1:8000/v1", concurrency=8)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from data.errors import BackendError as BackendError  # raised by backends; defined with the other errors
from data.registry import Registry

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": …}
# A conversation the backend renders with the model's chat template, or a prompt already rendered (a
# causal reranker's template, rendered by the method): the model reads that text as it is.
Prompt = Sequence[Message] | str


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    input_tokens: int
    output_tokens: int
    cached: bool = False  # read back from the disk cache: no model call was made


@dataclass(frozen=True, slots=True)
class TokenScores:
    """Log-probabilities of the asked-for next tokens after one prompt.

    ``missing`` counts labels the backend could not score (an API that returns
    only its top few log-probabilities); they get a floor below every scored label.
    ``logprobs`` runs in the order the labels were asked, except where the backend ranks them itself
    (vLLM's top log-probabilities): then in its order, equal values included, and the floored ones last.
    """

    logprobs: dict[str, float]
    input_tokens: int
    missing: int = 0
    cached: bool = False
    # log-sum-exp of the raw logits there: a label's raw logit is its log-probability plus this. None where
    # the backend sees log-probabilities only (a server).
    normalizer: float | None = None


class LLMBackend(ABC):
    name: ClassVar[str]
    libraries: ClassVar[tuple[str, ...]] = ()  # distributions whose versions decide the outputs
    model: str

    @abstractmethod
    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text the model sees for these messages (chat template, generation prompt added)."""

    @abstractmethod
    def count_tokens(self, text: str) -> int: ...

    def prompt_text(self, prompt: Prompt) -> str:
        """The text the model reads for a prompt: a conversation rendered, a rendered prompt as it is."""
        return prompt if isinstance(prompt, str) else self.render(prompt)

    def special_tokens(self) -> dict[str, str]:
        """The model's ``bos_token`` and ``eos_token`` texts, for rendering a chat template here."""
        raise ValueError(f"the {self.name} backend has no local tokenizer to render a chat template with")

    @abstractmethod
    def generate(
        self, conversations: Sequence[Prompt], max_new_tokens: int, min_new_tokens: int = 0, stop: Sequence[str] = ()
    ) -> list[Generation]:
        """Greedy continuations, one per conversation; no end of text before ``min_new_tokens`` tokens.

        A continuation ends before the first of the ``stop`` strings it writes (the string left out, as
        OpenAI's and vLLM's ``stop`` do): the model stops there rather than writing on to ``max_new_tokens``.
        """

    @abstractmethod
    def next_token_scores(
        self,
        conversations: Sequence[Prompt],
        labels: Sequence[str],
        prefix: str = "",
        read_at: int = 0,
        top: int = 0,
    ) -> list[TokenScores]:
        """For each conversation (or rendered prompt), the log-probability of each label as the next token.

        ``prefix`` is text the answer starts with (setwise reads the label after "Passage").
        ``read_at`` > 0 reads further on: that many tokens are first decoded greedily, none of them
        ending the answer, and the labels are scored at the position after them (FIRST, as RankLLM
        runs it, reads the second token the model writes). ``top`` > 0 scores a label only when it is
        among the ``top`` most likely tokens there, as an API returning that many log-probabilities
        does; the others count as ``missing``, with a floor below every scored label.
        Every label must be a single token for this model's tokenizer.
        """

    def single_token(self, label: str) -> bool:
        return True

    def label_tokens(self, label: str) -> list[str]:
        """The tokens a label is for this model's tokenizer (to say why a label is refused)."""
        return [label]

    def truncate_tokens(self, text: str, limit: int) -> str:
        """``text`` cut to its first ``limit`` tokens of the model's tokenizer, back as text."""
        raise ValueError(f"the {self.name} backend cannot cut text in tokens (it has no local tokenizer)")

    @classmethod
    def check_model(cls, model: str, what: str) -> None:
        """Refuse, before loading, a model this backend cannot have (a server's models are the server's to check)."""
        return None

    @classmethod
    def check_options(cls, options: dict[str, Any], what: str) -> None:
        """Refuse, before loading, an option that names something missing here (a local tokenizer)."""
        return None

    @property
    def identity(self) -> str:
        """What determines this backend's outputs besides the prompt (for cache keys)."""
        return f"{self.name}:{self.model}"


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first of the ``stop`` strings in it (each backend cuts here too, so that an engine that
    keeps the string, or stops a token late, gives the same text as the others)."""
    ends = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return text[: min(ends)] if ends else text


def label_logprobs(
    logprobs: Any, labels: Sequence[str], label_ids: Sequence[int], top: int
) -> tuple[dict[str, float], int]:
    """The labels' entries of one full-vocabulary row of log-probabilities (a numpy array), and how many
    fall outside its ``top`` most likely tokens (0: none can): those get a floor below the top ones."""
    import numpy as np

    scores = {label: float(logprobs[i]) for label, i in zip(labels, label_ids, strict=True)}
    if not 0 < top < len(logprobs):
        return scores, 0
    threshold = float(np.partition(logprobs, -top)[-top])
    outside = [label for label, value in scores.items() if value < threshold]
    return {**scores, **dict.fromkeys(outside, threshold - 1.0)}, len(outside)


BACKENDS: Registry[type[LLMBackend]] = Registry("LLM backend", "rerank.backends")
BACKENDS.register("transformers", "rerank.llm.transformers_backend:TransformersBackend")
BACKENDS.register("llama.cpp", "rerank.llm.llama_cpp_backend:LlamaCppBackend")
BACKENDS.register("openai", "rerank.llm.openai_backend:OpenAIBackend")
BACKENDS.register("vllm", "rerank.llm.vllm_backend:VLLMBackend")


def register_backend(name: str, target: str | type[LLMBackend]) -> None:
    """Add a backend: ``"module:Class"`` or the class itself; a name is registered once."""
    BACKENDS.register(name, target)


def backend_names() -> list[str]:
    return BACKENDS.names()


def load_backend(spec: Any, model: str, **defaults: Any) -> LLMBackend:
    """The backend a spec names (``name`` or ``name(option=value, …)``) for ``model``.

    ``defaults`` (such as the method's ``batch_size``) are passed unless the spec sets them.
    Options are checked against the backend's constructor before it is built.
    """
    from rerank.spec import parse_spec

    parsed = parse_spec(spec) if isinstance(spec, str) else spec  # a string or a nested spec
    options = {**defaults, **parsed.kwargs}
    backend: LLMBackend = BACKENDS.create(parsed.name, {"model": model, **options}, given=f"backend {spec!r}")
    return backend


def call_cost(result: Generation | TokenScores) -> Any:
    """The cost of one answer: a call and its tokens, or nothing when it came from the cache."""
    from rerank.cost import Cost

    if result.cached:
        return Cost()
    output_tokens = result.output_tokens if isinstance(result, Generation) else 0
    return Cost(calls=1, input_tokens=result.input_tokens, output_tokens=output_tokens)
