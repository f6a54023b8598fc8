"""``import rerank`` (and data, eval, retrievers, the CLI parser) stays light."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

HEAVY = ("torch", "transformers", "sentence_transformers", "pyserini", "faiss", "jnius")


def _imported_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(','.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.strip().split(","))


def test_packages_import_without_heavy_libraries():
    loaded = _imported_after("import rerank, data, eval, retrievers\nrerank.load_reranker; rerank.Reranker")
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_cli_parser_is_light():
    loaded = _imported_after("from rerank.cli import build_parser\nbuild_parser()")
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_heavy_library_loads_only_when_a_method_is_built():
    loaded = _imported_after("from rerank.registry import method_class\nmethod_class('bi-encoder')")
    assert "torch" not in loaded
