"""The leaderboard: cells computed once, identical outputs on a re-run, numbers that `rerank eval` reproduces."""

import json

import pytest

from data.errors import InvalidSpecError
from eval.leaderboard import load_config, run_leaderboard
from eval.leaderboard.pipelines import parse_pipeline
from eval.leaderboard.report import _duration
from rerank.cli import main

PIPELINES = [
    "run(name=bm25) % 10",
    "run(name=bm25) % 10 >> bi-encoder(model=minilm, batch_size=16)",
    "run(name=bm25) % 5 >> listwise(model=sort, backend=scripted, window_size=3, stride=1)",
]
PUBLISHED = """
[[published]]
dataset = "example"
system = "a published system"
setting = "elsewhere"
"nDCG@10" = 0.5
source = "a paper"
"""


def write_config(path, pipelines=PIPELINES):
    lines = ["[quick]", "queries = 3", "", "[[datasets]]", 'name = "example"', "pipelines = ["]
    lines += [f"    {json.dumps(p)}," for p in pipelines]
    path.write_text("\n".join([*lines, "]", PUBLISHED]), encoding="utf-8")
    return load_config(path)


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.integration
def test_a_second_run_recomputes_nothing_and_writes_identical_files(tmp_path):
    config = write_config(tmp_path / "board.toml")
    output = tmp_path / "board"
    written, computed = run_leaderboard(config, output, cache=tmp_path / "cache")
    assert len(computed) == 4  # three rows and the top 5 of bm25 that the listwise row reranks
    assert [p.name for p in written] == ["leaderboard.md", "leaderboard.json", "leaderboard-example.png"]
    before = snapshot(output)
    assert before["leaderboard-example.png"].startswith(b"\x89PNG")
    _, computed = run_leaderboard(config, output, cache=tmp_path / "cache")
    assert computed == []
    assert snapshot(output) == before

    table = (output / "leaderboard.md").read_text(encoding="utf-8")
    assert "## example (8 queries)" in table and "not measured here" in table and "a published system" in table
    assert all(f"`{parse_pipeline(p)}`" in table for p in PIPELINES)
    assert not list(output.rglob("*.checkpoint"))


@pytest.mark.integration
def test_every_number_is_what_rerank_eval_computes_from_the_cell_run(tmp_path, capsys):
    config = write_config(tmp_path / "board.toml")
    output = tmp_path / "board"
    run_leaderboard(config, output, cache=tmp_path / "cache")
    rows = json.loads((output / "leaderboard.json").read_text(encoding="utf-8"))["datasets"]["example"]["rows"]
    capsys.readouterr()
    for row in rows:
        run_file = next((output / "cells" / "example").glob(f"{row['cell']}/run.trec.gz"))
        assert main(["eval", "--dataset", "example", str(run_file), "--measures", "nDCG@10", "RR@10", "R@100"]) == 0
        values = capsys.readouterr().out.splitlines()[1].split()[2:]
        assert [f"{row['measures'][m]:.4f}" for m in ("nDCG@10", "RR@10", "R@100")] == [v.rstrip("†") for v in values]
    reranked = next(r for r in rows if "bi-encoder" in r["pipeline"])
    assert reranked["first_stage"] == "run(name=bm25) % 10" and reranked["calls_per_query"] > 0
    assert reranked["seconds_per_query"] > 0 and set(reranked["per_query"]["nDCG@10"]) == {f"q{q}" for q in range(1, 9)}


@pytest.mark.integration
def test_compute_time_adds_up_every_cell_once(tmp_path):
    config = write_config(tmp_path / "board.toml")
    output = tmp_path / "board"
    run_leaderboard(config, output, cache=tmp_path / "cache")
    manifests = [json.loads(p.read_text(encoding="utf-8")) for p in (output / "cells").rglob("manifest.json")]
    assert len(manifests) == 4  # three rows and the bm25 top 5 the listwise row reranks
    expected = sum(m["seconds"] or 0.0 for m in manifests)
    assert expected > 0
    data = json.loads((output / "leaderboard.json").read_text(encoding="utf-8"))
    assert data["datasets"]["example"]["compute_seconds"] == pytest.approx(expected, abs=1e-3)
    table = (output / "leaderboard.md").read_text(encoding="utf-8")
    assert f"Computing every cell below took {_duration(expected)} " in table


@pytest.mark.integration
def test_a_timed_first_stage_shared_by_rows_is_counted_once(tmp_path):
    shared = "bm25 % 5"
    listwise = "listwise(model=sort, backend=scripted, window_size=3, stride=1)"
    config = write_config(tmp_path / "board.toml", [shared, f"{shared} >> {listwise}"])
    output = tmp_path / "board"
    run_leaderboard(config, output, cache=tmp_path / "cache")
    manifests = [json.loads(p.read_text(encoding="utf-8")) for p in (output / "cells").rglob("manifest.json")]
    retrieval = [m["seconds"] for m in manifests if m["pipeline"] == str(parse_pipeline(shared))]
    assert len(retrieval) == 1 and retrieval[0] > 0.01  # indexing and searching take measurable time
    data = json.loads((output / "leaderboard.json").read_text(encoding="utf-8"))["datasets"]["example"]
    assert [r["first_stage"] for r in data["rows"]][1] == str(parse_pipeline(shared))  # both rows rest on it
    assert data["compute_seconds"] == pytest.approx(sum(m["seconds"] or 0.0 for m in manifests), abs=1e-3)


@pytest.mark.integration
def test_changing_one_pipeline_recomputes_only_that_cell(tmp_path):
    output, cache = tmp_path / "board", tmp_path / "cache"
    run_leaderboard(write_config(tmp_path / "a.toml"), output, cache=cache)
    changed = [*PIPELINES[:2], PIPELINES[2].replace("stride=1", "stride=2")]
    _, computed = run_leaderboard(write_config(tmp_path / "b.toml", changed), output, cache=cache)
    assert computed == [f"example: {parse_pipeline(changed[2])}"]


@pytest.mark.integration
def test_quick_and_selection(tmp_path):
    config = write_config(tmp_path / "board.toml")
    _, computed = run_leaderboard(
        config, tmp_path / "q", cache=tmp_path / "cache", quick=True, pipelines=["*listwise*"]
    )
    assert computed == ["example: run(name=bm25) % 5", f"example: {parse_pipeline(PIPELINES[2])}"]
    data = json.loads((tmp_path / "q" / "leaderboard.json").read_text(encoding="utf-8"))
    assert data["quick_queries"] == 3 and data["datasets"]["example"]["rows"][0]["queries"] == 3
    with pytest.raises(InvalidSpecError, match="no pipeline matches"):
        run_leaderboard(config, tmp_path / "q", pipelines=["nothing*"])


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ("listwise(model=sort)", "starts with run"),
        ("run(name=bm25) >> bm25", "unknown reranking method .bm25. in a later stage"),
        ("run(name=bm25) % 0", "positive integer"),
        ("rrf(bm25)", "at least two"),
        ('rrf(runs="bm25 | dense")', "rrf takes k"),
        ("run(name=bm25) >> listwise(model=m, windowsize=3)", "no parameter 'windowsize'"),
    ],
)
@pytest.mark.integration
def test_bad_pipelines_are_reported_with_the_config_file(tmp_path, pipeline, message):
    with pytest.raises(InvalidSpecError, match=message) as error:
        write_config(tmp_path / "bad.toml", [pipeline])
    assert "bad.toml" in str(error.value)


@pytest.mark.unit
def test_pipelines_print_canonically_and_parse_back():
    text = "rrf(bm25 | dense(model=minilm), k=60) % 20 >> first(window_size=20, model=m) % 10 >> listwise(model=m)"
    parsed = parse_pipeline(text)
    assert str(parsed) == (
        "rrf(bm25 | dense(model=minilm), k=60) % 20 >> first(model=m, window_size=20) % 10 >> listwise(model=m)"
    )
    assert parse_pipeline(str(parsed)) == parsed


@pytest.mark.unit
def test_every_pipeline_of_the_leaderboard_config_parses_prints_back_and_equals_the_algebra():
    from eval.leaderboard import DEFAULT_CONFIG
    from rerank.spec import MethodSpec, PipelineSpec, StageSpec

    def rebuild(pipeline):  # the same pipeline, built with % and >> from its parts
        built = None
        for stage in pipeline.stages:
            spec = MethodSpec.of(stage.spec.name, stage.spec.kwargs, [rebuild(p) for p in stage.spec.inputs])
            part = spec % stage.cutoff if stage.cutoff else spec
            built = part if built is None else built >> part
        return (
            built
            if isinstance(built, PipelineSpec)
            else PipelineSpec((built if isinstance(built, StageSpec) else StageSpec(built),))
        )

    matrix = DEFAULT_CONFIG.read_text(encoding="utf-8").split("[[datasets]]", 1)[1].split("[[published]]")[0]
    texts = [line.strip().rstrip(",")[1:-1] for line in matrix.splitlines() if line.startswith(('    "', "    '"))]
    config = load_config(DEFAULT_CONFIG)
    pipelines = [p for entry in config.datasets for p in entry.pipelines]
    assert len(texts) == len(pipelines) > 30
    for text, pipeline in zip(texts, pipelines, strict=True):
        assert str(pipeline) == text
        assert parse_pipeline(str(pipeline)) == pipeline == rebuild(pipeline)


@pytest.mark.integration
def test_subset_runs_add_up_and_list_what_is_missing(tmp_path):
    config = write_config(tmp_path / "board.toml")
    output, cache = tmp_path / "board", tmp_path / "cache"
    run_leaderboard(config, output, cache=cache, pipelines=["*bi-encoder*"])
    table = (output / "leaderboard.md").read_text(encoding="utf-8")
    listwise = str(parse_pipeline(PIPELINES[2]))
    assert "Not computed yet" in table and f"- `{listwise}`" in table and f"| `{parse_pipeline(PIPELINES[1])}`" in table
    _, computed = run_leaderboard(config, output, cache=cache, pipelines=["*listwise*"])
    table = (output / "leaderboard.md").read_text(encoding="utf-8")
    assert len(computed) == 2 and "Not computed yet" not in table and f"| `{listwise}`" in table


@pytest.mark.integration
def test_the_cli_lists_and_runs_the_matrix(tmp_path, capsys):
    write_config(tmp_path / "board.toml", PIPELINES[:1])
    assert main(["leaderboard", "--config", str(tmp_path / "board.toml"), "--list"]) == 0
    assert capsys.readouterr().out == "example\trun(name=bm25) % 10\n"
    args = ["leaderboard", "--config", str(tmp_path / "board.toml"), "--output", str(tmp_path / "out")]
    assert main(args) == 0 and "1 cells computed" in capsys.readouterr().out
    assert main(args) == 0 and "0 cells computed" in capsys.readouterr().out
    assert main([*args, "--datasets", "nowhere"]) == 3 and "not in the config" in capsys.readouterr().err


@pytest.mark.unit
def test_plot_labels_are_distinct_and_the_pareto_front_is_the_best_score_for_the_cost():
    from eval.leaderboard.figures import distinct_labels, pareto_front, short_label

    small = short_label("run(name=bm25) % 20 >> first(backend=llama.cpp, model=qwen2.5-coder-0.5b)")
    large = short_label("run(name=bm25) % 20 >> first(backend=llama.cpp, model=qwen2.5-coder-1.5b)")
    assert small == "bm25 > first(qwen2.5-coder-0.5b)" and large == "bm25 > first(qwen2.5-coder-1.5b)"
    assert short_label("rrf(bm25 | dense(model=minilm)) % 20 >> random(seed=0)") == "rrf > random"
    # BM25's and SPLADE's first stages no longer read the same; interpolation weights tell two fusions apart
    board = [
        "run(name=bm25) % 100 >> bi-encoder(model=minilm)",
        "run(name=splade-pp-ed) % 100 >> bi-encoder(model=minilm)",
        "run(name=bm25) % 100 >> fuse(method=interpolate, rerankers=[random, random(seed=1)], weights=[0.7, 0.3])",
        "run(name=bm25) % 100 >> fuse(method=interpolate, rerankers=[random, random(seed=1)], weights=[0.5, 0.5])",
    ]
    labels = distinct_labels(board)
    assert len(set(labels)) == 4 and labels[0] == "bm25 > bi-encoder(minilm)"
    assert labels[2].endswith("[weights=[0.7, 0.3]]")
    # (cost, score): the front keeps each point that beats every cheaper one
    points = [(1.0, 0.50), (2.0, 0.45), (2.0, 0.60), (5.0, 0.58), (9.0, 0.70), (0.5, 0.40)]
    assert pareto_front(points) == [5, 0, 2, 4]


@pytest.mark.slow
@pytest.mark.integration
def test_status_names_what_changed_and_recompute_forces_cells(tmp_path, capsys, monkeypatch):
    from rerank.methods.bi_encoder import BiEncoderReranker

    write_config(tmp_path / "board.toml")
    output = tmp_path / "board"
    config = load_config(tmp_path / "board.toml")
    run_leaderboard(config, output, pipelines=["*bi-encoder*"])
    _, bi, listwise = (str(parse_pipeline(p)) for p in PIPELINES)
    status = ["leaderboard", "--config", str(tmp_path / "board.toml"), "--output", str(output), "--status"]
    assert main(status) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"fresh    example\t{bi}" in lines and "fresh    example\trun(name=bm25) % 10" in lines
    assert f"missing  example\t{listwise}" in lines and lines[-1] == "2 fresh, 2 missing"

    monkeypatch.setattr(BiEncoderReranker, "version", BiEncoderReranker.version + 1)  # its behaviour changed
    assert main(status) == 0
    stale = [line for line in capsys.readouterr().out.splitlines() if line.startswith("stale")]
    assert stale == [f"stale    example\t{bi}  (identity.version changed)"]
    _, computed = run_leaderboard(config, output, pipelines=["*bi-encoder*"])
    assert computed == [f"example: {bi}"]  # only the stale cell, not its fresh first stage

    _, computed = run_leaderboard(config, output, pipelines=["*bi-encoder*"], recompute=[PIPELINES[0]])
    assert computed == [
        "example: run(name=bm25) % 10"
    ]  # forced; its output is the same bytes, so the reranker's key holds


@pytest.mark.unit
def test_the_figures_labels_stay_apart_and_inside_their_axes():
    """Every dataset of the committed leaderboard, drawn: no two labels overlap, none leaves the axes."""
    import json
    from pathlib import Path

    from eval.leaderboard.figures import labelled_figure

    board = json.loads((Path(__file__).parent.parent / "leaderboard" / "leaderboard.json").read_text())
    for dataset, table in board["datasets"].items():
        rows = [(r["pipeline"], r["seconds_per_query"], r["measures"]["nDCG@10"]) for r in table["rows"]]
        rows = [row for row in rows if row[1]]
        figure, boxes = labelled_figure(dataset, "nDCG@10", rows)
        frame = figure.axes[0].get_window_extent(figure.canvas.get_renderer())
        assert len(boxes) == len(rows)
        for n, box in enumerate(boxes):
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, dataset
            assert not any(box.overlaps(other) for other in boxes[n + 1 :]), (dataset, n)
