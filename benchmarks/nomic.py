"""nomic-embed-text-v1.5 on llama.cpp: one passage per call against several per call.

    .venv/bin/python benchmarks/nomic.py [--docs 400] [--rounds 2] [--threads 2]

Encodes the first ``--docs`` distinct passages of DL19's BM25 top 100 (with nomic's document prefix) in
alternating rounds, one text per ``Llama.embed`` call (what the encoder did) and a list per call (llama.cpp
packs sequences into one batch of up to ``n_batch`` tokens, each pooled alone). Reports docs/s of each,
their ratio, and the largest difference between the two vectors of any passage: batching is only taken when
it stays within 1e-5.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=os.environ.get("RERANK_DATA_DIR"))
    args = parser.parse_args()
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]), flush=True)

    import llama_cpp
    import numpy as np

    import data
    from data.models import resolve_model

    dl19 = data.load("msmarco-passage/trec-dl-2019", args.data_dir)
    texts = list(dict.fromkeys(c.text or "" for r in dl19.candidates("bm25") for c in r.candidates))
    texts = ["search_document: " + t for t in texts[: args.docs]]
    model = llama_cpp.Llama(
        model_path=resolve_model("nomic-embed-text-v1.5"), embedding=True, n_ctx=2048, n_batch=2048, n_ubatch=2048,
        n_threads=args.threads, verbose=False,
    )  # fmt: skip
    modes = {
        "one per call": lambda: [model.embed(t, normalize=True, truncate=True) for t in texts],
        "batched": lambda: model.embed(texts, normalize=True, truncate=True),
    }
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for mode, encode in modes.items():
            start = time.perf_counter()
            vectors[mode] = np.asarray(encode(), dtype=np.float32)
            seconds[mode].append(time.perf_counter() - start)
    speed = {m: round(len(texts) / min(s), 1) for m, s in seconds.items()}
    difference = float(np.abs(vectors["one per call"] - vectors["batched"]).max())
    report = {
        "docs": len(texts), "threads": args.threads, "docs/s": speed,
        "batched / one per call": round(speed["batched"] / speed["one per call"], 2),
        "max |difference|": difference, "within 1e-5": difference <= 1e-5,
    }  # fmt: skip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
