"""Top-k sorting driven by "which of these is best?" judgements, batched across queries.

Pairwise (PRP) and setwise ranking share these algorithms: a judgement looks at a
set of 2 (pairwise) or ``num_child + 1`` (setwise) candidates and names the best.
Each algorithm is a generator over one query's list: it yields the positions to
judge and receives the winner's index within that set. ``drive`` runs many
queries' generators in lockstep, so each round of judgements from every query
goes to the model together (batch first, across queries).

``heap_top_k`` is a ``num_child``-ary max-heap (Setwise; binary for PRP): heapify, then ``k`` extractions;
``bubble_top_k`` is ``k`` bottom-to-top passes of a window of ``num_child + 1``.
Both return the top ``k`` in order followed by the rest in their starting order.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence

Judging = Generator[tuple[int, ...], int, list[int]]  # yields positions, receives the winner's index in them


def heap_top_k(
    n: int, k: int, num_child: int = 2, set_size: int | None = None, sift_after_last: bool = True
) -> Judging:
    """A ``num_child``-ary heap; each judgement sees at most ``set_size`` (default ``num_child + 1``).

    Setwise judges a parent and all its children at once; pairwise (``set_size=2``)
    finds the best of a parent and two children by a knockout of two comparisons.
    ``sift_after_last=False`` stops right after the ``k``-th extraction, as llm-rankers does (the same
    top ``k``, a sift fewer).
    """
    heap = list(range(n))
    size = n
    most = set_size or num_child + 1

    def best_of(contenders: list[int]) -> Judging:
        champion, rest = contenders[0], contenders[1:]
        while rest:
            group = [champion, *rest[: most - 1]]
            rest = rest[most - 1 :]
            champion = group[(yield tuple(heap[p] for p in group))]
        return [champion]

    def sift_down(root: int, size: int) -> Judging:
        while True:
            children = [c for c in range(num_child * root + 1, num_child * root + num_child + 1) if c < size]
            if not children:
                return []
            (winner,) = yield from best_of([root, *children])
            if winner == root:
                return []
            heap[root], heap[winner] = heap[winner], heap[root]
            root = winner

    for root in range((n - 2) // num_child, -1, -1):
        yield from sift_down(root, size)
    top: list[int] = []
    for _ in range(min(k, n)):
        top.append(heap[0])
        size -= 1
        heap[0], heap[size] = heap[size], heap[0]
        if size > 1 and (sift_after_last or len(top) < k):
            yield from sift_down(0, size)
    chosen = set(top)
    return top + [i for i in range(n) if i not in chosen]


def bubble_top_k(n: int, k: int, num_child: int = 1) -> Judging:
    order = list(range(n))
    for settled in range(min(k, n - 1)):
        # A window of num_child + 1 slides from the bottom up to `settled`; its winner moves to its top
        # and, sitting at the bottom of the next window, carries on upwards.
        end = n
        while end - 1 > settled:
            start = max(settled, end - num_child - 1)
            window = order[start:end]
            best = yield tuple(window)
            order[start:end] = [window[best], *window[:best], *window[best + 1 :]]
            end = start + 1
    top = order[: min(k, n)]
    chosen = set(top)
    return top + [i for i in range(n) if i not in chosen]


def skipping_bubble_top_k(n: int, k: int, num_child: int = 1) -> Judging:
    """llm-rankers' bubble sort: ``k`` bottom-to-top passes of a window of ``num_child + 1`` whose winner
    swaps places with the window's top, each pass starting above the windows the last one left unchanged.

    Kept for comparison with llm-rankers only: the skip can settle a wrong top ``k`` even when every
    judgement is consistent (``bubble_top_k`` cannot). Pairwise (``num_child=1``) and setwise keep their
    skip differently, as llm-rankers' ``PairwiseLlmRanker`` and ``SetwiseLlmRanker`` do.
    """
    order, top = list(range(n)), min(k, n)
    if num_child == 1:
        last_end = n - 1
        for settled in range(top):
            current, changed = last_end, False
            while current > settled:
                if (yield (order[current - 1], order[current])) == 1:
                    order[current - 1], order[current] = order[current], order[current - 1]
                    if not changed:
                        changed = True
                        last_end += last_end != n - 1  # llm-rankers: skip unchanged pairs at the bottom
                if not changed:
                    last_end -= 1
                current -= 1
    else:
        size = num_child + 1
        last_start = n - size
        for settled in range(top):
            start, end, changed = last_start, last_start + size, False
            while True:
                start = max(start, settled)
                window = order[start:end]
                best = (yield tuple(window)) if len(window) > 1 else 0
                if best != 0:
                    order[start], order[start + best] = order[start + best], order[start]
                    if not changed:
                        changed = True
                        if last_start != n - size and best == len(window) - 1:
                            last_start += len(window) - 1
                if start == settled:
                    break
                if not changed:
                    last_start -= num_child
                start, end = start - num_child, end - num_child
    chosen = set(order[:top])
    return order[:top] + [i for i in range(n) if i not in chosen]


def drive(
    algorithms: Sequence[Judging], judge: Callable[[list[tuple[int, tuple[int, ...]]]], list[int]]
) -> list[list[int]]:
    """Run every query's algorithm to its end; ``judge`` gets (query, positions) pairs and returns winners."""
    results: list[list[int]] = [[] for _ in algorithms]
    pending: dict[int, tuple[int, ...]] = {}
    for q, algorithm in enumerate(algorithms):
        try:
            pending[q] = next(algorithm)
        except StopIteration as done:
            results[q] = done.value
    while pending:
        asked = list(pending.items())
        winners = judge(asked)
        for (q, _), winner in zip(asked, winners, strict=True):
            try:
                pending[q] = algorithms[q].send(winner)
            except StopIteration as done:
                results[q] = done.value
                del pending[q]
    return results
