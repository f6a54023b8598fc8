"""Killing `rerank run`, `rerank retrieve` and the leaderboard mid-way, then resuming: byte-identical
output, never a partial file at an output path, a corrupted checkpoint refused."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration

# Three stages on DL19's first 16 queries, one query per batch; the kill comes in the last, MiniLM on 5 candidates
# a query (its checkpoint is beside the output), and the earlier stages come back from the stage store. The
# job is stopped the moment its checkpoint shows progress, so however loaded the machine, the kill lands
# mid-stage. What is under test is the batch loop, the same for every stage: no LLM is needed, and MiniLM runs
# on ONNX Runtime (its export cached by the session), which spares each of the many processes torch's model load.
PIPELINE = "run(name=bm25) % 40 >> random(seed=0) % 5 >> bi-encoder(backend=onnx, batch_size=16, model=minilm)"
ARGS = [
    "--dataset",
    "msmarco-passage/trec-dl-2019",
    "--pipeline",
    PIPELINE,
    "--batch-queries",
    "1",
    "--max-queries",
    "16",
]


def default_sigint() -> None:
    """Children get Ctrl-C's default action even when this test runs in the background (where a shell
    ignores SIGINT, and ignored signals stay ignored across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def rerank(*extra, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "rerank.cli", "run", *ARGS, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=default_sigint,
        **popen,
    )


def interrupt_when_checkpointed(process, checkpoint, lines, sig):
    """Send ``sig`` once the checkpoint holds more than ``lines`` lines, and return the exit code.

    The job is stopped (SIGSTOP) the moment the checkpoint is seen, so however loaded the machine, the
    signal reaches a job that is mid-way: it cannot finish between the look and the signal. A SIGINT sent
    to a stopped process is delivered when it continues. Only progress ends the waits, never a clock.
    """
    while process.poll() is None:
        if checkpoint.exists() and checkpoint.read_bytes().count(b"\n") > lines:
            process.send_signal(signal.SIGSTOP)
            break
        time.sleep(0.02)
    assert process.poll() is None, "the job ended before it could be interrupted"
    process.send_signal(sig)
    process.send_signal(signal.SIGCONT)
    return process.wait()


@pytest.fixture(scope="module")
def full_rerank_run(tmp_path_factory, data_dir):
    """The uninterrupted run, once for every interruption test."""
    full = tmp_path_factory.mktemp("reranked") / "full.trec"
    assert rerank("--output", str(full)).wait() == 0
    return full


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_kill_then_resume_gives_identical_bytes(tmp_path, full_rerank_run, sig):
    full = full_rerank_run

    out = tmp_path / "killed.trec"
    checkpoint = tmp_path / "killed.trec.checkpoint"
    code = interrupt_when_checkpointed(rerank("--output", str(out)), checkpoint, 5, sig)
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    assert not out.exists(), "no partial file at the output path"
    assert checkpoint.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".killed")] == []

    resumed = rerank("--output", str(out), "--resume")
    stdout, _ = resumed.communicate()
    assert resumed.returncode == 0
    assert b"from checkpoint" in stdout and b" 0 queries from checkpoint" not in stdout
    assert out.read_bytes() == full.read_bytes()
    assert not checkpoint.exists()
    assert os.path.getsize(out) > 0


# --- rerank retrieve -------------------------------------------------------------------------------------


def retrieve(index, output, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "rerank.cli", "retrieve", "--index", str(index), "--dataset", "beir/scifact",
         "--k", "50", "--batch-queries", "1", "--output", str(output), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint,
    )  # fmt: skip


# `rerank run` is stopped by both signals above. Retrieval runs in the same batch loop under the same command
# line handler, so it is killed (the abrupt stop) and the leaderboard, which has its own entry point, gets
# Ctrl-C (the clean one); each of the four cases costs three processes.
@pytest.mark.slow
@pytest.mark.pyserini
def test_retrieve_killed_then_resumed_gives_identical_bytes(tmp_path, scifact_bm25, scifact_bm25_run):
    full = scifact_bm25_run

    out = tmp_path / "killed.trec"
    checkpoint = tmp_path / "killed.trec.checkpoint"
    code = interrupt_when_checkpointed(retrieve(scifact_bm25, out), checkpoint, 20, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert not out.exists(), "no partial file at the output path"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".killed")] == []

    refused = retrieve(scifact_bm25, out)  # a checkpoint is never silently continued or discarded
    assert refused.wait() == 3 and b"--resume" in refused.stderr.read()

    resumed = retrieve(scifact_bm25, out, "--resume")
    stdout, stderr = resumed.communicate()
    assert resumed.returncode == 0, stderr.decode()[-2000:]
    assert b"from checkpoint" in stdout and b"(0 from checkpoint)" not in stdout
    assert out.read_bytes() == full.read_bytes()
    assert not checkpoint.exists()


@pytest.mark.slow
@pytest.mark.pyserini
def test_retrieve_refuses_a_corrupted_checkpoint(tmp_path, scifact_bm25):
    out = tmp_path / "r.trec"
    checkpoint = tmp_path / "r.trec.checkpoint"
    assert interrupt_when_checkpointed(retrieve(scifact_bm25, out), checkpoint, 10, signal.SIGKILL) == -signal.SIGKILL
    lines = checkpoint.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b'"qid"', b'"QID"')  # same length, wrong CRC
    checkpoint.write_bytes(b"\n".join(lines))
    resumed = retrieve(scifact_bm25, out, "--resume")
    _, stderr = resumed.communicate()
    assert resumed.returncode == 3
    assert f"{checkpoint}:4".encode() in stderr and b"corrupted" in stderr
    assert not out.exists()


# --- the leaderboard -------------------------------------------------------------------------------------

BOARD = """[[datasets]]
name = "msmarco-passage/trec-dl-2019"
pipelines = ["run(name=bm25) % 10 >> bi-encoder(backend=onnx, batch_size=16, model=minilm)"]
"""


def leaderboard(config, output):
    return subprocess.Popen(
        [sys.executable, "-m", "eval.leaderboard", "--config", str(config), "--output", str(output),
         "--batch-queries", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint,
    )  # fmt: skip


@pytest.fixture(scope="module")
def board_config(tmp_path_factory, data_dir):
    config = tmp_path_factory.mktemp("board") / "board.toml"
    config.write_text(BOARD, encoding="utf-8")
    return config


@pytest.fixture(scope="module")
def full_board(board_config):
    """The uninterrupted leaderboard, once for every interruption test."""
    full = board_config.parent / "full"
    done = leaderboard(board_config, full)
    assert done.wait() == 0, done.stderr.read().decode()[-2000:]
    return full


@pytest.mark.slow
def test_leaderboard_interrupted_then_rerun_finishes_the_cell_with_identical_results(
    tmp_path, board_config, full_board
):
    config, full = board_config, full_board

    board = tmp_path / "board"
    process = leaderboard(config, board)
    while process.poll() is None and not list(board.rglob("*.checkpoint")):
        time.sleep(0.02)
    checkpoint = next(board.rglob("*.checkpoint"))
    code = interrupt_when_checkpointed(process, checkpoint, 6, signal.SIGINT)
    assert code == 130  # Ctrl-C
    cell = checkpoint.parent
    assert not (cell / "run.trec.gz").exists() and not (cell / "manifest.json").exists()
    assert not (board / "leaderboard.md").exists()

    rerun = leaderboard(config, board)
    _, stderr = rerun.communicate()
    assert rerun.returncode == 0, stderr.decode()[-2000:]
    assert not list(board.rglob("*.checkpoint"))
    finished = {p.relative_to(board) for p in board.rglob("run.trec.gz")}
    assert finished == {p.relative_to(full) for p in full.rglob("run.trec.gz")}
    for path in finished:
        assert (board / path).read_bytes() == (full / path).read_bytes()
    manifest = json.loads((cell / "manifest.json").read_text(encoding="utf-8"))
    resumed = manifest["resumed"]
    assert 0 < resumed["queries"] < 43  # the rerun computed only what the checkpoint lacked
    # and its time covers every query: the resumed ones with the seconds their checkpoint recorded
    assert manifest["timed_queries"] == 43 and manifest["seconds"] > resumed["seconds"] > 0
    rows = [json.loads((b / "leaderboard.json").read_text(encoding="utf-8")) for b in (full, board)]
    measures = [[r["measures"] for r in d["datasets"]["msmarco-passage/trec-dl-2019"]["rows"]] for d in rows]
    assert measures[0] == measures[1]
