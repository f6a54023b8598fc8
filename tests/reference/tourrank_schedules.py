"""Record the games chenyiqun/TourRank's own code plays, for ``tests/test_fidelity.py``.

    PYTHONPATH=CHECKOUT python tests/reference/tourrank_schedules.py tests/reference/tourrank_schedules.json COMMIT

(CHECKOUT: a checkout of github.com/chenyiqun/TourRank at COMMIT, whose one module is
``TourRank_multiprocessing.py``.)

TourRank is not on the package registry and CI reaches only the registry, so its schedules are recorded here,
with the commit they came from. Its ``filter_processing`` (one tournament) runs as written, but for what
cannot run here: the OpenAI client (a stub module: no network), the processes of its first two stages (run
one after another, which changes nothing: their points are summed) and the model, whose place is taken by a
judge that selects a group's passages of highest hidden grade. The judge reads the passages, not their
positions, so the reference's unseeded shuffle of each group changes no answer; groups are recorded as sets.
"""

from __future__ import annotations

import json
import random
import re
import sys
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CASES = [(100, 2, "a"), (100, 3, "b"), (100, 1, "c"), (130, 2, "d")]  # (candidates, tournaments, seed)


def _openai_stub() -> None:
    openai = types.ModuleType("openai")
    openai.OpenAI = lambda **_: None  # type: ignore[attr-defined]
    openai.InternalServerError = type("InternalServerError", (Exception,), {})  # type: ignore[attr-defined]
    openai.RateLimitError = type("RateLimitError", (Exception,), {})  # type: ignore[attr-defined]
    sys.modules["openai"] = openai


class InProcess:
    """``multiprocessing.Process``, run at ``start``."""

    def __init__(self, target: Any, args: tuple[Any, ...]):
        self.target, self.args = target, args

    def start(self) -> None:
        self.target(*self.args)

    def join(self) -> None:
        pass


@contextmanager
def manager() -> Any:
    yield types.SimpleNamespace(list=list)


def record(n: int, tournaments: int, seed: str) -> dict[str, Any]:
    import TourRank_multiprocessing as tourrank  # type: ignore[import-not-found]

    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(n)]
    grades = dict(zip(docs, rng.sample(range(1, 10 * n), n), strict=True))
    contents = {d: f"grade {grades[d]} of {d}" for d in docs}
    games: list[dict[str, Any]] = []

    def judge(messages: list[dict[str, str]]) -> str:
        shown = [re.match(r"Document (\d+): grade (\d+) of (\S+)", m["content"]) for m in messages]
        shown = [m for m in shown if m]
        keep = int(re.search(r"output the top (\d+) documents", messages[-1]["content"]).group(1))  # type: ignore[union-attr]
        games[-1]["games"].append({"group": sorted(m.group(3) for m in shown), "keep": keep})
        best = sorted(shown, key=lambda m: -int(m.group(2)))[:keep]
        return ", ".join(f"Document {m.group(1)}" for m in best)

    tourrank.get_response = judge
    tourrank.Process, tourrank.Manager = InProcess, manager
    tallies: list[dict[str, int]] = []
    for y in range(tournaments):
        games.append({"tournament": y, "games": []})
        tourrank.filter_processing(y, "a query", list(docs), contents, tallies)
    total = dict.fromkeys(docs, 0)  # as the script's __main__ sums the tournaments and sorts
    for tally in tallies:
        for doc, points in tally.items():
            total[doc] += points
    ranking = tourrank.sort_docs_by_relevance(list(total), list(total.values()))
    return {"n": n, "tournaments": tournaments, "seed": seed, "grades": grades, "played": games, "ranking": ranking}


def main(target: str, commit: str) -> None:
    _openai_stub()
    cases = [record(n, t, seed) for n, t, seed in CASES]
    Path(target).write_text(json.dumps({"commit": commit, "cases": cases}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
