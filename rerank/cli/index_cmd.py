"""Build a first-stage index (BM25 on Lucene, SPLADE impact, or dense faiss) from a corpus.

The corpus is a dataset's (--dataset) or a file (--corpus: BEIR corpus.jsonl[.gz]
or 'docid<TAB>text'). The index folder records the retriever, its parameters
and library versions in rerank-index.json; `rerank retrieve --index DIR` reads it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from data.errors import InvalidPathError, InvalidSpecError
from data.inference import check_backend
from data.models import check_model
from data.records import Document
from rerank.cli.common import add_data_arguments, dataset_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retriever", required=True, choices=("bm25", "splade", "dense"))
    parser.add_argument("--out", required=True, metavar="DIR", help="the index folder to write")
    add_data_arguments(parser)
    parser.add_argument(
        "--corpus", metavar="FILE", help="BEIR corpus.jsonl[.gz] or 'docid<TAB>text' (instead of --dataset)"
    )
    parser.add_argument("--model", help="model pack or Hugging Face id (splade: splade-tiny; dense: minilm)")
    parser.add_argument("--index", choices=("flat", "hnsw"), default="flat", help="dense: exact inner product or HNSW")
    parser.add_argument("--hnsw-m", type=int, default=32, help="dense HNSW: links per node")
    parser.add_argument("--ef-construction", type=int, default=200, help="dense HNSW: build-time search width")
    parser.add_argument("--batch-size", type=int, help="encoder batch size")
    parser.add_argument("--max-length", type=int, help="encoder token limit")
    parser.add_argument("--query-prefix", default="", help="dense: text put before queries (e5, nomic)")
    parser.add_argument("--document-prefix", default="", help="dense: text put before documents")
    parser.add_argument("--threads", type=int, default=2, help="Lucene indexing threads")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx", "openvino"),
        default="torch",
        help="dense, splade: where the encoder runs",
    )
    parser.add_argument(
        "--precision", choices=("float32", "int8"), default="float32", help="dense, splade: int8 needs onnx or openvino"
    )
    parser.add_argument(
        "--calibration", type=int, default=0, metavar="N", help="dense, splade: static int8 from the first N documents"
    )


def corpus_documents(args: argparse.Namespace) -> tuple[Iterable[Document], dict[str, Any]]:
    if args.corpus:
        from data.corpus import iter_corpus_file

        return iter_corpus_file(args.corpus), {"source": str(Path(args.corpus).resolve())}
    dataset = dataset_from(args)
    if dataset is None:
        raise ValueError("give --dataset NAME or --corpus FILE")
    return dataset.iter_documents(), {"dataset": dataset.name}


def run(args: argparse.Namespace) -> int:
    from rerank.cli import paths
    from retrievers.registry import retriever_class

    out = paths.output_folder("--out", args.out)
    if out.is_dir() and any(out.iterdir()) and not (out / "rerank-index.json").is_file():
        raise InvalidPathError(f"--out {args.out} is a folder with other files in it; give a new or empty folder")
    if args.corpus:
        args.corpus = str(paths.input_file("--corpus", args.corpus))
    if args.model:
        check_model(args.model, what="--model")
    documents, corpus = corpus_documents(args)
    options: dict[str, Any] = {"corpus": corpus}
    if args.retriever == "bm25":
        options["threads"] = args.threads
    else:
        if args.model:
            options["model"] = args.model
        if args.batch_size:
            options["batch_size"] = args.batch_size
        if args.max_length:
            options["max_length"] = args.max_length
    if args.retriever == "splade":
        options["threads"] = args.threads
    if args.retriever == "dense":
        options |= {"index": args.index, "hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction}
        options |= {"query_prefix": args.query_prefix, "document_prefix": args.document_prefix}
    if args.retriever != "bm25" and args.backend != "torch":
        check_backend(args.backend, args.precision, "--backend", args.calibration)
        options |= {"backend": args.backend, "precision": args.precision, "calibration": args.calibration}
    elif args.backend != "torch" or args.precision != "float32" or args.calibration:
        raise InvalidSpecError("--backend, --precision and --calibration choose the encoder of dense or splade")
    start = time.perf_counter()
    retriever_class(args.retriever).build(documents, args.out, **options)
    from retrievers.base import IndexMeta

    meta = IndexMeta.load(args.out)
    seconds = time.perf_counter() - start
    count = meta.corpus.get("documents", 0)
    print(
        f"indexed {count} documents with {args.retriever} in {seconds:.1f}s ({count / seconds:.0f} docs/s) -> {args.out}"
    )
    return 0
