"""The prompt files shipped in this package, by name: JSON templates, plain text, and chat templates.

A chat template (``.jinja``) is a Hugging Face chat template over ``query``/``document`` messages (and an
optional ``system`` message holding the instruction), the format sentence-transformers' causal-LM
``CrossEncoder`` renders a pair in: the same file can be a model folder's ``chat_template.jinja``. Its first
line is a Jinja comment holding what scoring needs: ``{#- rerank: {"yes": …, "no": …, "score": …} -#}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCORES = {  # how a chat template's label log-probabilities make a score
    "log-softmax": "log P(yes) over {yes, no} (Qwen3-Reranker's model card)",
    "log-odds": "logit(yes) - logit(no) (mxbai-rerank-v2, sentence-transformers' LogitScore)",
    "logit": "the raw logit of yes (FlagEmbedding's LLM rerankers)",
}


def load_prompt(name: str) -> dict[str, str]:
    """A JSON prompt template shipped in this package (``rankzephyr``, ``first``, ``prp``, …)."""
    from importlib.resources import files

    path = files(__name__).joinpath(f"{name}.json")
    if not path.is_file():
        shipped = sorted(f.name.removesuffix(".json") for f in files(__name__).iterdir() if f.name.endswith(".json"))
        raise ValueError(f"template must be one of {', '.join(shipped)}, not {name!r}")
    data: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return data


def load_text(name: str) -> str:
    """A plain-text prompt template shipped in this package (``pointwise_yes_no``)."""
    from importlib.resources import files

    return files(__name__).joinpath(f"{name}.txt").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class ChatTemplate:
    """A causal reranker's prompt: the Jinja text, its label words and how their logits make a score."""

    name: str
    text: str
    yes: str
    no: str | None  # None: the score is the yes logit alone
    score: str  # a key of SCORES
    max_length: int  # the default token limit of a whole prompt

    def render(self, query: str, document: str, instruction: str | None, special: Mapping[str, str]) -> str:
        messages = ([{"role": "system", "content": instruction}] if instruction else []) + [
            {"role": "query", "content": query},
            {"role": "document", "content": document},
        ]
        return render_chat_template(self.text, messages, special)


def chat_template_names() -> list[str]:
    from importlib.resources import files

    return sorted(f.name.removesuffix(".jinja") for f in files(__name__).iterdir() if f.name.endswith(".jinja"))


def chat_template_path(name: str) -> Any | None:
    """The file a chat template name stands for: a shipped one, or a ``.jinja`` path; None when it is neither."""
    from importlib.resources import files

    shipped = files(__name__).joinpath(f"{name}.jinja")
    if shipped.is_file():
        return shipped
    if name.endswith(".jinja"):
        return Path(name).expanduser()
    return None


def load_chat_template(name: str, where: str = "template") -> ChatTemplate:
    """The chat template a name or ``.jinja`` path gives, its header checked (ValueError naming ``where``)."""
    path = chat_template_path(name)
    if path is None or not path.is_file():
        shipped = ", ".join(chat_template_names())
        raise ValueError(f"{where}: no chat template {name!r} (shipped: {shipped}; or a path to a .jinja file)")
    text = path.read_text(encoding="utf-8")
    header = re.match(r"\{#-?\s*rerank:\s*(\{.*?\})\s*-?#\}", text)
    if header is None:
        raise ValueError(f'{where}: {name} does not start with {{#- rerank: {{"yes": …, "no": …, "score": …}} -#}}')
    try:
        meta = json.loads(header.group(1))
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: {name}: its rerank header is not JSON ({error})") from None
    if meta.get("score") not in SCORES or not isinstance(meta.get("yes"), str):
        raise ValueError(f"{where}: {name}: its header needs a yes label and a score, one of {', '.join(SCORES)}")
    if (meta.get("no") is None) != (meta["score"] == "logit"):
        raise ValueError(
            f"{where}: {name}: a {meta['score']} score {'takes no' if meta.get('no') else 'needs a'} no label"
        )
    return ChatTemplate(name, text, meta["yes"], meta.get("no"), meta["score"], int(meta.get("max_length", 8192)))


def render_chat_template(text: str, messages: Sequence[Mapping[str, str]], special: Mapping[str, str]) -> str:
    """A chat template rendered as transformers' ``apply_chat_template`` renders it (same Jinja settings), with
    the model's special tokens (``bos_token``, ``eos_token``), no generation prompt added."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    return environment.from_string(text).render(messages=list(messages), add_generation_prompt=False, **special)
