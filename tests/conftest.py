"""Shared fixtures: the real datasets in the data directory and the real MiniLM pack."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import settings

from rerank.testing import register_scripted_backend

# Property tests: a small fixed budget in CI; HYPOTHESIS_PROFILE=fuzz for a long, random fuzz run.
settings.register_profile("ci", max_examples=30, derandomize=True, deadline=None)
settings.register_profile("fuzz", max_examples=3000, deadline=None)
settings.register_profile("dev", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


REPO = Path(__file__).resolve().parent.parent

# The canned-answer backend the method tests use is a test helper, never in the production table.
register_scripted_backend()


def _data_dir() -> Path | None:
    env = os.environ.get("RERANK_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "datasets")
    return next((p for p in candidates if (p / "msmarco-passage").is_dir()), None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = _data_dir()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have the datasets: set RERANK_DATA_DIR or put shared/datasets beside the repository")
        pytest.skip("no data directory with the real datasets (set RERANK_DATA_DIR)")
    return found


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets the data directory and a session-wide cache (doc stores built once)."""
    found = _data_dir()
    if found is not None:
        monkeypatch.setenv("RERANK_DATA_DIR", str(found))
    if not os.environ.get("RERANK_CACHE_DIR"):  # a throwaway cache, but the packs joined where they are
        from data.config import models_dir

        monkeypatch.setenv("RERANK_MODELS_DIR", str(models_dir()))
    cache = os.environ.get("RERANK_CACHE_DIR") or str(tmp_path_factory.getbasetemp() / "rerank-cache")
    monkeypatch.setenv("RERANK_CACHE_DIR", cache)


@pytest.fixture(scope="session")
def dl19(data_dir: Path):
    import data

    return data.load("msmarco-passage/trec-dl-2019", data_dir)


@pytest.fixture(scope="session")
def minilm_bi_encoder():
    from rerank.registry import load_reranker

    return load_reranker("bi-encoder(model=minilm, batch_size=16)")


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build) -> Path:
    """``build(folder)`` run once per test session, whatever the number of pytest-xdist workers: the first worker
    to ask builds it under a lock in the session's shared temporary folder, the others wait and reuse it."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder every worker's own temporary folder sits in
    folder, done = root / "built" / name, root / "built" / f"{name}.done"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed part-way is started again
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


def built_and_kept(tmp_path_factory: pytest.TempPathFactory, name: str, key: str, build) -> Path:
    """``built_once``, kept across test runs in the cache (``RERANK_CACHE_DIR``, which ``make check`` keeps) under
    a digest of ``key`` (what the build depends on: its code and inputs), so a warm run builds nothing."""
    import hashlib

    from filelock import FileLock

    cache = os.environ.get("RERANK_CACHE_DIR")
    if not cache:
        return built_once(tmp_path_factory, name, build)
    folder = Path(cache) / "test-models" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    done = folder.with_name(folder.name + ".done")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def dl19_minilm_cache(tmp_path_factory: pytest.TempPathFactory, dl19) -> Path:
    """An output cache (``rerank run --cache``) holding the MiniLM bi-encoder's scores of DL19's BM25 top 100 on
    OpenVINO fp32 (``DL19_MINILM``: 1.3x torch here, within 1e-6 of it, its export shared with test_inference.py),
    the 4,300 pairs scored once per test session: the CLI and PyTerrier tests read them back rather than each
    computing them again (what those tests check is their own path, not MiniLM's arithmetic)."""

    def build(folder: Path) -> None:
        from rerank.cache import OutputCache
        from rerank.registry import load_reranker

        reranker = load_reranker(DL19_MINILM)
        reranker.use_cache(OutputCache(folder))
        reranker.rerank(dl19.candidates("bm25"))

    return built_once(tmp_path_factory, "dl19-minilm", build)


DL19_MINILM = "bi-encoder(model=minilm, backend=openvino)"


@pytest.fixture(scope="session")
def cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The MiniLM-shaped cross-encoder of ASSETS.md (random head: for agreement and speed, never effectiveness)."""
    from rerank.methods.cross_encoder import build_minilm_shaped_cross_encoder

    return build_minilm_shaped_cross_encoder(str(tmp_path_factory.getbasetemp() / "ce-minilm"))


@pytest.fixture(scope="session")
def t5_dir(tmp_path_factory: pytest.TempPathFactory, dl19) -> str:
    """A T5 with random weights and a SentencePiece vocabulary trained on DL19 texts (no T5 weights exist offline):
    for parity with pyterrier-t5 and rank-llm, never for effectiveness."""
    from rerank.methods.random_t5 import build_random_t5

    texts = [q.text for q in dl19.queries()] + [c.text for r in dl19.candidates("bm25")[:20] for c in r.candidates[:50]]
    texts += ["Query: Document: Document0: Document1: Relevant: true false yes no"] * 20
    import inspect

    key = inspect.getsource(build_random_t5) + "\n".join(texts)
    folder = built_and_kept(tmp_path_factory, "t5-tiny", key, lambda f: build_random_t5(str(f / "t5-tiny"), texts))
    return str(folder / "t5-tiny")


@pytest.fixture(scope="session")
def qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Qwen3 causal LM with random weights and the Qwen tokenizer of the qwen2.5-coder-0.5b pack: for parity of the
    causal rerankers' templates with sentence-transformers and the model cards, never for effectiveness."""
    import inspect

    from data.models import resolve_model
    from rerank.methods.random_qwen3 import build_random_qwen3

    key = inspect.getsource(build_random_qwen3) + resolve_model("qwen2.5-coder-0.5b")
    folder = built_and_kept(tmp_path_factory, "qwen3-tiny", key, lambda f: build_random_qwen3(str(f / "qwen3-tiny")))
    return str(folder / "qwen3-tiny")


@pytest.fixture(scope="session")
def colbert_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A ColBERT built by PyLate itself from MiniLM's encoder (its [Q]/[D] markers, a random 128-dimension
    projection, seed 0): for parity with PyLate, never for effectiveness."""
    import json
    import subprocess
    import sys

    from data.models import resolve_model

    site = Path(sys.prefix) / "references" / "pylate-1.6.0"
    driver = Path(__file__).parent / "reference" / "pylate_colbert.py"

    def build(folder: Path) -> None:
        config = folder / "build.json"
        config.write_text(
            json.dumps({"build": str(folder / "colbert-tiny"), "base": resolve_model("minilm"), "seed": 0})
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(Path(__file__).parent.parent)])}
        subprocess.run([sys.executable, str(driver), str(config), str(folder / "built.json")], check=True, env=env,
                       capture_output=True)  # fmt: skip

    key = driver.read_text(encoding="utf-8") + str(site) + resolve_model("minilm")
    return str(built_and_kept(tmp_path_factory, "colbert-tiny", key, build) / "colbert-tiny")


@pytest.fixture(scope="session")
def stanford_colbert_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A ColBERT in ColBERT's own format (an ``HF_ColBERT`` config, ``bert.*`` and ``linear`` weights in one file,
    ``artifact.metadata`` naming ``[unused0]``/``[unused1]``): MiniLM's encoder under a random projection."""
    import inspect
    import json

    from data.models import resolve_model

    def build(folder: Path) -> None:
        import torch
        import transformers
        from safetensors.torch import save_file

        base = resolve_model("minilm")
        bert = transformers.BertModel.from_pretrained(base)
        torch.manual_seed(0)
        linear = torch.nn.Linear(bert.config.hidden_size, 128, bias=False)
        target = folder / "colbert-stanford"
        target.mkdir()
        weights = {f"bert.{k}": v.contiguous() for k, v in bert.state_dict().items()}
        save_file({**weights, "linear.weight": linear.weight.detach().contiguous()}, str(target / "model.safetensors"),
                  metadata={"format": "pt"})  # fmt: skip
        config = {**bert.config.to_dict(), "architectures": ["HF_ColBERT"]}
        (target / "config.json").write_text(json.dumps(config), encoding="utf-8")
        transformers.AutoTokenizer.from_pretrained(base).save_pretrained(target)
        metadata = {"query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_maxlen": 32, "doc_maxlen": 180,
                    "attend_to_mask_tokens": False, "dim": 128}  # fmt: skip
        (target / "artifact.metadata").write_text(json.dumps(metadata), encoding="utf-8")

    key = inspect.getsource(build) + resolve_model("minilm")
    return str(built_and_kept(tmp_path_factory, "colbert-stanford", key, build) / "colbert-stanford")


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for every Ray test (replicas of --engine ray join it, as a job would join
    a running cluster); shut down when the session ends."""
    ray = pytest.importorskip("ray")
    setup = {"worker_process_setup_hook": "rerank.testing.register_scripted_backend"}  # as this process has
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=setup)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def scifact_bm25(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A BM25 index of BEIR scifact, built once by `rerank index` (pyserini)."""

    def build(folder: Path) -> None:
        built = subprocess.run([sys.executable, "-m", "rerank.cli", "index", "--dataset", "beir/scifact",
                                "--retriever", "bm25", "--out", str(folder / "bm25")], capture_output=True)  # fmt: skip
        assert built.returncode == 0, built.stderr.decode()[-2000:]

    return built_once(tmp_path_factory, "scifact", build) / "bm25"


@pytest.fixture(scope="session")
def scifact_bm25_run(tmp_path_factory: pytest.TempPathFactory, scifact_bm25: Path) -> Path:
    """`rerank retrieve` of scifact's 300 queries (top 50) on the local engine, in batches of 16: the bytes an
    interrupted and resumed retrieval, and one on Ray, must write (BM25's results do not depend on the batch)."""
    full = tmp_path_factory.mktemp("retrieved") / "full.trec"
    done = subprocess.run([sys.executable, "-m", "rerank.cli", "retrieve", "--index", str(scifact_bm25), "--dataset",
                           "beir/scifact", "--k", "50", "--batch-queries", "16", "--engine", "local", "--output",
                           str(full)], capture_output=True)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return full


SERVE_KEY = "a-test-key"  # what remote(...) sends (RERANK_API_KEY) and the session's server expects


@pytest.fixture(scope="session")
def minilm_server():
    """`rerank serve` of the MiniLM bi-encoder on a free loopback port, with an API key and small limits."""
    from serving import Served

    os.environ["RERANK_API_KEY"] = SERVE_KEY
    served = Served(
        "--reranker", "bi-encoder(model=minilm)", "--api-key-env", "RERANK_API_KEY", "--max-documents", "50",
        "--max-body-bytes", "100000", "--max-wait-ms", "20",
    )  # fmt: skip
    try:
        yield served.wait_listening()
    finally:
        served.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """llama.cpp's OpenAI-compatible server of smollm2-135m on a free loopback port (one per test session)."""
    pytest.importorskip("llama_cpp.server")
    from data.models import resolve_model

    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    model = str(resolve_model("smollm2-135m"))
    command = [sys.executable, "-m", "llama_cpp.server", "--model", model, "--model_alias", "smollm2-135m",
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
               "--logits_all", "true"]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        while True:  # the server's progress (it listens) or its exit ends the wait, never a clock
            if process.poll() is not None:
                pytest.fail(f"llama.cpp server exited: {Path(log).read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=30)


TIERS = ("unit", "contract", "integration", "acceptance")
GROUPS = {"ray_cluster": "ray", "llama_server": "llama-server", "minilm_server": "minilm-server"}


def xdist_group(item: pytest.Item) -> str | None:
    """The worker group of a test that starts or joins something shared: a session's server or Ray cluster
    (started once per worker that asks, so their tests stay on one), or a test that starts Ray itself."""
    names = set(getattr(item, "fixturenames", ()))
    for fixture, group in GROUPS.items():
        if fixture in names:
            return group
    if item.nodeid.startswith("tests/test_scale.py"):  # `--engine ray` jobs start local clusters of their own
        return "ray"
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    if params.get("reranker") == "remote":  # the contract's remote(...) entry asks for the server itself
        return "minilm-server"
    if params.get("backend") == "openai":  # and its openai(...) backend entry
        return "llama-server"
    return None


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which reads the groups into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test names exactly one tier, so `make check` (all but slow and acceptance) is a known subset."""
    wrong = []
    for item in items:
        tiers = sorted({mark.name for mark in item.iter_markers() if mark.name in TIERS})
        if len(tiers) != 1:
            wrong.append(f"{item.nodeid}: {', '.join(tiers) or 'no tier'}")
    if not os.environ.get("RERANK_REFERENCES"):  # the recordings stand in for them; `make references` runs them
        skip = pytest.mark.skip(reason="a reference run (minutes): RERANK_REFERENCES=1")
        for item in items:
            if item.get_closest_marker("reference"):
                item.add_marker(skip)
    for item in items:  # pytest-xdist (--dist loadgroup): one worker runs each server's and the Ray cluster's tests
        group = xdist_group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    if wrong:
        raise pytest.UsageError(
            f"every test needs exactly one tier marker of {', '.join(TIERS)}:\n  " + "\n  ".join(wrong[:20])
        )
