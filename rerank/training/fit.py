"""The training loop of ``rerank train``: sentence-transformers' ``CrossEncoderTrainer``, seeded, checkpointed,
evaluated on a dev dataset with rerank's metrics (``eval``'s nDCG@10, the harness every leaderboard number comes
from), and saved whole at the end."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.records import Candidate, Qrels, Ranking, Run

log = logging.getLogger("rerank")
DEV_MEASURE = "nDCG@10"


@dataclass(frozen=True)
class DevSet:
    """A dev dataset's candidates (its first stage's ranking), their texts and its qrels."""

    name: str
    rankings: tuple[Ranking, ...]
    queries: dict[str, str]
    texts: dict[str, str]
    qrels: Qrels

    @classmethod
    def build(cls, dataset: Any, qrels: Qrels, pipeline: str, limit: int | None) -> DevSet:
        from data.docstore import get_document
        from rerank.core.api import compute

        judged = [q for q in dataset.queries() if q.qid in qrels][:limit]
        wanted = {q.qid for q in judged}
        rankings = tuple(r for r in compute(pipeline, dataset=dataset).output.run() if r.qid in wanted)
        docs = dataset.docs()
        texts = {c.docid: get_document(docs, c.docid).full_text for r in rankings for c in r.candidates}
        return cls(dataset.name, rankings, {q.qid: q.text for q in judged}, texts, qrels)

    def measure(self, model: Any, batch_size: int) -> float:
        """nDCG@10 of the model's ranking of the candidates, by ``eval``'s metrics."""
        import torch

        from rerank.plugins import command_module

        pairs = [(self.queries[r.qid], self.texts[c.docid]) for r in self.rankings for c in r.candidates]
        scores = iter(model.predict(pairs, batch_size=batch_size, activation_fn=torch.nn.Identity(),
                                    show_progress_bar=False).tolist())  # fmt: skip
        rankings = []
        for ranking in self.rankings:
            scored = [Candidate(c.docid, float(next(scores))) for c in ranking.candidates]
            rankings.append(Ranking(ranking.qid, tuple(sorted(scored, key=lambda c: -c.score))))
        evaluation = command_module("eval", needed_by="--dev").evaluate(Run({r.qid: r for r in rankings}, "dev"), self.qrels,
                                                                         DEV_MEASURE)  # fmt: skip
        return float(evaluation.aggregate[next(iter(evaluation.aggregate))])


def evaluator_class() -> type:
    try:
        from sentence_transformers.base.evaluation.evaluator import BaseEvaluator as Base
    except ImportError:  # sentence-transformers before 6
        from sentence_transformers.evaluation import SentenceEvaluator as Base
    return Base


def make_evaluator(dev: DevSet, batch_size: int) -> Any:
    class RerankDev(evaluator_class()):  # type: ignore[misc]
        """The dev measure as sentence-transformers' trainer asks for it (logged as eval_dev_ndcg@10)."""

        def __init__(self) -> None:
            super().__init__()
            self.name = "dev"
            self.primary_metric = "ndcg@10"

        def __call__(self, model: Any, output_path: Any = None, epoch: float = -1, steps: int = -1) -> dict[str, float]:
            return self.prefix_name_to_metrics({"ndcg@10": dev.measure(model, batch_size)}, self.name)

    return RerankDev()


def last_checkpoint(folder: Path) -> str | None:
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    return str(found[-1]) if found else None


JOB_FILE = "rerank-job.json"  # the key of the training the checkpoints belong to


def open_checkpoints(output: Path, key: dict[str, Any], *, resume: bool, fresh: bool) -> str | None:
    """The checkpoint to resume from (None: start), as ``rerank.checkpoint`` treats a run's: checkpoints of another
    job (its settings or data changed) are discarded, unfinished ones of this job need --resume or --fresh."""
    import json

    from data.errors import RerankError

    folder = output.with_name(output.name + ".checkpoints")
    found = last_checkpoint(folder) if folder.is_dir() else None
    job = folder / JOB_FILE
    same = job.is_file() and json.loads(job.read_text(encoding="utf-8")) == key
    if fresh or (folder.exists() and not same):
        if folder.exists() and not fresh:
            log.info(f"starting afresh: {folder} was left by another training (its settings or data changed since)")
        shutil.rmtree(folder, ignore_errors=True)
        found = None
    elif found and not resume:
        raise RerankError(f"{folder} holds {Path(found).name} of this same training, unfinished: add --resume to go "
                          "on from it, or --fresh to start over")  # fmt: skip
    return found


def mark_checkpoints(output: Path, key: dict[str, Any]) -> None:
    """The checkpoints' folder names its training, so a later run knows whether it may resume from them."""
    import json

    from data.textio import atomic_writer

    folder = output.with_name(output.name + ".checkpoints")
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_writer(folder / JOB_FILE) as out:
        json.dump(key, out, indent=2)


def fit(student: str, examples: Any, settings: Any, output: Path, dev: DevSet | None, eval_steps: int | None,
        save_steps: int, found: str | None, *, progress: bool,
        callbacks: Sequence[Any]) -> tuple[list[dict[str, float]], Path, float]:  # fmt: skip
    """Train, from checkpoint ``found`` when given; returns the logged history, the folder the finished model
    was saved into (beside ``output``) and the training's seconds over every sitting."""
    import datasets
    import transformers
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments

    from data.models import quiet_loading
    from rerank.training.examples import make_loss

    checkpoints = output.with_name(output.name + ".checkpoints")
    transformers.set_seed(settings.seed)  # the new head's initial weights come from the seed
    with quiet_loading():
        model = CrossEncoder(student, num_labels=1, max_length=settings.max_length)
    arguments = CrossEncoderTrainingArguments(
        output_dir=str(checkpoints), num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size, per_device_eval_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate, **warmup(settings.warmup_ratio), seed=settings.seed,
        data_seed=settings.seed, save_strategy="steps", save_steps=save_steps, save_total_limit=2,
        eval_strategy="steps" if dev and eval_steps else "no", eval_steps=eval_steps,
        logging_steps=min(save_steps, eval_steps or save_steps), report_to="none", disable_tqdm=not progress,
        dataloader_num_workers=0, dataloader_pin_memory=False,
    )  # fmt: skip
    timer = clock(found)
    trainer = CrossEncoderTrainer(
        model=model, args=arguments, train_dataset=datasets.Dataset.from_dict(dict(examples.columns)),
        loss=make_loss(settings.loss, model), evaluator=make_evaluator(dev, settings.batch_size) if dev else None,
        callbacks=[timer, *callbacks],  # first: a checkpoint records its seconds before any other callback acts
    )  # fmt: skip
    if not progress:  # without a bar the trainer prints each log line instead: --quiet means quiet
        trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    if found:
        log.info(f"resuming from {found}")
    # the untrained head's dev measure first: what the card's later measures are compared with
    history = [{"eval_dev_ndcg@10": dev.measure(model, settings.batch_size), "step": 0}] if dev else []
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the trainer's bar and losses stay; library notices go
    transformers.logging.disable_progress_bar()  # a bar per checkpoint's shard writes is noise
    try:
        trainer.train(resume_from_checkpoint=found)
        history += [dict(entry) for entry in trainer.state.log_history]
        if dev is not None:
            history.append({"eval_dev_ndcg@10": dev.measure(model, settings.batch_size),
                            "step": trainer.state.global_step})  # fmt: skip
        saved = output.with_name(f".{output.name}.saving")
        shutil.rmtree(saved, ignore_errors=True)
        if settings.loss != "bce":
            # A ranking loss's logit is no probability, and it has no bound: sentence-transformers' default
            # sigmoid would squash it (to exactly 1.0 in float32 past about 17, ties that collapse a ranking).
            # The folder scores raw logits in CrossEncoder.predict, as cross-encoder(model=DIR) does.
            import torch

            model.activation_fn = torch.nn.Identity()
        model.save_pretrained(str(saved))
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()
    return history, saved, timer.seconds()


SECONDS_FILE = "rerank-seconds.json"  # in each checkpoint: the training's seconds up to it


def clock(found: str | None) -> Any:
    """The training's time over its sittings: each checkpoint records the seconds spent up to it, and a resumed
    training goes on from the seconds of the checkpoint it resumes (what the interrupted sitting spent after
    that checkpoint was lost with its steps, and is spent again)."""
    import json
    import time

    from transformers import TrainerCallback

    before = Path(found) / SECONDS_FILE if found else None
    spent = float(json.loads(before.read_text(encoding="utf-8"))["seconds"]) if before and before.is_file() else 0.0

    class Clock(TrainerCallback):
        began = time.perf_counter()

        def seconds(self) -> float:
            return spent + time.perf_counter() - self.began

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.began = time.perf_counter()

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                (folder / SECONDS_FILE).write_text(json.dumps({"seconds": round(self.seconds(), 3)}), "utf-8")

    return Clock()


def warmup(ratio: float) -> dict[str, Any]:
    """The warm-up as a fraction of the steps: ``warmup_steps`` below 1 in transformers 5, ``warmup_ratio`` before."""
    import transformers

    return {"warmup_steps": ratio} if int(transformers.__version__.split(".")[0]) >= 5 else {"warmup_ratio": ratio}
