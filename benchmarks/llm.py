"""LLM rankers on vLLM, transformers and llama.cpp: DL19 BM25 top 20, the same model, requests and methods.

    .venv-vllm/bin/python benchmarks/llm.py batching --backend vllm [--queries 4]
    .venv-vllm/bin/python benchmarks/llm.py batching --backend transformers [--queries 4]
    .venv-vllm/bin/python benchmarks/llm.py rankllm [--queries 4] [--batched]
    .venv/bin/python benchmarks/llm.py engines [--queries 2]

``batching``: each method ranks the queries one at a time, then all in one call (every query's prompts of a
step in one backend call), on one backend; the ratio is one-at-a-time seconds over all-at-once seconds, and
the rankings must be identical. vLLM's prefix cache is emptied before each pass, so neither reads the
other's prompts from it. ``rankllm``: RankLLM 0.25.7's own listwise and FIRST on its own vLLM path (its
driver, tests/reference/rankllm_listwise.py, timing each query's ``rerank_batch``) against ours with
``backend=vllm`` and the same engine settings, one query at a time on both sides (``--batched``: all queries
in one call on both sides; RankLLM's ``rerank_batch`` batches lists of equal length); the ratio is theirs over
ours. ``engines``: each method on each engine in a process of its own (vLLM's in its environment, the others
in this one), one query at a time, seconds per query (engine loads not counted).

Methods: llm-pointwise, listwise and FIRST (window 20, stride 10: one window per query) and setwise (heapsort,
top 10). The model is qwen2.5-coder-0.5b, its GGUF pack dequantised once into a transformers folder for vLLM
and transformers (vLLM reads it in bfloat16, its choice for a float32 checkpoint on CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

METHODS = {
    "llm-pointwise": "llm-pointwise(model={model}, backend={backend})",
    "listwise": "listwise(model={model}, backend={backend}, window_size=20, stride=10)",
    "first": "first(model={model}, backend={backend}, window_size=20, stride=10)",
    "setwise": "setwise(model={model}, backend={backend}, k=10)",
}
BACKENDS = {"vllm": '"vllm(kv_cache_gb=4, dtype={dtype})"', "transformers": "transformers",
            "llama.cpp": '"llama.cpp(threads=2)"'}  # fmt: skip


def requests(n: int, depth: int = 20) -> list:
    import data
    from data.records import RerankRequest

    dataset = data.load("msmarco-passage/trec-dl-2019", os.environ.get("RERANK_DATA_DIR"))
    return [RerankRequest(r.query, r.candidates[:depth]) for r in dataset.candidates("bm25")[:n]]


def model_for(backend: str, pack: str) -> str:
    """The GGUF pack for llama.cpp; its transformers folder for vLLM and transformers (the same weights)."""
    if backend == "llama.cpp":
        return pack
    from data.models import resolve_model
    from rerank.llm.transformers_backend import fp32_copy_of_gguf

    return str(fp32_copy_of_gguf(Path(resolve_model(pack))))


def empty_prefix_cache(reranker) -> None:
    engine = getattr(getattr(reranker, "backend", None), "_llm", None)
    if engine is not None and hasattr(engine, "reset_prefix_cache"):
        engine.reset_prefix_cache()


def ranked(results) -> list[list[str]]:
    return [[c.docid for c in r.ranking] for r in results]


def batching(args) -> None:
    from rerank import load_reranker

    batch = requests(args.queries)
    model = model_for(args.backend, args.model)
    print(f"backend {args.backend}, model {args.model}, {len(batch)} queries, BM25 top 20")
    for name in args.methods:
        reranker = load_reranker(
            METHODS[name].format(model=model, backend=BACKENDS[args.backend].format(dtype=args.dtype))
        )
        reranker.rerank([requests(1, 3)[0]])  # warm-up: the first allocations, vLLM's first-call compilation
        empty_prefix_cache(reranker)
        start = time.perf_counter()
        alone = [reranker.rerank([r])[0] for r in batch]
        one_at_a_time = time.perf_counter() - start
        empty_prefix_cache(reranker)
        start = time.perf_counter()
        together = reranker.rerank(batch)
        all_at_once = time.perf_counter() - start
        same = ranked(alone) == ranked(together)
        print(f"{name:<14} one at a time {one_at_a_time / len(batch):6.2f} s/query   all at once "
              f"{all_at_once / len(batch):6.2f} s/query   ratio {one_at_a_time / all_at_once:4.2f}x   "
              f"identical rankings: {same}   calls {sum(r.cost.calls for r in together)}", flush=True)  # fmt: skip


def rankllm(args, tmp: Path) -> None:
    from rerank import load_reranker

    batch = requests(args.queries)
    model = model_for("vllm", args.model)
    site = Path(sys.prefix) / "references" / "rank-llm-0.25.7"
    runs = {"listwise": ("rank_zephyr_template.yaml", {}),
            "first": ("rank_zephyr_alpha_template.yaml", {"use_logits": True, "use_alpha": True})}  # fmt: skip
    for name in args.methods:
        if name not in runs:
            continue
        template, options = runs[name]
        config = {"model": model, "template": template, "window_size": 20, "stride": 10, "context_size": 4096,
                  "timed": True, "batched": args.batched, **options,
                  "requests": [{"qid": r.query.qid, "query": r.query.text,
                                "candidates": [[c.docid, c.text] for c in r.candidates]} for r in batch]}  # fmt: skip
        source, target = tmp / f"{name}.json", tmp / f"{name}-out.json"
        source.write_text(json.dumps(config), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "VLLM_CPU_KVCACHE_SPACE": "4",
               "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}  # fmt: skip
        script = ROOT / "tests" / "reference" / "rankllm_listwise.py"
        subprocess.run([sys.executable, str(script), str(source), str(target), "--vllm"], check=True, env=env)
        theirs = json.loads(target.read_text(encoding="utf-8"))
        reranker = load_reranker(f'{name}(model={model}, backend="vllm(kv_cache_gb=4)", window_size=20, stride=10, '
                                 "context_size=4096)")  # fmt: skip
        reranker.rerank([requests(1, 3)[0]])
        empty_prefix_cache(reranker)
        seconds, ours = [], []
        for group in [batch] if args.batched else [[r] for r in batch]:  # as the RankLLM run above had them
            start = time.perf_counter()
            ours.extend(reranker.rerank(group))
            seconds.append(time.perf_counter() - start)
        mine, their = sum(seconds) / len(batch), sum(theirs["seconds"].values()) / len(batch)
        same = ranked(ours) == [theirs["rankings"][r.query.qid] for r in batch]
        how = "all at once" if args.batched else "one at a time"
        print(f"{name:<9} ({how}) RankLLM on vLLM {their:6.2f} s/query   rerank on vLLM {mine:6.2f} s/query   "
              f"ratio {their / mine:4.2f}x   identical rankings: {same}", flush=True)  # fmt: skip


def engine_worker(args) -> None:
    """One engine, every method, one query at a time: JSON seconds per query on stdout's last line."""
    from rerank import load_reranker

    batch = requests(args.queries)
    model = model_for(args.backend, args.model)
    out = {}
    for name in args.methods:
        reranker = load_reranker(
            METHODS[name].format(model=model, backend=BACKENDS[args.backend].format(dtype=args.dtype))
        )
        reranker.rerank([requests(1, 3)[0]])
        empty_prefix_cache(reranker)
        start = time.perf_counter()
        results = [reranker.rerank([r])[0] for r in batch]
        out[name] = {"seconds": (time.perf_counter() - start) / len(batch), "rankings": ranked(results)}
    print(json.dumps(out))


def engines(args) -> None:
    pythons = {"vllm": ROOT / ".venv-vllm" / "bin" / "python", "transformers": Path(sys.executable),
               "llama.cpp": Path(sys.executable)}  # fmt: skip
    found = {}
    for backend, python in pythons.items():
        command = [str(python), __file__, "engine-worker", "--backend", backend, "--queries", str(args.queries),
                   "--model", args.model, "--methods", *args.methods]  # fmt: skip
        done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
        found[backend] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{backend}: " + "   ".join(f"{m} {v['seconds']:.2f} s/query" for m, v in found[backend].items()),
              flush=True)  # fmt: skip
    for name in args.methods:
        seconds = {backend: found[backend][name]["seconds"] for backend in found}
        fastest = min(seconds, key=seconds.__getitem__)
        print(f"{name:<14} " + "   ".join(f"{b} {s:6.2f}" for b, s in seconds.items()) + f"   fastest: {fastest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("comparison", choices=["batching", "rankllm", "engines", "engine-worker"])
    parser.add_argument("--backend", default="vllm", choices=sorted(BACKENDS))
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--queries", type=int, default=4)
    parser.add_argument("--batched", action="store_true",
                        help="rankllm: both sides given every query in one call (RankLLM's rerank_batch batches "
                        "equal-length lists), not one at a time")  # fmt: skip
    parser.add_argument("--dtype", default="auto", help="vLLM's dtype (auto: bfloat16 for this float32 folder)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    if args.comparison != "engine-worker":
        print("command:", shlex.join([Path(sys.executable).name, *sys.argv]), flush=True)
    if args.comparison == "batching":
        batching(args)
    elif args.comparison == "rankllm":
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            rankllm(args, Path(tmp))
    elif args.comparison == "engines":
        engines(args)
    else:
        engine_worker(args)


if __name__ == "__main__":
    main()
