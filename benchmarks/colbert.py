"""colbert throughput against PyLate's ``models.ColBERT`` and ``rank.rerank`` on DL19 BM25 candidates.

    .venv/bin/python benchmarks/colbert.py [--queries 10] [--depth 100] [--rounds 3] [--threads 2]

The model is a ColBERT PyLate builds from MiniLM's encoder (6 layers, hidden 384, a random 128-dimension
projection: the shape of answerai-colbert-small), kept in the cache; its scores mean nothing. PyLate pins a
transformers older than the project's, so it runs in a process of its own (``tests/reference/pylate_colbert.py``,
from the folder ``make setup`` installs it into), timed inside that process once its model is loaded: encoding
every query and each query's candidates (``batch_size=32``) and ``rank.rerank``. rerank's ``colbert`` is timed
the same way in this process. Rounds alternate, and the ratio is the median of each round's ratio. The scores
must agree within 1e-5 (the benchmark stops otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SITE = Path(sys.prefix) / "references" / "pylate-1.6.0"
DRIVER = ROOT / "tests" / "reference" / "pylate_colbert.py"


def pylate(config: dict, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "in.json", Path(tmp) / "out.json"
        source.write_text(json.dumps(config), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SITE), str(ROOT)]), "OMP_NUM_THREADS": str(threads)}
        subprocess.run(
            [sys.executable, str(DRIVER), str(source), str(target)], check=True, env=env, capture_output=True
        )
        return json.loads(target.read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print("command:", shlex.join([".venv/bin/python", "benchmarks/colbert.py", *sys.argv[1:]]), flush=True)

    import torch

    import data
    from data.config import cache_dir
    from data.models import resolve_model
    from data.records import RerankRequest
    from rerank import load_reranker

    torch.set_num_threads(args.threads)
    model = cache_dir() / "models" / "colbert-minilm-random"
    if not (model / "config.json").is_file():
        pylate({"build": str(model), "base": resolve_model("minilm"), "seed": 0}, args.threads)
    ds = data.load("msmarco-passage/trec-dl-2019")
    ranked = [RerankRequest(r.query, r.candidates[: args.depth]) for r in ds.candidates("bm25")[: args.queries]]
    pairs = sum(len(r.candidates) for r in ranked)
    config = {"model": str(model), "timed": True, "requests": [
        {"qid": r.query.qid, "query": r.query.text, "candidates": [[c.docid, c.text] for c in r.candidates]}
        for r in ranked
    ]}  # fmt: skip
    ours = {
        options: load_reranker(f"colbert(model={json.dumps(str(model))}{options})")
        for options in ("", ", backend=openvino")
    }  # fmt: skip (the export is built here, before the rounds)
    ratios: dict[str, list[float]] = {options: [] for options in ours}
    best = {"pylate": 0.0, **dict.fromkeys(ours, 0.0)}
    worst = dict.fromkeys(ours, 0.0)
    for round_ in range(args.rounds):
        theirs = pylate(config, args.threads)
        rates = {"pylate": pairs / theirs["seconds"]}
        for options, reranker in ours.items():
            start = time.perf_counter()
            results = reranker.rerank(ranked)
            rates[options] = pairs / (time.perf_counter() - start)
            ratios[options].append(rates[options] / rates["pylate"])
            worst[options] = max(
                abs(c.score - theirs["scores"][r.ranking.qid][c.docid]) for r in results for c in r.ranking.candidates
            )
        best = {k: max(best[k], v) for k, v in rates.items()}
        print(f"round {round_ + 1}: " + ", ".join(f"{k or 'colbert'} {v:.1f} pairs/s" for k, v in rates.items()),
              flush=True)  # fmt: skip
    if worst[""] > 1e-5:
        raise SystemExit(f"colbert differs from PyLate by {worst['']}: the paths do not compare")
    print(f"\n{pairs} pairs ({args.queries} queries × top {args.depth}), {args.threads} threads")
    print("| path | pairs/s (best round) | × PyLate (median of the rounds' ratios) | max abs vs PyLate |")
    print("|---|---|---|---|")
    print(f"| PyLate 1.6.0 `ColBERT.encode` + `rank.rerank` | {best['pylate']:.1f} | 1.00 | — |")
    for options in ours:
        name = f"colbert({options.lstrip(', ')})" if options else "colbert"
        print(
            f"| rerank `{name}` | {best[options]:.1f} | {statistics.median(ratios[options]):.2f} | {worst[options]:.1e} |"
        )


if __name__ == "__main__":
    main()
