"""Every wrong input gets one clear line, the exit code from the table, and leaves nothing behind.

Each CLI case runs the real command in-process (``rerank.cli.main``) on the example collection: the
exit code, one line on stderr naming what was wrong (never a traceback: ``main`` re-raises a bug, so
it would fail the test), no output file and no checkpoint left in the work folder, and then the
corrected command succeeds where one is given. The Python API cases check the exception type and
message. Where a case needs a GPU-less machine, it says so.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import stat
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import data
from rerank.cli import main
from rerank.cli.exit_codes import ExitCode

OK, USAGE, INVALID, MISSING, NOT_FOUND, UNAVAILABLE = (
    ExitCode.OK,
    ExitCode.USAGE,
    ExitCode.INVALID_INPUT,
    ExitCode.MISSING_DEPENDENCY,
    ExitCode.NOT_FOUND,
    ExitCode.UNAVAILABLE,
)
RUN = ["run", "--dataset", "example", "--run", "bm25", "--output", "{out}"]
GEN = ["generate-queries", "--output", "{tmp}/generated", "--model", "smollm2-135m"]
GEN_OK = [*GEN, "--corpus", "{tmp}/corpus.tsv"]
TRAIN = ["train", "--topics", "{tmp}/topics.tsv", "--corpus", "{tmp}/corpus.tsv", "--output", "{tmp}/trained"]
RANDOM = ["--reranker", "random"]


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    code: int
    says: str  # a piece of the one error line
    fix: list[str] | None = None  # the corrected command, which must then succeed


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


CASES = [
    # -- rerank run: the method spec -------------------------------------------------------------
    Case("unknown method", [*RUN, "--reranker", "nope"], INVALID, "unknown reranking method 'nope'", [*RUN, *RANDOM]),
    Case("spec does not parse", [*RUN, "--reranker", "random(seed=1"], INVALID, "expected", [*RUN, *RANDOM]),
    Case("unknown parameter", [*RUN, "--reranker", "random(nosuch=1)"], INVALID, "has no parameter 'nosuch'"),
    Case("seed not an integer", [*RUN, "--reranker", "random(seed=x)"], INVALID, "seed must be an integer, not 'x'"),
    pytest.param(  # the fix runs a real model
        Case(
            "batch_size=abc",
            [*RUN, "--reranker", "bi-encoder(model=minilm, batch_size=abc)"],
            INVALID,
            "batch_size must be an integer, not 'abc'",
            [*RUN, "--reranker", "bi-encoder(model=minilm, batch_size=16)"],
        ),
        marks=pytest.mark.slow,
    ),
    Case(
        "a BERT given to mono-t5",
        [*RUN, "--reranker", "mono-t5(model={ce})"],
        INVALID,
        "mono-t5 needs a sequence-to-sequence (T5) model",
        [*RUN, "--reranker", "mono-t5(model={t5})"],
    ),
    Case(
        "batch_size=2.5",
        [*RUN, "--reranker", "bi-encoder(batch_size=2.5)"],
        INVALID,
        "batch_size must be an integer, not 2.5",
    ),
    Case(
        "max_length a string",
        [*RUN, "--reranker", 'bi-encoder(max_length="long")'],
        INVALID,
        "max_length must be an integer or none",
    ),
    Case(
        "precision=fp8",
        [*RUN, "--reranker", "cross-encoder(model=minilm, precision=fp8)"],
        INVALID,
        "precision must be one of auto, float32, float16, bfloat16, int8, not 'fp8'",
    ),
    pytest.param(  # the fix runs a real model
        Case(
            "backend=tensorflow",
            [*RUN, "--reranker", "bi-encoder(model=minilm, backend=tensorflow)"],
            INVALID,
            "backend must be one of torch, onnx, openvino, not 'tensorflow'",
            [*RUN, "--reranker", "bi-encoder(model=minilm, backend=onnx)"],
        ),
        marks=pytest.mark.slow,
    ),
    Case(
        "float16 on onnx",
        [*RUN, "--reranker", "cross-encoder(model=minilm, allow_untrained=true, backend=onnx, precision=float16)"],
        INVALID,
        "backend=onnx runs precision float32 or int8, not 'float16'",
    ),
    Case(
        "calibration without int8",
        [*RUN, "--reranker", "bi-encoder(model=minilm, backend=onnx, calibration=100)"],
        INVALID,
        "calibration=N calibrates static int8",
    ),
    pytest.param(  # the fix runs a real model
        Case(
            "openvino int8 without calibration",
            [*RUN, "--reranker", "bi-encoder(model=minilm, backend=openvino, precision=int8)"],
            INVALID,
            "backend=openvino, precision=int8 is static quantisation: give calibration=N",
            # the fix of docs/methods/encoders.md, so that one export serves both
            [*RUN, "--reranker", "bi-encoder(model=minilm, backend=openvino, precision=int8, calibration=64)"],
        ),
        marks=pytest.mark.slow,
    ),
    Case(
        "int8 on torch for the bi-encoder",
        [*RUN, "--reranker", "bi-encoder(model=minilm, precision=int8)"],
        INVALID,
        "precision=int8 runs on backend=onnx or openvino",
    ),
    Case(
        "truncation=middle",
        [*RUN, "--reranker", "cross-encoder(model=minilm, truncation=middle)"],
        INVALID,
        "truncation must be one of document, both",
    ),
    Case(
        "query_prefix a number",
        [*RUN, "--reranker", "bi-encoder(query_prefix=3)"],
        INVALID,
        'query_prefix must be a string (quote it: "3")',
    ),
    pytest.param(  # the fix runs a real model
        Case(
            "bi-encoder folder as a cross-encoder",
            [*RUN, "--reranker", "cross-encoder(model=minilm)"],
            INVALID,
            "no trained weights for classifier",
            [*RUN, "--reranker", "cross-encoder(model=minilm, allow_untrained=true)"],
        ),
        marks=pytest.mark.slow,
    ),
    Case(
        "model folder that does not exist",
        [*RUN, "--reranker", 'cross-encoder(model="./nosuchdir")'],
        NOT_FOUND,
        "model './nosuchdir' does not exist",
    ),
    Case(
        "model folder without a model",
        [*RUN, "--reranker", 'bi-encoder(model="{tmp}/empty")'],
        NOT_FOUND,
        "a folder without a model in it",
    ),
    Case(
        "unknown hub id offline",
        [*RUN, "--reranker", 'cross-encoder(model="nosuch-org/nosuch-model")'],
        NOT_FOUND,
        "not a model pack",
    ),
    Case(
        "README model id offline",
        [*RUN, "--method", "cross-encoder", "--model", "cross-encoder/ms-marco-MiniLM-L-6-v2"],
        NOT_FOUND,
        "downloads are off",
    ),
    Case(
        "gguf that does not exist",
        [*RUN, "--reranker", "listwise(model=nosuch.gguf, backend=llama.cpp)"],
        NOT_FOUND,
        "'nosuch.gguf' does not exist",
    ),
    Case(
        "backend=vllm where vllm is not installed",
        [*RUN, "--reranker", "listwise(model=smollm2-135m, backend=vllm)"],
        MISSING,
        "vllm is not installed in this environment; pip install 'rerank[vllm]'",
    ),
    Case(
        "a GGUF file given to vllm",
        [*RUN, "--reranker", "listwise(model=./model.gguf, backend=vllm)"],
        NOT_FOUND,
        "the vllm backend loads Hugging Face folders and hub ids",
    ),
    Case(
        "a served model's local tokenizer that does not exist",
        [
            *RUN,
            "--reranker",
            'setwise(model=smollm2-135m, backend="openai(base_url=http://127.0.0.1:9/v1, tokenizer=./nosuch.gguf)")',
        ],
        NOT_FOUND,
        "tokenizer './nosuch.gguf' does not exist",
    ),
    Case(
        "tokens cut on a server without a local tokenizer",
        [*RUN, "--reranker", 'setwise(model=m, backend="openai(base_url=http://127.0.0.1:9/v1)", max_tokens=128)'],
        INVALID,
        "cuts text in tokens only with a local tokenizer",
    ),
    Case(
        "groupwise unknown template",
        [*RUN, "--reranker", "groupwise(model=sort, backend=scripted, template=nope)"],
        INVALID,
        "template must be one of first, grouprank, groupwise, insertrank, prp, qwen-thinking, rank-k, rank-r1, rankgpt, "
        "rankzephyr, reasonrank, setwise, not 'nope'",
    ),
    Case(
        "groupwise unknown variant",
        [*RUN, "--reranker", "groupwise(model=sort, backend=scripted, variant=grouprank)"],
        INVALID,
        "variant must be rerank or diver, not 'grouprank'",
    ),
    Case(
        # the template's own words fill the window: every passage would reach the model empty
        "listwise context_size smaller than its prompt",
        [*RUN, "--reranker", "listwise(model=sort, backend=scripted, context_size=120)"],
        INVALID,
        "listwise: context_size=120 leaves no room for passages: a window of 20 takes",
        [*RUN, "--reranker", "listwise(model=sort, backend=scripted, context_size=400)"],
    ),
    Case(
        "first passes 0, checked before the model loads",
        [*RUN, "--reranker", "first(model=smollm2-135m, passes=0)"],
        INVALID,
        "first(model=smollm2-135m, passes=0): passes must be at least 1, not 0",
    ),
    Case(
        "first top_logprobs -1",  # 0 is every token
        [*RUN, "--reranker", "first(model=smollm2-135m, top_logprobs=-1)"],
        INVALID,
        "top_logprobs must be 0 or more, not -1",
    ),
    Case(
        "setwise max_words 0",
        [*RUN, "--reranker", "setwise(model=sort, backend=scripted, max_words=0)"],
        INVALID,
        "max_words must be at least 1",
    ),
    Case(
        "jointrank design unknown",
        [*RUN, "--reranker", 'jointrank(inner="first(model=sort, backend=scripted)", design=latin)'],
        INVALID,
        "design must be shuffles or reference, not 'latin'",
    ),
    Case(
        "unknown backend",
        [*RUN, "--reranker", "listwise(model=x, backend=nope)"],
        INVALID,
        "unknown LLM backend 'nope'",
    ),
    Case(
        "jointrank inner unknown",
        [*RUN, "--reranker", "jointrank(inner=nope)"],
        INVALID,
        "unknown reranking method 'nope'",
    ),
    Case(
        "jointrank inner bad type",
        [*RUN, "--reranker", 'jointrank(inner="first(model=x, window_size=big)")'],
        INVALID,
        "window_size must be an integer",
    ),
    Case(
        "listwise strategy unknown",
        [*RUN, "--reranker", "listwise(model=sort, backend=scripted, strategy=tourney)"],
        INVALID,
        "strategy must be one of",
    ),
    Case(
        "tdpart's buffer on a sliding window",
        [*RUN, "--reranker", "listwise(model=sort, backend=scripted, buffer=30)"],
        INVALID,
        "buffer is a parameter of strategy=tdpart",
        [*RUN, "--reranker", "listwise(model=sort, backend=scripted, buffer=30, strategy=tdpart)"],
    ),
    Case(
        "a stride for tdpart",
        [*RUN, "--reranker", "listwise(model=sort, backend=scripted, strategy=tdpart, stride=4)"],
        INVALID,
        "stride is a parameter of strategy=sliding, not tdpart",
    ),
    Case(
        "tournaments for a sliding window",
        [*RUN, "--reranker", "first(model=sort, backend=scripted, tournaments=3)"],
        INVALID,
        "tournaments is a parameter of strategy=tournament, not sliding",
    ),
    Case(
        "a window size for tournaments",
        [*RUN, "--reranker", "listwise(model=sort, backend=scripted, strategy=tournament, window_size=8)"],
        INVALID,
        "strategy=tournament plays TourRank's groups",
    ),
    Case(
        "tdpart cutoff 0",
        [*RUN, "--reranker", "first(model=sort, backend=scripted, strategy=tdpart, cutoff=0)"],
        INVALID,
        "cutoff must be at least 1, not 0",
    ),
    # -- split (long documents): each names its parameter, before a model loads where it can -------------
    Case(
        "split window over the model's limit",
        [*RUN, "--reranker", "split(inner=bi-encoder(model=minilm), window=300)"],
        INVALID,
        "window=300 words is more than bi-encoder reads of a document (256 tokens)",
        [*RUN, "--reranker", "split(inner=bi-encoder(model=minilm), window=30, stride=15)"],
    ),
    Case(
        "split stride 0",
        [*RUN, "--reranker", "split(inner=bi-encoder(model=minilm), stride=0)"],
        INVALID,
        "stride must be at least 1, not 0",
    ),
    Case(
        "split stride over the window",
        [*RUN, "--reranker", "split(inner=bi-encoder(model=minilm), window=50, stride=80)"],
        INVALID,
        "stride must be between 1 and the window (50), not 80 (words between windows would be skipped)",
    ),
    Case(
        "split unknown aggregation",
        [*RUN, "--reranker", "split(inner=bi-encoder(model=minilm), aggregate=kmaxp)"],
        INVALID,
        "aggregate must be one of",
    ),
    Case(
        "split over a listwise method",
        [*RUN, "--reranker", 'split(inner="listwise(model=sort, backend=scripted)")'],
        INVALID,
        "split scores each window on its own, so inner is a pointwise method",
    ),
    Case(
        "split in tokens of a model without a tokenizer",
        [
            *RUN,
            "--reranker",
            'split(inner="llm-pointwise(model=sort, backend=scripted)", window=64, stride=32, unit=tokens)',
        ],
        INVALID,
        "has no tokenizer to count tokens with; use unit=words",
    ),
    Case(
        "device that is no device",
        [*RUN, "--reranker", "bi-encoder(device=tpu)"],
        INVALID,
        "device must be cpu, cuda, cuda:N or mps, not 'tpu'",
    ),
    pytest.param(
        Case(
            "device=cuda without a GPU",
            [*RUN, "--reranker", "bi-encoder(device=cuda)"],
            INVALID,
            "has no CUDA device",
            [*RUN, "--reranker", "bi-encoder(device=cpu)"],
        ),
        marks=pytest.mark.skipif("_cuda()", reason="this machine has a GPU"),
    ),
    pytest.param(
        Case(
            "--device cuda with --method",
            [*RUN, "--method", "bi-encoder", "--device", "cuda"],
            INVALID,
            "has no CUDA device",
            [*RUN, "--method", "bi-encoder", "--device", "cpu", "--batch-size", "8"],
        ),
        marks=pytest.mark.skipif("_cuda()", reason="this machine has a GPU"),
    ),
    Case("--device with --reranker", [*RUN, *RANDOM, "--device", "cpu"], INVALID, "go with --method"),
    Case(
        "--batch-size not a number", [*RUN, "--method", "bi-encoder", "--batch-size", "x"], USAGE, "invalid int value"
    ),
    Case("both --reranker and --method", [*RUN, *RANDOM, "--method", "random"], INVALID, "not both"),
    Case("no method at all", RUN, INVALID, "give --pipeline SPEC, --reranker SPEC or --method"),
    # -- rerank run: pipelines --------------------------------------------------------------------
    Case(
        "pipeline without a reranker",
        ["run", "--dataset", "example", "--pipeline", "run(name=bm25) % 10", "--output", "{out}"],
        INVALID,
        "must end with a reranking method",
    ),
    Case(
        "pipeline cutoff 0",
        ["run", "--dataset", "example", "--pipeline", "run(name=bm25) % 0 >> random", "--output", "{out}"],
        INVALID,
        "expected a positive integer after '%'",
    ),
    Case(
        "fusion of one pipeline",
        ["run", "--dataset", "example", "--pipeline", "rrf(run(name=bm25)) >> random", "--output", "{out}"],
        INVALID,
        "fuses at least two pipelines",
    ),
    Case(
        "pipeline with --run",
        ["run", "--dataset", "example", "--pipeline", "run(name=bm25) >> random", "--run", "bm25", "--output", "{out}"],
        INVALID,
        "holds the whole cascade",
    ),
    Case(
        "pipeline retriever parameter",
        ["run", "--dataset", "example", "--pipeline", "bm25(k2=1) % 10 >> random", "--output", "{out}"],
        INVALID,
        "has no parameter 'k2'",
    ),
    Case(
        "pipeline retriever parameter type",
        ["run", "--dataset", "example", "--pipeline", "bm25(k1=high) % 10 >> random", "--output", "{out}"],
        INVALID,
        "k1 must be a number, not 'high'",
    ),
    Case(
        "pipeline given run missing",
        ["run", "--dataset", "example", "--pipeline", 'run(path="{tmp}/no.trec") >> random', "--output", "{out}"],
        NOT_FOUND,
        "no.trec",
    ),
    # -- rerank run: paths ------------------------------------------------------------------------
    Case(
        "--output is a folder",
        ["run", "--dataset", "example", "--run", "bm25", *RANDOM, "--output", "{tmp}"],
        INVALID,
        "--output {tmp} is a folder",
        [*RUN, *RANDOM],
    ),
    Case(
        "--output empty",
        ["run", "--dataset", "example", "--run", "bm25", *RANDOM, "--output", ""],
        INVALID,
        "--output is empty",
    ),
    Case(
        "--output on a read-only file system",
        ["run", "--dataset", "example", "--run", "bm25", *RANDOM, "--output", "/proc/rerank-out/run.trec"],
        INVALID,
        "cannot write in /proc",
    ),
    Case(
        "--output under a file",
        ["run", "--dataset", "example", "--run", "bm25", *RANDOM, "--output", "{tmp}/afile/run.trec"],
        INVALID,
        "is a file, so no folder can be made there",
    ),
    Case(
        "--topics missing",
        [*RUN, *RANDOM, "--topics", "{tmp}/nope.tsv"],
        NOT_FOUND,
        "--topics {tmp}/nope.tsv: no such file",
    ),
    Case("--topics a folder", [*RUN, *RANDOM, "--topics", "{tmp}"], INVALID, "--topics {tmp} is a folder"),
    Case("--corpus a folder", [*RUN, *RANDOM, "--corpus", "{tmp}"], INVALID, "--corpus {tmp} is a folder"),
    Case(
        "--corpus missing",
        [*RUN, *RANDOM, "--corpus", "{tmp}/c.jsonl"],
        NOT_FOUND,
        "--corpus {tmp}/c.jsonl: no such file",
    ),
    Case("--qrels a folder", [*RUN, *RANDOM, "--eval", "--qrels", "{tmp}"], INVALID, "--qrels {tmp} is a folder"),
    Case(
        "--qrels malformed",
        [*RUN, *RANDOM, "--eval", "--qrels", "{tmp}/bad.qrels"],
        INVALID,
        "bad.qrels:2",
        [*RUN, *RANDOM, "--eval", "--qrels", "{tmp}/good.qrels"],
    ),
    Case("--cache is a file", [*RUN, *RANDOM, "--cache", "{tmp}/afile"], INVALID, "--cache {tmp}/afile is a file"),
    Case(
        "--work-dir is a file",
        [*RUN, *RANDOM, "--work-dir", "{tmp}/afile"],
        INVALID,
        "--work-dir {tmp}/afile is a file",
    ),
    Case(
        "--run missing",
        ["run", "--dataset", "example", "--run", "{tmp}/none.trec", *RANDOM, "--output", "{out}"],
        NOT_FOUND,
        "neither a file nor a run",
    ),
    Case(
        "--run malformed",
        ["run", "--dataset", "example", "--run", "{tmp}/bad.trec", *RANDOM, "--output", "{out}"],
        INVALID,
        "bad.trec:2",
    ),
    Case(
        "--run jsonl malformed",
        ["run", "--run", "{tmp}/bad.jsonl", "--input-format", "jsonl", *RANDOM, "--output", "{out}"],
        INVALID,
        "bad.jsonl:1",
    ),
    Case(
        "--run without topics",
        ["run", "--run", "{tmp}/good.trec", *RANDOM, "--output", "{out}"],
        INVALID,
        "needs --topics",
    ),
    Case(
        "a docid the corpus lacks",
        [
            "run",
            "--run",
            "{tmp}/stray.trec",
            "--topics",
            "{tmp}/topics.tsv",
            "--corpus",
            "{tmp}/corpus.tsv",
            *RANDOM,
            "--output",
            "{out}",
        ],
        NOT_FOUND,
        "document 'nosuchdoc' not in the corpus {tmp}/corpus.tsv",
    ),
    Case(
        "--dataset unknown",
        ["run", "--dataset", "nosuch", "--run", "bm25", *RANDOM, "--output", "{out}"],
        NOT_FOUND,
        "unknown dataset 'nosuch'",
    ),
    Case(
        "--eval without qrels",
        [
            "run",
            "--run",
            "{tmp}/good.trec",
            "--topics",
            "{tmp}/topics.tsv",
            "--corpus",
            "{tmp}/corpus.tsv",
            *RANDOM,
            "--output",
            "{out}",
            "--eval",
        ],
        INVALID,
        "--eval needs qrels",
    ),
    Case("--top-k 0", [*RUN, *RANDOM, "--top-k", "0"], INVALID, "--top-k must be at least 1, not 0"),
    Case("--top-k not a number", [*RUN, *RANDOM, "--top-k", "ten"], USAGE, "invalid int value"),
    Case(
        "--batch-queries 0",
        [*RUN, *RANDOM, "--batch-queries", "0"],
        INVALID,
        "--batch-queries must be at least 1, not 0",
    ),
    Case("--max-queries 0", [*RUN, *RANDOM, "--max-queries", "0"], INVALID, "--max-queries must be at least 1, not 0"),
    Case("--resume with --fresh", [*RUN, *RANDOM, "--resume", "--fresh"], INVALID, "contradict"),
    Case(
        "--keep-rest with jsonl",
        [*RUN, *RANDOM, "--keep-rest", "--output-format", "jsonl"],
        INVALID,
        "--keep-rest goes with --run",
    ),
    Case("--summary old spelling, bad value", [*RUN, *RANDOM, "--summary", "xml"], INVALID, "choose text or json"),
    Case("--format bad value", [*RUN, *RANDOM, "--format", "xml"], USAGE, "invalid choice"),
    # -- retrieve -----------------------------------------------------------------------------------
    Case(
        "retrieve: index missing",
        ["retrieve", "--index", "{tmp}/noindex", "--dataset", "example", "--output", "{out}"],
        NOT_FOUND,
        "--index {tmp}/noindex: no such folder",
    ),
    Case(
        "retrieve: index is a file",
        ["retrieve", "--index", "{tmp}/afile", "--dataset", "example", "--output", "{out}"],
        INVALID,
        "--index {tmp}/afile is a file",
    ),
    Case(
        "retrieve: output a folder",
        ["retrieve", "--index", "{tmp}/index", "--dataset", "example", "--output", "{tmp}"],
        INVALID,
        "--output {tmp} is a folder",
    ),
    Case(
        "retrieve: topics missing",
        ["retrieve", "--index", "{tmp}/index", "--topics", "{tmp}/no.tsv", "--output", "{out}"],
        NOT_FOUND,
        "--topics {tmp}/no.tsv: no such file",
    ),
    Case(
        "retrieve: --k 0",
        ["retrieve", "--index", "{tmp}/index", "--dataset", "example", "--output", "{out}", "--k", "0"],
        INVALID,
        "must be at least 1",
    ),
    Case(
        "retrieve: no queries",
        ["retrieve", "--index", "{tmp}/index", "--output", "{out}"],
        INVALID,
        "give --dataset NAME or --topics FILE",
    ),
    Case(
        "retrieve: --resume --fresh",
        ["retrieve", "--index", "{tmp}/index", "--dataset", "example", "--output", "{out}", "--resume", "--fresh"],
        INVALID,
        "contradict",
    ),
    # -- index --------------------------------------------------------------------------------------
    Case(
        "index: --out an existing file",
        ["index", "--retriever", "bm25", "--dataset", "example", "--out", "{tmp}/afile"],
        INVALID,
        "--out {tmp}/afile is a file",
    ),
    Case(
        "index: --out a folder with other files",
        ["index", "--retriever", "bm25", "--dataset", "example", "--out", "{tmp}/full"],
        INVALID,
        "a folder with other files in it",
    ),
    Case(
        "index: corpus missing",
        ["index", "--retriever", "bm25", "--corpus", "{tmp}/c.jsonl", "--out", "{tmp}/newindex"],
        NOT_FOUND,
        "--corpus {tmp}/c.jsonl: no such file",
    ),
    Case(
        "index: corpus a folder",
        ["index", "--retriever", "bm25", "--corpus", "{tmp}", "--out", "{tmp}/newindex"],
        INVALID,
        "--corpus {tmp} is a folder",
    ),
    Case(
        "index: model missing",
        ["index", "--retriever", "dense", "--dataset", "example", "--model", "./nomodel", "--out", "{tmp}/newindex"],
        NOT_FOUND,
        "--model './nomodel' does not exist",
    ),
    Case(
        "index: no corpus",
        ["index", "--retriever", "bm25", "--out", "{tmp}/newindex"],
        INVALID,
        "give --dataset NAME or --corpus FILE",
    ),
    pytest.param(  # the fix runs a real model
        Case(
            "index: bm25 has no encoder",
            ["index", "--retriever", "bm25", "--dataset", "example", "--backend", "onnx", "--out", "{tmp}/newindex"],
            INVALID,
            "--backend, --precision and --calibration choose the encoder of dense or splade",
            ["index", "--retriever", "bm25", "--dataset", "example", "--out", "{tmp}/newindex"],
        ),
        marks=pytest.mark.slow,
    ),
    Case(
        "index: splade openvino int8 without calibration",
        [
            "index",
            "--retriever",
            "splade",
            "--dataset",
            "example",
            "--backend",
            "openvino",
            "--precision",
            "int8",
            "--out",
            "{tmp}/newindex",
        ],
        INVALID,
        "backend=openvino, precision=int8 is static quantisation: give calibration=N",
    ),
    Case(
        "index: unknown retriever",
        ["index", "--retriever", "nope", "--dataset", "example", "--out", "{tmp}/newindex"],
        USAGE,
        "invalid choice",
    ),
    # -- fuse ---------------------------------------------------------------------------------------
    Case(
        "fuse: --k 0",
        ["fuse", "{tmp}/good.trec", "{tmp}/good.trec", "--output", "{out}", "--k", "0"],
        INVALID,
        "--k must be at least 1, not 0",
        ["fuse", "{tmp}/good.trec", "{tmp}/good.trec", "--output", "{out}"],
    ),
    Case(
        "fuse: --rrf-k negative",
        ["fuse", "{tmp}/good.trec", "{tmp}/good.trec", "--output", "{out}", "--rrf-k", "-1"],
        INVALID,
        "--rrf-k must be at least 0, not -1",
    ),
    Case(
        "fuse: weights with rrf",
        ["fuse", "{tmp}/good.trec", "{tmp}/good.trec", "--output", "{out}", "--weights", "0.6", "0.4"],
        INVALID,
        "--weights are for --method interpolate",
    ),
    Case(
        "fuse: weights count",
        [
            "fuse",
            "{tmp}/good.trec",
            "{tmp}/good.trec",
            "--output",
            "{out}",
            "--method",
            "interpolate",
            "--weights",
            "1",
        ],
        INVALID,
        "gives 1 weights for 2 runs",
    ),
    Case(
        "fuse: run missing",
        ["fuse", "{tmp}/good.trec", "{tmp}/none.trec", "--output", "{out}"],
        NOT_FOUND,
        "neither a file nor a run",
    ),
    Case(
        "fuse: run malformed", ["fuse", "{tmp}/good.trec", "{tmp}/bad.trec", "--output", "{out}"], INVALID, "bad.trec:2"
    ),
    Case(
        "fuse: output a folder",
        ["fuse", "{tmp}/good.trec", "{tmp}/good.trec", "--output", "{tmp}"],
        INVALID,
        "--output {tmp} is a folder",
    ),
    # -- eval ---------------------------------------------------------------------------------------
    Case(
        "eval: run missing",
        ["eval", "--dataset", "example", "{tmp}/none.trec"],
        NOT_FOUND,
        "RUN {tmp}/none.trec: no such file",
    ),
    Case("eval: run a folder", ["eval", "--dataset", "example", "{tmp}/"], INVALID, "is a folder"),
    Case(
        "eval: qrels missing",
        ["eval", "--qrels", "{tmp}/no.qrels", "{tmp}/good.trec"],
        NOT_FOUND,
        "--qrels {tmp}/no.qrels: no such file",
    ),
    Case(
        "eval: qrels malformed",
        ["eval", "--qrels", "{tmp}/bad.qrels", "{tmp}/good.trec"],
        INVALID,
        "bad.qrels:2",
        ["eval", "--qrels", "{tmp}/good.qrels", "{tmp}/good.trec"],
    ),
    Case(
        "eval: unknown measure", ["eval", "--dataset", "example", "bm25", "--measures", "nDCG@ten"], INVALID, "nDCG@ten"
    ),
    Case("eval: no qrels", ["eval", "{tmp}/good.trec"], INVALID, "give --qrels FILE or --dataset NAME"),
    Case(
        "eval: --output a folder",
        ["eval", "--dataset", "example", "bm25", "--output", "{tmp}"],
        INVALID,
        "--output {tmp} is a folder",
        ["eval", "--dataset", "example", "bm25", "--output", "{out}"],
    ),
    # -- eval --depths (refused before the dataset loads or any stage runs) ------------------------------
    *(
        Case(
            f"eval --depths: {name}",
            ["eval", "--dataset", "example", *argv],
            INVALID,
            says,
            ["eval", "--dataset", "example", "--depths", "2,5", "--pipeline", "run(name=bm25) >> random"],
        )
        for name, argv, says in (
            ("zero", ["--depths", "0,10", "--pipeline", "run(name=bm25) >> random"], "--depths '0,10': a comma"),
            ("not numbers", ["--depths", "ten", "--pipeline", "run(name=bm25) >> random"], "--depths 'ten': a comma"),
            ("twice", ["--depths", "5,5", "--pipeline", "run(name=bm25) >> random"], "distinct positive integers"),
            ("no pipeline", ["--depths", "5"], "--depths needs --pipeline SPEC"),
            (
                "a cut first stage",
                ["--depths", "5", "--pipeline", "run(name=bm25) % 20 >> random"],
                "leave the first stage uncut (run(name=bm25)); --depths cuts it",
            ),
            ("no reranker", ["--depths", "5", "--pipeline", "bm25"], "needs a first stage, then a reranker"),
            (
                "with RUN files",
                ["bm25", "--depths", "5", "--pipeline", "run(name=bm25) >> random"],
                "give it instead of RUN files (bm25)",
            ),
            ("--plot alone", ["bm25", "--plot", "{tmp}/p.png"], "--plot goes with --depths"),
            ("an unknown method", ["--depths", "5", "--pipeline", "run(name=bm25) >> nosuch"], "nosuch"),
        )
    ),
    # -- serve (refused before any model loads or any port is bound) --------------------------------
    Case(
        "serve: unknown method",
        ["serve", "--reranker", "nope", "--port", "0"],
        INVALID,
        "every stage is a reranking method (one of bi-encoder,",
    ),
    Case(
        "serve: bad parameter type",
        ["serve", "--reranker", "bi-encoder(batch_size=abc)", "--port", "0"],
        INVALID,
        "batch_size must be an integer",
    ),
    Case(
        "serve: model missing",
        ["serve", "--method", "cross-encoder", "--model", "./nosuchdir", "--port", "0"],
        NOT_FOUND,
        "does not exist",
    ),
    Case(
        "serve: --max-documents 0",
        ["serve", *RANDOM, "--max-documents", "0", "--port", "0"],
        INVALID,
        "--max-documents must be at least 1",
    ),
    Case(
        "serve: empty key variable",
        ["serve", *RANDOM, "--api-key-env", "RERANK_TEST_UNSET_KEY", "--port", "0"],
        INVALID,
        "RERANK_TEST_UNSET_KEY",
    ),
    Case(
        # loads, but cannot answer: the warm-up request fails before the port opens (never a ready server of 503s)
        "serve: a model that cannot answer",
        ["serve", "--reranker", "remote(base_url=http://127.0.0.1:9, max_retries=0)", "--port", "0"],
        UNAVAILABLE,
        "the warm-up request failed, so nothing is served",
    ),
    Case(
        "serve: --device with --reranker",
        ["serve", *RANDOM, "--device", "cpu", "--port", "0"],
        INVALID,
        "go with --method",
    ),
    # -- usage --------------------------------------------------------------------------------------
    Case("unknown command", ["nosuch"], USAGE, "invalid choice"),
    Case("list: unknown kind", ["list", "nosuch"], USAGE, "invalid choice", ["list", "methods"]),
    # -- rerank models and fuse ---------------------------------------------------------------------
    Case(
        "models: unknown pack",
        ["models", "install", "nosuch"],
        NOT_FOUND,
        "NAME: 'nosuch' is not a model pack",
        ["models", "list"],
    ),
    Case("models: no action", ["models"], USAGE, "required", ["models", "list"]),
    Case(
        "models: --find-links a missing folder",
        ["models", "install", "minilm", "--find-links", "{tmp}/no-wheels"],
        NOT_FOUND,
        "--find-links {tmp}/no-wheels: no such folder or file",
    ),
    Case(
        "models: --index-url for an installed pack",
        ["models", "install", "minilm", "--index-url", "https://example.invalid/simple"],
        INVALID,
        "--index-url applies to an install, and minilm is installed: add --force",
    ),
    Case(
        "fuse: one member",
        [*RUN, "--reranker", "fuse(rerankers=[random(seed=1)])"],
        INVALID,
        "fuse takes two or more methods",
        [*RUN, "--reranker", "fuse(rerankers=[random(seed=1), random(seed=2)])"],
    ),
    Case(
        "fuse: weights with rrf",
        [*RUN, "--reranker", "fuse(rerankers=[random(seed=1), random(seed=2)], weights=[0.5, 0.5])"],
        INVALID,
        "only with method=interpolate",
    ),
    # -- counts below 1, refused when the spec is checked: before a model loads, naming the stage ---------------
    Case(
        "batch_size=0",
        [*RUN, "--reranker", "bi-encoder(model=minilm, batch_size=0)"],
        INVALID,
        "batch_size must be at least 1, not 0",
    ),
    Case(
        "a pipeline stage's window_size=0",
        [
            "run",
            "--dataset",
            "example",
            "--pipeline",
            "run(name=bm25) % 10 >> listwise(model=sort, backend=scripted, window_size=0)",
            "--output",
            "{out}",
        ],
        INVALID,
        "window_size=0): window_size must be at least 1, not 0",
    ),
    Case(
        "a backend's n_ctx=0",
        [*RUN, "--reranker", 'llm-pointwise(model=smollm2-135m, backend="llama.cpp(n_ctx=0)")'],
        INVALID,
        "n_ctx must be at least 1, not 0",
    ),
    # -- a JSON run where a TREC run belongs: named as such, with the flag that reads it ----------------------
    Case(
        "run: a RankLLM file without --input-format",
        ["run", "--dataset", "example", "--run", "{tmp}/requests.json", *RANDOM, "--output", "{out}"],
        INVALID,
        "requests.json:1: this is JSON (a RankLLM request list or JSONL candidates), not a TREC run: rerank run "
        "reads it with --input-format rankllm",
        [
            "run",
            "--dataset",
            "example",
            "--run",
            "{tmp}/requests.json",
            "--input-format",
            "rankllm",
            *RANDOM,
            "--output",
            "{out}",
        ],
    ),
    Case(
        "run: a RankLLM file giving one docid two texts",
        ["run", "--run", "{tmp}/conflict.json", "--input-format", "rankllm", *RANDOM, "--output", "{out}"],
        INVALID,
        "conflict.json: docid 'd' has one text for query '1' and another for query '2'",
    ),
    Case(
        "fuse: a JSONL file as a run",
        ["fuse", "{tmp}/candidates.jsonl", "{tmp}/good.trec", "--output", "{out}"],
        INVALID,
        "candidates.jsonl:1: this is JSON",
    ),
    Case(
        "eval: a RankLLM file as a run",
        ["eval", "--qrels", "{tmp}/good.qrels", "{tmp}/requests.json"],
        INVALID,
        "requests.json:1: this is JSON",
    ),
    # -- a path ending in a slash names a folder, never a file of that name ----------------------------------
    Case(
        "run: --output ends in a slash",
        ["run", "--dataset", "example", "--run", "bm25", *RANDOM, "--output", "{tmp}/newdir/"],
        INVALID,
        "--output {tmp}/newdir/ ends in a slash, so it names a folder",
        [*RUN, *RANDOM],
    ),
    Case(
        "fuse: --output ends in a slash",
        ["fuse", "{tmp}/good.trec", "{tmp}/good.trec", "--output", "{tmp}/newdir/"],
        INVALID,
        "ends in a slash, so it names a folder",
    ),
    Case(
        "retrieve: --output ends in a slash",
        ["retrieve", "--index", "{tmp}/index", "--dataset", "example", "--output", "{tmp}/newdir/"],
        INVALID,
        "ends in a slash, so it names a folder",
    ),
    Case(
        "eval: --output ends in a slash",
        ["eval", "--qrels", "{tmp}/good.qrels", "{tmp}/good.trec", "--output", "{tmp}/newdir/"],
        INVALID,
        "ends in a slash, so it names a folder",
    ),  # -- rerank generate-queries and rerank train: refused before a query is written or a step is taken -------
    Case(
        "generate-queries: no such corpus",
        [*GEN, "--corpus", "{tmp}/nope.tsv"],
        NOT_FOUND,
        "--corpus {tmp}/nope.tsv: no such file",
        [
            "generate-queries",
            "--output",
            "{tmp}/generated-fix",
            "--model",
            "smollm2-135m",
            "--corpus",
            "{tmp}/corpus.tsv",
            "--passages",
            "1",
            "--max-tokens",
            "4",
        ],
    ),
    Case(
        "generate-queries: a prompt without its placeholder",
        [*GEN_OK, "--prompt", "{tmp}/noplace.txt"],
        INVALID,
        "exactly once, where each passage goes",
    ),
    Case(
        "generate-queries: --teacher without --keep-top",
        [*GEN_OK, "--teacher", "bm25 % 5"],
        INVALID,
        "--teacher and --keep-top go together",
    ),
    Case("generate-queries: --passages 0", [*GEN_OK, "--passages", "0"], INVALID, "--passages must be at least 1"),
    Case(
        "generate-queries: --keep-top deeper than the teacher ranks",
        [*GEN_OK, "--teacher", "bm25 % 5", "--keep-top", "10"],
        INVALID,
        "--keep-top 10: the teacher 'bm25 % 5' ranks 5 passages per query",
    ),
    Case(
        "generate-queries: more passages than the corpus has",
        [*GEN_OK, "--passages", "1000"],
        INVALID,
        "--passages 1000: the corpus {tmp}/corpus.tsv has 32 non-empty documents",
    ),
    Case(
        "train: a student that is not an encoder",
        [*TRAIN, "--teacher", "bm25 % 5", "--student", "smollm2-135m"],
        INVALID,
        "--student 'smollm2-135m' is a single weights file",
    ),
    Case(
        "train: a teacher that only orders",
        [*TRAIN, "--teacher", "bm25 % 5 >> listwise(model=qwen2.5-coder-0.5b)"],
        INVALID,
        "listwise orders candidates without scores to distil",
    ),
    Case(
        "train: an empty training set",
        [*TRAIN, "--teacher", "bm25 % 5", "--topics", "{tmp}/empty.tsv"],
        INVALID,
        "--topics {tmp}/empty.tsv: no query in it",
    ),
    Case(
        "train: an unknown loss",
        [*TRAIN, "--teacher", "bm25 % 5", "--loss", "hinge"],
        INVALID,
        "--loss 'hinge': choose bce, margin-mse, listnet, lambda",
    ),
    Case("train: neither teacher nor labels", TRAIN, INVALID, "give --teacher"),
    Case(
        "train: labels with a teacher's loss",
        [*TRAIN, "--qrels", "{tmp}/good.qrels"],
        INVALID,
        "with --qrels use --loss bce",
    ),
]


def _ids(case: object) -> str:
    return case.name if isinstance(case, Case) else str(case)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files the cases point at: good and malformed runs, qrels, topics, a corpus, a BM25 index."""
    work = tmp_path_factory.mktemp("bad-input") / "work"
    work.mkdir()
    (work / "empty").mkdir()
    (work / "full").mkdir()
    (work / "full" / "notes.txt").write_text("mine\n")
    (work / "afile").write_text("a file\n")
    example = data.load("example")
    good = "".join(
        f"{r.qid} Q0 {c.docid} {i} {c.score} bm25\n" for r in example.run("bm25") for i, c in enumerate(r.candidates, 1)
    )
    (work / "good.trec").write_text(good)
    (work / "bad.trec").write_text("q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 oops t\n")
    (work / "stray.trec").write_text(good + "q2 Q0 nosuchdoc 99 -9.0 bm25\n")
    (work / "bad.jsonl").write_text("{not json\n")
    texts = {d.docid: d.text for d in example.iter_documents()}
    queries = {q.qid: q.text for q in example.queries()}
    requests = [{"query": queries[r.qid], "hits": [{"content": texts[c.docid], "qid": r.qid, "docid": c.docid,
                                                     "rank": i, "score": c.score} for i, c in enumerate(r, 1)]}
                for r in example.run("bm25")]  # fmt: skip
    (work / "requests.json").write_text(json.dumps(requests))
    conflict = [
        {"query": "q one", "hits": [{"content": "one text", "qid": "1", "docid": "d", "rank": 1, "score": 1}]},
        {"query": "q two", "hits": [{"content": "another", "qid": "2", "docid": "d", "rank": 1, "score": 1}]},
    ]
    (work / "conflict.json").write_text(json.dumps(conflict))  # fmt: skip
    (work / "candidates.jsonl").write_text("".join(json.dumps({"qid": r.qid, "docid": c.docid}) + "\n"
                                                   for r in example.run("bm25") for c in r))  # fmt: skip
    (work / "good.qrels").write_text(
        "".join(f"{q} 0 {d} {g}\n" for q, docs in example.qrels().judgments.items() for d, g in docs.items())
    )
    (work / "bad.qrels").write_text("q1 0 d1 1\nq1 0 d2 high\n")
    (work / "topics.tsv").write_text("".join(f"{q.qid}\t{q.text}\n" for q in example.queries()))
    (work / "corpus.tsv").write_text("".join(f"{d.docid}\t{d.text}\n" for d in example.iter_documents()))
    (work / "empty.tsv").write_text("")
    (work / "noplace.txt").write_text("Document: the passage\nRelevant Query:")
    assert main(["index", "--retriever", "bm25", "--dataset", "example", "--out", str(work / "index")]) == 0
    return work


@pytest.fixture
def world(files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request) -> dict[str, str]:
    """The shared files, an output path of this test's own, and the model folders a case names."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RERANK_TEST_UNSET_KEY", raising=False)
    case = request.node.callspec.params.get("case") if hasattr(request.node, "callspec") else None
    named = " ".join([*getattr(case, "argv", ()), *(getattr(case, "fix", None) or ())])
    wanted = (("ce", "cross_encoder_dir"), ("t5", "t5_dir"))
    models = {key: request.getfixturevalue(fixture) for key, fixture in wanted if f"{{{key}}}" in named}
    return {"tmp": str(files), "out": str(tmp_path / "out" / "result.trec"), **models}


def _fill(argv: list[str], world: dict[str, str]) -> list[str]:
    return [a.format(**world) for a in argv]


def _leftovers(world: dict[str, str], before: set[Path]) -> list[Path]:
    out = Path(world["out"])
    found = [p for p in Path(world["tmp"]).rglob("*") if p not in before and "index" not in p.parts]
    found += list(out.parent.glob("*")) if out.parent.exists() else []
    folders = ("generated", "trained", "trained.checkpoints")  # what generate-queries and train would start
    return [p for p in found if p.suffix in (".trec", ".checkpoint", ".tmp", ".json") or p == out or p.name in folders]


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.integration
def test_a_wrong_input_gets_one_line_and_leaves_nothing(case: Case, world, capsys) -> None:
    before = set(Path(world["tmp"]).rglob("*"))
    capsys.readouterr()
    code = main(_fill(case.argv, world))
    err = capsys.readouterr().err
    # The stage store's progress lines ("computing …") and deprecation notes are not errors.
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("rerank: note:", "computing "))]
    assert code == case.code, err
    if case.code == USAGE:  # argparse: the usage line, then the one error line
        assert lines[-1].startswith("rerank") and case.says in lines[-1], err
    else:
        assert len(lines) == 1 and lines[0].startswith("rerank: error: "), err
        assert case.says.format(**world) in lines[0], err
    assert "Traceback" not in err
    assert _leftovers(world, before) == []
    if case.fix is not None:
        fixed = main(_fill(case.fix, world))
        assert fixed == OK, capsys.readouterr().err


@pytest.mark.unit
def test_the_table_holds_at_least_eighty_cases() -> None:
    assert len(CASES) + len(PYTHON_CASES) >= 80


# -- outputs that are not regular files -----------------------------------------------------------
@pytest.mark.integration
def test_output_to_a_device_writes_in_place_and_keeps_the_device(world, capsys) -> None:
    code = main(["run", "--dataset", "example", "--run", "bm25", *RANDOM, "--output", "/dev/null"])
    assert code == OK and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not Path("/dev/null.checkpoint").exists() and not Path("/dev/null.manifest.json").exists()


@pytest.mark.integration
def test_output_to_a_full_device_is_one_line_and_the_device_stays(world, capsys) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    code = main(["run", "--dataset", "example", "--run", "bm25", *RANDOM, "--output", "/dev/full"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == INVALID and err[-1] == "rerank: error: cannot write /dev/full: No space left on device"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


# -- an output that is one of the inputs ----------------------------------------------------------------
OUTPUT_IS_INPUT = {  # command: (argv with {input} the input the output aliases, the input's flag)
    "run --run": (["run", "--dataset", "example", "--run", "{input}", *RANDOM, "--output", "{alias}"], "--run"),
    "run --topics": (
        [
            "run",
            "--run",
            "{tmp}/good.trec",
            "--topics",
            "{input}",
            "--corpus",
            "{tmp}/corpus.tsv",
            *RANDOM,
            "--output",
            "{alias}",
        ],
        "--topics",
    ),
    "run --corpus": (
        [
            "run",
            "--run",
            "{tmp}/good.trec",
            "--topics",
            "{tmp}/topics.tsv",
            "--corpus",
            "{input}",
            *RANDOM,
            "--output",
            "{alias}",
        ],
        "--corpus",
    ),
    "run --qrels": (
        [
            "run",
            "--dataset",
            "example",
            "--run",
            "bm25",
            *RANDOM,
            "--eval",
            "--qrels",
            "{input}",
            "--output",
            "{alias}",
        ],
        "--qrels",
    ),
    "fuse": (["fuse", "{input}", "{tmp}/good.trec", "--output", "{alias}"], "RUN"),
    "eval": (["eval", "--qrels", "{tmp}/good.qrels", "{input}", "--output", "{alias}"], "RUN"),
    "retrieve --topics": (
        ["retrieve", "--index", "{tmp}/index", "--topics", "{input}", "--output", "{alias}"],
        "--topics",
    ),
}
SOURCES = {
    "--run": "good.trec",
    "RUN": "good.trec",
    "--topics": "topics.tsv",
    "--corpus": "corpus.tsv",
    "--qrels": "good.qrels",
}


@pytest.mark.integration
@pytest.mark.parametrize("relation", ["the same path", "a symlink", "a hard link"])
@pytest.mark.parametrize("command", list(OUTPUT_IS_INPUT))
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(command, relation, world, tmp_path, capsys):
    """Writing the output would destroy an input: refused before any work, naming both flags; the input's bytes
    stay as they were, whatever the path relation (the same path, a symlink to it, a hard link to it)."""
    argv, flag = OUTPUT_IS_INPUT[command]
    source = tmp_path / SOURCES[flag]
    source.write_bytes(Path(world["tmp"], SOURCES[flag]).read_bytes())
    alias = tmp_path / "alias"
    if relation == "a symlink":
        alias.symlink_to(source)
    elif relation == "a hard link":
        os.link(source, alias)
    else:
        alias = source
    before = source.read_bytes()
    capsys.readouterr()
    code = main([a.format(input=source, alias=alias, **world) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == INVALID and len(err) == 1, err
    assert f"--output {alias} is {flag} {source}" in err[0] and "Traceback" not in err[0]
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({source.name, alias.name})  # nothing left beside


@pytest.mark.integration
def test_output_dash_streams_the_run_to_stdout_and_the_summary_to_stderr(world, capsys) -> None:
    assert main(["run", "--dataset", "example", "--run", "bm25", *RANDOM, "--output", "-"]) == OK
    out, err = capsys.readouterr()
    expected = sum(len(r) for r in data.load("example").run("bm25"))
    assert len(out.splitlines()) == expected and all(len(line.split()) == 6 for line in out.splitlines())
    assert "reranked 8 queries" in err


@pytest.mark.integration
def test_run_reads_standard_input(world, capsys, monkeypatch) -> None:
    text = Path(world["tmp"], "good.trec").read_text()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert main(["run", "--dataset", "example", "--run", "-", *RANDOM, "--output", world["out"]]) == OK
    assert data.read_trec_run(world["out"]).qids == data.load("example").run("bm25").qids


@pytest.mark.integration
def test_new_outputs_follow_the_umask(world, capsys) -> None:
    old = os.umask(0o027)
    try:
        assert main(["run", "--dataset", "example", "--run", "bm25", *RANDOM, "--output", world["out"]]) == OK
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(world["out"]).st_mode) == 0o640


@pytest.mark.integration
def test_keep_rest_appends_the_other_candidates_in_first_stage_order(world, capsys) -> None:
    out = world["out"]
    assert main(["run", "--dataset", "example", "--run", "bm25", *RANDOM, "--top-k", "3", "--keep-rest",
                 "--output", out]) == OK  # fmt: skip
    first, written = data.load("example").run("bm25"), data.read_trec_run(out)
    for ranking in first:
        got = written[ranking.qid].docids
        assert sorted(got) == sorted(ranking.docids)  # the full depth
        assert sorted(got[:3]) == sorted(ranking.docids[:3])  # the reranked top 3 first
        assert got[3:] == ranking.docids[3:]  # then the rest, in BM25's order


@pytest.mark.integration
def test_a_failure_before_the_first_batch_leaves_no_checkpoint(world, capsys) -> None:
    out = world["out"]
    spec = "cross-encoder(model=minilm)"  # refused when the model loads: the job had begun
    assert main(["run", "--dataset", "example", "--run", "bm25", "--reranker", spec, "--output", out]) == INVALID
    assert not Path(out + ".checkpoint").exists()
    assert main(["run", "--dataset", "example", "--run", "bm25", *RANDOM, "--output", out]) == OK


# -- the CLI's vocabulary ---------------------------------------------------------------------------
@pytest.mark.integration
def test_rerank_alone_prints_the_help(capsys) -> None:
    assert main([]) == OK
    out = capsys.readouterr().out
    assert "usage: rerank" in out and "run" in out and "list" in out


@pytest.mark.integration
def test_list_shows_each_method_with_its_parameters_and_defaults(capsys) -> None:
    assert main(["list", "methods"]) == OK
    out = capsys.readouterr().out
    assert "bi-encoder(model=minilm, batch_size=32," in out
    assert "cross-encoder(model, max_length=512," in out
    import json

    assert main(["list", "models", "--format", "json"]) == OK
    packs = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert packs["minilm"]["installed"] and "pip install" in packs["minilm"]["install"]


@pytest.mark.integration
def test_old_spellings_still_work_with_a_note(world, capsys) -> None:
    assert main(["doctor", "--output", "json"]) == OK
    captured = capsys.readouterr()
    assert captured.out.lstrip().startswith("[") and "--format json" in captured.err


@pytest.mark.integration
def test_warnings_say_when_a_result_may_mislead(world, capsys, tmp_path) -> None:
    partial = tmp_path / "partial.qrels"
    partial.write_text("q1 0 vac1 1\n")
    assert main(["eval", "--qrels", str(partial), world["tmp"] + "/good.trec"]) == OK
    assert "rerank: warning: 7 of the 8 queries" in capsys.readouterr().err
    empty = tmp_path / "empty.trec"
    empty.write_text("")
    assert main(["eval", "--dataset", "example", str(empty)]) == OK
    assert "holds no rankings" in capsys.readouterr().err
    pipeline = "run(name=bm25) % 5 >> random % 10"
    assert main(["run", "--dataset", "example", "--pipeline", pipeline, "--output", world["out"]]) == OK
    assert "keeps 10 but gets only 5 candidates" in capsys.readouterr().err
    # dynamic int8, the one path whose scores depend on the batch, says so when the spec is checked
    from data.errors import RerankWarning
    from rerank.registry import check_reranker
    from rerank.spec import parse_spec

    with pytest.warns(RerankWarning, match="calibration=N \\(static int8\\) scores it the same in any batch"):
        check_reranker(parse_spec("bi-encoder(model=minilm, backend=onnx, precision=int8)"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RerankWarning)
        check_reranker(parse_spec("bi-encoder(model=minilm, backend=onnx, precision=int8, calibration=8)"))


# -- the Python API ---------------------------------------------------------------------------------
def _reranker():
    from rerank.registry import load_reranker

    return load_reranker("random")


def _request(**changes):
    query = changes.pop("query", data.Query("q", "why is the sky blue"))
    candidates = changes.pop("candidates", (data.Candidate("a", 1.0, "x"), data.Candidate("b", 0.5, "y")))
    return data.RerankRequest(query, candidates)


PYTHON_CASES = [
    ("rank a string as documents", lambda: _reranker().rank("sky", "Rayleigh scattering"), TypeError, "not a str"),
    ("rank a dict", lambda: _reranker().rank("sky", {"a": "b"}), TypeError, "not a dict"),
    ("rank numbers", lambda: _reranker().rank("sky", [1, 2]), TypeError, "document 0 is a int"),
    ("rank a number as query", lambda: _reranker().rank(3, ["x"]), TypeError, "query as a string or Query"),
    ("rerank strings", lambda: _reranker().rerank(["text"]), TypeError, "list of RerankRequest, not of str"),
    ("rerank one request", lambda: _reranker().rerank(_request()), TypeError, "not a RerankRequest"),
    (
        "duplicate docids",
        lambda: _request(candidates=(data.Candidate("a", 1.0), data.Candidate("a", 0.5))),
        ValueError,
        "'a' is a candidate twice",
    ),
    ("NaN score", lambda: data.Candidate("a", float("nan")), ValueError, "score is NaN"),
    ("string score", lambda: data.Candidate("a", "1.0"), TypeError, "score must be a number"),
    ("bool score", lambda: data.Candidate("a", True), TypeError, "score must be a number"),
    ("empty docid", lambda: data.Candidate("", 1.0), TypeError, "non-empty string"),
    ("empty query", lambda: _request(query=data.Query("q", "  ")), ValueError, "has no text"),
    ("query not a Query", lambda: data.RerankRequest("why", ()), TypeError, "takes a Query"),
    ("candidates a string", lambda: _request(candidates="abc"), TypeError, "not str"),
    (
        "evaluate a number",
        lambda: __import__("eval").evaluate(3, data.Qrels({}), "nDCG@10"),
        TypeError,
        "a Run or a run file",
    ),
    (
        "spec type",
        lambda: __import__("rerank").load_reranker("bi-encoder(batch_size=abc)"),
        TypeError,
        "batch_size must be an integer",
    ),
    ("evaluate no measures", lambda: _evaluate([]), ValueError, "at least one measure, such as 'nDCG@10'"),
    ("evaluate measures None", lambda: _evaluate(None), TypeError, "a name or a list of names (such as 'nDCG@10')"),
    ("evaluate measures a number", lambda: _evaluate(10), TypeError, "not int"),
    ("evaluate measures of numbers", lambda: _evaluate([10]), TypeError, "a list holding a non-string"),
    (
        "compare an evaluation with itself, not a list",
        lambda: __import__("eval").compare(_evaluate("nDCG@10"), _evaluate("nDCG@10")),
        TypeError,
        "as a list: compare(baseline, [other])",
    ),
    (
        "compare on a measure the other lacks",
        lambda: __import__("eval").compare(_evaluate("nDCG@10"), [_evaluate("RR@10")]),
        ValueError,
        "was not evaluated on nDCG@10",
    ),
    (
        "a ranking with a docid twice",
        lambda: data.Ranking("q1", (data.Candidate("a", 1.0), data.Candidate("a", 0.5))),
        ValueError,
        "docid 'a' appears twice",
    ),
]


def _evaluate(measures):  # type: ignore[no-untyped-def]
    from eval import evaluate

    example = data.load("example")
    return evaluate(example.run("bm25"), example.qrels(), measures)


@pytest.mark.parametrize(("call", "error", "says"), [c[1:] for c in PYTHON_CASES], ids=[c[0] for c in PYTHON_CASES])
@pytest.mark.integration
def test_the_python_api_checks_its_arguments(call, error, says) -> None:
    with pytest.raises(error, match=None) as raised:
        call()
    assert says in str(raised.value)


@pytest.mark.integration
def test_evaluate_takes_paths_and_one_measure_name(world) -> None:
    from eval import evaluate

    by_path = evaluate(world["tmp"] + "/good.trec", world["tmp"] + "/good.qrels", "nDCG@10")
    example = data.load("example")
    assert by_path.aggregate == evaluate(example.run("bm25"), example.qrels(), ["nDCG@10"]).aggregate


@pytest.mark.slow
@pytest.mark.integration
def test_quiet_silences_progress_bars_and_library_chatter(world, tmp_path) -> None:
    import subprocess

    command = [sys.executable, "-m", "rerank.cli", "run", "--dataset", "example", "--run", "bm25",
               "--reranker", "bi-encoder(model=minilm)", "--output"]  # fmt: skip
    # Both at once: each spends most of its time importing, on one core.
    jobs = [subprocess.Popen([*command, str(tmp_path / "a.trec")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True),
            subprocess.Popen([*command, str(tmp_path / "b.trec"), "--quiet"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)]  # fmt: skip
    (_, loud), (quiet_out, quiet) = (job.communicate() for job in jobs)
    assert [job.returncode for job in jobs] == [0, 0], loud
    assert "query/s" in loud or "it/s" in loud  # the progress bar, without --quiet
    assert quiet == "" and "reranked 8 queries" in quiet_out
    assert Path(tmp_path / "a.trec").read_bytes() == Path(tmp_path / "b.trec").read_bytes()


@pytest.mark.integration
def test_eval_labels_the_input_by_its_real_depth(world, capsys) -> None:
    """--eval's "input (top K)" says how deep the reranked input is: the example's runs hold fewer than the
    default cutoff of 100 candidates a query."""
    depth = max(len(r) for r in data.load("example").run("bm25"))
    assert depth < 100
    assert main([*_fill(RUN, world), *RANDOM, "--eval"]) == OK
    out = capsys.readouterr().out
    assert f"input (top {depth})" in out and "input (top 100)" not in out


@pytest.mark.unit
@pytest.mark.parametrize(
    "argv", [["run", "--nosuch"], ["nosuch"], ["fuse"], ["eval", "--test", "x", "a.trec"], ["eval"]]
)
def test_a_usage_error_is_one_line_that_points_at_help(argv, capsys) -> None:
    assert main(argv) == USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rerank") and ": error: " in err[0] and "--help" in err[0], err


def _fifo(tmp_path: Path, source: Path, name: str) -> Path:
    """A FIFO that a thread fills with ``source``'s bytes once, as ``<(cat source)`` would."""
    import threading

    fifo = tmp_path / name
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as out:  # blocks until the command opens it for reading
            out.write(source.read_bytes())

    threading.Thread(target=feed, daemon=True).start()
    return fifo


@pytest.mark.integration
def test_streamed_inputs_give_the_numbers_their_files_give(world, tmp_path, capsys) -> None:
    """Topics, qrels and runs through a FIFO (``--qrels <(…)``) are read once, so the numbers are the file's: they
    were read twice, and the second read found the stream empty (0.0000 everywhere, exit 0)."""
    tmp = Path(world["tmp"])
    argv = ["eval", "--qrels", str(tmp / "good.qrels"), str(tmp / "good.trec"), "--format", "json"]
    assert main(argv) == OK
    from_files = json.loads(capsys.readouterr().out)
    fifos = ["eval", "--qrels", str(_fifo(tmp_path, tmp / "good.qrels", "qrels")),
             str(_fifo(tmp_path, tmp / "good.trec", "run")), "--format", "json"]  # fmt: skip
    assert main(fifos) == OK
    from_streams = json.loads(capsys.readouterr().out)
    assert from_streams["runs"][0]["aggregate"] == from_files["runs"][0]["aggregate"]
    assert any(value > 0 for value in from_files["runs"][0]["aggregate"].values())
    # rerank run: topics and qrels streamed, --eval measured on them; the output is the file run's
    outputs = []
    for streamed in (False, True):
        topics = _fifo(tmp_path, tmp / "topics.tsv", f"topics{streamed}") if streamed else tmp / "topics.tsv"
        qrels = _fifo(tmp_path, tmp / "good.qrels", f"qrels{streamed}") if streamed else tmp / "good.qrels"
        out = tmp_path / f"out{streamed}.trec"
        code = main(["run", "--run", str(tmp / "good.trec"), "--topics", str(topics), "--corpus",
                     str(tmp / "corpus.tsv"), *RANDOM, "--eval", "--qrels", str(qrels), "--output", str(out)])  # fmt: skip
        assert code == OK, capsys.readouterr().err
        table = [
            line for line in capsys.readouterr().out.splitlines() if re.match(r"(input|reranked) .*\d\.\d{4}", line)
        ]
        outputs.append((out.read_bytes(), table))
    assert outputs[0] == outputs[1] and outputs[0][1]


@pytest.mark.integration
def test_a_rerun_after_a_late_failure_says_what_was_kept_and_a_changed_job_starts_afresh(world, tmp_path, capsys):
    """A corpus that lacks a late query's passage: the run fails after finishing earlier queries, says where they
    are kept and how to go on; once the corpus is fixed the plain rerun (its job changed: nothing in the old
    checkpoint can be resumed) starts afresh on its own and writes what a clean run writes."""
    tmp = Path(world["tmp"])
    run = data.read_trec_run(tmp / "good.trec")
    # the latest query with a passage no earlier query has: it fails in that query's batch (of 2)
    position, late = next(
        (i, c.docid) for i in reversed(range(len(run.qids))) for c in run[run.qids[i]]
        if all(c.docid not in {d.docid for d in run[q]} for q in run.qids[:i])
    )  # fmt: skip
    kept = 2 * (position // 2)
    assert kept > 0
    corpus = tmp_path / "corpus.tsv"
    lines = (tmp / "corpus.tsv").read_text().splitlines(keepends=True)
    corpus.write_text("".join(line for line in lines if not line.startswith(f"{late}\t")))
    out = tmp_path / "out.trec"
    argv = ["run", "--run", str(tmp / "good.trec"), "--topics", str(tmp / "topics.tsv"), "--corpus", str(corpus),
            *RANDOM, "--batch-queries", "2", "--output", str(out)]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == NOT_FOUND
    err = capsys.readouterr().err
    assert late in err and "--resume goes on from them" in err and f"kept {kept} finished queries" in err, err
    assert not out.exists()
    corpus.write_text("".join(lines))  # the fix
    assert main(argv) == OK, capsys.readouterr().err
    assert "starting afresh" in capsys.readouterr().err
    clean = tmp_path / "clean.trec"
    assert main([*argv[:-1], str(clean)]) == OK
    assert out.read_bytes() == clean.read_bytes()


# -- a property: whatever the paths' relations, no input file's bytes change --------------------------------------
OUTPUT_KINDS = ("the input", "a symlink to it", "a hard link to it", "a new file", "a folder", "a trailing slash",
                "a symlink to a folder", "a dangling symlink", "a file in a missing folder")  # fmt: skip
INPUT_KINDS = ("a file", "a symlink to the file", "a FIFO")


def _released_fifo(folder: Path, source: Path) -> tuple[Path, Callable[[], None]]:
    """A FIFO fed ``source``'s bytes once, and a release for its feeder when the command never reads it."""
    import threading

    fifo = folder / "stream"
    os.mkfifo(fifo)

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as out:  # waits for a reader
            out.write(source.read_bytes())

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()

    def release() -> None:
        if feeder.is_alive():  # nobody opened it: open the read end, so the feeder's open returns, and drain it
            with open(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK), "rb") as drain:
                feeder.join(timeout=60)
                drain.read()

    return fifo, release


def _output_path(kind: str, folder: Path, given_input: Path, source: Path) -> str:
    target = {"the input": given_input, "a new file": folder / "new.trec"}
    if kind in target:
        return str(target[kind])
    alias = folder / "alias"
    if kind == "a symlink to it":
        alias.symlink_to(source)
    elif kind == "a hard link to it":
        os.link(source, alias)
    elif kind == "a folder":
        alias.mkdir()
    elif kind == "a trailing slash":
        return str(folder / "new.trec") + "/"
    elif kind == "a symlink to a folder":
        (folder / "sub").mkdir()
        alias.symlink_to(folder / "sub")
    elif kind == "a dangling symlink":
        alias.symlink_to(folder / "nowhere" / "x.trec")
    else:
        return str(folder / "missing" / "x.trec")
    return str(alias)


@pytest.mark.integration
def test_no_path_relation_ever_changes_an_input(world, tmp_path, capsys) -> None:
    """Hypothesis pairs every command that reads a file and writes one with random relations between the two paths
    (the same file, a symlink or hard link to it, a FIFO, a folder, a trailing slash, ...). Whatever it picks, the
    input's bytes stay, the answer is an exit code of the table with one line and no traceback, and a success
    writes a whole run."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    examples = iter(range(10**6))

    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(sorted(OUTPUT_IS_INPUT)), st.sampled_from(INPUT_KINDS), st.sampled_from(OUTPUT_KINDS))
    def check(command: str, input_kind: str, output_kind: str) -> None:
        argv, flag = OUTPUT_IS_INPUT[command]
        folder = tmp_path / str(next(examples))
        folder.mkdir()
        source = folder / SOURCES[flag]
        source.write_bytes(Path(world["tmp"], SOURCES[flag]).read_bytes())
        before = source.read_bytes()
        release: Callable[[], None] = lambda: None  # noqa: E731
        given_input = source
        if input_kind == "a symlink to the file":
            given_input = folder / "link"
            given_input.symlink_to(source)
        elif input_kind == "a FIFO":
            given_input, release = _released_fifo(folder, source)
        output = _output_path(output_kind, folder, given_input, source)
        made = set(folder.rglob("*"))
        capsys.readouterr()
        try:
            code = main([a.format(input=given_input, alias=output, **world) for a in argv])
        finally:
            release()
        err = capsys.readouterr().err
        assert source.read_bytes() == before, (command, input_kind, output_kind)
        assert "Traceback" not in err
        assert code in (OK, INVALID, NOT_FOUND), (code, err)
        if code != OK:
            lines = [line for line in err.splitlines() if line.startswith("rerank: error: ")]
            assert len(lines) == 1, err
            assert set(folder.rglob("*")) == made, (command, input_kind, output_kind, err)  # nothing left behind
        else:
            written = Path(output.rstrip("/")).resolve()
            assert written.is_file() and written != source.resolve(), (command, input_kind, output_kind)
            if not command.startswith("eval"):
                assert data.read_trec_run(written).qids, err  # a whole run, readable

    check()
