"""Window schedules that depend on the model's answers, run for many queries in lockstep.

A schedule is a generator over one query's candidate positions: it yields the windows it wants now (each a
list of positions, in the order the model sees them), receives the model's order of each (positions into the
window, best first), and returns the final order. ``drive`` runs every query's schedule together, so the
windows all queries want at one step reach the backend in one batch-first call.

TDPart (Parry, MacAvaney and Ganguly, SIGIR 2024, "Top-Down Partitioning for Efficient List-Wise Ranking")
as pyterrier-generative 0.1.3's standalone ``tdpart`` runs it (``tests/test_fidelity.py`` drives both with
the same judge): sort the first window; its passage at ``cutoff - 1`` is the pivot; the passages above it
are candidates, those below are set aside. Then windows of the pivot and the next ``window - 1`` passages
are sorted while fewer than ``buffer`` candidates have beaten the pivot; whatever ranks above the pivot
joins the candidates. When none did, the top ``cutoff`` is final; otherwise the first ``buffer`` candidates
start the next round and the rest, the pivot and everything below go under them, round after round.

TourRank (Chen et al., WWW 2025, "TourRank: Utilizing Large Language Models for Documents Ranking with a
Tournament-Inspired Strategy") as chenyiqun/TourRank's ``filter_processing`` runs it: in each of several
tournaments, stages of groups select their best passages, each selection a point; the next stage plays the
top of the list by points (ties in input order); the points of all tournaments, summed, order the list.
Its stages are those of the reference, which plays exactly 100 candidates (``TOURNAMENT_STAGES``); a
shorter list enters at the first stage that fits it, and candidates beyond that stage's size play no game.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator, Sequence

Windows = list[list[int]]
Schedule = Generator[Windows, Windows, list[int]]

# (players, groups, selected per group): 100 -> 50 -> 20 -> 10 -> 5 -> 2, the reference's stages
TOURNAMENT_STAGES = ((100, 5, 10), (50, 5, 4), (20, 1, 10), (10, 1, 5), (5, 1, 2))


def drive(schedules: Sequence[Schedule], ask: Callable[[list[tuple[int, list[int]]]], Windows]) -> list[list[int]]:
    """Every schedule's final order. ``ask`` gets ``(schedule index, window)`` for every window wanted at this
    step and returns each window's order; a schedule that is done asks nothing more."""
    results: list[list[int]] = [[] for _ in schedules]
    pending: dict[int, Windows] = {}

    def advance(i: int, answers: Windows | None) -> None:
        try:
            pending[i] = next(schedules[i]) if answers is None else schedules[i].send(answers)
        except StopIteration as stop:
            results[i] = stop.value

    for i in range(len(schedules)):
        advance(i, None)
    while pending:
        wanted, pending = pending, {}
        jobs = [(i, window) for i, windows in wanted.items() for window in windows]
        answers = iter(ask(jobs))
        for i, windows in wanted.items():
            advance(i, [next(answers) for _ in windows])
    return results


def _sorted(windows: Windows) -> Generator[Windows, Windows, Windows]:
    """The windows in the model's order (a window of one is not asked about)."""
    asked = [w for w in windows if len(w) > 1]
    orders = iter((yield asked) if asked else [])
    return [[w[p] for p in next(orders)] if len(w) > 1 else list(w) for w in windows]


def tdpart(ranking: Sequence[int], window: int, buffer: int, cutoff: int, max_iters: int = 100) -> Schedule:
    """TDPart over ``ranking`` (positions, best first): pyterrier-generative's ``tdpart`` and ``_tdpart_step``."""
    pivot_at = max(0, min(cutoff - 1, window - 1))  # its _tdpart_pivot_pos
    candidates: list[int] = list(ranking)
    below: list[int] = []
    done, rounds = False, 0
    while not done and rounds < max_iters:
        rounds += 1
        (head,) = yield from _sorted([candidates[:window]])
        rest = candidates[window:]
        if len(head) < window:  # fewer than a window: one sort is the whole round
            candidates, found, done = head, rest, True
        else:
            pivot, candidates, worse = head[pivot_at], head[:pivot_at], head[pivot_at + 1 :]
            while len(candidates) < buffer and rest:
                (step,) = yield from _sorted([[pivot, *rest[: window - 1]]])
                rest = rest[window - 1 :]
                at = step.index(pivot)
                candidates, worse = candidates + step[:at], worse + step[at + 1 :]
            if len(candidates) == pivot_at:  # nothing beat the pivot: the top is final
                candidates, found, done = [*candidates, pivot], worse + rest, True
            else:
                candidates, found = candidates[:buffer], [*candidates[buffer:], pivot, *worse, *rest]
        below += found
    return candidates + below


def tournament(ranking: Sequence[int], tournaments: int, rng: random.Random) -> Schedule:
    """TourRank over ``ranking`` (positions, best first): ``tournaments`` tournaments played in lockstep, each
    stage's groups of every tournament asked together. A group is shuffled (``rng``) before it is shown, as
    the reference shuffles it; a selection is the top of the model's order of the group."""
    order = list(ranking)
    stages = [s for s in TOURNAMENT_STAGES if s[0] <= len(order)] or [(len(order), 1, max(1, len(order) // 2))]
    points = [dict.fromkeys(order, 0) for _ in range(tournaments)]
    for players, groups, keep in stages if len(order) > 1 else ():
        windows: Windows = []
        for tally in points:
            by_points = sorted(order, key=tally.__getitem__, reverse=True)  # stable: ties keep the input order
            playing = by_points[:players]
            for g in range(groups):  # the reference's get_groups_skip: group g takes every groups-th player
                group = playing[g::groups][: players // groups]
                rng.shuffle(group)
                windows.append(group)
        ranked = yield from _sorted(windows)
        for t, tally in enumerate(points):
            for group in ranked[t * groups : (t + 1) * groups]:
                for c in group[:keep]:
                    tally[c] += 1
    total = {c: sum(tally[c] for tally in points) for c in order}
    return sorted(order, key=lambda c: -total[c])
