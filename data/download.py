"""Downloading BEIR datasets into the data directory (any URL urllib reads, file:// included)."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from data.errors import DatasetNotFoundError

BEIR_BASE_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
BEIR_URL_ENV = "RERANK_BEIR_BASE_URL"


def beir_base_url() -> str:
    return os.environ.get(BEIR_URL_ENV, BEIR_BASE_URL).rstrip("/")


def download_beir(name: str, target: Path, base_url: str | None = None) -> Path:
    """Fetch ``<base>/<name>.zip`` and unpack its ``<name>/`` folder to ``target``, atomically."""
    url = f"{base_url or beir_base_url()}/{name}.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}.") as tmp:
        archive = Path(tmp) / f"{name}.zip"
        try:
            with urllib.request.urlopen(url) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as err:
            raise DatasetNotFoundError(f"could not download BEIR dataset {name!r} from {url}: {err}") from err
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(Path(tmp) / "unpacked")
        except zipfile.BadZipFile as err:
            raise DatasetNotFoundError(f"{url} is not a zip archive: {err}") from err
        unpacked = Path(tmp) / "unpacked" / name
        if not (unpacked / "qrels").is_dir():
            raise DatasetNotFoundError(f"{url} does not hold a BEIR folder {name}/ with qrels/")
        if target.exists():  # another process finished first
            return target
        os.replace(unpacked, target)
    return target
