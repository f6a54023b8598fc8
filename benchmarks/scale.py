"""Scale: `rerank run` over a synthetic TREC run of 1,000,000 lines (10,000 queries x 100), peak memory and throughput.

    .venv/bin/python benchmarks/scale.py [--queries 10000] [--depth 100] [--docs 20000] [--work out/scale]
    .venv/bin/python benchmarks/scale.py --queries 100000 --no-reference     # 10M lines: memory stays flat
    .venv/bin/python benchmarks/scale.py --ray                               # Ray's overhead on the 1M-line job

The method is the cheapest real one: the MiniLM bi-encoder reading its document vectors from a
dense index (``bi-encoder(model=minilm, embeddings=DIR)``), so each query costs one short encoder
pass and a dot product, and what is measured is the toolkit around it: reading and validating the
run, fetching 1M texts from the document store, checkpointing, writing. The reference, in the same
run, is the bare loop a script would write with the same model and vectors (split lines, one
``encode`` per batch of queries, numpy dot products, write lines): the ratio is the toolkit's
overhead. Peak memory comes from /usr/bin/time for each process; throughput is sampled from the
checkpoint every few seconds. With ``--ray``, the same job also runs with ``--engine ray --workers 1``
and ``--workers 2`` (a local cluster the job starts), each against the local engine in the same
run. Results go in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORDS = ["the", "of", "and", "to", "in", "is", "for", "that", "on", "with"] + [f"term{i}" for i in range(3000)]


def synthesize(work: Path, files: Path, queries: int, depth: int, docs: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    files.mkdir(parents=True, exist_ok=True)
    if not (work / "corpus.tsv").exists():
        with open(work / "corpus.tsv", "w") as out:
            for d in range(docs):
                out.write(f"d{d}\t{' '.join(rng.choices(WORDS, k=40))}\n")
    with open(files / "topics.tsv", "w") as out:
        for q in range(queries):
            out.write(f"q{q}\t{' '.join(rng.choices(WORDS, k=5))}\n")
    with open(files / "run.trec", "w") as out:
        for q in range(queries):
            for rank, d in enumerate(rng.sample(range(docs), depth), start=1):
                out.write(f"q{q} Q0 d{d} {rank} {depth - rank + 1}.0 synthetic\n")


def timed(command: list[str], sample: Path | None = None) -> dict:
    """Run a command under /usr/bin/time -v; sample the checkpoint's line count while it runs."""
    samples: list[tuple[float, int]] = []
    start = time.perf_counter()
    process = subprocess.Popen(["/usr/bin/time", "-v", *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = threading.Event()

    def poll() -> None:
        while not done.wait(5.0):
            if sample is not None and sample.exists():
                with open(sample, "rb") as handle:
                    samples.append((time.perf_counter() - start, sum(1 for _ in handle) - 1))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    stdout, stderr = process.communicate()
    done.set()
    wall = time.perf_counter() - start
    if process.returncode != 0:
        sys.exit(f"failed: {shlex.join(command)}\n{stderr.decode()[-3000:]}")
    peak_kb = int(re.search(rb"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1))
    return {"wall_s": wall, "peak_mib": peak_kb / 1024, "stdout": stdout.decode(), "samples": samples}


REFERENCE = r"""
import sys, time, numpy as np, faiss
from sentence_transformers import SentenceTransformer
import data.models as models
work, files, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
index = faiss.read_index(f"{work}/dense/index.faiss")
vectors = index.reconstruct_n(0, index.ntotal)
row = {line.rstrip("\n"): i for i, line in enumerate(open(f"{work}/dense/docids.txt"))}
topics = dict(line.rstrip("\n").split("\t", 1) for line in open(f"{files}/topics.tsv"))
model = SentenceTransformer(models.resolve_model("minilm"), device="cpu")
run = {}
for line in open(f"{files}/run.trec"):
    qid, _, docid, _, score, _ = line.split()
    run.setdefault(qid, []).append(docid)
qids = list(run)
with open(f"{files}/reference.trec", "w") as out:
    for start in range(0, len(qids), batch):
        chunk = qids[start:start + batch]
        q = model.encode([topics[x] for x in chunk], batch_size=32, normalize_embeddings=True)
        for qid, qv in zip(chunk, q):
            docids = run[qid]
            scores = vectors[[row[d] for d in docids]] @ qv
            for rank, i in enumerate(np.argsort(-scores, kind="stable"), start=1):
                out.write(f"{qid} Q0 {docids[i]} {rank} {scores[i]!r} reference\n")
"""


def rerank_job(
    rerank: list[str], files: Path, dense: Path, args: argparse.Namespace, output: Path, *extra: str
) -> dict:
    for stale in (
        output,
        output.with_name(output.name + ".checkpoint"),
        output.with_name(output.name + ".manifest.json"),
    ):
        stale.unlink(missing_ok=True)
    result = timed(
        [*rerank, "run", "--run", str(files / "run.trec"), "--topics", str(files / "topics.tsv"),
         "--corpus", str(files.parent / "corpus.tsv"), "--top-k", str(args.depth),
         "--batch-queries", str(args.batch_queries), "--reranker", f"bi-encoder(model=minilm, embeddings={dense})",
         "--output", str(output), "--format", "json", *extra],
        sample=output.with_name(output.name + ".checkpoint"),
    )  # fmt: skip
    result["summary"] = json.loads(result["stdout"])
    return result


def report(name: str, result: dict, lines: int, queries: int) -> None:
    summary = result["summary"]
    print(f"{name}: {result['wall_s']:.1f} s wall ({summary['seconds']:.1f} s reranking, of which "
          f"{summary['load_seconds']:.1f} s starting the engine), {queries / result['wall_s']:.0f} queries/s, "
          f"{lines / result['wall_s']:,.0f} lines/s end to end, peak RSS {result['peak_mib']:.0f} MiB")  # fmt: skip
    rates = [
        (n1 - n0) / (t1 - t0)
        for (t0, n0), (t1, n1) in zip(result["samples"], result["samples"][1:], strict=False)
        if n1 > n0
    ]
    if rates:
        print(f"  throughput while reranking, per 5 s sample (queries/s): min {min(rates):.0f}, "
              f"median {sorted(rates)[len(rates) // 2]:.0f}, max {max(rates):.0f} over {len(rates)} samples")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--batch-queries", type=int, default=100)
    parser.add_argument("--work", type=Path, default=REPO / "out" / "scale")
    parser.add_argument("--no-reference", action="store_true", help="skip the bare loop (it holds the whole run)")
    parser.add_argument("--ray", action="store_true", help="also --engine ray with 1 and 2 workers")
    args = parser.parse_args()
    print("command:", shlex.join([".venv/bin/python", "benchmarks/scale.py", *sys.argv[1:]]))
    work: Path = args.work
    files = work / f"q{args.queries}-d{args.depth}"  # the run and topics; the corpus and its index are shared
    python = sys.executable
    rerank = [python, "-m", "rerank.cli"]

    if not (files / "run.trec").exists():
        synthesize(work, files, args.queries, args.depth, args.docs)
    lines = args.queries * args.depth
    print(f"synthetic run: {lines:,} lines, {args.queries:,} queries, {args.docs:,} documents")
    dense = work / "dense"
    if not (dense / "index.faiss").exists():
        built = timed([*rerank, "index", "--retriever", "dense", "--model", "minilm",
                       "--corpus", str(work / "corpus.tsv"), "--out", str(dense)])  # fmt: skip
        print(f"dense index of the documents: {built['wall_s']:.1f} s, peak {built['peak_mib']:.0f} MiB")

    output = files / "reranked.trec"
    ours = rerank_job(rerank, files, dense, args, output)
    report("rerank run", ours, lines, args.queries)
    if not args.no_reference:
        reference = timed([python, "-c", REFERENCE, str(work), str(files), str(args.batch_queries)])
        print(f"reference loop: {reference['wall_s']:.1f} s wall, peak RSS {reference['peak_mib']:.0f} MiB")
        print(f"ratio (reference time / ours): {reference['wall_s'] / ours['wall_s']:.2f}")
        ours_top, ref_top = (
            [line.split()[2] for line in path.read_text().splitlines() if line.startswith("q0 ")][:10]
            for path in (output, files / "reference.trec")
        )
        print(f"query q0, top 10 identical to the reference: {ours_top == ref_top}")
    if args.ray:
        walls = {}
        for workers in (1, 2):
            ray_output = files / f"reranked-ray{workers}.trec"
            result = rerank_job(rerank, files, dense, args, ray_output, "--engine", "ray", "--workers", str(workers))
            report(f"--engine ray --workers {workers}", result, lines, args.queries)
            print(f"  same bytes as the local engine: {ray_output.read_bytes() == output.read_bytes()}")
            walls[workers] = result["wall_s"]
        print(f"ratio local / ray 1 worker (throughput of ray relative to local): {ours['wall_s'] / walls[1]:.2f}")
        print(f"ratio ray 1 worker / ray 2 workers (speed-up from the second worker): {walls[1] / walls[2]:.2f}")


if __name__ == "__main__":
    main()
