"""mono-t5 throughput against pyterrier-t5's ``MonoT5ReRanker`` on a t5-base-shaped T5, DL19 BM25 pairs.

    .venv/bin/python benchmarks/t5.py [--queries 4] [--depth 25] [--rounds 2] [--threads 2]

No T5 weights can be downloaded here, so the model is a T5 with random weights in t5-base's shape (12+12
layers, d_model 768, d_ff 3072, 12 heads; a 2,000-piece vocabulary trained on DL19 texts), built once
into the cache. Its scores mean nothing; what is measured is the work. In one process, in alternating
rounds (each path's best round counts):

- pyterrier-t5 0.3.0 ``MonoT5ReRanker`` at its default ``batch_size=4``, over a PyTerrier frame of the
  pairs in DL19's order (its own ``transform``), installed by ``make setup`` in ``.venv/references``;
- rerank ``mono-t5`` at its defaults (each pair encoded alone, batched by length);
- rerank ``mono-t5(variant=pyterrier-t5, batch_size=4)``, pyterrier-t5's batch layout: its scores must
  equal pyterrier-t5's (the benchmark stops otherwise), so the two do the same work;
- rerank ``mono-t5(backend=openvino)`` and ``mono-t5(backend=onnx, precision=int8)``: the default path on the
  exported encoder and first decoder step (exported before the rounds); their largest difference from the
  default's torch scores is reported beside.

The default path's scores equal pyterrier-t5's with ``batch_size=1`` (``tests/test_fidelity.py``); the
benchmark reports its largest difference from pyterrier-t5's batched scores too (those differ by design:
see docs/methods/t5.md).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(sys.prefix) / "references" / "pyterrier-t5-0.3.0"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=4)
    parser.add_argument("--depth", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print("command:", shlex.join([".venv/bin/python", "benchmarks/t5.py", *sys.argv[1:]]), flush=True)

    import pandas as pd
    import pyterrier_t5
    import torch

    import data
    from data.config import cache_dir
    from data.records import RerankRequest
    from rerank import load_reranker
    from rerank.methods.random_t5 import build_random_t5

    torch.set_num_threads(args.threads)
    ds = data.load("msmarco-passage/trec-dl-2019")
    texts = [q.text for q in ds.queries()] + [c.text for r in ds.candidates("bm25")[:20] for c in r.candidates[:50]]
    texts += ["Query: Document: Document0: Document1: Relevant: true false yes no"] * 20
    model = build_random_t5(str(cache_dir() / "models" / "t5-base-random"), texts, shape="base")
    requests = [RerankRequest(r.query, r.candidates[: args.depth]) for r in ds.candidates("bm25")[: args.queries]]
    pairs = sum(len(r.candidates) for r in requests)
    frame = pd.DataFrame(
        [
            {"qid": r.query.qid, "query": r.query.text, "docno": c.docid, "text": c.text, "score": 0.0, "rank": i}
            for r in requests
            for i, c in enumerate(r.candidates)
        ]
    )
    theirs = pyterrier_t5.MonoT5ReRanker(tok_model=model, model=model, device="cpu", verbose=False)
    ours = load_reranker(f"mono-t5(model={json.dumps(model)})")
    laid_out = load_reranker(f"mono-t5(model={json.dumps(model)}, variant=pyterrier-t5, batch_size=4)")
    exported = {options: load_reranker(f"mono-t5(model={json.dumps(model)}, {options})")
                for options in ("backend=openvino", "backend=onnx, precision=int8")}  # fmt: skip

    def run_theirs() -> dict[tuple[str, str], float]:
        out = theirs.transform(frame)
        return {(str(r.qid), str(r.docno)): float(r.score) for r in out.itertuples(index=False)}

    def run_ours(reranker) -> dict[tuple[str, str], float]:  # type: ignore[no-untyped-def]
        return {(r.ranking.qid, c.docid): c.score for r in reranker.rerank(requests) for c in r.ranking.candidates}

    paths = {"pyterrier-t5 MonoT5ReRanker (batch 4)": run_theirs, "mono-t5": lambda: run_ours(ours),
             "mono-t5 variant=pyterrier-t5 (batch 4)": lambda: run_ours(laid_out)}  # fmt: skip
    paths.update({f"mono-t5 {options}": (lambda r=r: run_ours(r)) for options, r in exported.items()})
    best: dict[str, float] = {}
    ratios: dict[str, list[float]] = {name: [] for name in paths}
    scores: dict[str, dict[tuple[str, str], float]] = {}
    for round_ in range(args.rounds):
        rates = {}
        for name, path in paths.items():
            start = time.perf_counter()
            scores[name] = path()
            rates[name] = pairs / (time.perf_counter() - start)
            best[name] = max(best.get(name, 0.0), rates[name])
            print(f"round {round_ + 1}: {name}: {rates[name]:.2f} pairs/s", flush=True)
        for name in paths:  # within a round, so the machine's drift between rounds cancels
            ratios[name].append(rates[name] / rates["pyterrier-t5 MonoT5ReRanker (batch 4)"])
    reference = scores["pyterrier-t5 MonoT5ReRanker (batch 4)"]
    same = max(abs(scores["mono-t5 variant=pyterrier-t5 (batch 4)"][k] - v) for k, v in reference.items())
    if same > 1e-5:
        raise SystemExit(f"variant=pyterrier-t5 differs from pyterrier-t5 by {same}: the paths do not compare")
    default = max(abs(scores["mono-t5"][k] - v) for k, v in reference.items())
    print(f"\n{pairs} pairs ({args.queries} queries × top {args.depth}), {args.threads} threads, t5-base shape")
    print(
        "| path | pairs/s (best of rounds) | × pyterrier-t5 (median of the rounds' ratios) | max abs vs pyterrier-t5 (batch 4) |"
    )
    print("|---|---|---|---|")
    differences = {"pyterrier-t5 MonoT5ReRanker (batch 4)": "—", "mono-t5": f"{default:.1e}",
                   "mono-t5 variant=pyterrier-t5 (batch 4)": f"{same:.1e}"}  # fmt: skip
    for options in exported:  # against the default's torch scores, the same inputs
        gap = max(abs(scores[f"mono-t5 {options}"][k] - v) for k, v in scores["mono-t5"].items())
        differences[f"mono-t5 {options}"] = f"{gap:.1e} vs mono-t5"
    for name in paths:
        print(f"| {name} | {best[name]:.2f} | {statistics.median(ratios[name]):.2f} | {differences[name]} |")


if __name__ == "__main__":
    main()
