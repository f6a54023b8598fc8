"""Importing optional dependencies with an error that names the extra to install."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType

from data.errors import MissingDependencyError

EXTRAS = {
    "torch": "models",
    "transformers": "models",
    "sentence_transformers": "models",
    "faiss": "dense",
    "pyserini": "pyserini",
    "llama_cpp": "llamacpp",
    "ftfy": "llm",
    "fastapi": "serve",
    "uvicorn": "serve",
    "prometheus_client": "serve",
    "httpx": "serve",
    "onnxruntime": "onnx",
    "onnx": "onnx",
    "onnxscript": "onnx",
    "openvino": "openvino",
    "nncf": "openvino",
    "pandas": "pandas",
    "pyterrier": "pyterrier",
    "langchain_core": "langchain",
    "llama_index": "llamaindex",
    "ray": "ray",
}


def optional_import(module: str) -> ModuleType:
    """Import ``module`` or raise ``MissingDependencyError`` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise _missing(module, err) from err


@contextlib.contextmanager
def optional_dependency(module: str) -> Iterator[None]:
    """An import in this block that fails raises ``MissingDependencyError`` naming ``module``'s extra.

    For modules built on an optional library (``with optional_dependency("pyterrier"): import pyterrier``):
    the imports stay plain, so type checkers read them.
    """
    try:
        yield
    except MissingDependencyError:
        raise
    except ImportError as err:
        raise _missing(module, err) from err


def _missing(module: str, err: ImportError) -> MissingDependencyError:
    top = module.split(".")[0]
    extra = EXTRAS.get(top)
    hint = f"pip install 'rerank[{extra}]'" if extra else f"pip install {top}"
    return MissingDependencyError(f"{module} is required here but could not be imported ({err}); {hint}")
