"""Serve a reranking method or a pipeline of rerankers over HTTP (needs `pip install -e '.[serve]'`).

  rerank serve --reranker 'cross-encoder(model=M)' --port 8080
  rerank serve --pipeline 'bi-encoder(model=minilm) % 20 >> first(model=qwen2.5-coder-0.5b)'

Routes: POST /v2/rerank and /v1/rerank (Cohere; Jina, Infinity and vLLM clients speak /v1),
POST /rerank (text-embeddings-inference), GET /health, /ready, /info, /metrics (Prometheus),
OpenAPI at /docs. Concurrent requests are batched into one model call (--max-batch-pairs,
--max-batch-tokens, --max-wait-ms); a full queue answers 429 with Retry-After. With
--api-key-env NAME, requests need 'Authorization: Bearer $NAME'. SIGTERM or Ctrl-C finishes
every accepted request, then exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

from rerank.cli.common import add_method_options, method_options
from rerank.serve.batcher import BatchLimits


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to serve (one of)")
    what.add_argument("--reranker", metavar="SPEC", help="a method spec, e.g. 'bi-encoder(model=minilm)'")
    what.add_argument(
        "--pipeline", metavar="SPEC", help="rerankers chained with >> and cut with %%, e.g. 'a %% 20 >> b'"
    )
    what.add_argument("--method", metavar="NAME", help="a registered method name (with --model)")
    parser.add_argument("--model", metavar="M", help="model pack, folder or Hugging Face id for --method")
    add_method_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    limits = parser.add_argument_group("batching and limits")
    default = BatchLimits()
    limits.add_argument(
        "--max-batch-pairs",
        type=int,
        default=default.max_batch_pairs,
        metavar="N",
        help=f"pairs per model call across requests (default {default.max_batch_pairs})",
    )
    limits.add_argument(
        "--max-batch-tokens",
        type=int,
        default=default.max_batch_tokens,
        metavar="N",
        help="estimated tokens per model call (default 0: no bound)",
    )
    limits.add_argument(
        "--max-wait-ms",
        type=float,
        default=default.max_wait_ms,
        metavar="MS",
        help=f"how long a batch that is not full waits for more requests (default {default.max_wait_ms:g})",
    )
    limits.add_argument(
        "--max-queue",
        type=int,
        default=default.max_queue,
        metavar="N",
        help=f"requests waiting before new ones get 429 (default {default.max_queue})",
    )
    limits.add_argument(
        "--max-documents", type=int, default=1000, metavar="N", help="documents per request (default 1000)"
    )
    limits.add_argument(
        "--max-body-bytes", type=int, default=8 * 1024 * 1024, metavar="N", help="request body size cap (default 8 MiB)"
    )
    limits.add_argument(
        "--request-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds a request may take before 504 (default 60)",
    )
    parser.add_argument("--api-key-env", metavar="NAME",
                        help="require 'Authorization: Bearer KEY', KEY read from this environment variable")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from data.optional import optional_import

    for module in ("fastapi", "uvicorn", "prometheus_client"):
        optional_import(module)  # a missing one names the extra to install
    from rerank.cli.exit_codes import ExitCode
    from rerank.core.keys import method_identity
    from rerank.identity import installed_versions
    from rerank.serve.app import ServeSettings
    from rerank.serve.server import check_port, check_served, serve, served_stages
    from rerank.spec import PipelineSpec, StageSpec, parse_pipeline, parse_spec

    chosen = [flag for flag in ("reranker", "pipeline", "method") if getattr(args, flag)]
    if len(chosen) != 1:
        print("rerank serve: error: give one of --reranker SPEC, --pipeline SPEC or --method NAME", file=sys.stderr)
        return ExitCode.USAGE
    options = method_options(args)
    if args.method:
        given = {**({"model": args.model} if args.model else {}), **options}
        pipeline = PipelineSpec((StageSpec(parse_spec(args.method).replace(**given)),))
    elif args.reranker:
        pipeline = PipelineSpec((StageSpec(parse_spec(args.reranker)),))
    else:
        pipeline = parse_pipeline(args.pipeline)
    for flag in ("max_documents", "max_body_bytes"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.request_timeout <= 0:
        raise ValueError("--request-timeout must be positive")
    # Requests that would wait past their timeout are refused with 429 up front (estimated from measured pairs/s,
    # with a quarter of the timeout kept as margin for the estimate's error).
    limits = BatchLimits(
        args.max_batch_pairs, args.max_batch_tokens, args.max_wait_ms, args.max_queue,
        shed_after_s=0.75 * args.request_timeout,
    )  # fmt: skip
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise ValueError(f"--api-key-env {args.api_key_env}: that environment variable is empty or unset")
    # Every stage's parameters are checked, and the port probed, before any model loads.
    check_served(pipeline)
    identities = [method_identity(stage.spec) for stage in served_stages(pipeline)]
    check_port(args.host, args.port)
    info = {
        "spec": str(pipeline),
        "stages": identities,
        # what the served stages compute with (their identities name them), and the server
        "versions": installed_versions(["rerank", *(n for i in identities for n in i.get("libraries", {})), "fastapi", "uvicorn"]),
        "limits": {
            **dataclasses.asdict(limits),
            "max_documents": args.max_documents, "max_body_bytes": args.max_body_bytes,
            "request_timeout": args.request_timeout,
        },
    }  # fmt: skip
    settings = ServeSettings(
        spec=str(pipeline), limits=limits, max_documents=args.max_documents, max_body_bytes=args.max_body_bytes,
        request_timeout=args.request_timeout, api_key=api_key, info=info,
    )  # fmt: skip
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    def listening(where: str) -> None:
        print(f"rerank serve: {pipeline} listening on {where} (OpenAPI at {where.split(', ')[0]}/docs)",
              file=sys.stderr, flush=True)  # fmt: skip

    serve(pipeline, settings, args.host, args.port, on_listening=listening)
    return ExitCode.OK
