"""The wire formats, each mapped to one internal request and back.

- Cohere v2 ``POST /v2/rerank``: ``model, query, documents (strings), top_n, max_tokens_per_doc``
  -> ``{id, results: [{index, relevance_score}], meta}``.
- Cohere v1 ``POST /v1/rerank`` (Jina, Infinity and vLLM send the same shape): documents are strings
  or objects (``rank_fields`` picks the fields ranked, default ``text``), ``return_documents`` adds
  ``document`` to each result; the answer also carries ``model`` and ``usage.total_tokens`` as Jina's does.
- text-embeddings-inference ``POST /rerank``: ``query, texts, truncate, raw_scores, return_text``
  -> ``[{index, score, text?}]``; without ``raw_scores`` a score is ``sigmoid(raw)`` as TEI gives it.

All three take ``passages`` (a rerank extension): ``{"aggregate": "maxp", "window": 150, "stride": 75, "unit":
"words", "tail": "keep", "max_windows": null}`` splits each document into windows, scores every window and gives
the document its best (``maxp``), first, summed or mean window score, as the ``split`` method does
(``rerank.passages``); it needs a served pipeline of one pointwise method. Cohere v1's ``max_chunks_per_doc``
is ``passages`` with ``max_windows`` set: each document's first N windows, the best one.

Results are sorted by score, best first (ties by the caller's index), cut to ``top_n``; ``index`` is the
document's position in the caller's list. Documents longer than the model's window are truncated,
never refused: ``meta.warnings`` (and the ``X-Rerank-Truncated`` header) say how many.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator, model_validator

Document = StrictStr | dict[str, Any]


class Passages(BaseModel):
    """Split long documents into windows and aggregate their scores (the ``split`` method's parameters)."""

    model_config = ConfigDict(extra="forbid")

    aggregate: Literal["maxp", "firstp", "sump", "meanp"] = "maxp"
    window: int = Field(default=150, ge=1)
    stride: int = Field(default=75, ge=1)
    unit: Literal["words", "tokens"] = "words"
    tail: Literal["keep", "drop"] = "keep"
    max_windows: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _stride_within_window(self) -> Passages:
        if self.stride > self.window:
            raise ValueError(f"stride ({self.stride}) must not exceed window ({self.window}): words would be skipped")
        return self


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: StrictStr = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1)
    passages: Passages | None = None

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class CohereV2Request(_Request):
    model: str | None = None
    documents: list[Document] = Field(min_length=1)
    max_tokens_per_doc: int | None = Field(default=None, ge=1)


class CohereV1Request(_Request):
    model: str | None = None
    documents: list[Document] = Field(min_length=1)
    return_documents: bool = False
    rank_fields: list[StrictStr] | None = Field(default=None, min_length=1)
    max_chunks_per_doc: int | None = Field(default=None, ge=1)  # Cohere's chunking: passages with max_windows

    def chunked(self) -> Passages | None:
        """The passages asked for: ``passages``, or ``max_chunks_per_doc`` as MaxP over that many windows."""
        if self.max_chunks_per_doc is None:
            return self.passages
        return (self.passages or Passages()).model_copy(update={"max_windows": self.max_chunks_per_doc})


class TEIRequest(_Request):
    texts: list[StrictStr] = Field(min_length=1)
    truncate: bool = False  # documents are always cut to the model's window (never an error)
    raw_scores: bool = False
    return_text: bool = False
    truncation_direction: str | None = None


class DocumentError(ValueError):
    """A document that cannot be ranked: names its position (``documents.3``)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def document_texts(documents: Sequence[Document], rank_fields: Sequence[str] | None = None) -> list[str]:
    """The text ranked for each document: a string itself, an object's ``rank_fields`` (default ``text``)."""
    fields = list(rank_fields or ["text"])
    texts = []
    for i, doc in enumerate(documents):
        if isinstance(doc, str):
            texts.append(doc)
            continue
        missing = [f for f in fields if not isinstance(doc.get(f), str)]
        if missing:
            raise DocumentError(f"documents.{i}", f"the document has no string field {missing[0]!r}")
        # Several fields are ranked as "field: value" lines, in the order rank_fields gives them.
        texts.append(doc[fields[0]] if len(fields) == 1 else "\n".join(f"{f}: {doc[f]}" for f in fields))
    return texts


def ordered(scores: Sequence[float], top_n: int | None) -> list[int]:
    """Indices by score, best first, ties by index; the first ``top_n``."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return order[:top_n] if top_n is not None else order


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def meta(api_version: str, input_tokens: int, truncated: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "api_version": {"version": api_version},
        "billed_units": {"search_units": 1, "input_tokens": input_tokens},
        "tokens": {"input_tokens": input_tokens},
    }
    if truncated:
        body["warnings"] = [f"{truncated} document(s) were truncated to fit the model's window"]
    return body
