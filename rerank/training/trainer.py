"""``rerank train``: fine-tune a cross-encoder with sentence-transformers' ``CrossEncoderTrainer``.

Data. Topics and a corpus (files), and either relevance labels (``qrels``, trained with ``bce`` over hard
negatives that the ``candidates`` first stage mines), or a **teacher pipeline**: any spec whose ranking of
the topics gives the targets (``margin-mse``, ``listnet``, ``lambda``). The teacher runs through the
executor (``rerank.run``), so its stages are keyed, stored, resumable and shared by every training run
that names them; its first stage gives the candidates.

The student starts from any encoder folder, pack or hub id (``minilm``): a new one-logit head is put on
its encoder. Training is seeded (the same seed gives the same weights' sha256 on a CPU), checkpointed every
``save_steps`` into ``OUTPUT.checkpoints/`` (``resume`` goes on from the last one, to the same final
weights), evaluated every ``eval_steps`` on a dev dataset through rerank's own metrics, and written to
``output`` only when finished: a sentence-transformers folder that loads as ``cross-encoder(model=DIR)``,
with ``rerank-train.json`` (the card: teacher spec, data digests, hyperparameters, dev metrics, time).
A bare name (no path separator) puts the folder under the models directory, where ``rerank models
list`` shows it and ``cross-encoder(model=NAME)`` finds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.errors import DatasetNotFoundError, InvalidSpecError, PathNotFoundError, RerankError
from data.models import TRAINED_CARD
from data.records import Qrels
from rerank.training.examples import LOSSES, TARGETS, build_examples

CARD = TRAINED_CARD
VERSION = 2  # 2: a ranking loss's folder scores raw logits (activation_fn Identity), not their sigmoid


@dataclass(frozen=True)
class TrainSettings:
    """The hyperparameters: every one enters the card and the job's key."""

    loss: str = "listnet"
    epochs: float = 1.0
    batch_size: int = 8
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    max_length: int = 256
    group_size: int = 8
    targets: str = "scores"
    temperature: float = 1.0
    seed: int = 0

    def check(self) -> None:
        if self.loss not in LOSSES:
            raise InvalidSpecError(f"--loss {self.loss!r}: choose {', '.join(LOSSES)}")
        if self.targets not in TARGETS:
            raise InvalidSpecError(f"--targets {self.targets!r}: choose {', '.join(TARGETS)}")
        for name, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size),
                            ("--learning-rate", self.learning_rate), ("--max-length", self.max_length),
                            ("--temperature", self.temperature)):  # fmt: skip
            if not value > 0:
                raise ValueError(f"{name} must be above 0, not {value}")
        if self.group_size < 2:
            raise ValueError(f"--group-size must be at least 2, not {self.group_size}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"--warmup-ratio must be in [0, 1), not {self.warmup_ratio}")


@dataclass(frozen=True)
class TrainResult:
    folder: Path
    card: dict[str, Any]
    up_to_date: bool = False
    history: tuple[dict[str, float], ...] = field(default=(), repr=False)


def output_folder(output: str | Path) -> Path:
    """A path as given; a bare name under the models directory's ``trained/``."""
    text = str(output)
    if os.sep in text or "/" in text or text.startswith((".", "~")):
        return Path(text).expanduser()
    from data.models import find_pack, trained_dir

    if find_pack(text) is not None:  # the pack would win every lookup of the name: the model could not be found
        raise InvalidSpecError(f"--output {text}: that is a model pack's name; name the trained model otherwise")
    return trained_dir() / text


def check_student(student: str) -> str:
    """The student's local folder or hub id: an encoder that a classification head can go on, else one line."""
    from data.models import check_model, resolve_model

    check_model(student, what="--student")
    path = Path(resolve_model(student))
    if path.is_file():
        raise InvalidSpecError(f"--student {student!r} is a single weights file ({path.suffix or 'no suffix'}), not "
                               "an encoder folder: give a transformers encoder (such as minilm)")  # fmt: skip
    config_file = path / "config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        kinds = " ".join(config.get("architectures") or [])
        if config.get("is_decoder") or config.get("is_encoder_decoder") or "CausalLM" in kinds:
            raise InvalidSpecError(f"--student {student!r} is not an encoder ({kinds or config.get('model_type')}): "
                                   "a cross-encoder is trained from an encoder such as minilm or a BERT")  # fmt: skip
    return str(path) if path.exists() else student


def check_teacher(teacher: str, settings: TrainSettings) -> None:
    """A teacher whose last stage only orders (listwise, setwise, …) has no scores to distil: one line."""
    from rerank.base import PointwiseReranker
    from rerank.registry import METHODS, method_class
    from rerank.spec import parse_pipeline

    try:
        spec = parse_pipeline(teacher)
    except InvalidSpecError as err:
        raise InvalidSpecError(f"--teacher {teacher!r}: {err}") from None
    last = spec.last.spec
    if len(spec.stages) == 1 or last.name not in METHODS:
        return  # a first stage (a retriever's scores) or a fusion
    scores = issubclass(method_class(last.name), PointwiseReranker) or last.name in ("fuse", "split")
    if not scores and (settings.targets == "scores" or settings.loss == "margin-mse"):
        raise InvalidSpecError(f"--teacher {teacher!r}: {last.name} orders candidates without scores to distil: "
                               "use --targets ranks with --loss listnet or lambda")  # fmt: skip


def train(
    output: str | Path,
    *,
    topics: str | Path,
    corpus: str | Path,
    student: str = "minilm",
    teacher: str | None = None,
    qrels: str | Path | None = None,
    candidates: str | None = None,
    settings: TrainSettings | None = None,
    dev: str | None = None,
    dev_pipeline: str | None = None,
    dev_queries: int | None = None,
    eval_steps: int | None = None,
    save_steps: int = 200,
    resume: bool = False,
    fresh: bool = False,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train a cross-encoder into ``output`` (see the module); ``callbacks`` are transformers TrainerCallbacks."""
    from data.optional import optional_import

    settings = settings or TrainSettings()
    check_arguments(settings, teacher, qrels, candidates, dev, dev_pipeline, dev_queries, eval_steps, save_steps,
                    resume, fresh)  # fmt: skip
    candidates = candidates or (DEFAULT_CANDIDATES if qrels else None)
    dev_pipeline = dev_pipeline or (DEFAULT_CANDIDATES if dev else None)
    for flag, path in (("--topics", topics), ("--corpus", corpus), ("--qrels", qrels)):
        if path is not None and not Path(path).expanduser().is_file():
            raise PathNotFoundError(f"{flag} {path}: no such file")
    folder = output_folder(output)
    if folder.exists() and not folder.is_dir():
        raise InvalidSpecError(f"--output {output}: {folder} exists and is not a folder")
    student_path = check_student(student)
    for flag, spec in (("--teacher", teacher), ("--candidates", candidates), ("--dev-pipeline", dev_pipeline)):
        if spec is not None:
            check_spec(flag, spec)  # every stage's model is here, before any work
    if teacher is not None:
        check_teacher(teacher, settings)
    optional_import("datasets")
    optional_import("sentence_transformers")
    key = train_key(student, teacher, qrels, candidates, topics, corpus, settings,
                    [dev, dev_pipeline, dev_queries, eval_steps] if dev else None)  # fmt: skip
    card_file = folder / CARD
    if card_file.is_file() and not fresh:
        card = json.loads(card_file.read_text(encoding="utf-8"))
        if card.get("key") == key:
            return TrainResult(folder, card, up_to_date=True)
        raise RerankError(f"{folder} holds a model trained otherwise (its {CARD} has another key): choose "
                          "another output, or --fresh to replace it")  # fmt: skip
    if folder.exists() and not card_file.is_file() and any(folder.iterdir()):
        raise RerankError(f"{folder} exists and is not a trained model: choose another output")
    from rerank.training.fit import fit, mark_checkpoints, open_checkpoints

    found = open_checkpoints(folder, key, resume=resume, fresh=fresh)  # refused now, not after an hour of labels
    dev_set = dev_data(dev, dev_pipeline, dev_queries) if dev and dev_pipeline else None
    rankings, query_text, passage_text, labels, labelled = training_data(topics, corpus, teacher, qrels, candidates)
    examples = build_examples(settings.loss, rankings, query_text, passage_text, group_size=settings.group_size,
                              qrels=labels, target=settings.targets, temperature=settings.temperature)  # fmt: skip
    if not len(examples):
        raise InvalidSpecError(
            f"--topics {topics}: no training example: "
            + ("no query has a judged relevant passage and a ranking" if qrels else "the teacher ranked nothing")
        )
    mark_checkpoints(folder, key)
    history, saved, trained = fit(student_path, examples, settings, folder, dev_set, eval_steps, save_steps, found,
                         progress=progress, callbacks=callbacks)  # fmt: skip
    card = {
        "key": key, "version": VERSION, "student": student, "teacher": teacher, "qrels": str(qrels) if qrels else None,
        "candidates": candidates, "examples": len(examples),
        "data": {name: {"path": str(path), "sha256": key["data"][name]}
                 for name, path in (("topics", topics), ("corpus", corpus), ("qrels", qrels)) if path},
        "queries": examples.queries, "hyperparameters": key["settings"], "dev": dev_report(dev, history),
        "seconds": {"labels": round(labelled, 1), "training": round(trained, 1)},  # over every sitting
        "weights_sha256": weights_digest(saved),
    }  # fmt: skip
    finish(saved, folder, card)
    return TrainResult(folder, card, history=tuple(history))


DEFAULT_CANDIDATES = "bm25 % 30"


def check_arguments(settings: TrainSettings, teacher: str | None, qrels: Any, candidates: str | None,
                    dev: str | None, dev_pipeline: str | None, dev_queries: int | None, eval_steps: int | None,
                    save_steps: int, resume: bool, fresh: bool) -> None:  # fmt: skip
    """Every argument alone and with the others: a setting that would change nothing is refused, not ignored."""
    settings.check()
    if resume and fresh:
        raise ValueError("--resume and --fresh contradict each other")
    if (teacher is None) == (qrels is None):
        raise ValueError("give --teacher (a pipeline whose ranking is the target) or --qrels (labels), one of them")
    if qrels is not None and settings.loss != "bce":
        raise InvalidSpecError(f"--loss {settings.loss} learns from a teacher's scores or ranks: with --qrels use "
                               "--loss bce")  # fmt: skip
    if teacher is not None and settings.loss == "bce":
        raise InvalidSpecError("--loss bce learns from labels: give --qrels, or a teacher loss (margin-mse, listnet, "
                               "lambda)")  # fmt: skip
    if teacher is not None and candidates is not None:
        raise ValueError("--candidates mines negatives for --qrels; a teacher's candidates are its first stage")
    if settings.loss == "bce" and (settings.targets != "scores" or settings.temperature != 1.0):
        raise ValueError("--targets and --temperature shape a teacher's targets; --loss bce reads labels")
    if settings.targets == "ranks" and settings.temperature != 1.0:
        raise ValueError("--temperature divides a teacher's scores; --targets ranks gives 1/rank")
    if settings.loss == "lambda" and settings.targets == "scores":
        raise ValueError("--loss lambda reads targets as graded relevance (gain 2^target - 1, negatives as 0): a "
                         "teacher's scores would overflow or vanish, use --targets ranks")  # fmt: skip
    if dev is None and (dev_pipeline is not None or dev_queries is not None or eval_steps is not None):
        raise ValueError("--dev-pipeline, --dev-queries and --eval-steps measure on a --dev dataset: give --dev")
    for name, value in (("--save-steps", save_steps), ("--eval-steps", eval_steps), ("--dev-queries", dev_queries)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, not {value}")


def check_spec(flag: str, spec: str) -> None:
    """A pipeline spec that parses and whose models are all here: one line naming the flag otherwise."""
    from data.errors import ModelNotFoundError
    from rerank.core.plan import check_pipeline
    from rerank.spec import as_pipeline

    try:
        check_pipeline(as_pipeline(spec), environment=True)
    except (InvalidSpecError, ModelNotFoundError) as err:
        raise type(err)(f"{flag} {spec!r}: {err}") from None


def train_key(student: str, teacher: str | None, qrels: Any, candidates: str | None, topics: Any, corpus: Any,
              settings: TrainSettings, dev: list[Any] | None) -> dict[str, Any]:  # fmt: skip
    """What decides the trained weights and the card: pipelines by their stages' identities (weights, libraries),
    data by content, and only the settings that act (a bce run has no targets)."""
    from dataclasses import asdict

    from rerank.core.keys import pipeline_identity
    from rerank.identity import digest_path, model_identity, package_versions

    acting = asdict(settings)
    if settings.loss == "bce":
        del acting["targets"], acting["temperature"]
    elif settings.targets == "ranks":
        del acting["temperature"]
    return {
        "task": "train", "version": VERSION, "student": model_identity(student),
        "teacher": pipeline_identity(teacher) if teacher else None,
        "candidates": pipeline_identity(candidates) if candidates else None,
        "data": {name: digest_path(Path(path).expanduser())  # contents, not places: a moved file is the same data
                 for name, path in (("topics", topics), ("corpus", corpus), ("qrels", qrels)) if path},
        "settings": acting, "dev": [*dev[:1], pipeline_identity(dev[1]), *dev[2:]] if dev else None,
        "libraries": package_versions(("torch", "transformers", "sentence-transformers")),
    }  # fmt: skip


def training_data(topics: Any, corpus: Any, teacher: str | None, qrels: Any,
                  candidates: str | None) -> tuple[list[Any], dict[str, str], Any, Qrels | None, float]:  # fmt: skip
    """The rankings to learn from (the teacher's, or the first stage's with labels), the texts, and what computing
    the rankings cost (stored with their stages: a labelling finished in an earlier sitting keeps its seconds)."""
    from data.beir import read_qrels
    from data.corpus import corpus_store
    from data.docstore import get_document
    from data.tsv import read_topics
    from rerank.core.api import compute

    queries = read_topics(str(topics))
    if not queries:
        raise InvalidSpecError(f"--topics {topics}: no query in it (an empty training set)")
    labels = read_qrels(str(qrels)) if qrels else None
    if labels is not None and not any(q.qid in labels for q in queries):
        raise InvalidSpecError(f"--qrels {qrels}: judges none of the queries of --topics {topics}")
    pipeline = teacher or candidates
    assert pipeline is not None  # check_arguments: one of them
    ranked = compute(pipeline, topics=topics, corpus=corpus)  # every stage kept in the store
    store = corpus_store(str(corpus))
    return (list(ranked.output.run()), {q.qid: q.text for q in queries}, lambda d: get_document(store, d).full_text,
            labels, ranked.seconds)  # fmt: skip


def dev_data(dev: str, pipeline: str, limit: int | None) -> Any:
    """The dev dataset's candidates, texts and qrels, read once (and refused before training without qrels)."""
    from data.datasets import load

    dataset = load(dev)
    try:
        qrels = dataset.qrels()
    except (DatasetNotFoundError, PathNotFoundError) as err:  # a dataset without judgments cannot score a model
        raise InvalidSpecError(f"--dev {dev}: no qrels to evaluate with ({err})") from None
    if not len(qrels):
        raise InvalidSpecError(f"--dev {dev}: no qrels to evaluate with")
    from rerank.training.fit import DevSet

    return DevSet.build(dataset, qrels, pipeline, limit)


def dev_report(dev: str | None, history: Sequence[dict[str, float]]) -> dict[str, Any] | None:
    if not dev:
        return None
    evaluated = [h for h in history if any(k.startswith("eval_dev") for k in h)]
    return {"dataset": dev, "history": evaluated, "final": evaluated[-1] if evaluated else None}


def finish(saved: Path, folder: Path, card: dict[str, Any]) -> None:
    """The saved model, its card written in, takes the output's place whole: a folder is finished or absent."""
    from data.textio import atomic_writer

    with atomic_writer(saved / CARD) as out:
        json.dump(card, out, indent=2)
    readme = saved / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    card_text = json.dumps({k: v for k, v in card.items() if k != "key"}, indent=2)
    with atomic_writer(readme) as out:
        out.write(f"# rerank train\n\nTrained by `rerank train`; the whole card is in `{CARD}`.\n\n"
                  f"```json\n{card_text}\n```\n\n{text}")  # fmt: skip
    if folder.exists():  # --fresh over an earlier model
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.replace(saved, folder)
    shutil.rmtree(folder.with_name(folder.name + ".checkpoints"), ignore_errors=True)


def weights_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(folder.glob("*.safetensors")):
        digest.update(file.read_bytes())
    return digest.hexdigest()
