"""Record what GroupRank's own code (AQ-MedAI/Diver, ``Reranker/rerank_groupwise.py``) sends and ranks, for
``tests/test_fidelity.py``.

    .venv/bin/python tests/reference/diver_groupwise.py CHECKOUT COMMIT tests/reference/diver_groupwise.json

(CHECKOUT: a checkout of github.com/AQ-MedAI/Diver at COMMIT; run with the project's environment, which has
transformers and pytrec_eval, and RERANK_DATA_DIR set.)

Diver is not on the package registry and CI reaches only the registry, so its behaviour is recorded here,
with the commit it came from, and the test compares rerank's ``groupwise(variant=diver)`` with it.
Its ``GroupReranker`` runs unchanged; two stubs stand in for what it imports and cannot run here:
- ``vllm.LLM`` generates with the same Hugging Face model on transformers, one prompt at a time, tokenized
  as vLLM tokenizes a text prompt; it decodes greedily (rerank decodes greedily; Diver samples at
  temperature 0.3, which no two implementations reproduce) and records every prompt and answer;
- ``datasets`` (its ``load_dataset`` is used only by the script's ``__main__``).
The global ``random`` is seeded with the string rerank seeds the query's generator with (``seed:qid``)
before each query, and queries go in one at a time, as the test's reranker runs them.

Two scenarios:
- ``model``: a DL19 query, BM25 top 20, groups of 10, two rounds, 3,000 characters, smollm2-135m;
- ``answers``: scripted answers (well-formed, repaired, broken) over six passages in groups of three,
  so the parsing, the zeroing of a failed group, the means and the tie order are recorded without a model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

MAX_NEW_TOKENS = 128
SEED = 0
MODEL_RUN = {"group_size": 10, "interval": 10, "num_epoch": 2, "max_doc_lens": 3000, "depth": 20, "queries": 1}
ANSWER_RUN = {"group_size": 3, "interval": 3, "num_epoch": 2, "max_doc_lens": 3000}
# Each case answers the four calls (two rounds of two groups of three) in turn, cycling.
ANSWER_CASES = [
    ['<reason>\nok\n</reason>\n<answer>\n```json\n{"[1]": 5, "[2]": 3, "[3]": 8}\n```\n</answer>'],
    ['{"1": 7, "2": 7, "3": 2}'],  # bare JSON, ties
    ['```json\n{"[1]]": 4, "[2]": 9, "[3]": 1}\n```'],  # a doubled bracket, repaired
    ['```json\n{"[1]": 2, "[2]": 6\n```'],  # no closing brace, added; [3] left without a score
    ['<answer>{"[1]": 2, "[2]": 6</answer>'],  # no closing brace and no block: the group gets 0
    ['{"[1]": 2, "[1]": 9, "[3]": 4}'],  # a repeated key keeps its last score
    ['{"[0]": 6, "[2]": 1}'],  # id 0: the last of the group
    ['{"[-1]": 6, "[3]": 1}'],  # a negative id, from the end
    ['{"[4]": 6, "[1]": 9}'],  # out of range: the group gets 0
    ["I cannot decide."],
    ['{"[1]": "high", "[2]": 3}'],  # a score that is not a number
    ['{"[1]": true, "[2]": 3, "[3]": null}'],
    ['first {"[1]": 1} then {"[1]": 9, "[2]": 8, "[3]": 7}'],  # the last object counts
    ['<answer>```json\n{"[1]": 1}\n```\n```json\n{"[2]": 10, "[3]": 4}\n```</answer>'],  # the last block
    ['```json\n[["[2]", 3], ["[1]", 3]]\n```'],  # pairs, not an object
    ['{"[1]": 7.5, "[2]": 7.5, "[3]": 10}', '{"[3]": 2, "[2]": 9}', "nothing", '{"[1]": 0, "[2]": 10, "[3]": 5}'],
    ['{"1.5": 3}', '{"[2]": 4}', '{"[a]": 1}', '{"[3]": 6, "[1]": 6, "[2]": 6}'],
]


class SamplingParams:
    def __init__(self, **kwargs: Any):
        self.__dict__.update(kwargs)


class Output:
    def __init__(self, text: str):
        self.outputs = [types.SimpleNamespace(text=text)]


class TransformersLLM:
    """vllm.LLM on transformers: the prompt tokenized as vLLM tokenizes text (``tokenizer.encode``, special
    tokens added as the tokenizer adds them), greedy decoding, special tokens skipped in the text."""

    calls: ClassVar[list[dict[str, str]]] = []

    def __init__(self, model: str, **_: Any):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def generate(self, prompts: list[str], params: SamplingParams, use_tqdm: bool = False) -> list[Output]:
        import torch

        out = []
        for prompt in prompts:
            ids = torch.tensor([self.tokenizer.encode(prompt)])
            with torch.inference_mode():
                produced = self.model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=params.max_tokens,
                    do_sample=False, pad_token_id=self.tokenizer.pad_token_id,
                )[0, ids.shape[1]:]  # fmt: skip
            text = self.tokenizer.decode(produced.tolist(), skip_special_tokens=True)
            self.calls.append({"prompt": prompt, "answer": text})
            out.append(Output(text))
        return out


class ScriptedLLM:
    """vllm.LLM answering from a list, in turn (for the ``answers`` scenario)."""

    answers: ClassVar[list[str]] = []

    def __init__(self, model: str, **_: Any):
        self.calls = 0

    def get_tokenizer(self) -> Any:
        return types.SimpleNamespace(apply_chat_template=lambda messages, **_: messages[-1]["content"])

    def generate(self, prompts: list[str], params: SamplingParams, use_tqdm: bool = False) -> list[Output]:
        out = []
        for _ in prompts:
            out.append(Output(self.answers[self.calls % len(self.answers)]))
            self.calls += 1
        return out


def load_diver(checkout: Path) -> types.ModuleType:
    sys.modules["vllm"] = types.SimpleNamespace(LLM=None, SamplingParams=SamplingParams)  # type: ignore[assignment]
    sys.modules["datasets"] = types.SimpleNamespace(load_dataset=None)  # type: ignore[assignment]
    spec = importlib.util.spec_from_file_location("rerank_groupwise", checkout / "Reranker" / "rerank_groupwise.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rank(diver: types.ModuleType, llm: type, model: str, qid: str, query: str, docs: list[list[str]],
         run: dict[str, int]) -> list[list[Any]]:  # fmt: skip
    """Diver's ranking of one query: [docid, score] best first (a passage never scored is left out)."""
    diver.LLM = llm
    ranker = diver.GroupReranker(model)
    ranker.sampling_params = SamplingParams(temperature=0.0, max_tokens=MAX_NEW_TOKENS)  # greedy, as rerank
    random.seed(f"{SEED}:{qid}")
    scores = ranker.rerank_by_group(
        [{"qid": qid, "query": query}], {qid: [{"id": d, "text": t} for d, t in docs]}, topk=len(docs),
        group_size=run["group_size"], interval=run["interval"], num_epoch=run["num_epoch"],
        max_doc_lens=run["max_doc_lens"],
    )  # fmt: skip
    return [[docid, score] for docid, score in scores[qid].items()]


def main(checkout: str, commit: str, target: str) -> None:
    import data
    from data.models import resolve_model
    from rerank.llm.transformers_backend import fp32_copy_of_gguf

    diver = load_diver(Path(checkout))
    folder = fp32_copy_of_gguf(Path(resolve_model("smollm2-135m")))
    dl19 = data.load("msmarco-passage/trec-dl-2019", Path(os.environ["RERANK_DATA_DIR"]))
    model_queries = []
    for request in dl19.candidates("bm25")[: MODEL_RUN["queries"]]:
        docs = [[c.docid, c.text] for c in request.candidates[: MODEL_RUN["depth"]]]
        TransformersLLM.calls = []
        ranking = rank(diver, TransformersLLM, str(folder), request.query.qid, request.query.text, docs, MODEL_RUN)
        model_queries.append({"qid": request.query.qid, "query": request.query.text, "candidates": docs,
                              "calls": TransformersLLM.calls, "ranking": ranking})  # fmt: skip
    answer_queries = []
    docs = [[f"d{i}", f"passage {i}"] for i in range(6)]
    for answers in ANSWER_CASES:
        ScriptedLLM.answers = answers
        answer_queries.append(
            {"answers": answers, "ranking": rank(diver, ScriptedLLM, "", "q", "query", docs, ANSWER_RUN)}
        )
    out = {
        "source": "https://github.com/AQ-MedAI/Diver (Reranker/rerank_groupwise.py)", "commit": commit,
        "seed": SEED, "max_new_tokens": MAX_NEW_TOKENS,
        "model": {"name": "smollm2-135m", **MODEL_RUN, "queries": model_queries},
        "answers": {**ANSWER_RUN, "candidates": docs, "cases": answer_queries},
    }  # fmt: skip
    Path(target).write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:4])
