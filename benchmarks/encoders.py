"""The MiniLM bi-encoder and SPLADE-tiny on every backend: encoding speed on scifact, and int8's agreement with fp32.

    .venv/bin/python benchmarks/encoders.py [--docs 2000] [--rounds 2] [--threads 2] [--calibration 1000]
                                            [--parts dense,splade,dense-index]

Part 1 encodes the first ``--docs`` scifact documents (title and text, as ``rerank index --retriever
dense`` does) with each path, in alternating rounds, against ``SentenceTransformer.encode`` (what the dense
index was built with before these backends). Part 2 reranks DL19's BM25 top 100 (4,300 pairs) with each
path: nDCG@10, Spearman over all pairs and mean Kendall τ per query against torch fp32. Part 3 encodes
the same documents with SPLADE-tiny on each path against today's torch encoder (term overlap with it),
then builds the whole scifact impact index with each int8 path and reports its nDCG@10 (torch fp32's
is 0.6436, the leaderboard's cell). Part 4 (``dense-index``) builds the whole scifact dense index with MiniLM in
torch fp32 and OpenVINO static int8 (calibrated on the first 512 documents, as ``rerank index`` would be told)
and reports each one's nDCG@10 and build time (fp32's is MTEB's 0.6451, which tests/test_retrievers.py checks under ``make references``).
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
    parser.add_argument(
        "--parts", default="dense,splade", help="dense (parts 1, 2), splade (part 3), dense-index (part 4)"
    )
    args = parser.parse_args()
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]), flush=True)

    import torch

    import data

    torch.set_num_threads(args.threads)
    scifact = data.load("beir/scifact", args.data_dir)
    documents = [d.full_text for _, d in zip(range(args.docs), scifact.iter_documents(), strict=False)]
    report: dict = {"docs": len(documents), "threads": args.threads}
    parts = args.parts.split(",")
    if "dense" in parts:
        report |= dense(args, documents)
    if "splade" in parts:
        report["splade"] = splade(args, documents, scifact)
    if "dense-index" in parts:
        report["dense_index"] = dense_index(scifact)
    print(json.dumps(report, indent=2))


def _options(path: dict, calibration: int) -> dict:
    return {k: (calibration if k == "calibration" else v) for k, v in path.items()}


def _rounds(encoders: dict, encode, documents: list[str], rounds: int, reference: str) -> dict:
    """Alternating rounds of ``encode(encoder, documents)``: docs/s per path, best round against the reference."""
    rates: dict[str, list[float]] = {name: [] for name in encoders}
    for round_ in range(rounds):
        for name, encoder in encoders.items():
            start = time.perf_counter()
            encode(encoder, documents)
            rates[name].append(len(documents) / (time.perf_counter() - start))
            print(f"round {round_ + 1} {name}: {rates[name][-1]:.1f} docs/s", file=sys.stderr, flush=True)
    base = max(rates[reference])
    return {
        name: {
            "docs_per_s": round(max(r), 1),
            "x_reference": round(max(r) / base, 2),
            "rounds": [round(x, 1) for x in r],
        }
        for name, r in rates.items()
    }


def dense(args: argparse.Namespace, documents: list[str]) -> dict:
    import numpy as np
    from scipy.stats import kendalltau, spearmanr

    import data
    from eval import evaluate
    from rerank.registry import load_reranker
    from retrievers.dense import DenseEncoder

    def options(path: dict) -> dict:
        return _options(path, args.calibration)

    encoders = {name: DenseEncoder("minilm", threads=args.threads, **options(p)) for name, p in PATHS.items()}
    for encoder in encoders.values():  # warm-up; static int8 calibrates on these documents
        encoder.encode(documents[: args.calibration], "")
    reference_name = "torch fp32 (sentence-transformers, reference)"
    encoding = _rounds(encoders, lambda e, texts: e.encode(texts, ""), documents, args.rounds, reference_name)

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
    return {"encoding": encoding, "dl19_bi_encoder": agreement}


SPLADE_PATHS = {
    "torch fp32 (today's encoder, reference)": {},
    "onnx fp32": {"backend": "onnx"},
    "onnx int8 (dynamic)": {"backend": "onnx", "precision": "int8"},
    "openvino fp32": {"backend": "openvino"},
    "openvino int8 (static, NNCF)": {"backend": "openvino", "precision": "int8", "calibration": True},
}


def splade(args: argparse.Namespace, documents: list[str], scifact) -> dict:
    import tempfile

    from eval import evaluate
    from retrievers.splade import SpladeEncoder, SpladeRetriever

    encoders = {name: SpladeEncoder("splade-tiny", **_options(p, args.calibration)) for name, p in SPLADE_PATHS.items()}
    for encoder in encoders.values():  # warm-up; static int8 calibrates on these documents
        encoder.encode(documents[: args.calibration], 100)
    reference = encoders["torch fp32 (today's encoder, reference)"].encode(documents, 100)
    encoding = _rounds(
        encoders,
        lambda e, texts: e.encode(texts, 100),
        documents,
        args.rounds,
        "torch fp32 (today's encoder, reference)",
    )
    for name, encoder in encoders.items():
        weights = encoder.encode(documents, 100)
        overlap = [
            len(a.keys() & b.keys()) / max(1, len(a.keys() | b.keys())) for a, b in zip(reference, weights, strict=True)
        ]
        encoding[name]["term_jaccard_vs_fp32"] = round(sum(overlap) / len(overlap), 4)
    for name, path in SPLADE_PATHS.items():
        if path.get("precision") != "int8":
            continue  # fp32 weights equal torch's (within 1e-4 before rounding): the leaderboard has torch's 0.6436
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            index = SpladeRetriever.build(scifact.iter_documents(), folder, **_options(path, args.calibration))
            seconds = time.perf_counter() - start
            run = index.retrieve(scifact.queries(), k=100)
            ndcg = evaluate(run, scifact.qrels(), "nDCG@10").aggregate["nDCG@10"]
        encoding[name] |= {"scifact_nDCG@10": round(ndcg, 4), "scifact_index_s": round(seconds)}
        print(f"{name}: scifact nDCG@10 {ndcg:.4f}, index {seconds:.0f}s", file=sys.stderr, flush=True)
    return encoding


def dense_index(scifact) -> dict:
    """The whole scifact dense index in fp32 and in OpenVINO static int8: nDCG@10 and build seconds of each."""
    import tempfile

    from eval import evaluate
    from retrievers.dense import DenseRetriever

    out = {}
    paths = {"torch fp32": {}, "openvino int8 (static, 512 documents)": {"backend": "openvino", "precision": "int8",
                                                                        "calibration": 512}}  # fmt: skip
    for name, options in paths.items():
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            index = DenseRetriever.build(scifact.iter_documents(), Path(folder) / "idx", model="minilm", **options)
            seconds = time.perf_counter() - start
            run = index.retrieve(scifact.queries(), k=100)
            ndcg = evaluate(run, scifact.qrels(), "nDCG@10").aggregate["nDCG@10"]
        out[name] = {"scifact_nDCG@10": round(ndcg, 4), "index_s": round(seconds)}
        print(f"dense {name}: scifact nDCG@10 {ndcg:.4f}, index {seconds:.0f}s", file=sys.stderr, flush=True)
    return out


if __name__ == "__main__":
    main()
