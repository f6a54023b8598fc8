"""What a leaderboard row too long to compute here would cost: its pipeline on a dataset's first N queries.

    .venv/bin/python benchmarks/subset_cost.py --queries 3 'listwise(backend=llama.cpp, model=qwen2.5-coder-1.5b, strategy=tournament)' ...

Each RERANKER reranks BM25's top --depth of the first --queries queries of --dataset (the leaderboard's own first
stage, ``run(name=bm25)``), through ``rerank.run`` as the leaderboard's executor does, in a work folder of its
own so that no leaderboard cell is touched. Printed per query: seconds (model load included, as in the
leaderboard), model calls, input, output and reasoning tokens, and the whole dataset's projected hours. Run it
alone on the machine: the seconds are what the row would cost. It measures cost, not effectiveness (a few
queries say nothing about nDCG).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rerankers", nargs="+", metavar="RERANKER")
    parser.add_argument("--dataset", default="msmarco-passage/trec-dl-2019")
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--depth", type=int, default=20)
    args = parser.parse_args()
    print("$ .venv/bin/python benchmarks/subset_cost.py " + shlex.join(sys.argv[1:]), flush=True)

    import rerank
    from data.datasets import load

    dataset = load(args.dataset)
    total = len([q for q in dataset.queries() if q.qid in dataset.qrels()])
    print(f"| reranker (over BM25's top {args.depth}) | queries | s/query | calls/query | input tokens/query | "
          f"output tokens/query | reasoning tokens/query | all {total} queries |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.rerankers:
        with tempfile.TemporaryDirectory() as work:
            result = rerank.run(f"run(name=bm25) % {args.depth} >> {spec}", dataset=dataset, max_queries=args.queries,
                                batch_queries=args.queries, work_dir=work)  # fmt: skip
        n = result.summary["queries"]
        seconds, cost = result.summary["seconds"] / n, result.cost
        print(f"| `{spec}` | {n} | {seconds:.1f} | {cost.calls / n:.1f} | {cost.input_tokens / n:,.0f} | "
              f"{cost.output_tokens / n:,.0f} | {cost.reasoning_tokens / n:,.0f} | "
              f"{seconds * total / 3600:.1f} h |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
