"""Record what ielab/llm-rankers' own Rank-R1 ranker sends and decides, for ``tests/test_fidelity.py``.

    PYTHONPATH=CHECKOUT python tests/reference/rank_r1_setwise.py tests/reference/rank_r1_setwise.json COMMIT

(CHECKOUT: a checkout of github.com/ielab/llm-rankers at COMMIT; the registry's llm-rankers 0.0.2 predates
Rank-R1, so its ``RankR1SetwiseLlmRanker`` is recorded here, with the commit it came from.)

Its ``compare`` (shuffle, numbered passages, messages, the answer read from the whole completion by the
prompt's pattern, the vote) and the inherited heapsort run as shipped. What cannot run here is replaced: vLLM
(``self.llm.chat``) by a judge that answers as Rank-R1 does, naming in answer tags the shown passage of highest
hidden grade (``grade N`` in its text) after a short reasoning, except for sets whose grades sum to a multiple
of 7, where it answers without the tags (a parse failure: the first passage of the set wins); ``openai`` by a
stub module; ``toml`` by ``tomllib`` (the same file). The module's ``random`` is seeded with 929 before the
queries are ranked in order, as its run_setwise.py does.
"""

from __future__ import annotations

import json
import random
import re
import sys
import types
from pathlib import Path
from typing import Any

import tomllib

PROMPT = Path(__file__).parent / "rank_r1_prompt_setwise-R1.toml"
QUERIES = [  # (qid, query, grades of its candidates in first-stage order)
    ("q1", "what causes tides", [3, 9, 1, 4, 7, 2, 8, 5, 6, 0, 11, 10]),
    ("q2", "how long is the life cycle of a flea", [5, 1, 4, 2, 8, 7, 3, 6, 9]),
    ("q3", "what is a reranker", [2, 6, 1, 9, 3]),
]


# Completions its compare must read (a set of 4 passages): well-formed, tags in capitals, an unclosed think block,
# a reasoning cut by the length limit, an answer outside the tags, before the thinking, two labels, out of range,
# a bare number, spaces inside the tags, junk
TABLE = [
    "<think>\nthe second\n</think>\n<answer>[2]</answer>",
    "<THINK>a</THINK> <ANSWER>[2]</ANSWER>",
    "<think>\n[2] looks best",
    "<think>\nhmm hmm hmm hmm",
    "<think>a</think>\n[2]",
    "<answer>[2]</answer>\n<think>a</think>",
    "<think>a</think><answer>[1], [2]</answer>",
    "<think>a</think><answer>[9]</answer>",
    "<think>a</think><answer>4</answer>",
    "<think>a</think><answer> [4] </answer>",
    "I cannot tell.",
]


def judge(messages: list[dict[str, str]]) -> str:
    shown = re.findall(r"^\[(\d+)\] grade (\d+) ", messages[-1]["content"], re.M)
    grades = {label: int(grade) for label, grade in shown}
    if sum(grades.values()) % 7 == 0:
        return "<think>\nHard to say.\n</think>\nThe third one."
    best = max(grades, key=lambda label: grades[label])
    return f"<think>\nPassage [{best}] answers it.\n</think>\n<answer>[{best}]</answer>"


def main(target: str, commit: str) -> None:
    sys.modules.setdefault("openai", types.ModuleType("openai"))
    from llmrankers.rankers import SearchResult  # type: ignore[import-not-found]
    from llmrankers.setwise import RankR1SetwiseLlmRanker  # type: ignore[import-not-found]

    calls: list[list[dict[str, str]]] = []

    def chat(conversations: list[Any], **_: Any) -> list[Any]:
        out = []
        for messages in conversations:
            calls.append(messages)
            text = judge(messages)
            out.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text=text, token_ids=text.split())],
                                             prompt_token_ids=[]))  # fmt: skip
        return out

    ranker = object.__new__(RankR1SetwiseLlmRanker)
    ranker.prompt = tomllib.loads(PROMPT.read_text(encoding="utf-8"))
    ranker.llm = types.SimpleNamespace(chat=chat)
    ranker.verbose, ranker.lora_path, ranker.num_permutation = False, None, 1
    ranker.num_child, ranker.k, ranker.method, ranker.scoring = 3, 4, "heapsort", "generation"
    ranker.sampling_params = None
    random.seed(929)  # as run_setwise.py does before ranking
    rankings = {}
    for qid, query, grades in QUERIES:
        results = [
            SearchResult(f"{qid}d{i}", float(-i), f"grade {g} passage {i} of {qid}") for i, g in enumerate(grades)
        ]
        rankings[qid] = [r.docid for r in ranker.rerank(query, results)]
    decided = []
    for completion in TABLE:  # each read by compare from one shuffle, seeded anew
        ranker.llm = types.SimpleNamespace(chat=lambda conversations, completion=completion, **_: [
            types.SimpleNamespace(outputs=[types.SimpleNamespace(text=completion, token_ids=[])], prompt_token_ids=[])
            for _ in conversations])  # fmt: skip
        random.seed(1)
        docs = [SearchResult(f"t{i}", 0.0, f"passage {i}") for i in range(4)]
        label = ranker.compare("a query", docs)
        decided.append(ranker.CHARACTERS.index(label) if label in ranker.CHARACTERS else 0)  # heapify's fallback
    out = {"commit": commit, "num_child": 3, "k": 4, "queries": QUERIES, "calls": calls, "rankings": rankings,
           "table": TABLE, "decided": decided}  # fmt: skip
    Path(target).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
