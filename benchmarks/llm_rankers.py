"""LLM ranking speed on DL19 BM25 top 20, two comparisons in one process each.

    .venv/bin/python benchmarks/llm_rankers.py first-vs-listwise [--backend llama.cpp] [--queries 5]
    .venv/bin/python benchmarks/llm_rankers.py llama-vs-transformers [--method first] [--queries 5]

``first-vs-listwise``: FIRST (one forward pass per window, identifier logits)
against generation-based listwise (RankGPT-style output parsed), the same model,
window, stride, backend and queries. ``llama-vs-transformers``: one method on the
same model and prompts through llama.cpp (the GGUF as shipped) and transformers
(the GGUF dequantised to fp32). Runs alternate, and each is reported per query.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed_rerank(reranker, requests):
    """Seconds per query for each query, reranked one at a time (the latency a user sees)."""
    seconds, costs = [], []
    for request in requests:
        start = time.perf_counter()
        (result,) = reranker.rerank([request])
        seconds.append(time.perf_counter() - start)
        costs.append(result.cost)
    return seconds, costs


def report(name, seconds, costs):
    calls = sum(c.calls for c in costs) / len(costs)
    tokens_in = sum(c.input_tokens for c in costs) / len(costs)
    tokens_out = sum(c.output_tokens for c in costs) / len(costs)
    failures = sum(c.parse_failures for c in costs)
    mean = statistics.mean(seconds)
    print(f"{name:<58} {mean:7.2f} s/query  (median {statistics.median(seconds):.2f})  calls/q {calls:.1f}  "
          f"in/q {tokens_in:.0f}  out/q {tokens_out:.0f}  parse failures {failures}")  # fmt: skip
    return mean


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("comparison", choices=["first-vs-listwise", "llama-vs-transformers"])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--backend", default="llama.cpp", help="first-vs-listwise: the backend both use")
    parser.add_argument("--method", default="first", help="llama-vs-transformers: the method both backends run")
    parser.add_argument("--window-size", type=int, default=20)
    parser.add_argument("--stride", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=os.environ.get("RERANK_DATA_DIR"))
    args = parser.parse_args()
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))

    import torch

    import data
    from data.records import RerankRequest
    from rerank import load_reranker

    def top(request, k):
        return RerankRequest(request.query, request.candidates[:k])

    torch.set_num_threads(args.threads)
    dataset = data.load("msmarco-passage/trec-dl-2019", args.data_dir)
    requests = [top(r, args.top_k) for r in dataset.candidates("bm25")][: args.queries]
    window = f"window_size={args.window_size}, stride={args.stride}"
    llama = f'"llama.cpp(threads={args.threads})"'
    backend = llama if args.backend == "llama.cpp" else args.backend
    if args.comparison == "first-vs-listwise":
        specs = {
            "first": f"first(model={args.model}, backend={backend}, {window}, batch_size=1)",
            "listwise": f"listwise(model={args.model}, backend={backend}, {window}, batch_size=1)",
        }
    else:
        extra = "" if args.method == "llm-pointwise" else f", {window}"
        specs = {
            "llama.cpp": f"{args.method}(model={args.model}, backend={llama}{extra}, batch_size=1)",
            "transformers": f"{args.method}(model={args.model}, backend=transformers{extra}, batch_size=1)",
        }
    rerankers = {name: load_reranker(spec) for name, spec in specs.items()}
    for name, reranker in rerankers.items():
        print(f"{name}: {reranker.spec}")
        reranker.rerank([top(requests[0], 3)])  # warm-up: load weights, first allocations
    results: dict[str, tuple[list[float], list]] = {name: ([], []) for name in rerankers}
    for request in requests:  # alternate per query, so drift in the machine's speed hits both
        for name, reranker in rerankers.items():
            seconds, costs = timed_rerank(reranker, [request])
            results[name][0].extend(seconds)
            results[name][1].extend(costs)
    means = {name: report(f"{name} ({len(requests)} queries)", *results[name]) for name in rerankers}
    slow, fast = ("listwise", "first") if args.comparison == "first-vs-listwise" else ("transformers", "llama.cpp")
    print(f"speed-up of {fast} over {slow}: {means[slow] / means[fast]:.2f}x")


if __name__ == "__main__":
    main()
