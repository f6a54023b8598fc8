"""Stage keys hold what determines a stage's output, and nothing else.

Editing comments, docstrings or unrelated code changes no key; a parameter, the method's version,
the dtype, the weights file or a prompt file changes exactly the keys that depend on it. Source edits
are made in a copy of the packages and the keys computed there in a fresh interpreter.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rerank.core.executor import Executor
from rerank.core.keys import method_identity
from rerank.core.plan import Source
from rerank.spec import parse_pipeline

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
GIVEN = "run(name=bm25) % 10"
STAGES = {
    "listwise": "listwise(backend=scripted, model=sort, template=rankzephyr)",
    "setwise": "setwise(backend=scripted, model=sort)",
    "random": "random(seed=0)",
    "bi-encoder": "bi-encoder(model=minilm)",
}

# Computes the keys of GIVEN and of each STAGE on top of it, over the example dataset; prints JSON.
PROBE = """
import json, sys
from pathlib import Path
import data
from rerank.llm.backend import BACKENDS
from rerank.core.executor import Executor
from rerank.core.plan import Source
from rerank.spec import parse_pipeline
if "scripted" not in BACKENDS:
    BACKENDS.register("scripted", "rerank.testing:ScriptedBackend")
given, stages, store = json.loads(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3])
ds = data.load("example")
source = Source("example", tuple(ds.queries()), ds.docs(), ds)
executor = Executor(store, batch_queries=4)
first = executor.output(parse_pipeline(given), source)
keys = {"given": executor.key(first.pipeline, source, None, [])}
for name, spec in stages.items():
    keys[name] = executor.key(parse_pipeline(given + " >> " + spec), source, first, [])
print(json.dumps(keys))
"""


def keys_in(root: Path, store: Path) -> dict[str, dict]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(GIVEN), json.dumps(STAGES), str(store)],
        cwd=root, capture_output=True, text=True, env={**_env(), "PYTHONPATH": str(root)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def copy_of_packages(target: Path) -> Path:
    for package in ("data", "retrievers", "rerank", "eval"):
        shutil.copytree(REPO / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    root = copy_of_packages(tmp_path_factory.mktemp("base"))
    return keys_in(root, tmp_path_factory.mktemp("store"))


@pytest.mark.slow
def test_comments_and_docstrings_change_no_key(tmp_path, baseline):
    root = copy_of_packages(tmp_path / "edited")
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if text.startswith('"""'):  # reword every module docstring
            text = '"""Reworded. ' + text[3:]
        path.write_text(text + "\n# a comment added by the test\n", encoding="utf-8")
    assert keys_in(root, tmp_path / "store") == baseline


def test_a_prompt_file_changes_exactly_the_keys_of_the_methods_that_read_it(tmp_path, baseline):
    root = copy_of_packages(tmp_path / "edited")
    prompt = root / "rerank" / "prompts" / "rankzephyr.json"
    content = json.loads(prompt.read_text(encoding="utf-8"))
    content["system"] += " Be brief."
    prompt.write_text(json.dumps(content), encoding="utf-8")
    keys = keys_in(root, tmp_path / "store")
    changed = {name for name in keys if keys[name] != baseline[name]}
    assert changed == {"listwise"}
    assert keys["listwise"]["identity"]["prompt"] != baseline["listwise"]["identity"]["prompt"]


@pytest.fixture()
def example(tmp_path):
    import data

    ds = data.load("example")
    source = Source("example", tuple(ds.queries()), ds.docs(), ds)
    executor = Executor(tmp_path / "store", batch_queries=4)
    first = executor.output(parse_pipeline(GIVEN), source)
    return executor, source, first


def key(example, spec: str) -> dict:
    executor, source, first = example
    return executor.key(parse_pipeline(f"{GIVEN} >> {spec}"), source, first, [])


def test_a_parameter_changes_its_stage_key_only(example):
    before = {name: key(example, spec) for name, spec in STAGES.items()}
    assert key(example, "random(seed=1)") != before["random"]
    assert key(example, "listwise(backend=scripted, model=sort, template=rankzephyr)") == before["listwise"]
    assert key(example, "listwise(backend=scripted, model=sort, template=rankzephyr, window_size=20)") == before["listwise"], (
        "a default written out is the same stage"
    )  # fmt: skip
    assert key(example, "listwise(backend=scripted, model=sort, template=rankzephyr, stride=5)") != before["listwise"]
    assert {name: key(example, spec) for name, spec in STAGES.items()} == before


def test_the_method_version_changes_that_methods_keys(example, monkeypatch):
    from rerank.methods.listwise import ListwiseReranker

    before = {name: key(example, spec) for name, spec in STAGES.items()}
    monkeypatch.setattr(ListwiseReranker, "version", ListwiseReranker.version + 1)
    after = {name: key(example, spec) for name, spec in STAGES.items()}
    assert {name for name in after if after[name] != before[name]} == {"listwise"}


def test_an_unrelated_method_in_the_registry_changes_no_key(example):
    from rerank.registry import METHODS

    before = {name: key(example, spec) for name, spec in STAGES.items()}
    METHODS.register("unrelated-control", "eval.baselines:RandomReranker")
    try:
        assert {name: key(example, spec) for name, spec in STAGES.items()} == before
    finally:
        METHODS.unregister("unrelated-control")


def test_the_weights_file_changes_the_keys_that_load_it(example, tmp_path):
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"weights, version 1")
    spec = f"llm-pointwise(backend=scripted, model={weights})"
    before, other = key(example, spec), key(example, STAGES["random"])
    weights.write_bytes(b"weights, version 2")
    after = key(example, spec)
    assert after != before and after["identity"]["models"][0]["sha256"] != before["identity"]["models"][0]["sha256"]
    assert key(example, STAGES["random"]) == other


def test_a_method_with_no_model_named_keys_no_local_files(tmp_path, monkeypatch):
    # remote's model="" (the service picks) was read as a path: the current folder, whose every file was hashed
    (tmp_path / "weights.bin").write_bytes(b"not the service's model")
    monkeypatch.chdir(tmp_path)
    identity = method_identity("remote(base_url=http://127.0.0.1:9)")
    assert identity["models"] == [{"name": "", "sha256": None}]


def test_dtype_and_device_are_in_the_key_and_the_output_cache_identity():
    bf16 = 'llm-pointwise(backend="transformers(dtype=bfloat16)", model=smollm2-135m)'
    fp32 = 'llm-pointwise(backend="transformers(dtype=float32)", model=smollm2-135m)'
    assert method_identity(bf16)["dtype"] == "bfloat16" and method_identity(fp32)["dtype"] == "float32"
    assert method_identity(bf16, execution=False) != method_identity(fp32, execution=False)
    cpu = method_identity("bi-encoder(model=minilm, device=cpu)")
    assert cpu["device"] == "cpu" and method_identity("bi-encoder(model=minilm, device=cuda)") != cpu


def test_keys_name_a_librarys_public_version_and_the_manifest_its_build(monkeypatch):
    """torch's CPU and CUDA builds (``+cpu``, ``+cu130``) computed the same cells on a CPU: a key holds the public
    version and the device, so either build reuses the other's cells; provenance records the build that ran."""
    import rerank.identity as identity
    from rerank.core.store import environment

    for build in ("2.13.0", "2.13.0+cpu", "2.13.0+cu130"):
        monkeypatch.setattr(identity, "version", lambda name, build=build: build if name == "torch" else "1.0")
        assert method_identity("bi-encoder(model=minilm)")["libraries"]["torch"] == "2.13.0"
        assert identity.installed_versions(["torch"]) == {"torch": build}
    assert environment()["packages"]["torch"] == "2.13.0+cu130"


def test_batch_size_is_in_the_stage_key_but_not_the_output_cache_identity():
    small, large = "bi-encoder(model=minilm, batch_size=8)", "bi-encoder(model=minilm, batch_size=64)"
    assert method_identity(small) != method_identity(large)
    assert method_identity(small, execution=False) == method_identity(large, execution=False)


def test_the_output_cache_shares_answers_across_batch_sizes_and_not_across_dtypes(tmp_path):
    from data.records import Candidate, Query, RerankRequest
    from rerank.cache import OutputCache
    from rerank.registry import load_reranker
    from rerank.testing import PASSAGES

    candidates = tuple(Candidate(docid, 0.0, text) for docid, text in PASSAGES)
    request = RerankRequest(Query("q", "why do tides happen"), candidates)
    cache = OutputCache(tmp_path / "cache")
    first = load_reranker("bi-encoder(model=minilm, batch_size=2)")
    first.use_cache(cache)
    computed = first.rerank([request])[0]
    assert computed.cost.calls > 0 and len(cache) == len(PASSAGES)
    again = load_reranker("bi-encoder(model=minilm, batch_size=32)")
    again.use_cache(cache)
    reread = again.rerank([request])[0]
    assert reread.cost.calls == 0 and reread.ranking == computed.ranking  # answered from the cache
    other = load_reranker("bi-encoder(model=minilm, max_length=16)")
    other.use_cache(cache)
    assert other.rerank([request])[0].cost.calls > 0  # another output-affecting setting: its own entries
