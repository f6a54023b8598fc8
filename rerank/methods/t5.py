"""Sequence-to-sequence rerankers: monoT5 (pointwise) and duoT5 (pairwise).

Nogueira et al., "Document Ranking with a Pretrained Sequence-to-Sequence Model" (2020) and Pradeep et
al., "The Expando-Mono-Duo Design Pattern for Text Ranking with Pretrained Sequence-to-Sequence Models"
(2021). A T5 reads ``Query: q Document: d Relevant:``; the score is the log-softmax of ``true`` over
{``true``, ``false``} at the first decoder step. One forward pass of the encoder and one decoder step per
batch: there is no generation loop.

The inputs are pyterrier-t5's (``MonoT5ReRanker``, ``DuoT5ReRanker``): the query and document(s) are cut
to leave room for ``Relevant:`` (mono: the end of the text goes; duo: each document loses half of the
excess), so the question that follows the document is always read. pyterrier-t5 pads each batch of four
before it appends ``Relevant:``, so a pair shorter than its batch's longest carries an end-of-sequence
token and masked padding in the middle, and its score depends on its neighbours. rerank encodes every
pair alone and batches them by length, so its scores do not depend on the batch (they equal
pyterrier-t5's with ``batch_size=1``); ``variant=pyterrier-t5`` lays batches out as pyterrier-t5 does,
for scores equal to its default run.

``variant=rank-llm`` is rank-llm's ``MonoT5``/``DuoT5``: texts cleaned as RankLLM cleans them (ftfy,
``[n]`` → ``(n)``), each passage cut to its share of the context less 64 tokens and decoded back to text,
the prompt ``Query: … Document: … Relevant: `` tokenised whole, and the score the probability of
``true`` (not its logarithm). Its duoT5 asks each unordered pair once, in the candidates' order (i < j),
where pyterrier-t5 asks both orders.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from data.errors import InvalidSpecError
from data.export import Backend
from data.inference import NEUTRAL, backend_libraries, check_backend, padded_batches
from data.models import check_model, quiet_loading, resolve_model
from data.optional import optional_import
from data.records import RerankRequest
from rerank.base import PairScores, PointwiseReranker, Reranker, check_device, require_texts, scored_ranking
from rerank.cost import Cost
from rerank.result import RerankResult

Variant = Literal["rerank", "pyterrier-t5", "rank-llm"]
VARIANTS = ("rerank", "pyterrier-t5", "rank-llm")
RANK_LLM_RESERVED = 64  # rank-llm keeps this many of the context's tokens for the answer
# The relevant and the non-relevant word each template's models were trained to answer with.
TEMPLATES = {"monot5": ("true", "false"), "mt5": ("yes", "no")}
SUFFIX = "Relevant:"


def check_seq2seq(method: str, model: str, where: str, config: dict[str, Any] | None = None) -> None:
    """Refuse, before the weights load, a model that is not an encoder-decoder (a causal LM, a BERT), by its
    config (a local folder's is read here; a hub id's is checked once it is downloaded)."""
    if config is None:
        config_file = Path(resolve_model(model)) / "config.json"
        if not config_file.is_file():
            return
        config = json.loads(config_file.read_text(encoding="utf-8"))
    if not config.get("is_encoder_decoder", config.get("model_type") in ("t5", "mt5", "umt5")):
        found = config.get("model_type") or "unknown"
        architectures = ", ".join(config.get("architectures") or ()) or "no architecture"
        raise InvalidSpecError(
            f"{where}: {method} needs a sequence-to-sequence (T5) model; {model} is a {found} ({architectures})"
        )


def check_t5_params(cls: type[Reranker], params: dict[str, Any], where: str) -> None:
    """Both methods' checks before anything loads: the model is there and is a T5, the template is known."""
    if params.get("device") is not None:
        check_device(str(params["device"]), where)
    check_model(str(params["model"]), what=f"{where}: model", files=("config.json",))
    check_seq2seq(cls.method, str(params["model"]), where)
    if params.get("template", "monot5") not in TEMPLATES:
        raise InvalidSpecError(f"{where}: template is one of {', '.join(TEMPLATES)}, not {params['template']!r}")
    check_backend(str(params.get("backend", "torch")), str(params.get("precision", "float32")), where,
                  params.get("calibration", 0))  # fmt: skip


def _bracketed(text: str) -> str:
    """rank-llm's ``_replace_number``: ``[n]`` becomes ``(n)``."""
    return re.sub(r"\[(\d+)\]", r"(\1)", text)


class T5Scorer:
    """A T5 checkpoint and its tokenizer, scoring token sequences by one decoder step."""

    def __init__(
        self, method: str, model: str, tokenizer: str | None, template: str, device: str | None,
        backend: str = "torch", precision: str = "float32", calibration: int = 0,
    ):  # fmt: skip
        torch = optional_import("torch")
        transformers = optional_import("transformers")
        if template not in TEMPLATES:
            raise InvalidSpecError(f"{method}: template is one of {', '.join(TEMPLATES)}, not {template!r}")
        path = resolve_model(model)
        config = transformers.AutoConfig.from_pretrained(path)
        check_seq2seq(method, model, f"{method}(model={model})", config.to_dict())
        self.tokenizer: Any = transformers.AutoTokenizer.from_pretrained(
            resolve_model(tokenizer) if tokenizer else path
        )
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net: Any = None
        self.runtime: Any = None  # the export (onnx, openvino), which holds the weights
        if backend != "torch":
            from data.export import LazyRuntime

            if self.device.type != "cpu":
                raise InvalidSpecError(
                    f"{method}: backend={backend} runs on the CPU; use backend=torch on {self.device}"
                )
            self.runtime = LazyRuntime(path, "seq2seq", backend, precision, calibration)  # type: ignore[arg-type]
        else:
            with quiet_loading():
                self.net = transformers.AutoModelForSeq2SeqLM.from_pretrained(path)
            self.net.to(self.device).eval()
        self.labels = [self._single_token(method, template, word) for word in TEMPLATES[template]]
        start = getattr(config, "decoder_start_token_id", None)
        self.start = int(start if start is not None else config.pad_token_id)
        self.pad = int(self.tokenizer.pad_token_id or 0)
        self.suffix = self.tokenizer(SUFFIX)["input_ids"]  # with its end-of-sequence token
        # rank-llm counts its (empty) few-shot section's tokens too: the end-of-sequence token
        self.no_examples = len(self.tokenizer.encode(""))

    def _single_token(self, method: str, template: str, word: str) -> int:
        ids = self.tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            pieces = self.tokenizer.convert_ids_to_tokens(ids)
            raise InvalidSpecError(
                f"{method}(template={template}): the label {word!r} is {len(ids)} tokens for this model's tokenizer "
                f"({pieces}); the template needs a model whose vocabulary has it as one token"
            )
        return int(ids[0])

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids without the end-of-sequence token (the suffix brings it)."""
        if not texts:
            return []
        return [list(x) for x in self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]]

    def relevance(self, batch: dict[str, Any]) -> list[float]:
        """log P(relevant word) over the two label words at the first decoder step, per row of ``batch``."""
        torch = optional_import("torch")
        if self.runtime is not None:
            # (OpenVINO's int8 graph answers with a leading axis of 1: the rows are taken by shape)
            out = self.runtime.run(batch["input_ids"], batch["attention_mask"]).reshape(len(batch["input_ids"]), -1)
            logits = torch.from_numpy(out[:, self.labels])
            return [float(x) for x in torch.log_softmax(logits.float(), dim=1)[:, 0].tolist()]
        tensors = {k: torch.as_tensor(v).to(self.device) for k, v in batch.items() if k != "token_type_ids"}
        start = torch.full((tensors["input_ids"].shape[0], 1), self.start, dtype=torch.long, device=self.device)
        with torch.inference_mode():
            logits = self.net(**tensors, decoder_input_ids=start).logits[:, 0, self.labels].float()
        return [float(x) for x in torch.log_softmax(logits, dim=1)[:, 0].cpu().tolist()]

    def score(self, inputs: list[list[int]], batch_size: int, batch_tokens: int | None) -> tuple[list[float], int]:
        """Scores of token sequences, batched by length (the order does not matter: each row is alone)."""
        # On a CPU small padded batches keep the caches warm: measured on t5-base's shape, 1,024 tokens beat
        # 2,048 (benchmarks/t5.py); GPUs want more.
        budget = batch_tokens or (32_768 if self.device.type == "cuda" else 1_024)
        scores = [0.0] * len(inputs)
        batches = padded_batches(inputs, batch_size, self.pad, budget)
        if self.runtime is not None:
            self.runtime.calibrate([arrays for _, arrays in batches])  # static int8: from the first batches
        for chunk, arrays in batches:
            for i, value in zip(chunk, self.relevance(arrays), strict=True):
                scores[i] = value
        return scores, len(batches)

    def score_laid_out(self, rows: list[tuple[list[int], list[int]]]) -> list[float]:
        """Scores of one batch laid out by the caller: (input ids, attention mask) rows of one width."""
        return self.relevance({"input_ids": [r[0] for r in rows], "attention_mask": [r[1] for r in rows]})

    def rank_llm_passage(self, text: str, limit: int) -> str:
        """A passage as rank-llm puts it in a T5 prompt: cleaned, cut to ``limit`` words, then to ``limit``
        tokens (with the end-of-sequence token), and decoded back to text."""
        from rerank.methods.listwise import clean_text

        words = " ".join(clean_text(text.strip()).split()[:limit])
        ids = self.tokenizer.encode(words, truncation=True, max_length=limit)
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def rank_llm_ids(self, prompts: Sequence[str], limit: int | None) -> list[list[int]]:
        """rank-llm's prompts tokenised whole (``<unk>`` removed first, as its handler does)."""
        cut = {"truncation": True, "max_length": limit} if limit else {"truncation": True}
        clean = [p.replace("<unk>", "") for p in prompts]
        return [list(x) for x in self.tokenizer(clean, verbose=False, **cut)["input_ids"]]

    def padded(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        """pyterrier-t5's layout: the texts tokenised together, padded to the longest, the last column dropped
        (the longest's end-of-sequence token; a shorter text keeps its own, followed by padding)."""
        encoded = self.tokenizer(list(texts), padding="longest", verbose=False)
        return [r[:-1] for r in encoded["input_ids"]], [r[:-1] for r in encoded["attention_mask"]]


class T5Method:
    """What monoT5 and duoT5 share: their parameters, the loaded T5, and the tokens left before ``Relevant:``."""

    method: ClassVar[str]
    libraries: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    # batch_size decides the scores of variant=pyterrier-t5 (a pair reads its batch's padding), so it stays in
    # the output cache's identity; batch_tokens only groups pairs of the batch-invariant paths
    execution_params: ClassVar[frozenset[str]] = frozenset({"batch_tokens"})
    min_room: ClassVar[int] = 1  # tokens the input needs before the suffix
    neutral_params: ClassVar[Mapping[str, Any]] = MappingProxyType({**NEUTRAL, "precision": "float32"})

    @classmethod
    def libraries_for(cls, params: Mapping[str, Any]) -> tuple[str, ...]:
        return cls.libraries + backend_libraries(str(params.get("backend", "torch")))

    def __init__(
        self,
        model: str,
        template: str = "monot5",
        tokenizer: str | None = None,
        max_length: int = 512,
        batch_size: int = 32,
        batch_tokens: int | None = None,
        device: str | None = None,
        variant: Variant = "rerank",
        backend: Backend = "torch",
        precision: str = "float32",
        calibration: int = 0,
    ):
        """``backend=onnx|openvino`` runs the encoder and the first decoder step exported into the cache;
        ``precision=int8`` quantises that export (dynamically on ONNX Runtime, or statically from the first
        ``calibration`` pairs)."""
        if variant not in VARIANTS:
            raise InvalidSpecError(f"{self.method}: variant is one of {', '.join(VARIANTS)}, not {variant!r}")
        check_backend(backend, precision, self.method, calibration)
        self.model, self.template, self.max_length, self.variant = model, template, max_length, variant
        self.batch_size, self.batch_tokens = batch_size, batch_tokens
        self.backend, self.precision, self.calibration = backend, precision, calibration
        self._t5 = T5Scorer(self.method, model, tokenizer, template, device, backend, precision, calibration)
        self._room = max_length - len(self._t5.suffix)  # tokens left for the query and the passage(s)
        if self._room < self.min_room:
            raise InvalidSpecError(f"{self.method}: max_length={max_length} leaves no room before {SUFFIX!r}")

    check_params = classmethod(check_t5_params)

    @property
    def batch_invariant(self) -> bool:
        # dynamic int8 scales activations per batch; pyterrier-t5's and rank-llm's layouts read their batch
        return self.variant == "rerank" and (self.precision != "int8" or bool(self.calibration))

    def tokenizer(self) -> Any:
        return self._t5.tokenizer


class MonoT5Reranker(T5Method, PointwiseReranker):
    """monoT5: ``log P(true)`` over {true, false} for ``Query: q Document: d Relevant:``.

    ``max_length`` tokens in all (512, T5's positions); the text is cut at its end to leave room for
    ``Relevant:``. ``template=mt5`` reads ``yes``/``no`` (mT5 mMARCO); InRanker and the monoT5 family use
    ``monot5``. ``tokenizer`` names another tokenizer (pyterrier-t5 reads ``t5-base``'s by default; a
    checkpoint that ships its own needs none). ``variant=pyterrier-t5`` lays out each ``batch_size`` pairs in
    input order as pyterrier-t5 does (its scores depend on the batch: see the module's note).
    """

    method = "mono-t5"

    def document_limit(self) -> tuple[int, str]:
        return self._room, "tokens"

    def score_pairs(self, queries: Sequence[str], texts: Sequence[str], docids: Sequence[str] = ()) -> PairScores:
        prompts = [f"Query: {q} Document: {d}" for q, d in zip(queries, texts, strict=True)]
        if not prompts:
            return PairScores([], [], [], 0)
        if self.variant == "pyterrier-t5":
            return self._laid_out(prompts)
        if self.variant == "rank-llm":
            return self._rank_llm(queries, texts)
        ids = self._t5.ids(prompts)
        truncated = [len(x) > self._room for x in ids]
        inputs = [x[: self._room] + self._t5.suffix for x in ids]
        scores, calls = self._t5.score(inputs, self.batch_size, self.batch_tokens)
        return PairScores(scores, [len(x) for x in inputs], truncated, calls)

    def _rank_llm(self, queries: Sequence[str], texts: Sequence[str]) -> PairScores:
        """rank-llm's ``MonoT5``: its prompts (``create_prompt``), scored as probabilities."""
        prompts, cut = [], []
        for query, text in zip(queries, texts, strict=True):
            room = self.max_length - len(self._t5.tokenizer.encode(f"Query: {query} Document:  Relevant: "))
            room -= RANK_LLM_RESERVED + self._t5.no_examples
            passage = self._t5.rank_llm_passage(text, room)
            cut.append(len(self._t5.tokenizer.encode(text)) > room)
            prompts.append(f"Query: {_bracketed(query)} Document: {passage} Relevant: ")
        inputs = self._t5.rank_llm_ids(prompts, None)
        scores, calls = self._t5.score(inputs, self.batch_size, self.batch_tokens)
        return PairScores([math.exp(s) for s in scores], [len(x) for x in inputs], cut, calls)

    def _laid_out(self, prompts: list[str]) -> PairScores:
        scores: list[float] = []
        lengths: list[int] = []
        truncated: list[bool] = []
        suffix = self._t5.suffix
        calls = 0
        for start in range(0, len(prompts), self.batch_size):
            ids, masks = self._t5.padded(prompts[start : start + self.batch_size])
            rows = [
                (i[: self._room] + suffix, m[: self._room] + [1] * len(suffix)) for i, m in zip(ids, masks, strict=True)
            ]
            scores += self._t5.score_laid_out(rows)
            lengths += [sum(m) for _, m in rows]
            truncated += [sum(m) > self._room for m in masks]
            calls += 1
        return PairScores(scores, lengths, truncated, calls)


class DuoT5Reranker(T5Method, Reranker):
    """duoT5: every ordered pair of a query's candidates, ``Query: q Document0: a Document1: b Relevant:``.

    Each pair's ``s = log P(true)`` adds ``s`` to the first document and ``1 - s`` to the second: the
    symmetric sum over all n(n − 1) ordered pairs of pyterrier-t5's ``DuoT5ReRanker``. It is quadratic: use
    it after a cutoff (``mono-t5 % 50 >> duo-t5``). When a pair does not fit ``max_length``, each
    document loses half of the excess at its end. Calls are batches of pairs; a request's share is by its
    pairs. ``variant=pyterrier-t5`` lays out batches as pyterrier-t5 does (queries in id order, each
    part padded within its batch).
    """

    method = "duo-t5"
    min_room = 3  # the query and two passages need a token each

    def rerank(self, requests: Sequence[RerankRequest]) -> list[RerankResult]:
        start = time.perf_counter()
        pairs: list[tuple[int, int, int]] = []  # (request, first, second)
        for n, request in enumerate(requests):
            require_texts(request)
            size = len(request.candidates)
            ordered = itertools.combinations if self.variant == "rank-llm" else itertools.permutations
            pairs += [(n, i, j) for i, j in ordered(range(size), 2)]
        if self.variant == "pyterrier-t5":
            order = sorted(range(len(requests)), key=lambda n: requests[n].query.qid)  # its groupby sorts qids
            rank = {n: position for position, n in enumerate(order)}
            pairs.sort(key=lambda p: rank[p[0]])  # stable: each query's permutations keep their order
            scores, lengths, truncated, calls = self._laid_out(requests, pairs)
        elif self.variant == "rank-llm":
            scores, lengths, truncated, calls = self._rank_llm(requests, pairs)
        else:
            scores, lengths, truncated, calls = self._alone(requests, pairs)
        totals = [[0.0] * len(r.candidates) for r in requests]
        tokens = [0] * len(requests)
        cut = [0] * len(requests)
        for (n, i, j), s, length, was_cut in zip(pairs, scores, lengths, truncated, strict=True):
            totals[n][i] += s
            totals[n][j] += 1 - s
            tokens[n] += length
            cut[n] += was_cut
        elapsed = time.perf_counter() - start
        counts = [0] * len(requests)
        for n, _, _ in pairs:
            counts[n] += 1
        results = []
        for n, request in enumerate(requests):
            share = counts[n] / len(pairs) if pairs else 0.0
            cost = Cost(calls=calls * share, input_tokens=tokens[n], truncated=cut[n], seconds=elapsed * share)
            results.append(RerankResult(scored_ranking(request, totals[n]), cost))
        return results

    def _alone(
        self, requests: Sequence[RerankRequest], pairs: list[tuple[int, int, int]]
    ) -> tuple[list[float], list[int], list[bool], int]:
        """Every pair encoded alone (pyterrier-t5 with batch_size=1), batched by length."""
        encoded = []
        for request in requests:
            (query,) = self._t5.ids([f"Query: {request.query.text}"])
            firsts = self._t5.ids([f"Document0: {c.text}" for c in request.candidates])
            seconds = self._t5.ids([f"Document1: {c.text}" for c in request.candidates])
            encoded.append((query, firsts, seconds))
        inputs: list[list[int]] = []
        truncated: list[bool] = []
        for n, i, j in pairs:
            query, firsts, seconds = encoded[n]
            a, b = firsts[i], seconds[j]
            excess = len(query) + len(a) + len(b) - self._room
            if excess > 0:  # each document loses half the excess, rounded up, at its end
                half = math.ceil(excess / 2)
                a, b = a[: len(a) - half], b[: len(b) - half]
            inputs.append(query + a + b + self._t5.suffix)
            truncated.append(excess > 0)
        scores, calls = self._t5.score(inputs, self.batch_size, self.batch_tokens)
        return scores, [len(x) for x in inputs], truncated, calls

    def _rank_llm(
        self, requests: Sequence[RerankRequest], pairs: list[tuple[int, int, int]]
    ) -> tuple[list[float], list[int], list[bool], int]:
        """rank-llm's ``DuoT5``: its prompts (``create_prompt``: each passage gets half of what the query and
        the reserve leave), scored as probabilities."""
        prompts, cut = [], []
        for n, i, j in pairs:
            request = requests[n]
            query = _bracketed(request.query.text)
            frame = f"Query: {query} Document0:  Document1:  Relevant: "
            used = len(self._t5.tokenizer.encode(frame)) + RANK_LLM_RESERVED + self._t5.no_examples
            share = (self.max_length - used) // 2
            a, b = request.candidates[i].text or "", request.candidates[j].text or ""
            first, second = self._t5.rank_llm_passage(a, share), self._t5.rank_llm_passage(b, share)
            prompts.append(f"Query: {query} Document0: {first} Document1: {second} Relevant: ")
            cut.append(any(len(self._t5.tokenizer.encode(t)) > share for t in (a, b)))
        inputs = self._t5.rank_llm_ids(prompts, self.max_length)
        scores, calls = self._t5.score(inputs, self.batch_size, self.batch_tokens)
        return [math.exp(s) for s in scores], [len(x) for x in inputs], cut, calls

    def _laid_out(
        self, requests: Sequence[RerankRequest], pairs: list[tuple[int, int, int]]
    ) -> tuple[list[float], list[int], list[bool], int]:
        """pyterrier-t5's batches: each part tokenised and padded within its batch of ``batch_size`` pairs."""
        scores: list[float] = []
        lengths: list[int] = []
        truncated: list[bool] = []
        suffix = self._t5.suffix
        calls = 0
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start : start + self.batch_size]
            query, query_mask = self._t5.padded([f"Query: {requests[n].query.text}" for n, _, _ in chunk])
            first, first_mask = self._t5.padded([f"Document0: {requests[n].candidates[i].text}" for n, i, _ in chunk])
            second, second_mask = self._t5.padded([f"Document1: {requests[n].candidates[j].text}" for n, _, j in chunk])
            excess = len(query[0]) + len(first[0]) + len(second[0]) - self._room
            half = math.ceil(excess / 2) if excess > 0 else 0
            rows = []
            for q, qm, a, am, b, bm in zip(query, query_mask, first, first_mask, second, second_mask, strict=True):
                if half:
                    a, am, b, bm = a[:-half], am[:-half], b[:-half], bm[:-half]
                rows.append((q + a + b + suffix, qm + am + bm + [1] * len(suffix)))
            scores += self._t5.score_laid_out(rows)
            lengths += [sum(m) for _, m in rows]
            truncated += [excess > 0] * len(chunk)
            calls += 1
        return scores, lengths, truncated, calls
