"""Cross-encoder throughput on DL19 BM25 top 100 (4,300 pairs): every backend and precision against sentence-transformers.

    .venv/bin/python benchmarks/cross_encoder.py [--pairs 4300] [--rounds 2] [--threads 2] [--calibration 1000]

All paths score the same pairs with the same MiniLM-shaped model (all-MiniLM-L6-v2's encoder under a
fresh head, the shape of cross-encoder/ms-marco-MiniLM-L-6-v2; its scores mean nothing) in one
process, in alternating rounds so drift in the machine's speed hits every path alike; each path's best
round is reported. The reference is ``CrossEncoder.predict(batch_size=32)`` in fp32; sentence-transformers'
own ONNX and OpenVINO backends join where they install (they need optimum). Each path's achieved
GFLOP/s is set against this machine's measured fp32 and int8 GEMM ceilings. Agreement of int8 with fp32
is measured on the real bi-encoder's scores (``benchmarks/encoders.py``): this model's head is random.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def gemm_ceilings(threads: int) -> dict[str, float]:
    """GFLOP/s (GOP/s for int8) of large matrix products: torch fp32, ONNX Runtime's int8 MatMulInteger."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    torch.set_num_threads(threads)
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    start, reps = time.perf_counter(), 20
    for _ in range(reps):
        torch.matmul(a, b)
    fp32 = 2 * n**3 * reps / (time.perf_counter() - start) / 1e9
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
         helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.INT32, [n, n])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options)
    feeds = {
        "a": np.random.randint(0, 255, (n, n), dtype=np.uint8),
        "b": np.random.randint(-127, 127, (n, n), dtype=np.int8),
    }
    session.run(None, feeds)
    start = time.perf_counter()
    for _ in range(reps):
        session.run(None, feeds)
    int8 = 2 * n**3 * reps / (time.perf_counter() - start) / 1e9
    return {"fp32_gflops": round(fp32, 1), "int8_gops": round(int8, 1)}


def flops_per_pair(config, tokens: list[int], first_token: bool = False) -> float:
    """Multiply-adds ×2 of BERT's linear layers and attention for each pair's length; with ``first_token``,
    the last layer as rerank runs it (``data/first_token.py``): keys and values for every token, the
    rest for the first token only."""
    import numpy as np

    h, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    lengths = np.array(tokens, dtype=np.float64)
    full = layers - 1 if first_token else layers
    linear = 2 * full * (4 * h * h + 2 * h * ff) * lengths
    attention = 2 * full * 2 * h * lengths**2
    if first_token:
        linear += 2 * (2 * h * h * lengths + 2 * h * h + 2 * h * ff)
        attention += 2 * 2 * h * lengths
    return float((linear + attention).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=4300)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternating timed rounds of every path")
    parser.add_argument("--calibration", type=int, default=1000, help="pairs for static int8")
    parser.add_argument("--data-dir", default=os.environ.get("RERANK_DATA_DIR"))
    args = parser.parse_args()
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]), flush=True)

    import numpy as np
    import torch
    import transformers
    from sentence_transformers import CrossEncoder

    import data
    from rerank.methods.cross_encoder import CrossEncoderReranker, build_minilm_shaped_cross_encoder

    torch.set_num_threads(args.threads)
    model = build_minilm_shaped_cross_encoder(str(Path(tempfile.gettempdir()) / "rerank-bench-ce-minilm"))
    requests = data.load("msmarco-passage/trec-dl-2019", args.data_dir).candidates("bm25")
    pairs = [(r.query.text, c.text or "") for r in requests for c in r.candidates][: args.pairs]
    queries, texts = [q for q, _ in pairs], [t for _, t in pairs]

    def ours(**options):
        reranker = CrossEncoderReranker(model, max_length=args.max_length, threads=args.threads, **options)
        return lambda: reranker.score_pairs(queries, texts).scores

    reference = CrossEncoder(model, max_length=args.max_length)
    paths = {
        "sentence-transformers predict fp32 (reference)": lambda: reference.predict(
            pairs, batch_size=32, activation_fn=torch.nn.Identity()
        ),
        "ours torch fp32": ours(),
        "ours onnx fp32": ours(backend="onnx"),
        "ours onnx int8 (dynamic)": ours(backend="onnx", precision="int8"),
        "ours onnx int8 (static)": ours(backend="onnx", precision="int8", calibration=args.calibration),
        "ours openvino fp32": ours(backend="openvino"),
        "ours openvino int8 (static, NNCF)": ours(backend="openvino", precision="int8", calibration=args.calibration),
    }
    skipped = {}
    for backend in ("onnx", "openvino"):
        try:
            theirs = CrossEncoder(model, max_length=args.max_length, backend=backend)
            paths[f"sentence-transformers {backend} fp32"] = lambda theirs=theirs: theirs.predict(pairs, batch_size=32)
        except Exception as err:  # optimum does not install beside transformers 5 here
            skipped[f"sentence-transformers {backend}"] = str(err).splitlines()[0][:160]
    for name, run in paths.items():  # warm-up, and the static paths calibrate on their first call
        run()
        print(f"ready: {name}", file=sys.stderr, flush=True)
    rates: dict[str, list[float]] = {name: [] for name in paths}
    scores: dict[str, np.ndarray] = {}
    for round_ in range(args.rounds):
        for name, run in paths.items():
            start = time.perf_counter()
            scores[name] = np.asarray(run(), dtype=np.float64)
            rates[name].append(len(pairs) / (time.perf_counter() - start))
            print(f"round {round_ + 1} {name}: {rates[name][-1]:.1f} pairs/s", file=sys.stderr, flush=True)
    ceilings = gemm_ceilings(args.threads)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model)
    tokens = [
        min(len(ids), args.max_length)
        for ids in tokenizer(queries, texts, truncation=True, max_length=args.max_length)["input_ids"]
    ]
    config = transformers.AutoConfig.from_pretrained(model)
    flops = flops_per_pair(config, tokens)
    ours = flops_per_pair(config, tokens, first_token=True)  # the work rerank's paths do
    base = max(rates["sentence-transformers predict fp32 (reference)"])
    fp32 = scores["ours torch fp32"]
    table = {}
    for name, measured in rates.items():
        best = max(measured)
        ceiling = ceilings["int8_gops"] if "int8" in name else ceilings["fp32_gflops"]
        done = ours if name.startswith("ours") else flops
        table[name] = {
            "pairs_per_s": round(best, 1), "x_reference": round(best / base, 2),
            "rounds": [round(r, 1) for r in measured],
            "gflops": round(best * done / 1e9, 1), "fraction_of_gemm_ceiling": round(best * done / 1e9 / ceiling, 2),
            "max_abs_vs_torch_fp32": float(np.abs(scores[name] - fp32).max()),
        }  # fmt: skip
    print(json.dumps({
        "pairs": len(pairs), "threads": args.threads, "mean_tokens": round(float(np.mean(tokens)), 1),
        "gflop_per_pair": round(flops / 1e9, 3), "gflop_per_pair_first_token": round(ours / 1e9, 3), "gemm_ceilings": ceilings, "paths": table, "not_run": skipped,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
