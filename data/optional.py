"""Importing optional dependencies with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from data.errors import MissingDependencyError

EXTRAS = {
    "torch": "models",
    "transformers": "models",
    "sentence_transformers": "models",
    "faiss": "dense",
    "pyserini": "pyserini",
    "llama_cpp": "llamacpp",
    "fastapi": "serve",
    "uvicorn": "serve",
    "prometheus_client": "serve",
    "httpx": "serve",
    "onnxruntime": "onnx",
    "onnx": "onnx",
    "onnxscript": "onnx",
    "openvino": "openvino",
    "nncf": "openvino",
}


def optional_import(module: str) -> ModuleType:
    """Import ``module`` or raise ``MissingDependencyError`` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        extra = EXTRAS.get(top)
        hint = f"pip install 'rerank[{extra}]'" if extra else f"pip install {top}"
        raise MissingDependencyError(f"{module} is required here but could not be imported ({err}); {hint}") from err
