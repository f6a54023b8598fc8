"""Killing `rerank run` mid-way, then --resume: byte-identical output, never a partial file."""

import os
import signal
import subprocess
import sys
import time

import pytest

ARGS = ["--dataset", "msmarco-passage/trec-dl-2019", "--run", "bm25", "--top-k", "30", "--batch-queries", "2",
        "--reranker", "bi-encoder(model=minilm, batch_size=16)"]  # fmt: skip


def rerank(*extra, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "rerank.cli", "run", *ARGS, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_kill_then_resume_gives_identical_bytes(tmp_path, data_dir, sig):
    full = tmp_path / "full.trec"
    assert rerank("--output", str(full)).wait(timeout=600) == 0

    out = tmp_path / "killed.trec"
    checkpoint = tmp_path / "killed.trec.checkpoint"
    process = rerank("--output", str(out))
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until a few queries are checkpointed
        if checkpoint.exists() and checkpoint.read_text(errors="replace").count("\n") >= 6:
            break
        time.sleep(0.05)
    process.send_signal(sig)
    code = process.wait(timeout=60)
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    assert not out.exists(), "no partial file at the output path"
    assert checkpoint.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".killed")] == []

    resumed = rerank("--output", str(out), "--resume")
    stdout, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0
    assert b"from checkpoint" in stdout and b" 0 queries from checkpoint" not in stdout
    assert out.read_bytes() == full.read_bytes()
    assert not checkpoint.exists()
    assert os.path.getsize(out) > 0
