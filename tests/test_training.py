"""``rerank generate-queries`` and ``rerank train`` on the example collection (32 passages, 8 judged queries) with
a tiny random BERT student and the real SmolLM2 pack: resumption, seeds, the executor's teacher stages,
the saved folder against sentence-transformers, and a loop that learns."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data.errors import InvalidSpecError, ModelNotFoundError, RerankError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def example_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example collection as the files ``rerank train`` reads: topics, corpus, qrels, and its BM25 run."""
    import data
    from data.trec import write_trec_qrels, write_trec_run
    from data.tsv import write_topics

    example = data.load("example")
    folder = tmp_path_factory.mktemp("example-files")
    write_topics(example.queries(), folder / "topics.tsv")
    (folder / "corpus.tsv").write_text("".join(f"{d.docid}\t{d.full_text}\n" for d in example.iter_documents()))
    write_trec_qrels(example.qrels(), folder / "qrels.txt")
    write_trec_run(example.run("bm25"), folder / "bm25.trec")
    return folder


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A two-layer, 32-wide BERT with MiniLM's tokenizer: random weights that train in a second."""
    from conftest import built_once

    def build(folder: Path) -> None:
        import torch
        import transformers

        from data.models import resolve_model

        torch.manual_seed(0)
        config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=64, max_position_embeddings=512)  # fmt: skip
        transformers.BertModel(config).save_pretrained(folder)
        transformers.AutoTokenizer.from_pretrained(resolve_model("minilm")).save_pretrained(folder)

    return str(built_once(tmp_path_factory, "tiny-encoder", build))


def settings(**changes):
    from rerank.training import TrainSettings

    return TrainSettings(**{"epochs": 2.0, "batch_size": 2, "group_size": 4, **changes})


def teacher(files: Path) -> str:
    return f'run(path="{files}/bm25.trec") % 8 >> bi-encoder(model=minilm)'


def train(files: Path, student: str, output: Path, **kwargs):
    from rerank.training import train as train_model

    options = {"teacher": teacher(files), "settings": settings(), "save_steps": 4, "progress": False, **kwargs}
    return train_model(output, topics=files / "topics.tsv", corpus=files / "corpus.tsv", student=student, **options)


@pytest.fixture(scope="module")
def seeded(example_files, tiny_encoder, tmp_path_factory):
    """The same training under seeds 0 and 1, each once for the module (checkpointed every 2 steps of 8)."""
    folder = tmp_path_factory.mktemp("seeded")
    return {seed: train(example_files, tiny_encoder, folder / f"seed{seed}", save_steps=2, settings=settings(seed=seed))
            for seed in (0, 1)}  # fmt: skip


def test_one_seed_gives_the_same_weights_and_another_seed_other_weights(example_files, tiny_encoder, seeded, tmp_path):
    from rerank.training.trainer import weights_digest

    again = train(example_files, tiny_encoder, tmp_path / "again", save_steps=2)
    assert seeded[0].card["weights_sha256"] == again.card["weights_sha256"] != seeded[1].card["weights_sha256"]
    assert weights_digest(seeded[0].folder) == seeded[0].card["weights_sha256"]
    # the same command again finds the finished model and trains nothing
    assert train(example_files, tiny_encoder, tmp_path / "again", save_steps=2).up_to_date


class StopAfterFirstCheckpoint:
    """A transformers TrainerCallback (duck-typed) that stops the training as its first checkpoint is written."""

    def __getattr__(self, name):  # every other event: nothing to do
        return lambda *args, **kwargs: None

    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt


def test_resuming_from_a_mid_epoch_checkpoint_gives_the_uninterrupted_weights(example_files, tiny_encoder, seeded,
                                                                              tmp_path):  # fmt: skip
    """Interrupted right after its first checkpoint (step 2 of 8: mid-epoch), then resumed: the same weights."""
    with pytest.raises(KeyboardInterrupt):
        train(example_files, tiny_encoder, tmp_path / "cut", save_steps=2, callbacks=[StopAfterFirstCheckpoint()])
    assert not (tmp_path / "cut").exists()  # nothing half-written where the model goes
    checkpoints = sorted(p.name for p in (tmp_path / "cut.checkpoints").iterdir())
    assert checkpoints == ["checkpoint-2", "rerank-job.json"]  # the checkpoint, and the training it belongs to
    with pytest.raises(RerankError, match="add --resume"):
        train(example_files, tiny_encoder, tmp_path / "cut", save_steps=2)
    # the checkpoint holds the seconds trained up to it, and the card adds the resumed sitting's to them
    spent = tmp_path / "cut.checkpoints" / "checkpoint-2" / "rerank-seconds.json"
    assert json.loads(spent.read_text())["seconds"] > 0
    spent.write_text(json.dumps({"seconds": 5000.0}))  # as if the first sitting had been long
    resumed = train(example_files, tiny_encoder, tmp_path / "cut", save_steps=2, resume=True)
    assert resumed.card["weights_sha256"] == seeded[0].card["weights_sha256"]
    assert resumed.card["seconds"]["training"] > 5000
    assert not (tmp_path / "cut.checkpoints").exists()
    # checkpoints of another training (another seed) are never resumed from: that training starts afresh
    with pytest.raises(KeyboardInterrupt):
        train(example_files, tiny_encoder, tmp_path / "other", save_steps=2, callbacks=[StopAfterFirstCheckpoint()])
    changed = train(
        example_files, tiny_encoder, tmp_path / "other", save_steps=2, resume=True, settings=settings(seed=1)
    )
    assert changed.card["weights_sha256"] == seeded[1].card["weights_sha256"]


def test_the_teachers_labels_are_the_executors_stage_outputs(example_files, tiny_encoder, seeded, tmp_path):
    """The targets are the stored teacher stage's scores (/ temperature), and another training reuses that stage."""
    from rerank.core.api import compute
    from rerank.training.examples import build_examples
    from rerank.training.trainer import training_data

    files = (example_files / "topics.tsv", example_files / "corpus.tsv")
    computed = compute(teacher(example_files), topics=files[0], corpus=files[1])  # stored by the trainings before
    stage = computed.output
    when = stage.run_path.stat().st_mtime_ns
    rankings, queries, texts, *_ = training_data(*files, teacher(example_files), None, None)
    examples = build_examples("listnet", rankings, queries, texts, group_size=50, temperature=0.5)
    stored = {r.qid: r for r in stage.run()}
    assert len(examples.columns["labels"]) == len(stored) == 8
    for query, labels in zip(examples.columns["query"], examples.columns["labels"], strict=True):
        qid = next(q for q, text in queries.items() if text == query)
        assert labels == [c.score / 0.5 for c in stored[qid].candidates]
    other = train(example_files, tiny_encoder, tmp_path / "b", settings=settings(seed=3))
    assert stage.run_path.stat().st_mtime_ns == when  # reused, not computed again
    assert other.card["teacher"] == teacher(example_files) and other.card["examples"] == 8
    # the labelling's cost is the stored stages' (computed by an earlier training), not this training's wait
    assert other.card["seconds"]["labels"] == round(computed.seconds, 1) and computed.seconds > 0


def test_the_trained_folder_scores_as_sentence_transformers_cross_encoder(
    example_files, tiny_encoder, tmp_path, monkeypatch
):
    """``cross-encoder(model=DIR)`` and sentence-transformers' ``CrossEncoder`` on the same folder agree; by name
    under the models directory it is listed and found, with its weights' digest in the identity."""
    from sentence_transformers.cross_encoder import CrossEncoder

    import data
    from data.docstore import get_document
    from data.records import Candidate, RerankRequest
    from rerank.cli.list_cmd import entries
    from rerank.identity import model_identity
    from rerank.registry import load_reranker

    monkeypatch.setenv("RERANK_MODELS_DIR", str(tmp_path / "models"))
    result = train(example_files, tiny_encoder, "tiny-distilled")
    assert result.folder == tmp_path / "models" / "trained" / "tiny-distilled"
    example = data.load("example")
    queries, docs = {q.qid: q for q in example.queries()}, example.docs()
    requests = [RerankRequest(queries[r.qid], tuple(Candidate(c.docid, c.score, get_document(docs, c.docid).full_text)
                                                    for c in r.candidates)) for r in list(example.run("bm25"))[:3]]  # fmt: skip
    ours = load_reranker("cross-encoder(model=tiny-distilled)").rerank(requests)
    reference = CrossEncoder(str(result.folder))  # a ListNet student: raw logits on both sides, no sigmoid
    for request, reranked in zip(requests, ours, strict=True):
        pairs = [(request.query.text, c.text) for c in request.candidates]
        expected = dict(zip((c.docid for c in request.candidates), reference.predict(pairs).tolist(), strict=True))
        assert len(reranked.ranking.candidates) == len(expected)
        for candidate in reranked.ranking.candidates:
            assert candidate.score == pytest.approx(expected[candidate.docid], abs=1e-6)
    listed = {e["name"]: e for e in entries("models")}
    assert listed["tiny-distilled"]["installed"] and listed["tiny-distilled"]["upstream"] == str(result.folder)
    identity = model_identity("tiny-distilled")["sha256"]
    assert identity is not None and identity == model_identity(str(result.folder))["sha256"]
    card = result.folder / "rerank-train.json"
    card.write_text(card.read_text().replace('"seconds"', '"seconds" ', 1))  # the card's times are not the model
    assert model_identity("tiny-distilled")["sha256"] == identity
    (result.folder / "config.json").write_text((result.folder / "config.json").read_text() + " ")
    assert model_identity("tiny-distilled")["sha256"] != identity


def test_a_short_training_on_labels_raises_the_sets_dev_ndcg(example_files, tiny_encoder, tmp_path):
    """BCE on the example's qrels with BM25's negatives, evaluated on the same queries by rerank's metrics: the
    loop learns (the trained head ranks the set better than the untrained one); not a tuned number."""
    result = train(example_files, tiny_encoder, tmp_path / "m", teacher=None, qrels=example_files / "qrels.txt",
                   candidates=f'run(path="{example_files}/bm25.trec") % 8', dev="example",
                   dev_pipeline="run(name=bm25) % 8", eval_steps=20,
                   settings=settings(loss="bce", epochs=10.0, batch_size=8, learning_rate=1e-3))  # fmt: skip
    history = result.card["dev"]["history"]
    assert [h["step"] for h in history] == [0, 20, 40, 40]  # untrained, every 20 steps, and the final model
    assert history[-1]["eval_dev_ndcg@10"] > history[0]["eval_dev_ndcg@10"] + 0.05, history


BAD = {  # what changes in a good call, and a piece of the one line that refuses it
    "teacher without scores": (
        {"teacher": "run(name=bm25) % 8 >> listwise(model=qwen2.5-coder-0.5b)"},
        "orders candidates without scores",
    ),
    "student not an encoder": ({"student": "smollm2-135m"}, "not an encoder folder"),
    "empty training set": ({"topics": "EMPTY"}, "no query in it"),
    "labels with a teacher loss": ({"teacher": None, "qrels": "QRELS"}, "with --qrels use --loss bce"),
    "lambda on scores": ({"settings": "LAMBDA"}, "use --targets ranks"),
    "candidates beside a teacher": ({"candidates": "bm25 % 5"}, "a teacher's candidates are its first stage"),
    "a teacher's model missing": ({"teacher": "bm25 % 5 >> bi-encoder(model=/no/such/model)"}, "does not exist"),
    "dev settings without --dev": ({"eval_steps": 5}, "give --dev"),
    "a pack's name as output": ({"output": "minilm"}, "a model pack's name"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_training_input_is_one_line_before_any_step(example_files, tiny_encoder, tmp_path, case):
    from rerank.training import train as train_model

    (tmp_path / "empty.tsv").write_text("")
    files = {"EMPTY": tmp_path / "empty.tsv", "QRELS": example_files / "qrels.txt",
             "LAMBDA": settings(loss="lambda")}  # fmt: skip
    change, says = BAD[case]
    options = {"teacher": teacher(example_files), "settings": settings(), "student": tiny_encoder,
               "topics": example_files / "topics.tsv", **{k: files.get(v, v) for k, v in change.items()}}  # fmt: skip
    output = options.pop("output", tmp_path / "m")
    with pytest.raises((InvalidSpecError, ModelNotFoundError, ValueError), match=says):
        train_model(output, corpus=example_files / "corpus.tsv", progress=False, **options)
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.checkpoints").exists()


def test_a_dev_dataset_without_qrels_is_refused(example_files, tiny_encoder, tmp_path, monkeypatch, data_dir):
    scifact = tmp_path / "data" / "beir" / "scifact"
    scifact.mkdir(parents=True)
    for name in ("corpus.jsonl.gz", "queries.jsonl"):
        (scifact / name).symlink_to(data_dir / "beir" / "scifact" / name)
    monkeypatch.setenv("RERANK_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(InvalidSpecError, match="--dev beir/scifact: no qrels"):
        train(example_files, tiny_encoder, tmp_path / "m", dev="beir/scifact")
    assert not (tmp_path / "m").exists()


GENERATE = {"model": "smollm2-135m", "passages": 5, "batch": 1, "max_tokens": 12}


@pytest.fixture(scope="module")
def generated(example_files, tmp_path_factory):
    """Five queries written for the example corpus in one uninterrupted run, its answers kept in an output cache."""
    from rerank.training import generate_queries

    folder = tmp_path_factory.mktemp("generated")
    result = generate_queries(example_files / "corpus.tsv", folder / "whole", cache=folder / "llm-cache",
                              progress=False, **GENERATE)  # fmt: skip
    assert result.summary["cost"]["calls"] == 5
    return result


def test_generate_queries_interrupted_then_resumed_writes_the_uninterrupted_output(example_files, generated, tmp_path):
    """``rerank generate-queries`` killed once two passages are checkpointed, then the same job with --resume: the
    same topics, qrels and queries as the run never interrupted (and the same job again reuses the finished folder)."""
    from rerank.training import generate_queries

    command = [sys.executable, "-m", "rerank.cli", "generate-queries", "--corpus", str(example_files / "corpus.tsv"),
               "--output", str(tmp_path / "cut"), "--model", "smollm2-135m", "--passages", "5", "--batch", "1",
               "--max-tokens", "12"]  # fmt: skip
    cut = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "cut" / "queries.jsonl.checkpoint"
    while cut.poll() is None:  # wait on progress: two finished passages in the checkpoint
        if checkpoint.is_file() and len(checkpoint.read_bytes().splitlines()) >= 3:
            cut.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    cut.wait(timeout=60)
    assert cut.returncode == -signal.SIGKILL, cut.stderr.read() if cut.stderr else "finished before the kill"
    assert not (tmp_path / "cut" / "manifest.json").exists()
    with pytest.raises(RerankError, match="add --resume"):  # never silently restarted or continued
        generate_queries(example_files / "corpus.tsv", tmp_path / "cut", progress=False, **GENERATE)
    resumed = generate_queries(example_files / "corpus.tsv", tmp_path / "cut", resume=True, progress=False, **GENERATE)
    assert resumed.summary["cost"]["calls"] == 5  # each passage written once: by the killed run or the resumed one
    for name in ("topics.tsv", "qrels.txt"):
        assert (tmp_path / "cut" / name).read_text() == (generated.folder / name).read_text()
    rows = [json.loads(line) for line in (tmp_path / "cut" / "queries.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == [q.text for q in generated.queries]
    assert len(rows) == 5 and all(r["text"] and "\t" not in r["text"] for r in rows)
    assert not checkpoint.exists()
    again = generate_queries(example_files / "corpus.tsv", tmp_path / "cut", progress=False, **GENERATE)
    assert again.summary["up_to_date"]


TEACHER = "bm25 % 3 >> random(seed=1)"


def test_a_teacher_keeps_the_queries_whose_source_it_ranks_high(example_files, generated, tmp_path):
    """InPars-v2's filter: a teacher (BM25's top 3 in a seeded random order, so that some sources are not first)
    ranks the corpus for each generated query; a query is kept when its source passage is in the teacher's top 2. The
    queries come from the model-output cache (no call), and the ranks are the stored stage's."""
    from rerank.core.api import compute
    from rerank.training import generate_queries

    options = {**GENERATE, "progress": False, "cache": generated.folder.parent / "llm-cache"}
    plain = generated
    kept = generate_queries(example_files / "corpus.tsv", tmp_path / "kept", teacher=TEACHER, keep_top=2, **options)
    assert kept.summary["cost"]["calls"] == 0  # every prompt answered from the cache
    assert [q.text for q in kept.queries] == [q.text for q in plain.queries]
    (tmp_path / "all.tsv").write_text("".join(f"{q.qid}\t{q.text}\n" for q in plain.queries if q.text))
    bm25 = {r.qid: [c.docid for c in r.candidates] for r in compute(TEACHER, topics=tmp_path / "all.tsv",
                                                                     corpus=example_files / "corpus.tsv").output.run()}  # fmt: skip
    for query in kept.queries:
        ranking = bm25.get(query.qid, [])
        assert query.teacher_rank == (ranking.index(query.docid) + 1 if query.docid in ranking else None)
    assert set(kept.kept) == {q.qid for q in kept.queries if q.teacher_rank is not None and q.teacher_rank <= 2}
    topics = (tmp_path / "kept" / "topics.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in topics] == list(kept.kept)
    assert 0 < len(kept.kept) < 5, [q.teacher_rank for q in kept.queries]  # the filter kept some, not all
    again = generate_queries(example_files / "corpus.tsv", tmp_path / "kept", teacher=TEACHER, keep_top=3, **options)
    assert again.summary["cost"]["calls"] == 0 and len(again.kept) >= len(kept.kept)  # another filter: texts kept
