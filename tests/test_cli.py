"""The CLI: eval, doctor, exit codes, and `rerank run` with checkpoints and resume."""

import json
import re

import pytest
from conftest import DL19_MINILM

import data
from rerank.checkpoint import Checkpoint
from rerank.cli import main
from rerank.cli.exit_codes import ExitCode


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.acceptance
def test_eval_reproduces_dl19_table(capsys, data_dir):
    code, out, _ = run_cli(
        capsys, "eval", "--dataset", "msmarco-passage/trec-dl-2019", "bm25", "splade-pp-ed", "bm25-rm3"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["run", "queries", "nDCG@10", "RR(rel=2)@10", "R(rel=2)@100"]
    assert lines[1].split() == ["bm25", "43", "0.5058", "0.7024", "0.4910"]
    assert lines[2].split()[:3] == ["splade-pp-ed", "43", "0.7308†"]
    assert lines[3].split()[2] == "0.5216"  # bm25-rm3: not significant on nDCG@10
    assert "Holm" in lines[-1]


@pytest.mark.integration
def test_eval_json_with_qrels_file_and_measures(capsys, data_dir):
    scifact = data_dir / "beir/scifact"
    run_file = str(scifact / "runs/bm25-flat.pyserini.top100.trec.gz")
    code, out, _ = run_cli(
        capsys,
        "eval",
        "--qrels",
        str(scifact / "qrels/test.tsv"),
        run_file,
        "--measures",
        "nDCG@10",
        "R@100",
        "--output",
        "json",
        "--per-query",
    )
    assert code == 0
    report = json.loads(out)
    (row,) = report["runs"]
    assert round(row["aggregate"]["nDCG@10"], 4) == 0.6789
    assert round(row["aggregate"]["R@100"], 4) == 0.9253
    assert len(row["per_query"]["nDCG@10"]) == 300


@pytest.mark.integration
def test_eval_wilcoxon_marks_significance(capsys, data_dir):
    code, out, _ = run_cli(
        capsys,
        "eval",
        "--dataset",
        "msmarco-passage/trec-dl-2020",
        "bm25",
        "splade-pp-ed",
        "--test",
        "wilcoxon",
        "--output",
        "json",
    )
    report = json.loads(out)
    tested = report["runs"][1]["against_first"]["nDCG@10"]
    assert code == 0 and report["test"] == "wilcoxon"
    assert tested["significant"] and tested["p_adjusted"] < 0.05


@pytest.mark.integration
def test_eval_tells_apart_runs_whose_file_names_collide(capsys, tmp_path):
    # leaderboard cells all hold a run.trec.gz: rows and significance must not mix them up
    first = data.load("example").run("bm25")
    flipped = data.Run.from_rankings(
        data.Ranking.sorted(r.qid, (data.Candidate(c.docid, -c.score) for c in r.candidates)) for r in first
    )
    for folder, run in (("bm25", first), ("flipped", flipped)):
        (tmp_path / folder).mkdir()
        data.write_trec_run(run, tmp_path / folder / "run.trec")
    files = [str(tmp_path / f / "run.trec") for f in ("bm25", "flipped")]
    code, out, _ = run_cli(capsys, "eval", "--dataset", "example", *files, files[0], "--output", "json")
    rows = json.loads(out)["runs"]
    assert code == 0 and [r["run"] for r in rows] == ["bm25/run.trec", "flipped/run.trec", "bm25/run.trec#2"]
    assert "against_first" not in rows[0]
    assert rows[1]["against_first"]["nDCG@10"]["delta"] < 0  # the flipped run, not the first one
    assert rows[2]["against_first"]["nDCG@10"]["delta"] == 0


@pytest.mark.integration
def test_exit_codes(capsys, tmp_path):
    bad = tmp_path / "bad.trec"
    bad.write_text("q Q0 d 1 1.0 t\nq Q0 e 2 oops t\n")
    code, _, err = run_cli(capsys, "eval", "--dataset", "example", str(bad))
    assert code == ExitCode.INVALID_INPUT and "bad.trec:2: score 'oops' is not a number" in err
    code, _, err = run_cli(capsys, "eval", "--dataset", "example", str(tmp_path / "missing.trec"))
    assert code == ExitCode.NOT_FOUND and "missing.trec: no such file" in err
    code, _, err = run_cli(capsys, "eval", "--dataset", "beir/scifact", "bm25-flat", "--data-dir", str(tmp_path))
    assert code == ExitCode.NOT_FOUND and "RERANK_DATA_DIR" in err
    code, _, _ = run_cli(capsys, "eval")
    assert code == ExitCode.USAGE
    code, _, err = run_cli(
        capsys, "run", "--dataset", "example", "--run", "bm25", "--reranker", "nope", "--output", str(tmp_path / "o")
    )
    assert code == ExitCode.INVALID_INPUT and "unknown reranking method 'nope'" in err


@pytest.mark.integration
def test_doctor_reports_components(capsys, data_dir):
    code, out, _ = run_cli(capsys, "doctor", "--output", "json")
    report = {row["component"]: row for row in json.loads(out)}
    assert code == 0
    for component in ("python", "torch", "java", "pyserini", "faiss-cpu", "model pack minilm", "data directory"):
        assert component in report
    assert report["model pack minilm"]["ok"]
    assert report["dataset msmarco-passage/trec-dl-2019"]["ok"]
    assert not report["dataset beir/fiqa"]["ok"] and "--download" in report["dataset beir/fiqa"]["fix"]


SPEC = "bi-encoder(model=minilm, batch_size=16)"


@pytest.mark.slow
@pytest.mark.integration
def test_run_reranks_and_improves_the_example(capsys, tmp_path):
    out = tmp_path / "ex.trec"
    code, stdout, _ = run_cli(
        capsys,
        "run",
        "--dataset",
        "example",
        "--run",
        "bm25",
        "--reranker",
        SPEC,
        "--output",
        str(out),
        "--batch-queries",
        "3",
    )
    assert code == 0 and "reranked 8 queries" in stdout
    ds = data.load("example")
    reranked = data.read_trec_run(out)
    first = ds.run("bm25")
    assert {r.qid: sorted(r.docids) for r in reranked} == {r.qid: sorted(r.docids) for r in first}
    from eval import evaluate

    before = evaluate(first, ds.qrels(), ["nDCG@10"]).aggregate["nDCG@10"]
    after = evaluate(reranked, ds.qrels(), ["nDCG@10"]).aggregate["nDCG@10"]
    assert after > before + 0.2  # MiniLM puts the answering passage first where BM25 did not
    assert not (tmp_path / "ex.trec.checkpoint").exists()
    # a second identical run is up to date and recomputes nothing
    code, stdout, _ = run_cli(
        capsys,
        "run",
        "--dataset",
        "example",
        "--run",
        "bm25",
        "--reranker",
        SPEC,
        "--output",
        str(out),
        "--batch-queries",
        "3",
    )
    assert code == 0 and "up to date" in stdout


@pytest.mark.slow
@pytest.mark.integration
def test_run_resumes_from_checkpoint_with_identical_output(capsys, tmp_path):
    args = [
        "run",
        "--dataset",
        "example",
        "--run",
        "bm25",
        "--reranker",
        SPEC,
        "--summary",
        "json",
        "--batch-queries",
        "3",
    ]
    code, _, _ = run_cli(capsys, *args, "--output", str(tmp_path / "full.trec"))
    assert code == 0
    # Interrupted job: a checkpoint holding 3 finished queries and a torn fourth line.
    full = (tmp_path / "full.trec").read_bytes()
    from rerank.core.api import prepare
    from rerank.inputs import requests_from_run
    from rerank.registry import load_reranker

    ds = data.load("example")
    requests = list(requests_from_run(ds.run("bm25"), {q.qid: q for q in ds.queries()}, ds.docs(), 100))
    job = prepare(SPEC, dataset=ds, run="bm25", batch_queries=3).key
    checkpoint = Checkpoint(tmp_path / "resumed.trec.checkpoint", job).open()
    reranker = load_reranker(SPEC)
    checkpoint.add(reranker.rerank(requests[:3]))
    checkpoint.add(reranker.rerank(requests[3:6])[:1])  # the kill came mid-way through the second batch
    checkpoint.close()
    with open(tmp_path / "resumed.trec.checkpoint", "a") as handle:
        handle.write('0badc0de {"qid": "q4", "candid')
    code, _, err = run_cli(capsys, *args, "--output", str(tmp_path / "resumed.trec"))
    assert code == ExitCode.INVALID_INPUT and "--resume" in err  # never resumed silently
    code, out, _ = run_cli(capsys, *args, "--output", str(tmp_path / "resumed.trec"), "--resume")
    assert code == 0 and json.loads(out)["resumed"] == 3
    assert (tmp_path / "resumed.trec").read_bytes() == full


@pytest.mark.integration
def test_corrupted_checkpoint_is_reported_not_trusted(capsys, tmp_path):
    out = tmp_path / "r.trec"
    args = ["run", "--dataset", "example", "--run", "bm25", "--reranker", SPEC, "--output", str(out)]
    (tmp_path / "r.trec.checkpoint").write_text('00000000 {"format": 1}\n')
    code, _, err = run_cli(capsys, *args, "--resume")
    assert code == ExitCode.INVALID_INPUT and "r.trec.checkpoint:1" in err
    assert not out.exists()
    code, _, _ = run_cli(capsys, *args, "--fresh")
    assert code == 0 and out.exists()


@pytest.mark.slow
@pytest.mark.integration
def test_run_from_files_and_rankllm_candidates(capsys, tmp_path, dl19):
    from data import Query, write_topics, write_trec_run

    # files only: a run, topics and a corpus, no dataset
    ds = data.load("example")
    write_trec_run(ds.run("bm25"), tmp_path / "first.trec")
    write_topics(ds.queries(), tmp_path / "topics.tsv")
    corpus = ds.root / "corpus.jsonl"
    code, _, _ = run_cli(
        capsys,
        "run",
        "--run",
        str(tmp_path / "first.trec"),
        "--topics",
        str(tmp_path / "topics.tsv"),
        "--corpus",
        str(corpus),
        "--reranker",
        SPEC,
        "--output",
        str(tmp_path / "a.trec"),
    )
    assert code == 0
    code, _, _ = run_cli(
        capsys, "run", "--dataset", "example", "--run", "bm25", "--reranker", SPEC, "--output", str(tmp_path / "b.trec")
    )
    assert (tmp_path / "a.trec").read_bytes() == (tmp_path / "b.trec").read_bytes()
    # RankLLM JSON with texts: two DL19 queries, top 5, written back as RankLLM JSON
    requests = dl19.candidates("bm25")[:2]
    data.write_rankllm_requests(requests, tmp_path / "c.json")
    code, _, _ = run_cli(
        capsys, "run", "--run", str(tmp_path / "c.json"), "--input-format", "rankllm", "--top-k", "5",
        "--method", "bi-encoder", "--model", "minilm", "--output", str(tmp_path / "out.json"), "--output-format", "rankllm",
    )  # fmt: skip
    result = data.read_rankllm_requests(tmp_path / "out.json")
    assert code == 0 and [len(r.candidates) for r in result] == [5, 5]
    texts = {c.docid: c.text for r in requests for c in r.candidates}
    assert all(c.text == texts[c.docid] for r in result for c in r.candidates)  # texts travel with the output
    assert isinstance(requests[0].query, Query)


@pytest.mark.slow
@pytest.mark.acceptance
def test_dl19_bm25_top100_minilm_reaches_the_recorded_ndcg(capsys, tmp_path, dl19_minilm_cache):
    """ASSETS.md records 0.6424 for MiniLM cosine over DL19 BM25 top 100: a pipeline from the CLI, with --eval
    (the scores come back from the session's output cache, as a re-run with --cache would read them)."""
    out = tmp_path / "dl19.trec"
    pipeline = f"run(name=bm25) % 100 >> {DL19_MINILM}"
    args = ["run", "--dataset", "msmarco-passage/trec-dl-2019", "--pipeline", pipeline, "--output", str(out),
            "--cache", str(dl19_minilm_cache)]  # fmt: skip
    code, stdout, _ = run_cli(capsys, *args, "--eval")
    assert code == 0
    assert re.search(r"^input \(top 100\)\s+0\.5058 ", stdout, re.M) and re.search(
        r"^reranked\s+0\.6424†", stdout, re.M
    )
    code, stdout, _ = run_cli(
        capsys, "eval", "--dataset", "msmarco-passage/trec-dl-2019", "bm25", str(out), "--output", "json"
    )
    report = json.loads(stdout)
    assert round(report["runs"][1]["aggregate"]["nDCG@10"], 4) == 0.6424
    # the same job again is up to date; the shorthand names the same pipeline and reuses its first stage
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0 and "up to date" in stdout


@pytest.mark.integration
def test_run_max_queries_reranks_and_evaluates_only_the_first_queries(capsys, tmp_path):
    out = tmp_path / "two.trec"
    args = ["run", "--dataset", "example", "--run", "bm25", "--reranker", SPEC, "--output", str(out)]
    code, stdout, _ = run_cli(capsys, *args, "--max-queries", "2", "--eval")
    first_two = [r.qid for r in data.load("example").run("bm25")][:2]
    assert code == 0 and "reranked 2 queries" in stdout
    assert [r.qid for r in data.read_trec_run(out)] == first_two
    code, _, err = run_cli(capsys, *args, "--max-queries", "0")
    assert code == ExitCode.INVALID_INPUT and "--max-queries" in err


def _with_commands(monkeypatch, *entries):
    """Pretend the installed packages give exactly these rerank.commands entry points (name, target)."""
    from importlib.metadata import EntryPoint

    from rerank import plugins

    fake = [EntryPoint(name, value, plugins.GROUP) for name, value in entries]
    monkeypatch.setattr(plugins, "entry_points", lambda group: [e for e in fake if e.group == group])


@pytest.mark.integration
def test_eval_and_leaderboard_come_from_the_entry_point_group():
    from importlib.metadata import entry_points

    from rerank.cli import build_parser

    assert {e.name: e.value for e in entry_points(group="rerank.commands")} == {
        "eval": "eval.cli",
        "leaderboard": "eval.leaderboard",
    }
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert list(commands) == [
        "index",
        "retrieve",
        "fuse",
        "run",
        "generate-queries",
        "train",
        "serve",
        "list",
        "models",
        "doctor",
        "eval",
        "leaderboard",
    ]


@pytest.mark.integration
def test_a_command_given_twice_or_shadowing_a_builtin_names_both_targets(capsys, monkeypatch):
    _with_commands(monkeypatch, ("eval", "eval.cli"), ("eval", "other.cli"))
    code, _, err = run_cli(capsys, "doctor")
    assert code == ExitCode.INVALID_INPUT and "eval.cli" in err and "other.cli" in err
    _with_commands(monkeypatch, ("eval", "eval.cli"), ("run", "other.run"))
    code, _, err = run_cli(capsys, "doctor")
    assert code == ExitCode.INVALID_INPUT and "other.run" in err and "rerank.cli.run_cmd" in err


@pytest.mark.integration
def test_run_eval_without_the_eval_command_fails_before_any_work(capsys, monkeypatch, tmp_path):
    _with_commands(monkeypatch, ("leaderboard", "eval.leaderboard"))
    out = tmp_path / "o.trec"
    code, stdout, err = run_cli(
        capsys, "run", "--dataset", "example", "--run", "bm25", "--reranker", SPEC, "--output", str(out), "--eval"
    )
    assert code == ExitCode.MISSING_DEPENDENCY and not stdout
    assert err.count("\n") == 1 and "--eval needs the 'eval' command" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.pyserini
@pytest.mark.integration
def test_a_pipeline_with_a_retriever_and_fusion_runs_from_the_cli(capsys, monkeypatch, tmp_path):
    """BM25 over an index of the example corpus (built once into the stage store), fused with the shipped run."""
    from retrievers.fusion import interpolate

    monkeypatch.setenv("RERANK_CACHE_DIR", str(tmp_path / "cache"))  # an index cache of its own: built here

    pipeline = (
        "interpolate(bm25(b=0.4, k1=0.9) % 20 | run(name=bm25) % 20, weights=[0.7, 0.3]) % 10 >> random(seed=0) % 5"
    )
    args = ["run", "--dataset", "example", "--pipeline", pipeline, "--work-dir", str(tmp_path / "stages")]
    code, _, err = run_cli(capsys, *args, "--output", str(tmp_path / "out.trec"))
    assert code == 0, err
    assert "computing example: bm25(b=0.4, k1=0.9) % 20" in err and "indexing example with bm25" in err
    stages = {p.parent.name: p.parent for p in (tmp_path / "stages").rglob("manifest.json")}
    assert len(stages) == 3  # bm25, the given run, their fusion; the last stage wrote the output

    def stage_run(prefix):
        return data.read_trec_run(next(d for name, d in stages.items() if name.startswith(prefix)) / "run.trec.gz")

    ours = stage_run("interpolate-10")
    expected = interpolate([stage_run("bm25-20"), stage_run("run-20")], [0.7, 0.3]).cut(10)
    assert [(r.qid, r.candidates) for r in ours] == [(r.qid, r.candidates) for r in expected]
    reranked = data.read_trec_run(tmp_path / "out.trec")
    assert [len(r.candidates) for r in reranked] == [min(5, len(r.candidates)) for r in ours]
    assert {c.docid for r in reranked for c in r.candidates} <= {c.docid for r in ours for c in r.candidates}
    # a second pipeline sharing the first stages computes only its own last stage
    other = pipeline.replace("random(seed=0) % 5", "random(seed=1)")
    code, _, err = run_cli(capsys, *args[:4], other, *args[5:], "--output", str(tmp_path / "other.trec"))
    assert code == 0 and "computing" not in err
