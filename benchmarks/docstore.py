"""Document store: build time and lookup rate against pyserini's stored-raw Lucene documents.

    .venv/bin/python benchmarks/docstore.py --docs 200000 [--lookups 20000] [--skip-lucene]

Synthetic MS MARCO-sized passages (about 60 words) with numeric ids, looked up
in reranking-shaped batches of 100 random ids. The reference is what pyserini
users do to get a passage's text: ``LuceneSearcher.doc(docid).raw()`` on an index
built with ``--storeRaw``. Results go in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data.docstore import SqliteDocumentStore
from data.records import Document

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "that",
    "on",
    "was",
    "with",
    "as",
    "by",
    "at",
    "from",
    "be",
    "this",
    "are",
    "or",
    "an",
    "which",
    "it",
    "not",
    "have",
] + [f"term{i}" for i in range(5000)]


def passages(n: int, seed: int = 0):
    rng = random.Random(seed)
    for i in range(n):
        yield Document(str(i), " ".join(rng.choices(WORDS, k=60)))


def lookup_batches(n_docs: int, n_lookups: int, batch: int = 100, seed: int = 1) -> list[list[str]]:
    rng = random.Random(seed)
    return [[str(rng.randrange(n_docs)) for _ in range(batch)] for _ in range(n_lookups // batch)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--skip-lucene", action="store_true")
    args = parser.parse_args()
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    work = Path(tempfile.mkdtemp(prefix="docstore-bench-"))
    batches = lookup_batches(args.docs, args.lookups)

    start = time.perf_counter()
    store = SqliteDocumentStore.build(work / "store.sqlite", passages(args.docs))
    build = time.perf_counter() - start
    size_mb = (work / "store.sqlite").stat().st_size / 2**20
    start = time.perf_counter()
    for ids in batches:
        store.get_many(ids)
    ours = args.lookups / (time.perf_counter() - start)
    start = time.perf_counter()
    for ids in batches[: max(1, len(batches) // 10)]:
        for docid in ids:
            store.get_many([docid])
    ours_single = (len(batches[: max(1, len(batches) // 10)]) * 100) / (time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "docs": args.docs,
        "build_seconds": round(build, 1),
        "build_docs_per_second": round(args.docs / build),
        "store_mb": round(size_mb),
        "batched_lookups_per_second": round(ours),
        "single_lookups_per_second": round(ours_single),
        "peak_rss_mb": round(peak_mb),
    }
    if not args.skip_lucene:
        from pyserini.search.lucene import LuceneSearcher

        (work / "json").mkdir()
        with open(work / "json" / "docs.jsonl", "w") as out:
            for d in passages(args.docs):
                out.write(json.dumps({"id": d.docid, "contents": d.text}) + "\n")
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pyserini.index.lucene", "--collection", "JsonCollection", "--input", str(work / "json"),
             "--index", str(work / "lucene"), "--generator", "DefaultLuceneDocumentGenerator", "--threads", "2", "--storeRaw"],
            check=True, capture_output=True,
        )  # fmt: skip
        result["lucene_build_seconds"] = round(time.perf_counter() - start, 1)
        searcher = LuceneSearcher(str(work / "lucene"))
        start = time.perf_counter()
        for ids in batches:
            for docid in ids:
                json.loads(searcher.doc(docid).raw())["contents"]
        result["lucene_lookups_per_second"] = round(args.lookups / (time.perf_counter() - start))
        result["ratio_batched_vs_lucene"] = round(ours / result["lucene_lookups_per_second"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
