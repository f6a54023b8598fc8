"""Record hltcoe/rank-k's own prompt and answer parsing, for ``tests/test_fidelity.py``.

    python tests/reference/rank_k.py CHECKOUT tests/reference/rank_k.json COMMIT

(CHECKOUT: a checkout of github.com/hltcoe/rank-k at COMMIT.) Rank-K is not on the package registry. Its
``rerank.py`` imports an OpenAI client, transformers and its vLLM launcher at the top, none of which its prompt
and parser use; so ``rank_k_prompt`` and ``parse_ranking_more`` are taken from ``rerank.py`` and
``combine_passages`` from ``utils.py`` as written (their definitions, run alone), and applied as its
``rerank`` applies them: ``rank_k_prompt.format(query=…, docs=combine_passages(texts))`` for a window, and
``parse_ranking_more`` on the answer's last line, then the missing ids in their order.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

WINDOWS = [  # (query, passages): spacing and brackets kept as they are
    (
        "what causes tides",
        ["The Moon's gravity pulls the oceans.", "Tides rise and fall  twice a day.\n", "[1] is cited."],
    ),
    ("define [2] in lists", ["A list [x] holds items.", "Second passage.", "Third.", "Fourth one here."]),
]
ANSWERS = [  # (answer, window size)
    ("[2] > [1] > [3]", 3),
    ("[3] > [2] > [4] = [1] > [5]", 5),  # a tie
    ("<think>\nFirst [2], then [1].\n</think>\n\n[1] > [3] > [2]", 3),  # the last line is read
    ("[2] > [1]\nI think that is right.", 3),  # prose on the last line
    ("[2] > [2] > [1] > [3]", 3),  # a repeat ends the reading
    ("[0] > [1]", 3),  # [0] is the last passage
    ("[-1] > [9] > [2]", 3),  # a negative id counts from the end; [9] is out of range
    ("Answer: [3] > [1] > [2]", 3),  # "Answer: [3]" is not an integer
    ("", 2),
]


def _definitions(path: Path, names: set[str]) -> dict[str, Any]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    keep = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.Assign)) and (
        (isinstance(n, ast.FunctionDef) and n.name in names)
        or (isinstance(n, ast.Assign) and any(getattr(t, "id", "") in names for t in n.targets)))]  # fmt: skip
    namespace: dict[str, Any] = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


def main(checkout: str, target: str, commit: str) -> None:
    found = _definitions(Path(checkout) / "rerank.py", {"rank_k_prompt", "parse_ranking_more"})
    found.update(_definitions(Path(checkout) / "utils.py", {"combine_passages"}))
    prompts = [found["rank_k_prompt"].format(query=q, docs=found["combine_passages"](p)) for q, p in WINDOWS]
    orders = []
    for answer, size in ANSWERS:
        ids = list(range(size))
        scores = found["parse_ranking_more"](answer.strip().split("\n")[-1], ids)
        ranked = [d for d, _ in sorted(scores.items(), key=lambda x: -x[1])]
        orders.append(ranked + [d for d in ids if d not in ranked])
    out = {"commit": commit, "windows": WINDOWS, "prompts": prompts, "answers": ANSWERS, "orders": orders}
    Path(target).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:4])
