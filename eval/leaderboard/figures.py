"""The leaderboard's figures: one per dataset, effectiveness against cost, with the Pareto front drawn.

Each row is a point at (seconds per query over all its stages, its first measure). The Pareto front joins the
rows no cheaper row beats: the best score each cost buys. Labels say which pipeline a point is (a given run by
its name, each stage by its model), are made distinct where two pipelines would read the same, and are
placed where they overlap no other label and no point.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Where a label may go around its point (offsets in points): rings of growing radius, right side first.
_OFFSETS = [
    (dx * side, dy)
    for radius in (1, 2, 3, 4, 5, 6, 8)  # the far ones for crowded corners, tried last
    for side in (1, -1)
    for dx, dy in (
        (6 * radius, 2),
        (6 * radius, -10 * radius),
        (6 * radius, 8 * radius),
        (2, 14 * radius),
        (2, -14 * radius),
    )
]


def short_label(pipeline: str) -> str:
    """A plot label: each stage's name, with its model where it has one (two FIRST rows differ by model), a
    given run by its name (BM25's and SPLADE's first stages differ), a concatenation as ``(A ^ B)``, a method
    wrapping another by the inner one's label (``split(bi-encoder(minilm))``)."""
    from rerank.spec import MethodSpec, parse_pipeline

    parts = []
    for stage in parse_pipeline(pipeline).stages:
        spec = stage.spec
        model, name, inner = spec.kwargs.get("model"), spec.kwargs.get("name"), spec.kwargs.get("inner")
        if isinstance(inner, MethodSpec):
            parts.append(f"{spec.name}({short_label(str(inner))})")
        elif spec.name == "concat":  # the first member whole, the others by what they end with
            rest = [short_label(str(member)).split(" > ")[-1] for member in spec.inputs[1:]]
            parts.append("(" + " ^ ".join([short_label(str(spec.inputs[0])), *rest]) + ")")
        elif spec.name == "run" and isinstance(name, str):
            parts.append(name)
        else:
            parts.append(f"{spec.name}({model})" if isinstance(model, str) else spec.name)
    return " > ".join(parts)


def distinct_labels(pipelines: Sequence[str]) -> list[str]:
    """Short labels, made distinct: pipelines that would share one are told apart by the first two parameters
    that differ among them and that each sets itself (``fuse(...) [weights=[0.7, 0.3]]``; a parameter left
    to its default says less), else numbered."""
    from rerank.spec import parse_pipeline

    labels = [short_label(p) for p in pipelines]
    for label in set(labels):
        same = [i for i, other in enumerate(labels) if other == label]
        if len(same) < 2:
            continue
        params = [_params(parse_pipeline(pipelines[i])) for i in same]
        keys = sorted({k for p in params for k in p})
        differing = [k for k in keys if len({p.get(k) for p in params}) > 1]
        extras = []
        for own in params:
            shown = sorted(differing, key=lambda k: k not in own)[:2]  # its own settings first, in key order
            extras.append(", ".join(f"{k}={own.get(k, 'default')}" for k in shown))
        for n, i in enumerate(same):
            unique = extras[n] and extras.count(extras[n]) == 1
            labels[i] = f"{label} [{extras[n] if unique else f'#{n + 1}'}]"
    return labels


def _params(pipeline: Any) -> dict[str, str]:
    """Every stage's parameters (and cutoff) flattened, for telling apart pipelines that read the same; a long
    value (a whole inner method) is cut, so that a label stays one readable line."""
    from rerank.spec import format_value

    found: dict[str, str] = {}
    for n, stage in enumerate(pipeline.stages):
        found[f"{stage.spec.name}%" if n else "depth"] = str(stage.cutoff)
        for key, value in stage.spec.params:
            text = format_value(value)
            found[key] = text if len(text) <= 32 else text[:31] + "…"
    return found


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """The indices of the points no cheaper (or equally cheap) point scores at least as well as, by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def dataset_figure(title: str, measure: str, rows: Sequence[tuple[str, float, float]], path: Path) -> None:
    """One dataset's figure: ``rows`` are (pipeline, seconds per query, score); written atomically as PNG."""
    import matplotlib.pyplot as plt

    figure, _ = labelled_figure(title, measure, rows)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


def labelled_figure(title: str, measure: str, rows: Sequence[tuple[str, float, float]]) -> tuple[Any, list[Any]]:
    """The figure, and each label's box in display coordinates (what ``_place_labels`` kept apart)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = distinct_labels([pipeline for pipeline, _, _ in rows])
    points = [(cost, score) for _, cost, score in rows]
    front = set(pareto_front(points))
    figure, axis = plt.subplots(figsize=(13, max(8.0, 0.36 * len(rows))))  # taller as rows crowd in
    for i, (cost, score) in enumerate(points):
        on_front = i in front
        axis.scatter([cost], [score], s=46 if on_front else 30, color="C3" if on_front else "C0", zorder=3)
    ordered = sorted(front, key=lambda i: points[i][0])
    axis.step([points[i][0] for i in ordered], [points[i][1] for i in ordered], where="post", color="C3",
              linestyle="--", linewidth=1.2, label="Pareto front: the best score for the cost (labels in bold)")  # fmt: skip
    axis.set_xscale("log")
    low, high = min(c for c, _ in points), max(c for c, _ in points)
    axis.set_xlim(low / 3, high * 30)  # room on the right for the costliest rows' labels
    bottom, top = min(s for _, s in points), max(s for _, s in points)
    span = (top - bottom) or 0.1  # one score (a single row, or rows that tie) still gets a readable axis
    axis.set_ylim(bottom - 0.1 * span, top + 0.12 * span)  # room for labels above and below
    axis.set_xlabel("seconds per query (log scale, all stages, on the machine of each cell's manifest)")
    axis.set_ylabel(measure)
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="upper left", fontsize=9)
    figure.tight_layout()
    return figure, _place_labels(figure, axis, points, labels, front)


def _place_labels(figure: Any, axis: Any, points: Sequence[tuple[float, float]], labels: Sequence[str],
                  front: set[int]) -> list[Any]:  # fmt: skip
    """Each label at the first offset around its point where it stays in the axes and overlaps no label placed
    before, no point and not the legend; the front's labels first (they matter most), then by score. Where no
    offset is clear, the one that overlaps least."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    frame = axis.get_window_extent(renderer)
    dots = [axis.transData.transform(p) for p in points]
    legend = axis.get_legend()
    taken: list[Any] = [legend.get_window_extent(renderer)] if legend is not None else []
    placed: list[Any] = []
    for i in sorted(range(len(points)), key=lambda i: (i not in front, -points[i][1])):
        best: tuple[float, tuple[int, int]] | None = None
        for offset in _OFFSETS:
            box = _box(axis, renderer, labels[i], points[i], offset, i in front)
            clash = sum(_overlap(box, other) for other in taken)
            clash += sum(50.0 for j, (x, y) in enumerate(dots) if j != i and box.contains(x, y))
            clash += 1e6 * (box.x0 < frame.x0 or box.x1 > frame.x1 or box.y0 < frame.y0 or box.y1 > frame.y1)
            if best is None or clash < best[0]:
                best = (clash, offset)
            if clash == 0:
                break
        assert best is not None
        box = _box(axis, renderer, labels[i], points[i], best[1], i in front, keep=True)
        taken.append(box)
        placed.append(box)
    return placed


def _box(axis: Any, renderer: Any, label: str, point: tuple[float, float], offset: tuple[int, int], bold: bool,
         keep: bool = False) -> Any:  # fmt: skip
    """The label's box at ``offset`` from its point (drawn only when ``keep``, with a thin line back to its point
    when it had to move away from it: in a crowded corner a reader could not tell which point it names)."""
    text = axis.annotate(label, point, xytext=offset, textcoords="offset points", fontsize=8, va="center",
                         ha="left" if offset[0] > 0 else "right", fontweight="bold" if bold else "normal")  # fmt: skip
    if keep and max(abs(offset[0]), abs(offset[1])) > 12:  # a line apart: the label's box stays the text's own
        axis.annotate("", point, xytext=offset, textcoords="offset points",
                      arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.5, "shrinkA": 0, "shrinkB": 3})  # fmt: skip
    box = text.get_window_extent(renderer).expanded(1.02, 1.15)
    if not keep:
        text.remove()
    return box


def _overlap(a: Any, b: Any) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(width, 0.0) * max(height, 0.0)


def figure_name(dataset: str) -> str:
    return "leaderboard-" + dataset.replace("/", "-") + ".png"
