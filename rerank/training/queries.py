"""Synthetic queries, InPars style: an LLM writes, for passages sampled from a corpus, a query each one answers.

``generate_queries`` samples ``passages`` documents of a corpus with ``seed``, fills each into a few-shot
prompt (``rerank/prompts/inpars.txt`` by default: InPars' vanilla layout, "Example N: / Document: /
Relevant Query:", with examples of our own), and lets the model continue it greedily; the first line of
the continuation is the query. The prompt goes to the backend as text the model reads as it is, as InPars
sent it to a completion model, not wrapped in a chat template. Optionally (InPars-v2), a teacher pipeline
ranks the corpus for every query and only the queries whose source passage it puts in its top
``keep_top`` are kept.

The job is keyed like a stage: the corpus digest, the prompt's digest, the backend's identity and weights, the
sample and the generation settings. The output folder holds ``topics.tsv``, ``qrels.txt`` (the source
passage of each query as its positive), ``queries.jsonl`` (every generated query, kept or not, with its
cost and the teacher's rank) and ``manifest.json``; a finished folder with the same key is reused, and an
interrupted job keeps its finished passages in a checkpoint that ``resume`` goes on from.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from data.errors import InvalidSpecError, PathNotFoundError, RerankError
from data.records import Document, Query
from rerank.core.keys import pipeline_identity
from rerank.cost import Cost

# 2: generation stops at the end of the query's line (it wrote on to max_tokens before: the same first line,
# at twice the cost, unless the model opened with an empty line)
VERSION = 2
STOP = ("\n",)  # a query is one line
PLACEHOLDER = "{document}"


@dataclass(frozen=True, slots=True)
class GeneratedQuery:
    """One generated query: its id, the passage it came from, its text and what writing it cost."""

    qid: str
    docid: str
    text: str
    cost: Cost
    teacher_rank: int | None = None  # the source passage's rank for this query under the filter's teacher


@dataclass(frozen=True, slots=True)
class GeneratedSet:
    """What ``generate_queries`` wrote: the folder, its kept queries and the whole job's summary."""

    folder: Path
    queries: tuple[GeneratedQuery, ...]  # every generated query, in sample order
    kept: tuple[str, ...]  # the qids kept (all of them without a filter)
    summary: dict[str, Any]

    @property
    def topics(self) -> Path:
        return self.folder / "topics.tsv"

    @property
    def qrels(self) -> Path:
        return self.folder / "qrels.txt"


def read_prompt(prompt: str | Path | None) -> str:
    """The few-shot prompt: a file holding ``{document}`` once, or the shipped InPars layout."""
    if prompt is None:
        from rerank.prompts import load_text

        return load_text("inpars")
    path = Path(prompt).expanduser()
    if not path.is_file():
        raise PathNotFoundError(f"--prompt {prompt}: no such file")
    text = path.read_text(encoding="utf-8")
    if text.count(PLACEHOLDER) != 1:
        raise InvalidSpecError(f"--prompt {prompt}: the prompt must hold {PLACEHOLDER} exactly once, where each "
                               f"passage goes (it holds it {text.count(PLACEHOLDER)} times)")  # fmt: skip
    return text


def sample_documents(corpus: Path, count: int, seed: int) -> list[Document]:
    """``count`` documents of the corpus, drawn without replacement with ``seed``, in the order drawn.

    Empty documents are never drawn (no query can come from them)."""
    from data.corpus import iter_corpus_file

    positions = [n for n, d in enumerate(iter_corpus_file(corpus)) if d.full_text.strip()]  # ints: a large corpus fits
    if count > len(positions):
        raise InvalidSpecError(f"--passages {count}: the corpus {corpus} has {len(positions)} non-empty documents")
    # every position shuffled, then the first ``count``: a larger sample with the same seed extends a smaller
    # one, so with --cache the passages written for before are answered from the cache
    random.Random(seed).shuffle(positions)
    chosen = {p: rank for rank, p in enumerate(positions[:count])}
    drawn: list[Document | None] = [None] * count
    for n, document in enumerate(iter_corpus_file(corpus)):
        if n in chosen:
            drawn[chosen[n]] = document
    return [d for d in drawn if d is not None]


def query_line(continuation: str) -> str:
    """The query in a continuation: its first non-empty line, spaces collapsed (a tab would break topics.tsv).
    (Generation stops at the first line's end, so a continuation that opens with an empty line is empty.)"""
    for line in continuation.splitlines():
        if line.strip():
            return " ".join(line.split())
    return ""


def generate_queries(
    corpus: str | Path,
    output: str | Path,
    *,
    model: str,
    backend: str = "llama.cpp",
    prompt: str | Path | None = None,
    passages: int = 100,
    seed: int = 0,
    max_tokens: int = 32,
    document_words: int = 200,
    batch: int = 8,
    teacher: str | None = None,
    keep_top: int | None = None,
    resume: bool = False,
    fresh: bool = False,
    progress: bool = True,
    cache: str | Path | None = None,
) -> GeneratedSet:
    """Generate ``passages`` synthetic queries from ``corpus`` into the folder ``output`` (see the module)."""
    from rerank.llm.backend import load_backend

    corpus = Path(corpus).expanduser()
    folder = Path(output).expanduser()
    for name, value in (("--passages", passages), ("--max-tokens", max_tokens), ("--document-words", document_words),
                        ("--batch", batch), ("--keep-top", keep_top)):  # fmt: skip
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, not {value}")
    if (teacher is None) != (keep_top is None):
        raise ValueError("--teacher and --keep-top go together: the teacher ranks, --keep-top says how deep "
                         "the source passage must be")  # fmt: skip
    if resume and fresh:
        raise ValueError("--resume and --fresh contradict each other")
    if not corpus.is_file():
        raise PathNotFoundError(f"--corpus {corpus}: no such file")
    if folder.exists() and not folder.is_dir():
        raise InvalidSpecError(f"--output {folder}: exists and is not a folder")
    template = read_prompt(prompt)
    if teacher is not None:
        check_teacher(teacher, keep_top)
    llm = load_backend(backend, model)  # built, not loaded: llama.cpp and vLLM load on their first call
    key = generation_key(corpus, template, llm, passages, seed, max_tokens, document_words, batch)
    whole = {**key, "filter": {"teacher": pipeline_identity(teacher), "keep_top": keep_top} if teacher else None}
    manifest = folder / "manifest.json"
    earlier = json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else None
    if earlier is not None and not fresh:
        if earlier.get("key") == whole:
            return read_generated(folder, {**earlier["summary"], "up_to_date": True})
        if {**earlier.get("key", {}), "filter": None} != {**whole, "filter": None}:
            raise RerankError(f"--output {folder} holds queries generated otherwise (its manifest.json has another "
                              "key): choose another folder, or --fresh to replace them")  # fmt: skip
    elif (
        folder.is_dir()
        and not manifest.is_file()
        and any(p.name != "queries.jsonl.checkpoint" for p in folder.iterdir())
    ):
        raise RerankError(f"--output {folder} exists and holds no generated queries: choose another folder")
    if earlier is not None and not fresh:  # the same queries under another filter: only the filter runs again
        generated = list(read_generated(folder, earlier["summary"]).queries)
    else:
        if cache is not None:  # the model-output cache ``rerank run --cache`` keeps: a prompt seen before costs no call
            from rerank.cache import OutputCache
            from rerank.llm.cached import CachedBackend

            llm = CachedBackend(llm, OutputCache(Path(cache).expanduser()))
        documents = sample_documents(corpus, passages, seed)
        generated = generate(llm, documents, template, max_tokens, document_words, batch, folder, key,
                             resume=resume, fresh=fresh, progress=progress)  # fmt: skip
    if teacher is not None:
        ranks = teacher_ranks(teacher, generated, corpus, folder)
        generated = [GeneratedQuery(g.qid, g.docid, g.text, g.cost, ranks[g.qid]) for g in generated]
    else:
        generated = [GeneratedQuery(g.qid, g.docid, g.text, g.cost) for g in generated]
    kept = [g for g in generated if g.text and (keep_top is None or (g.teacher_rank or keep_top + 1) <= keep_top)]
    summary = {
        "passages": passages, "generated": len(generated), "empty": sum(not g.text for g in generated),
        "kept": len(kept), "seconds": round(sum(g.cost.seconds for g in generated), 3),
        "cost": sum((g.cost for g in generated), Cost()).as_dict(), "backend": key["backend"],
    }  # fmt: skip
    write_outputs(folder, generated, kept, whole, summary)
    from rerank.checkpoint import checkpoint_path

    checkpoint_path(folder / "queries.jsonl").unlink(missing_ok=True)
    return GeneratedSet(folder, tuple(generated), tuple(g.qid for g in kept), summary)


def generation_key(corpus: Path, template: str, llm: Any, passages: int, seed: int, max_tokens: int,
                   document_words: int, batch: int) -> dict[str, Any]:  # fmt: skip
    """What decides the generated texts (a batched backend may round with its batch, so the batch is in it); the
    filter's teacher and depth are keyed apart, so another filter reuses the texts."""
    from rerank.identity import digest_path, digest_text, model_identity, package_versions

    return {
        "task": "generate-queries", "version": VERSION, "corpus": digest_path(corpus),
        "prompt": digest_text(template), "backend": llm.identity, "model": model_identity(llm.model),
        "libraries": package_versions(llm.libraries), "passages": passages, "seed": seed,
        "max_tokens": max_tokens, "document_words": document_words, "batch": batch,
    }  # fmt: skip


def generate(llm: Any, documents: Sequence[Document], template: str, max_tokens: int, document_words: int,
             batch: int, folder: Path, key: dict[str, Any], *, resume: bool, fresh: bool,
             progress: bool) -> list[GeneratedQuery]:  # fmt: skip
    """A query for every document, ``batch`` prompts per backend call, each finished batch checkpointed."""
    from rerank.checkpoint import note_what_is_kept, open_checkpoint
    from rerank.core.loop import progress_bar
    from rerank.result import RerankResult

    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = open_checkpoint(folder / "queries.jsonl", key, resume=resume, fresh=fresh)
    # A finished query is checkpointed as a one-candidate ranking (its source passage) under a qid that
    # carries the text: the checkpoint's CRC-checked, torn-line-safe format serves as it is.
    texts = load_texts(checkpoint)
    bar = progress_bar(len(documents), initial=len(texts), show=progress)
    try:
        todo = [d for d in documents if qid_of(d) not in texts]
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            # words, not tokens: every backend can cut words (a server has no tokenizer here)
            prompts = [template.replace(PLACEHOLDER, " ".join(d.full_text.split()[:document_words])) for d in chunk]
            began = time.perf_counter()
            answers = llm.generate(prompts, max_tokens, stop=STOP)
            seconds = (time.perf_counter() - began) / len(chunk)
            results = []
            for document, answer in zip(chunk, answers, strict=True):
                text = query_line(answer.text)
                texts[qid_of(document)] = text
                cost = Cost(calls=0 if answer.cached else 1, input_tokens=answer.input_tokens,
                            output_tokens=answer.output_tokens, seconds=seconds)  # fmt: skip
                results.append(RerankResult(encode(document, text), cost))
            checkpoint.add(results)
            bar.update(len(chunk))
    except BaseException:
        checkpoint.close()
        note_what_is_kept(checkpoint)
        raise
    finally:
        bar.close()
    found = [(d, checkpoint.result(qid_of(d)).cost) for d in documents]
    checkpoint.close()
    return [GeneratedQuery(qid_of(d), d.docid, texts[qid_of(d)], cost) for d, cost in found]


def qid_of(document: Document) -> str:
    return f"gen-{document.docid}"


def encode(document: Document, text: str) -> Any:
    from data.records import Candidate, Ranking

    return Ranking(qid_of(document), (Candidate(json.dumps(text, ensure_ascii=False), 0.0),))


def load_texts(checkpoint: Any) -> dict[str, str]:
    return {qid: json.loads(checkpoint.result(qid).ranking.candidates[0].docid) for qid in checkpoint.qids()}


def check_teacher(teacher: str, keep_top: int | None) -> None:
    """A teacher must be a pipeline that searches the corpus, ranking at least ``keep_top`` passages (a deeper
    --keep-top would keep what a shallower one does, silently), before any query is written."""
    from rerank.core.plan import DEFAULT_DEPTH, stage_kind
    from rerank.spec import as_pipeline
    from rerank.training.trainer import check_spec

    check_spec("--teacher", teacher)
    pipeline = as_pipeline(teacher)
    depth = min(stage.cutoff or (DEFAULT_DEPTH if n == 0 else 10**9) for n, stage in enumerate(pipeline.stages))
    if keep_top is not None and keep_top > depth:
        raise InvalidSpecError(f"--keep-top {keep_top}: the teacher {teacher!r} ranks {depth} passages per query")
    first = pipeline.first.spec
    if stage_kind(first, True) == "given":
        raise InvalidSpecError(f"--teacher {teacher!r}: its first stage must search the corpus (a retriever such as "
                               f"bm25, or a fusion of retrievers), not {first.name}")  # fmt: skip


def teacher_ranks(
    teacher: str, generated: Sequence[GeneratedQuery], corpus: Path, folder: Path
) -> dict[str, int | None]:
    """Where the teacher pipeline ranks each query's source passage (None: not in its ranking)."""
    from data.tsv import write_topics
    from rerank.core.api import compute

    topics = folder / "all-topics.tsv"
    write_topics([Query(g.qid, g.text) for g in generated if g.text], topics)
    # stored: a rerun with another --keep-top reuses it
    ranked = compute(teacher, topics=topics, corpus=corpus).output.run()
    ranks: dict[str, int | None] = {g.qid: None for g in generated}
    source = {g.qid: g.docid for g in generated}
    for ranking in ranked:
        docids = [c.docid for c in ranking.candidates]
        ranks[ranking.qid] = docids.index(source[ranking.qid]) + 1 if source[ranking.qid] in docids else None
    topics.unlink(missing_ok=True)
    return ranks


def write_outputs(folder: Path, generated: Sequence[GeneratedQuery], kept: Sequence[GeneratedQuery],
                  key: dict[str, Any], summary: dict[str, Any]) -> None:  # fmt: skip
    """The folder's files, each written whole (the manifest last: it marks the folder finished)."""
    from data.records import Qrels
    from data.textio import atomic_writer
    from data.trec import write_trec_qrels
    from data.tsv import write_topics

    (folder / "manifest.json").unlink(missing_ok=True)
    write_topics([Query(g.qid, g.text) for g in kept], folder / "topics.tsv")
    write_trec_qrels(Qrels({g.qid: {g.docid: 1} for g in kept}), folder / "qrels.txt")
    with atomic_writer(folder / "queries.jsonl") as out:
        for g in generated:
            record = {**asdict(g), "cost": g.cost.as_dict(), "kept": g in kept}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    with atomic_writer(folder / "manifest.json") as out:
        json.dump({"key": key, "summary": summary}, out, indent=2)


def read_generated(folder: Path, summary: dict[str, Any]) -> GeneratedSet:
    rows = [json.loads(line) for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    queries = tuple(GeneratedQuery(r["qid"], r["docid"], r["text"], Cost(**r["cost"]), r["teacher_rank"]) for r in rows)
    if not rows:
        raise RerankError(f"{folder}/queries.jsonl is empty: run again with --fresh")
    return GeneratedSet(folder, queries, tuple(r["qid"] for r in rows if r["kept"]), summary)
