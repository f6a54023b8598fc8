"""Write synthetic queries for passages of a corpus with an LLM (InPars), optionally kept by a teacher.

  rerank generate-queries --corpus FILE --output DIR --model M [--backend B] [--passages N] [--seed S]
      [--prompt FILE] [--teacher SPEC --keep-top K] [--resume | --fresh]

DIR receives topics.tsv and qrels.txt (each query's source passage as its positive), queries.jsonl (every
generated query, its cost and, with a teacher, where the teacher ranks its source) and manifest.json. The
prompt file holds {document} once (default: InPars' few-shot layout). The same command with the same
inputs reuses a finished folder; an interrupted one goes on with --resume.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", required=True, metavar="FILE", help="a corpus file (BEIR JSONL or docid<TAB>text)")
    parser.add_argument("--output", required=True, metavar="DIR", help="the folder the queries go into")
    parser.add_argument("--model", required=True, help="the LLM: a pack name, a folder, a GGUF file or a hub id")
    parser.add_argument("--backend", default="llama.cpp", help="an LLM backend spec (default llama.cpp)")
    parser.add_argument("--prompt", metavar="FILE", help="a few-shot prompt holding {document} (default: InPars')")
    parser.add_argument("--passages", type=int, default=100, help="how many passages to write queries for (100)")
    parser.add_argument("--seed", type=int, default=0, help="the sample's seed (0)")
    parser.add_argument("--max-tokens", type=int, default=32, help="longest continuation read (32 tokens)")
    parser.add_argument("--document-words", type=int, default=200, help="words of each passage in the prompt (200)")
    parser.add_argument("--batch", type=int, default=8, help="prompts per backend call and per checkpoint (8)")
    parser.add_argument("--teacher", metavar="SPEC", help="a pipeline that ranks the corpus for each query (InPars-v2)")
    parser.add_argument(
        "--keep-top", type=int, metavar="K", help="keep a query when the teacher ranks its source in its top K"
    )
    parser.add_argument("--cache", metavar="DIR", help="a model-output cache: prompts answered before cost no call")
    parser.add_argument("--resume", action="store_true", help="go on from an interrupted job's checkpoint")
    parser.add_argument("--fresh", action="store_true", help="start over, discarding a checkpoint or finished folder")


def run(args: argparse.Namespace) -> int:
    from rerank.training.queries import generate_queries

    result = generate_queries(
        args.corpus, args.output, model=args.model, backend=args.backend, prompt=args.prompt,
        passages=args.passages, seed=args.seed, max_tokens=args.max_tokens, document_words=args.document_words,
        batch=args.batch, teacher=args.teacher, keep_top=args.keep_top, resume=args.resume, fresh=args.fresh,
        progress=not args.quiet, cache=args.cache,
    )  # fmt: skip
    print(json.dumps({"folder": str(result.folder), **result.summary}), file=sys.stderr)
    return 0
