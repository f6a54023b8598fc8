"""The MiniLM bi-encoder on every backend: encoding speed on scifact documents, and int8's agreement with fp32.

    .venv/bin/python benchmarks/encoders.py [--docs 2000] [--rounds 2] [--threads 2] [--calibration 1000]

Part 1 encodes the first ``--docs`` scifact documents (title and text, as ``rerank index --retriever
dense`` does) with each path, in alternating rounds, against ``SentenceTransformer.encode`` (what the dense
index was built with before these backends). Part 2 reranks DL19's BM25 top 100 (4,300 pairs) with each
path: nDCG@10, Spearman over all pairs and mean Kendall τ per query against torch fp32.
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

PATHS = {
    "torch fp32 (sentence-transformers, reference)": {},
    "onnx fp32": {"backend": "onnx"},
    "onnx int8 (dynamic)": {"backend": "onnx", "precision": "int8"},
    "onnx int8 (static)": {"backend": "onnx", "precision": "int8", "calibration": True},
    "openvino fp32": {"backend": "openvino"},
    "openvino int8 (static, NNCF)": {"backend": "openvino", "precision": "int8", "calibration": True},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration", type=int, default=1000, help="texts (or pairs) for static int8")
    parser.add_argument("--data-dir", default=os.environ.get("RERANK_DATA_DIR"))
    args = parser.parse_args()
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]), flush=True)

    import numpy as np
    import torch
    from scipy.stats import kendalltau, spearmanr

    import data
    from eval import evaluate
    from rerank.registry import load_reranker
    from retrievers.dense import DenseEncoder

    torch.set_num_threads(args.threads)
    scifact = data.load("beir/scifact", args.data_dir)
    documents = [d.full_text for _, d in zip(range(args.docs), scifact.iter_documents(), strict=False)]

    def options(path: dict) -> dict:
        return {k: (args.calibration if k == "calibration" else v) for k, v in path.items()}

    encoders = {name: DenseEncoder("minilm", threads=args.threads, **options(p)) for name, p in PATHS.items()}
    for encoder in encoders.values():  # warm-up; static int8 calibrates on these documents
        encoder.encode(documents[: args.calibration], "")
    rates: dict[str, list[float]] = {name: [] for name in PATHS}
    for round_ in range(args.rounds):
        for name, encoder in encoders.items():
            start = time.perf_counter()
            encoder.encode(documents, "")
            rates[name].append(len(documents) / (time.perf_counter() - start))
            print(f"round {round_ + 1} {name}: {rates[name][-1]:.1f} docs/s", file=sys.stderr, flush=True)
    base = max(rates["torch fp32 (sentence-transformers, reference)"])
    encoding = {
        name: {
            "docs_per_s": round(max(r), 1),
            "x_reference": round(max(r) / base, 2),
            "rounds": [round(x, 1) for x in r],
        }
        for name, r in rates.items()
    }

    dl19 = data.load("msmarco-passage/trec-dl-2019", args.data_dir)
    requests = dl19.candidates("bm25")
    reference: dict[tuple[str, str], float] = {}
    agreement = {}
    for name, path in PATHS.items():
        spec = ", ".join(f"{k}={v}" for k, v in options(path).items())
        reranker = load_reranker(f"bi-encoder(model=minilm{', ' + spec if spec else ''})")
        start = time.perf_counter()
        results = reranker.rerank(requests)
        seconds = time.perf_counter() - start
        run = data.Run.from_rankings(r.ranking for r in results)
        scores = {(r.ranking.qid, c.docid): c.score for r in results for c in r.ranking.candidates}
        reference = reference or scores
        keys = sorted(reference)
        taus = [
            kendalltau([reference[(r.ranking.qid, c.docid)] for c in r.ranking.candidates],
                       [c.score for c in r.ranking.candidates]).statistic
            for r in results
        ]  # fmt: skip
        agreement[name] = {
            "nDCG@10": round(evaluate(run, dl19.qrels(), "nDCG@10").aggregate["nDCG@10"], 4),
            "spearman_vs_fp32": round(float(spearmanr([reference[k] for k in keys], [scores[k] for k in keys]).statistic), 4),
            "mean_kendall_tau_per_query": round(float(np.mean(taus)), 4),
            "max_abs_vs_fp32": float(max(abs(reference[k] - scores[k]) for k in keys)),
            "pairs_per_s_end_to_end": round(sum(len(r.candidates) for r in requests) / seconds, 1),
        }  # fmt: skip
        print(f"{name}: {agreement[name]}", file=sys.stderr, flush=True)
    print(
        json.dumps(
            {"docs": len(documents), "threads": args.threads, "encoding": encoding, "dl19_bi_encoder": agreement},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
