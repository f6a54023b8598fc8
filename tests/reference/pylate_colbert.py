"""Build a ColBERT with PyLate, or rank with PyLate's own ``models.ColBERT`` and ``rank.rerank``.

    python tests/reference/pylate_colbert.py INPUT.json OUTPUT.json

with PyLate importable (``make setup`` installs it into a folder of its own with the sentence-transformers
and transformers it pins, which the project's are newer than; ``tests/test_fidelity.py`` puts that folder on
``PYTHONPATH``). PyLate runs as shipped. Two imports are kept out: ``kernels`` (the environment's release is
newer than transformers 5.3 reads; nothing here uses hub kernels) and, where the ``train`` extra has not
installed it, ``datasets`` (PyLate imports it for training data only).

INPUT {"build": folder, "base": BERT folder, "seed": N}: a ColBERT from ``base`` with PyLate's defaults (its
``[Q] ``/``[D] `` markers added to the vocabulary, a random 128-dimension projection), saved into ``folder``.
INPUT {"model": folder, "requests": [{"qid", "query", "candidates": [[docid, text], ...]}]}: every query
encoded with ``is_query=True``, its candidates with ``is_query=False``, and ``rank.rerank`` over them.
OUTPUT {"scores": {qid: {docid: score}}} (for a build, {"built": folder}); with "timed": true in INPUT, also
"seconds", the time of encoding and ranking once the model is loaded.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
import types

sys.modules["kernels"] = None  # type: ignore[assignment]
if importlib.util.find_spec("datasets") is None:  # the train extra installs it; without it, a stand-in
    _datasets = types.ModuleType("datasets")
    _datasets.__spec__ = importlib.machinery.ModuleSpec("datasets", None)
    sys.modules["datasets"] = _datasets


def build(config: dict) -> dict:
    import torch
    from pylate import models

    torch.manual_seed(config["seed"])
    model = models.ColBERT(model_name_or_path=config["base"], device="cpu")
    model.save(config["build"])
    return {"built": config["build"]}


def rank(config: dict) -> dict:
    import time

    from pylate import models
    from pylate import rank as pylate_rank

    model = models.ColBERT(model_name_or_path=config["model"], device="cpu")
    requests = config["requests"]
    start = time.perf_counter()
    queries = model.encode([r["query"] for r in requests], is_query=True, batch_size=8, show_progress_bar=False)
    documents = [
        model.encode([text for _, text in r["candidates"]], is_query=False, batch_size=8, show_progress_bar=False)
        for r in requests
    ]
    ids = [[docid for docid, _ in r["candidates"]] for r in requests]
    ranked = pylate_rank.rerank(documents_ids=ids, queries_embeddings=queries, documents_embeddings=documents)
    if config.get("timed"):  # benchmarks/colbert.py: the seconds of encoding and ranking, the model loaded
        return {"seconds": time.perf_counter() - start, "scores": {r["qid"]: {str(x["id"]): float(x["score"])
                for x in out} for r, out in zip(requests, ranked, strict=True)}}  # fmt: skip
    return {
        "scores": {
            r["qid"]: {str(x["id"]): float(x["score"]) for x in out} for r, out in zip(requests, ranked, strict=True)
        }
    }


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as handle:
        config = json.load(handle)
    output = build(config) if "build" in config else rank(config)
    with open(target, "w", encoding="utf-8") as handle:
        json.dump(output, handle)


if __name__ == "__main__":
    main()
