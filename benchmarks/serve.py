"""`rerank serve` under closed-loop load, side by side with Infinity, a plain FastAPI server and offline reranking.

    .venv/bin/python benchmarks/serve.py [--seconds 45] [--rounds 3] [--clients 1 8 32] [--docs 20 100]
        [--infinity /path/to/env/bin/infinity_emb] [--soak-seconds 600] [--systems rerank plain infinity]
        [--serve-args '--max-batch-pairs 1024'] [--backend torch|onnx|openvino]

DL19 BM25 passages (43 queries; each request is one query with its top 20 or 100 passages, queries
in turn). Models: the MiniLM bi-encoder and the MiniLM-shaped cross-encoder (random head: speed only).
For each model, on the same machine, one system under load at a time:
  offline   the reranker's batched rerank() over the same requests, 8 queries a call (as `rerank run`)
  rerank    `rerank serve` (Cohere /v1/rerank)
  plain     benchmarks/plain_server.py: FastAPI calling the model once per request
  infinity  infinity-emb serving the same folder (its /rerank needs a sequence-classification model,
            so it serves only the cross-encoder), from its own environment
The servers of a model start together and idle while another is measured. Each cell: two warm-up
requests, then all clients at once (closed loop, asyncio httpx clients in this process). The window
opens when every client has had its first answer (steady state) and lasts `--seconds` or `--rounds`
times that first round, whichever is longer, so that even at a minute a request it holds several
answers per client. Throughput counts each request by the share of its life inside the window (see
closed_loop), and the latencies are those of the answers inside it (each checked for one result per
document).

The speed of this shared machine drifts by ±15 % from minute to minute, so the offline reference is
measured again (for at least `--offline-seconds`) right before and right after every server cell,
and each cell's ratio is against the mean of its two neighbours.

Then a soak: `rerank serve` with the bi-encoder at twice its measured capacity (open loop) for
--soak-seconds: every request must be answered 200 or 429, every 200 with the offline scores, and
resident memory is sampled.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(command: list[str], port: int, log: Path) -> subprocess.Popen:
    import httpx

    out = log.open("w")
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "DO_NOT_TRACK": "1"})
    while True:  # up when /health answers (or the process died)
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def closed_loop(
    url: str, route: str, model: str, queries: list, docs: int, clients: int, seconds: float, rounds: float
) -> dict:
    """Steady-state closed loop: the window opens once every client has had its first answer.

    A batching server answers in bursts (a batch of 25 requests at once, every ~10 s), so counting
    the answers that land inside a window depends on where its edges fall: by up to a burst, a
    fifth of a 45 s window. Instead each request counts for the share of its life (sent to answered)
    that lies inside the window, which is the completion rate without the edge effect (Little's law:
    in steady state it is clients ÷ mean latency). Latencies are those of the answers inside the
    window. Requests still open when the window closes are finished, so the next cell starts on an
    idle server.
    """
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=3600, limits=limits) as http:
        counter = itertools.count()
        window: dict[str, float] = {}
        spans: list[tuple[float, float, bool]] = []  # (sent, answered, right) of every timed-phase request
        first_answers = 0

        async def one() -> None:
            query, texts = queries[next(counter) % len(queries)]
            body = {"model": model, "query": query, "documents": texts[:docs]}
            sent = time.perf_counter()
            answer = await http.post(route, json=body)
            done = time.perf_counter()
            spans.append(
                (sent, done, answer.status_code == 200 and len(answer.json()["results"]) == len(body["documents"]))
            )

        async def client() -> None:
            nonlocal first_answers
            await one()
            first_answers += 1
            if first_answers == clients:  # every client is past the simultaneous start
                window["begin"] = time.perf_counter()
                window["end"] = window["begin"] + max(seconds, rounds * (window["begin"] - started))
            while "end" not in window or time.perf_counter() < window["end"]:
                await one()

        for _ in range(2):  # warm caches, untimed
            await one()
        spans.clear()
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
    begin, end = window["begin"], window["end"]
    span = end - begin
    completed = sum(max(0.0, min(done, end) - max(sent, begin)) / (done - sent) for sent, done, ok in spans if ok)
    latencies = sorted(done - sent for sent, done, ok in spans if ok and begin <= done <= end)
    n = len(latencies)
    return {
        "window_s": round(span, 1), "answers": n, "failures": sum(1 for _, done, ok in spans if not ok and begin <= done <= end),
        "req_s": completed / span, "pairs_s": completed * docs / span,
        "p50_ms": 1000 * statistics.median(latencies) if n else None,
        "p99_ms": 1000 * latencies[min(n - 1, int(0.99 * n))] if n else None,
    }  # fmt: skip


class Offline:
    """The offline reference: the reranker's batched rerank(), 8 queries a call, as `rerank run` calls it.

    Each measurement runs for at least ``seconds`` and carries on through the queries where the last
    one stopped, so that over a run every query counts alike.
    """

    def __init__(self, spec: str, requests: list):
        from rerank.registry import load_reranker

        self.reranker, self.requests, self.next = load_reranker(spec), requests, 0
        self.reranker.rerank(requests[:8])  # warm-up

    def measure(self, docs: int, seconds: float) -> float:
        from data.records import RerankRequest

        pairs, begin = 0, time.perf_counter()
        while (wall := time.perf_counter() - begin) < seconds or not pairs:
            batch = [self.requests[(self.next + i) % len(self.requests)] for i in range(8)]
            self.next = (self.next + 8) % len(self.requests)
            cut = [RerankRequest(r.query, r.candidates[:docs]) for r in batch]
            self.reranker.rerank(cut)
            pairs += sum(len(r.candidates) for r in cut)
        return pairs / wall


async def soak(url: str, queries: list, expected: list, docs: int, rate: float, seconds: float, pid: int) -> dict:
    import httpx

    counts = {"sent": 0, "200": 0, "429": 0, "other": 0, "wrong": 0}
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(base_url=url, timeout=900, limits=limits) as http:
        for query, texts in queries:  # warm-up: every query once, so the start sample is a warm server
            await http.post("/v1/rerank", json={"query": query, "documents": texts[:docs]})
        memory = [(0.0, rss_mb(pid))]

        async def one(i: int) -> None:
            query, texts = queries[i % len(queries)]
            try:
                answer = await http.post("/v1/rerank", json={"query": query, "documents": texts[:docs]})
            except httpx.TransportError as err:  # e.g. a keep-alive connection the server closed as it was reused
                counts[type(err).__name__] = counts.get(type(err).__name__, 0) + 1
                return
            if answer.status_code == 200:
                got = {r["index"]: r["relevance_score"] for r in answer.json()["results"]}
                want = expected[i % len(queries)]
                right = sorted(got) == list(range(len(want))) and all(abs(got[k] - want[k]) < 1e-5 for k in got)
                counts["200" if right else "wrong"] += 1
            elif answer.status_code == 429:
                counts["429"] += 1
            else:
                counts["other"] += 1
                counts[str(answer.status_code)] = counts.get(str(answer.status_code), 0) + 1

        tasks = []
        begin = time.perf_counter()
        next_sample = 60.0
        while (now := time.perf_counter() - begin) < seconds:
            tasks.append(asyncio.create_task(one(counts["sent"])))
            counts["sent"] += 1
            if now >= next_sample:
                memory.append((round(now), rss_mb(pid)))
                next_sample += 60
            await asyncio.sleep(max(0.0, counts["sent"] / rate - (time.perf_counter() - begin)))
        await asyncio.gather(*tasks)
        memory.append((round(time.perf_counter() - begin), rss_mb(pid)))
    return {"rate": rate, **counts, "rss_mb": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=45.0, help="shortest timed window per cell")
    parser.add_argument("--rounds", type=float, default=3.0, help="the window holds at least this many first rounds")
    parser.add_argument("--offline-seconds", type=float, default=20.0, help="each offline reference measurement")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--docs", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--models", nargs="+", default=["bi-encoder", "cross-encoder"])
    parser.add_argument("--infinity", default="", help="infinity_emb executable in its own environment")
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    parser.add_argument(
        "--soak-capacity",
        type=float,
        default=0.0,
        help="req/s of rerank serve (bi-encoder, 20 documents, 32 clients) measured before: soak only",
    )
    parser.add_argument("--systems", nargs="+", default=["rerank", "plain", "infinity"], help="which servers to load")
    parser.add_argument("--serve-args", default="", help="more options for rerank serve, e.g. '--max-batch-pairs 1024'")
    parser.add_argument(
        "--backend",
        choices=["torch", "onnx", "openvino"],
        default="torch",
        help="the runtime rerank serves and the offline reference runs (fp32); the plain server and Infinity keep torch",
    )
    parser.add_argument("--output", default="", help="write the results as JSON here too")
    args = parser.parse_args()
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]), flush=True)

    import data
    from data.models import resolve_model
    from rerank.methods.cross_encoder import build_minilm_shaped_cross_encoder

    logs = Path(tempfile.mkdtemp(prefix="rerank-serve-bench-"))
    requests = data.load("msmarco-passage/trec-dl-2019").candidates("bm25")
    queries = [(r.query.text, [c.text or "" for c in r.candidates]) for r in requests]
    ce_dir = build_minilm_shaped_cross_encoder(str(Path(tempfile.gettempdir()) / "rerank-bench-ce-minilm"))
    runtime = "" if args.backend == "torch" else f", backend={args.backend}"
    models = {
        "bi-encoder": (f"bi-encoder(model=minilm{runtime})", resolve_model("minilm")),
        "cross-encoder": (f'cross-encoder(model="{ce_dir}"{runtime})', ce_dir),
    }
    rerank_cli = str(Path(sys.executable).parent / "rerank")
    results: dict = {"cells": [], "soak": None}
    for name in [] if args.soak_capacity else args.models:
        spec, path = models[name]
        systems = {
            # No request timeout, as the references have none: under 32 clients of 100 documents a request
            # waits behind ~3,000 pairs, about a minute here, and the default 60 s would answer 504.
            "rerank": (
                [
                    rerank_cli,
                    "serve",
                    "--reranker",
                    spec,
                    "--request-timeout",
                    "3600",
                    *shlex.split(args.serve_args),
                    "--port",
                ],
                "/v1/rerank",
            ),
            "plain": (
                [sys.executable, str(ROOT / "benchmarks/plain_server.py"), "--kind", name, "--model", path, "--port"],
                "/rerank",
            ),
        }
        if args.infinity and name == "cross-encoder":
            systems["infinity"] = (
                [args.infinity, "v2", "--model-id", path, "--engine", "torch", "--device", "cpu", "--port"],
                "/rerank",
            )
        systems = {system: entry for system, entry in systems.items() if system in args.systems}
        reference = Offline(spec, requests)
        servers: dict[str, tuple[subprocess.Popen, str]] = {}
        try:
            for system, (command, _) in systems.items():
                port = free_port()
                process = start([*command, str(port)], port, logs / f"{name}-{system}.log")
                servers[system] = (process, f"http://127.0.0.1:{port}")
            for docs in args.docs:
                for clients in args.clients:
                    before = reference.measure(docs, args.offline_seconds)
                    for system, (_, route) in systems.items():
                        served_model = path.lstrip("/") if system == "infinity" else name
                        measured = asyncio.run(
                            closed_loop(servers[system][1], route, served_model, queries, docs, clients,
                                        args.seconds, args.rounds)
                        )  # fmt: skip
                        after = reference.measure(docs, args.offline_seconds)
                        cell = {"model": name, "system": system, "docs": docs, "clients": clients, **measured,
                                "offline_pairs_s": [round(before, 2), round(after, 2)],
                                "vs_offline": measured["pairs_s"] / ((before + after) / 2)}  # fmt: skip
                        results["cells"].append(cell)
                        print(json.dumps(cell), flush=True)
                        before = after
        finally:
            for process, _ in servers.values():
                stop(process)
    if args.soak_seconds > 0:
        results["soak"] = run_soak(args, rerank_cli, models["bi-encoder"][0], requests, queries, results, logs)
        print(json.dumps(results["soak"]), flush=True)
    print(table(results))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1) + "\n")


def run_soak(args, rerank_cli: str, spec: str, requests: list, queries: list, results: dict, logs: Path) -> dict:
    from data.records import RerankRequest
    from rerank.registry import load_reranker

    docs = 20
    reranker = load_reranker(spec)
    expected = []
    for r in requests:
        ranking = reranker.rerank([RerankRequest(r.query, r.candidates[:docs])])[0].ranking
        by_docid = {c.docid: c.score for c in ranking.candidates}
        expected.append([by_docid[c.docid] for c in r.candidates[:docs]])
    measured = [
        c for c in results["cells"] if c["system"] == "rerank" and c["model"] == "bi-encoder" and c["docs"] == docs
    ]
    capacity = args.soak_capacity or max(c["req_s"] for c in measured)
    port = free_port()
    process = start([rerank_cli, "serve", "--reranker", spec, "--port", str(port)], port, logs / "soak.log")
    try:
        return {"capacity_req_s": capacity, "docs": docs,
                **asyncio.run(soak(f"http://127.0.0.1:{port}", queries, expected, docs, 2 * capacity,
                                   args.soak_seconds, process.pid))}  # fmt: skip
    finally:
        stop(process)


def table(results: dict) -> str:
    lines = [
        "| model | docs | clients | system | req/s | pairs/s | p50 ms | p99 ms | ÷ offline | ÷ infinity |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in results["cells"]:
        infinity = [
            o for o in results["cells"]
            if o["system"] == "infinity" and (o["model"], o["docs"], o["clients"]) == (c["model"], c["docs"], c["clients"])
        ]  # fmt: skip
        ratio = f"{c['pairs_s'] / infinity[0]['pairs_s']:.2f}" if infinity and c["system"] != "infinity" else ""
        lines.append(
            f"| {c['model']} | {c['docs']} | {c['clients']} | {c['system']} | {c['req_s']:.2f} | "
            f"{c['pairs_s']:.1f} | {c['p50_ms']:.0f} | {c['p99_ms']:.0f} | {c['vs_offline']:.2f} | {ratio} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
