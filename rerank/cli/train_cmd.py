"""Train a cross-encoder (sentence-transformers' CrossEncoderTrainer), from labels or by distilling a teacher.

  rerank train --topics FILE --corpus FILE --output DIR|NAME --teacher SPEC [--loss listnet|lambda|margin-mse]
  rerank train --topics FILE --corpus FILE --output DIR|NAME --qrels FILE [--candidates SPEC] --loss bce

The teacher is any pipeline spec (bm25 % 30 >> bi-encoder(model=nomic-embed-text-v1.5, ...)): its stages
run through the executor, stored and reused. --dev DATASET measures nDCG@10 before and after training (and
every --eval-steps). With a teacher, --loss lambda takes --targets ranks. A bare NAME
puts the model under the models directory (rerank models list; cross-encoder(model=NAME)). The folder holds
rerank-train.json: teacher, data digests, hyperparameters, dev metrics and times.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topics", required=True, metavar="FILE", help="training queries (qid<TAB>text)")
    parser.add_argument("--corpus", required=True, metavar="FILE", help="the passages' texts")
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="the model folder, or a name under the models folder"
    )
    parser.add_argument("--student", default="minilm", help="the encoder to start from (default minilm)")
    parser.add_argument("--teacher", metavar="SPEC", help="a pipeline whose ranking of the topics is the target")
    parser.add_argument("--qrels", metavar="FILE", help="relevance labels (with --loss bce)")
    parser.add_argument(
        "--candidates",
        metavar="SPEC",
        help="with --qrels: the first stage that mines negatives (default bm25 %% 30)",
    )
    parser.add_argument("--loss", default="listnet", help="bce, margin-mse, listnet or lambda (default listnet)")
    parser.add_argument("--targets", default="scores", help="the teacher's scores (/ --temperature) or ranks (1/rank)")
    parser.add_argument("--temperature", type=float, default=1.0, help="teacher scores are divided by it (1.0)")
    parser.add_argument("--group-size", type=int, default=8, help="passages per query (8)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8, help="queries (lists) or pairs per step (8)")
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=256, help="tokens of query and passage together (256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dev", metavar="DATASET", help="a dataset with qrels to measure nDCG@10 on while training")
    parser.add_argument("--dev-pipeline", metavar="SPEC", help="with --dev: its candidates (default bm25 %% 30)")
    parser.add_argument("--dev-queries", type=int, metavar="N", help="with --dev: only its first N judged queries")
    parser.add_argument(
        "--eval-steps",
        type=int,
        metavar="N",
        help="with --dev: also every N steps (default: before and after training only)",
    )
    parser.add_argument("--save-steps", type=int, default=200, help="checkpoint every N steps (200)")
    parser.add_argument("--resume", action="store_true", help="go on from the last checkpoint")
    parser.add_argument("--fresh", action="store_true", help="start over, discarding checkpoints and an earlier model")


def run(args: argparse.Namespace) -> int:
    from rerank.training.trainer import TrainSettings, train

    settings = TrainSettings(
        loss=args.loss, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        warmup_ratio=args.warmup_ratio, max_length=args.max_length, group_size=args.group_size,
        targets=args.targets, temperature=args.temperature, seed=args.seed,
    )  # fmt: skip
    result = train(
        args.output, topics=args.topics, corpus=args.corpus, student=args.student, teacher=args.teacher,
        qrels=args.qrels, candidates=args.candidates, settings=settings, dev=args.dev,
        dev_pipeline=args.dev_pipeline, dev_queries=args.dev_queries, eval_steps=args.eval_steps,
        save_steps=args.save_steps, resume=args.resume, fresh=args.fresh, progress=not args.quiet,
    )  # fmt: skip
    card = result.card
    print(json.dumps({"folder": str(result.folder), "up_to_date": result.up_to_date, "examples": card["examples"],
                      "dev": (card.get("dev") or {}).get("final"), "seconds": card["seconds"],
                      "weights_sha256": card["weights_sha256"]}), file=sys.stderr)  # fmt: skip
    return 0
