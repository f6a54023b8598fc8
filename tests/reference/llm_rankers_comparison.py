"""Run ielab/llm-rankers' own setwise or pairwise ranker on a Hugging Face causal LM, as shipped.

    python tests/reference/llm_rankers_comparison.py INPUT.json OUTPUT.json

with llm-rankers importable (``tests/test_fidelity.py`` installs it into a folder of its own and puts
that on ``PYTHONPATH``). Its ``SetwiseLlmRanker`` / ``PairwiseLlmRanker`` run unchanged on transformers
(the causal-LM path: chat template, `` Passage:`` appended, one greedy token); the only stubs are the
``openai`` and ``tiktoken`` modules its files import for their OpenAI rankers, which are not used.

INPUT: {"ranker": "setwise" | "pairwise", "model": a Hugging Face folder, "method": "heapsort" |
"bubblesort", "k", "num_child" (setwise), "requests": [{"qid", "query", "candidates": [[docid, text]]}],
"truncate" (optional): {"query": N, "passage": N}, tokens to cut them to first, as llm-rankers' run.py
does (``--query_length``, ``--passage_length``, 128 each by default)}.
OUTPUT: {"calls": [{"prompt", "answer"}], "rankings": {qid: [docid, ...]}}: every prompt the model saw
(with its special tokens) and the token it wrote, in the order asked.

INPUT as a list of ``{"simulate": seed, "ranker", "method", "k", "num_child", "lists"}``: no model is
loaded, the rankers' ``compare`` answers with ``simulated_answer`` (a deterministic, noisy judge of the
docids shown) and the sorting, decision rules and final assembly run as shipped over each of ``"lists"``
(docids). OUTPUT: one ``{"calls": [[docid, ...] shown, ...], "rankings": [[docid, ...], ...]}`` per input,
all from one process (llm-rankers' imports take seconds).
"""

from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path
from typing import Any


def simulated_answer(seed: int, shown: list[str]) -> str:
    """The letter a judge names for these docids in this order: mostly the largest docid (as a number),
    else a letter drawn from the hash of (seed, shown), sometimes none ("?")."""
    draw = int(hashlib.sha256(f"{seed}:{'|'.join(shown)}".encode()).hexdigest(), 16)
    if draw % 10 == 0 or not shown:  # (llm-rankers' setwise bubblesort can ask about an empty window)
        return "?"
    best = max(range(len(shown)), key=lambda i: int(shown[i])) if draw % 10 < 7 else (draw // 10) % len(shown)
    return "ABCDEFGHIJKLMNOPQRSTUVW"[best]


def simulate(config: dict[str, Any]) -> dict[str, Any]:
    from llmrankers.pairwise import PairwiseLlmRanker
    from llmrankers.rankers import SearchResult
    from llmrankers.setwise import SetwiseLlmRanker

    seed, shown_sets = int(config["simulate"]), []

    def setwise_compare(query: str, docs: list[Any]) -> str:
        shown_sets.append([d.docid for d in docs])
        return simulated_answer(seed, shown_sets[-1])

    def pairwise_compare(query: str, texts: list[str]) -> list[str]:  # llm-rankers passes the texts here
        shown_sets.append(list(texts))
        return [f"Passage {simulated_answer(seed, list(texts))}", f"Passage {simulated_answer(seed, texts[::-1])}"]

    ranker: Any = object.__new__(SetwiseLlmRanker if config["ranker"] == "setwise" else PairwiseLlmRanker)
    ranker.k, ranker.method, ranker.num_child = int(config["k"]), config["method"], int(config.get("num_child", 1))
    ranker.compare = setwise_compare if config["ranker"] == "setwise" else pairwise_compare
    calls, rankings = [], []
    for docids in config["lists"]:
        shown_sets.clear()
        ranking = [SearchResult(docid=d, score=-rank, text=d) for rank, d in enumerate(docids)]
        rankings.append([result.docid for result in ranker.rerank("q", ranking)])
        calls.append(list(shown_sets))
    return {"calls": calls, "rankings": rankings}


def main(target: str) -> None:
    from llmrankers.pairwise import PairwiseLlmRanker
    from llmrankers.rankers import SearchResult
    from llmrankers.setwise import SetwiseLlmRanker

    if CONFIG["ranker"] == "setwise":
        ranker: Any = SetwiseLlmRanker(CONFIG["model"], None, "cpu", num_child=int(CONFIG["num_child"]),
                                       k=int(CONFIG["k"]), scoring="generation", method=CONFIG["method"])  # fmt: skip
    else:
        ranker = PairwiseLlmRanker(CONFIG["model"], None, "cpu", method=CONFIG["method"], k=int(CONFIG["k"]))
    calls: list[dict[str, str]] = []
    generate, tokenizer = ranker.llm.generate, ranker.tokenizer

    def watched(input_ids: Any, **options: Any) -> Any:  # the model's own generate, its inputs and outputs kept
        output_ids = generate(input_ids, **options)
        for prompt, output in zip(input_ids, output_ids, strict=True):
            calls.append({"prompt": tokenizer.decode(prompt, clean_up_tokenization_spaces=False),
                          "answer": tokenizer.decode(output[len(prompt):], skip_special_tokens=True)})  # fmt: skip
        return output_ids

    ranker.llm.generate = watched
    rankings = {}
    lengths = CONFIG.get("truncate")  # run.py's --query_length and --passage_length, cut with the ranker's own truncate

    def cut(text: str, length: str) -> str:
        return ranker.truncate(text, int(lengths[length])) if lengths else text

    for item in CONFIG["requests"]:
        ranking = [SearchResult(docid=docid, score=-rank, text=cut(text, "passage"))
                   for rank, (docid, text) in enumerate(item["candidates"])]  # fmt: skip
        rankings[item["qid"]] = [result.docid for result in ranker.rerank(cut(item["query"], "query"), ranking)]
    Path(target).write_text(json.dumps({"calls": calls, "rankings": rankings}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    for stubbed in ("openai", "tiktoken"):  # imported by llm-rankers' modules for its OpenAI rankers only
        sys.modules[stubbed] = types.ModuleType(stubbed)
    CONFIG = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    if isinstance(CONFIG, list):
        Path(sys.argv[2]).write_text(json.dumps([simulate(config) for config in CONFIG]), encoding="utf-8")
    else:
        main(sys.argv[2])
