"""Cross-encoder throughput on DL19 BM25 top 100 (4,300 pairs): ours against sentence-transformers.

    .venv/bin/python benchmarks/cross_encoder.py [--pairs 4300] [--max-length 512] [--threads 2]

Both score the same pairs with the same MiniLM-shaped model (all-MiniLM-L6-v2's
encoder under a fresh head, the shape of cross-encoder/ms-marco-MiniLM-L-6-v2;
its scores mean nothing) in one process: ``CrossEncoder.predict(batch_size=32)``
against ``CrossEncoderReranker`` in fp32, then our int8 path with its agreement.
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=4300)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternating timed rounds of each")
    parser.add_argument("--data-dir", default=os.environ.get("RERANK_DATA_DIR"))
    args = parser.parse_args()
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))

    import numpy as np
    import torch
    from scipy.stats import kendalltau, spearmanr
    from sentence_transformers import CrossEncoder

    import data
    from rerank.methods.cross_encoder import CrossEncoderReranker, build_minilm_shaped_cross_encoder

    torch.set_num_threads(args.threads)
    model = build_minilm_shaped_cross_encoder(str(Path(tempfile.gettempdir()) / "rerank-bench-ce-minilm"))
    requests = data.load("msmarco-passage/trec-dl-2019", args.data_dir).candidates("bm25")
    pairs = [(r.query.text, c.text or "") for r in requests for c in r.candidates][: args.pairs]
    queries, texts = [q for q, _ in pairs], [t for _, t in pairs]

    def timed(fn):
        start = time.perf_counter()
        out = fn()
        return out, len(pairs) / (time.perf_counter() - start)

    reference = CrossEncoder(model, max_length=args.max_length)
    ours = CrossEncoderReranker(model, max_length=args.max_length, batch_size=args.batch_size)
    int8 = CrossEncoderReranker(model, max_length=args.max_length, batch_size=args.batch_size, precision="int8")
    ours.score_pairs(queries[:64], texts[:64])  # warm-up both
    reference.predict(pairs[:64], batch_size=32)
    # Alternate the two, twice, so drift in the machine's speed hits both; report the better of each.
    ref_rates, our_rates = [], []
    for _ in range(args.rounds):
        ref_scores, rate = timed(lambda: reference.predict(pairs, batch_size=32, activation_fn=torch.nn.Identity()))
        ref_rates.append(rate)
        our_result, rate = timed(lambda: ours.score_pairs(queries, texts))
        our_rates.append(rate)
    ref_rate, our_rate = max(ref_rates), max(our_rates)
    int8_result, int8_rate = timed(lambda: int8.score_pairs(queries, texts))
    fp32 = np.array(our_result.scores)
    q8 = np.array(int8_result.scores)
    tokens = np.array(our_result.input_tokens)
    # agreement per query: do the two precisions rank each query's candidates alike?
    taus = []
    offset = 0
    for r in requests:
        n = len(r.candidates)
        if offset + n <= len(pairs):
            taus.append(kendalltau(fp32[offset : offset + n], q8[offset : offset + n]).statistic)
        offset += n
    print(json.dumps({
        "pairs": len(pairs), "max_length": args.max_length, "threads": args.threads, "mean_tokens": round(float(tokens.mean()), 1),
        "sentence_transformers_pairs_per_s": round(ref_rate, 1), "ours_fp32_pairs_per_s": round(our_rate, 1),
        "speedup_fp32": round(our_rate / ref_rate, 2), "rounds_st": [round(r, 1) for r in ref_rates],
        "rounds_ours": [round(r, 1) for r in our_rates], "max_abs_diff_vs_st": float(np.abs(fp32 - ref_scores).max()),
        "ours_int8_pairs_per_s": round(int8_rate, 1), "speedup_int8": round(int8_rate / ref_rate, 2),
        "int8_spearman_all_pairs": round(float(spearmanr(fp32, q8).statistic), 4),
        "int8_mean_kendall_tau_per_query": round(float(np.mean(taus)), 4),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
