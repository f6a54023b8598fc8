"""Runs of any size: streamed in query groups (interleaved runs sorted on disk), and sharded on Ray
with the same bytes as in process, surviving a killed replica and a killed job."""

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

import data
from data.errors import ParseError
from data.trec import iter_run_groups, read_trec_run, run_query_order
from rerank.cli import main
from rerank.cli.exit_codes import ExitCode

DL19 = "msmarco-passage/trec-dl-2019"
SPEC = "bi-encoder(model=minilm, batch_size=16)"


def interleave(source, target, seed=0):
    """The run's lines shuffled, so every query's lines are scattered through the file."""
    lines = source.read_text().splitlines(keepends=True)
    random.Random(seed).shuffle(lines)
    target.write_text("".join(lines))


@pytest.mark.unit
@pytest.mark.parametrize("sort_lines", [7, 200_000])  # many sorted chunks merged, and one
def test_an_interleaved_run_is_grouped_as_read_trec_run_groups_it(tmp_path, sort_lines):
    grouped = tmp_path / "grouped.trec"
    data.write_trec_run(data.load("example").run("bm25"), grouped)
    mixed = tmp_path / "mixed.trec"
    interleave(grouped, mixed)
    order, contiguous = run_query_order(mixed)
    assert not contiguous and run_query_order(grouped)[1]
    streamed = list(iter_run_groups(mixed, sort_lines=sort_lines))
    whole = read_trec_run(mixed)
    assert [r.qid for r in streamed] == order == list(whole.qids)
    assert streamed == [whole[qid] for qid in order]


@pytest.mark.unit
def test_a_duplicate_in_an_interleaved_run_names_its_own_line(tmp_path):
    mixed = tmp_path / "mixed.trec"
    mixed.write_text("q1 Q0 d1 1 3.0 t\nq2 Q0 d1 1 2.0 t\nq1 Q0 d2 2 1.0 t\nq2 Q0 d9 2 1.0 t\nq1 Q0 d1 3 0.5 t\n")
    with pytest.raises(ParseError, match=r"mixed.trec:5: duplicate docid 'd1' for query 'q1' \(first on line 1\)"):
        list(iter_run_groups(mixed, sort_lines=2))


@pytest.mark.integration
def test_rerank_run_over_an_interleaved_run_writes_the_grouped_runs_bytes(capsys, tmp_path):
    mixed = tmp_path / "mixed.trec"
    data.write_trec_run(data.load("example").run("bm25"), tmp_path / "example.trec")
    interleave(tmp_path / "example.trec", mixed)
    grouped = tmp_path / "grouped.trec"  # the same lines, each query's together, queries in order of first appearance
    order = run_query_order(mixed)[0]
    lines = mixed.read_text().splitlines(keepends=True)
    grouped.write_text("".join(sorted(lines, key=lambda line: order.index(line.split()[0]))))
    outputs = []
    for run in (grouped, mixed):
        out = tmp_path / f"{run.stem}.out.trec"
        args = ["run", "--dataset", "example", "--run", str(run), "--reranker", SPEC, "--batch-queries", "2"]
        assert main([*args, "--output", str(out), "--keep-rest"]) == 0, capsys.readouterr().err
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] and outputs[0]


# --- Ray -------------------------------------------------------------------------------------------------

RAY_ARGS = ["run", "--dataset", DL19, "--run", "bm25", "--reranker", SPEC, "--batch-queries", "2"]


@pytest.fixture(scope="module")
def local_dl19(tmp_path_factory, data_dir):
    """DL19's BM25 top 100 for the first 6 queries, reranked in process: the bytes Ray must write."""
    out = tmp_path_factory.mktemp("local") / "local.trec"
    assert main([*RAY_ARGS, "--max-queries", "6", "--output", str(out)]) == 0
    return out


@pytest.mark.slow
@pytest.mark.integration
def test_a_replica_killed_mid_job_is_replaced_and_the_bytes_are_the_same(ray_cluster, local_dl19, tmp_path):
    from rerank.core.api import prepare
    from rerank.core.jobs import rerank_to_file
    from rerank.inputs import RunRequests
    from rerank.ray_engine import RayEngine
    from rerank.spec import parse_spec

    out = tmp_path / "ray.trec"
    dataset = data.load(DL19)
    job = prepare(SPEC, dataset=dataset, run="bm25", max_queries=6, batch_queries=2)
    run = RunRequests(job.previous.run_path, {q.qid: q for q in job.source.queries}, dataset.docs(), grouped=True)
    engine = RayEngine(workers=2, queued=1)
    finished: list = []
    worker = threading.Thread(
        target=lambda: finished.append(
            rerank_to_file(parse_spec(SPEC), run, out, job.key, batch_queries=2, engine=engine)
        )
    )
    worker.start()
    checkpoint = tmp_path / "ray.trec.checkpoint"
    while worker.is_alive() and not (checkpoint.exists() and checkpoint.read_bytes().count(b"\n") > 1):
        time.sleep(0.02)  # until the first batch is checkpointed (two of three remain)
    assert worker.is_alive() and engine.runner is not None, "the job ended before a replica could be killed"
    victim = engine.runner.pids[0]
    os.kill(victim, signal.SIGKILL)
    worker.join()
    assert finished, "the job failed when a replica died"
    assert out.read_bytes() == local_dl19.read_bytes()
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE


def ray_job(*extra):
    return subprocess.Popen(
        [sys.executable, "-m", "rerank.cli", *RAY_ARGS, "--max-queries", "6", "--engine", "ray", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.integration
def test_ctrl_c_stops_the_ray_job_cleanly_and_resume_writes_the_same_bytes(local_dl19, tmp_path):
    """Also `rerank run --engine ray --workers 2` writing the local engine's bytes (the resumed job)."""
    out = tmp_path / "ray.trec"
    checkpoint = tmp_path / "ray.trec.checkpoint"
    job = ray_job("--output", str(out))
    cluster: set[int] = set()
    while job.poll() is None and not (checkpoint.exists() and checkpoint.read_bytes().count(b"\n") > 1):
        cluster |= {p.pid for p in psutil.Process(job.pid).children(recursive=True)}
        time.sleep(0.02)
    assert job.poll() is None, "the job ended before it could be interrupted"
    cluster |= {p.pid for p in psutil.Process(job.pid).children(recursive=True)}
    job.send_signal(signal.SIGINT)
    _, err = job.communicate()
    assert job.returncode == ExitCode.INTERRUPTED, err.decode()[-2000:]
    assert not out.exists() and checkpoint.exists()
    assert len(cluster) > 2  # Ray's own processes (GCS, raylet, workers) were there to stop
    stray = [pid for pid in cluster if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert stray == [], f"Ray processes left running: {stray}"

    resumed = ray_job("--output", str(out), "--resume", "--workers", "2")
    cluster = set()
    while resumed.poll() is None:  # the cluster starts in the background and stops as the output is written
        with contextlib.suppress(psutil.NoSuchProcess):
            cluster |= {p.pid for p in psutil.Process(resumed.pid).children(recursive=True)}
        time.sleep(0.02)
    stdout, err = resumed.communicate()
    assert resumed.returncode == 0, err.decode()[-2000:]
    assert b" 0 queries from checkpoint" not in stdout
    assert out.read_bytes() == local_dl19.read_bytes()
    assert len(cluster) > 2
    stray = [pid for pid in cluster if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert stray == [], f"Ray processes left running: {stray}"
    assert b"Ray instance" not in err and b"WARNING" not in err  # Ray's own log lines stay out of the job's


@pytest.mark.slow
@pytest.mark.integration
def test_warmed_replicas_are_the_ones_the_job_starts_and_other_work_replaces_them(ray_cluster):
    from rerank.engine import rerank_work
    from rerank.ray_engine import SHARED_NODE_SPINCOUNT, RayEngine

    engine = RayEngine(workers=1)
    engine.connect()  # joins the session's cluster
    work = rerank_work(SPEC, None)
    engine.warm(work)  # loads in the background while the job reads its inputs
    engine.ready()
    assert engine.warmed is not None
    warmed = ray_cluster.get([actor.load.remote() for actor in engine.warmed[1]])
    runner = engine.start(work)
    assert runner.pids == warmed and engine.warmed is None  # the job's replicas: no second load
    # On the driver's node the replica's OpenMP threads spin briefly, leaving the driver its core.
    spin = ray_cluster.get(runner.actors[0].__ray_call__.remote(lambda _: os.environ.get("GOMP_SPINCOUNT")))
    assert spin == os.environ.get(
        "GOMP_SPINCOUNT", SHARED_NODE_SPINCOUNT if "OMP_WAIT_POLICY" not in os.environ else None
    )
    runner.close()

    engine.warm(work)
    engine.ready()
    assert engine.warmed is not None
    stale = engine.warmed[1]
    other = engine.start(rerank_work("bi-encoder(model=minilm, batch_size=8)", None))
    try:
        assert other.actors and not set(other.actors) & set(stale)
        with pytest.raises(ray_cluster.exceptions.RayActorError):  # the other work's replicas were stopped
            ray_cluster.get(stale[0].load.remote())
    finally:
        other.close()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "2"], "--workers goes with --engine ray"),
        (["--engine", "ray", "--workers", "0"], "--workers must be at least 1"),
        (["--engine", "ray", "--address", "not an address"], "--address 'not an address'"),
    ],
)
def test_wrong_engine_arguments_get_one_line_before_any_work(capsys, tmp_path, extra, message):
    out = tmp_path / "o.trec"
    code = main(["run", "--dataset", "example", "--run", "bm25", "--reranker", SPEC, "--output", str(out), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == ExitCode.INVALID_INPUT and len(err) == 1 and message in err[0]
    assert not out.exists()


@pytest.mark.integration
@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_where_no_cluster_listens_fails_at_once_naming_it(capsys, tmp_path, scheme):
    """Ray's own client retried such an address for 14 minutes; the probe answers in at most its 5 s timeout
    (a closed loopback port refuses at once), in one line naming --address, with nothing written."""
    from conftest import free_port

    out = tmp_path / "o.trec"
    address = f"{scheme}127.0.0.1:{free_port()}"
    code = main(["run", "--dataset", "example", "--run", "bm25", "--reranker", SPEC, "--output", str(out),
                 "--engine", "ray", "--address", address])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == ExitCode.UNAVAILABLE and len(err) == 1, err
    assert f"--address {address}: nothing answers at 127.0.0.1" in err[0]
    assert not out.exists() and not list(tmp_path.glob("*.checkpoint"))


@pytest.mark.slow
@pytest.mark.integration
def test_the_leaderboard_on_ray_computes_the_cells_a_local_run_computes(ray_cluster, tmp_path):
    from test_leaderboard import PIPELINES, write_config

    from eval.leaderboard import run_leaderboard
    from rerank.ray_engine import RayEngine

    config = write_config(tmp_path / "board.toml")
    cells = {}
    for engine in (None, RayEngine(workers=2)):
        output = tmp_path / ("ray" if engine else "local")
        _, computed = run_leaderboard(config, output, cache=tmp_path / "cache", engine=engine)
        # three rows and the top 5 of bm25 the listwise row reranks; the shared top 10 once
        assert sorted(computed) == sorted(set(computed)) and len(computed) == 4
        cells[engine is None] = {
            p.relative_to(output).as_posix(): (p / "run.trec.gz").read_bytes()
            for p in (output / "cells" / "example").iterdir()
        }
        keys = {
            p.name: json.loads((p / "manifest.json").read_text())["key"]
            for p in (output / "cells" / "example").iterdir()
        }
        cells[f"keys-{engine is None}"] = keys
    assert cells[True] == cells[False] and len(cells[True]) == len(PIPELINES) + 1
    assert cells["keys-True"] == cells["keys-False"]
    _, computed = run_leaderboard(config, tmp_path / "ray", cache=tmp_path / "cache", engine=RayEngine(workers=2))
    assert computed == []  # nothing stale: no task is sent


@pytest.mark.slow  # the session's Ray cluster starts and stops for it (about 7 s) unless the slow Ray tests share it
@pytest.mark.integration
def test_a_batch_that_keeps_failing_on_ray_stops_the_job_naming_it_with_the_rest_checkpointed(ray_cluster, tmp_path):
    from data.docstore import MemoryDocumentStore
    from data.records import Document, Query
    from data.trec import write_trec_run
    from rerank.checkpoint import Checkpoint
    from rerank.core.jobs import rerank_to_file
    from rerank.inputs import RunRequests
    from rerank.ray_engine import BatchFailedError, RayEngine
    from rerank.spec import parse_spec

    # 8 queries of 3 passages, 2 queries a batch; only query q5 (batch 2) shows a passage of grade 9.
    queries = {f"q{i}": Query(f"q{i}", f"question {i}") for i in range(8)}
    grades = {f"q{i}": [1, 2, 9 if i == 5 else 3] for i in range(8)}
    docs = MemoryDocumentStore(
        Document(f"{q}-d{j}", f"grade {g}") for q, gs in grades.items() for j, g in enumerate(gs)
    )
    rankings = [data.Ranking(q, tuple(data.Candidate(f"{q}-d{j}", 3.0 - j) for j in range(3))) for q in queries]
    write_trec_run(rankings, tmp_path / "run.trec")
    run = RunRequests(tmp_path / "run.trec", queries, docs)
    spec = parse_spec("listwise(model=fails-on-grade-9, backend=scripted, window_size=3, stride=1)")
    out = tmp_path / "out.trec"
    with pytest.raises(BatchFailedError) as failure:
        rerank_to_file(spec, run, out, {"job": "failing"}, batch_queries=2, engine=RayEngine(workers=2))
    message = str(failure.value)
    assert "batch 2 (queries q4 to q5) failed 3 times" in message and "grade 9" in message and "--resume" in message
    assert not out.exists()
    finished = Checkpoint(tmp_path / "out.trec.checkpoint", {"job": "failing"}).open()
    assert "q5" not in finished and "q4" not in finished and {"q0", "q1"} <= {q for q in queries if q in finished}
    finished.close()


@pytest.mark.slow
@pytest.mark.pyserini
@pytest.mark.integration
def test_retrieve_on_ray_writes_the_local_engines_bytes(ray_cluster, tmp_path, scifact_bm25, scifact_bm25_run):
    """`rerank retrieve --engine ray` joining a running cluster (the session's, as a job joins one with --address;
    a job starting a cluster of its own is test_ctrl_c_stops_the_ray_job_cleanly_and_resume_writes_the_same_bytes)."""
    address = ray_cluster.get_runtime_context().gcs_address
    done = subprocess.run(
        [sys.executable, "-m", "rerank.cli", "retrieve", "--index", str(scifact_bm25), "--dataset", "beir/scifact",
         "--k", "50", "--batch-queries", "16", "--engine", "ray", "--workers", "2", "--address", address,
         "--output", str(tmp_path / "ray.trec")],
        capture_output=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert (tmp_path / "ray.trec").read_bytes() == scifact_bm25_run.read_bytes()
