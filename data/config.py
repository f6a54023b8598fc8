"""Where datasets and caches live: explicit argument, then environment, then a default."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "RERANK_DATA_DIR"
CACHE_DIR_ENV = "RERANK_CACHE_DIR"
MODELS_DIR_ENV = "RERANK_MODELS_DIR"


def cache_dir() -> Path:
    """Writable cache for built stores, converted models and downloads (``$RERANK_CACHE_DIR``)."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rerank"


def data_dir(explicit: str | Path | None = None) -> Path:
    """The dataset mirror: ``explicit``, else ``$RERANK_DATA_DIR``, else ``<cache>/datasets``."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else cache_dir() / "datasets"


def models_dir() -> Path:
    """Where joined model packs live: ``$RERANK_MODELS_DIR``, else ``<cache>/models``."""
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env).expanduser() if env else cache_dir() / "models"
