"""Window schedules that depend on the model's answers, run for many queries in lockstep.

A schedule is a generator over one query's candidate positions: it yields a window (positions, in the
order the model sees them), receives the model's order of it (positions into the window, best first), and
returns the final order. ``drive`` runs every query's schedule together, so the windows all queries want at
one step reach the backend in one batch-first call.

TDPart (Parry, MacAvaney and Ganguly, SIGIR 2024, "Top-Down Partitioning for Efficient List-Wise Ranking")
as pyterrier-generative 0.1.3's standalone ``tdpart`` runs it (``tests/test_fidelity.py`` drives both with
the same judge): sort the first window; its passage at ``cutoff - 1`` is the pivot; the passages above it
are candidates, those below are set aside. Then windows of the pivot and the next ``window - 1`` passages
are sorted while fewer than ``buffer`` candidates have beaten the pivot; whatever ranks above the pivot
joins the candidates. When none did, the top ``cutoff`` is final; otherwise the first ``buffer`` candidates
start the next round and the rest, the pivot and everything below go under them, round after round.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence

Schedule = Generator[list[int], list[int], list[int]]


def drive(
    schedules: Sequence[Schedule], ask: Callable[[list[tuple[int, list[int]]]], list[list[int]]]
) -> list[list[int]]:
    """Every schedule's final order. ``ask`` gets ``(schedule index, window)`` for every window wanted at this
    step and returns each window's order; a schedule that is done asks nothing more."""
    results: list[list[int]] = [[] for _ in schedules]
    pending: dict[int, list[int]] = {}
    for i, schedule in enumerate(schedules):
        try:
            pending[i] = next(schedule)
        except StopIteration as stop:
            results[i] = stop.value
    while pending:
        jobs = list(pending.items())
        pending = {}
        for (i, _), order in zip(jobs, ask(jobs), strict=True):
            try:
                pending[i] = schedules[i].send(order)
            except StopIteration as stop:
                results[i] = stop.value
    return results


def _sorted(window: list[int]) -> Generator[list[int], list[int], list[int]]:
    """The window in the model's order (a window of one is not asked about)."""
    if len(window) < 2:
        return list(window)
    order = yield window
    return [window[p] for p in order]


def tdpart(ranking: Sequence[int], window: int, buffer: int, cutoff: int, max_iters: int = 100) -> Schedule:
    """TDPart over ``ranking`` (positions, best first): pyterrier-generative's ``tdpart`` and ``_tdpart_step``."""
    pivot_at = max(0, min(cutoff - 1, window - 1))  # its _tdpart_pivot_pos
    candidates, below = list(ranking), []
    done, rounds = False, 0
    while not done and rounds < max_iters:
        rounds += 1
        head = yield from _sorted(candidates[:window])
        rest = candidates[window:]
        if len(head) < window:  # fewer than a window: one sort is the whole round
            candidates, found, done = head, rest, True
        else:
            pivot, candidates, worse = head[pivot_at], head[:pivot_at], head[pivot_at + 1 :]
            while len(candidates) < buffer and rest:
                step, rest = [pivot, *rest[: window - 1]], rest[window - 1 :]
                step = yield from _sorted(step)
                at = step.index(pivot)
                candidates, worse = candidates + step[:at], worse + step[at + 1 :]
            if len(candidates) == pivot_at:  # nothing beat the pivot: the top is final
                candidates, found, done = [*candidates, pivot], worse + rest, True
            else:
                candidates, found = candidates[:buffer], [*candidates[buffer:], pivot, *worse, *rest]
        below += found
    return candidates + below
