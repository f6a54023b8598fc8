"""Topics and qrels that pyserini ships inside its Anserini jar, read without starting Java."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

from data.errors import MissingDependencyError

PYSERINI_INSTALL = "pip install --no-deps pyserini==0.21.0 && pip install pyjnius pandas onnxruntime sentencepiece"


def anserini_jar() -> Path:
    spec = importlib.util.find_spec("pyserini")
    if spec is None or spec.origin is None:
        raise MissingDependencyError(f"pyserini is not installed; install it with: {PYSERINI_INSTALL}")
    jars = sorted((Path(spec.origin).parent / "resources" / "jars").glob("anserini-*-fatjar.jar"))
    if not jars:
        raise MissingDependencyError(
            f"pyserini is installed but its Anserini jar is missing; reinstall: {PYSERINI_INSTALL}"
        )
    return jars[-1]


def extract_resource(name: str, target: Path) -> Path:
    """Copy ``topics-and-qrels/<name>`` out of the jar to ``target`` (once) and return it."""
    if target.is_file():
        return target
    with zipfile.ZipFile(anserini_jar()) as jar:
        try:
            data = jar.read(f"topics-and-qrels/{name}")
        except KeyError:
            raise FileNotFoundError(f"pyserini's jar has no topics-and-qrels/{name}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "wb") as out:
        out.write(data)
    tmp.replace(target)
    return target
