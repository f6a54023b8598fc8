"""Run pyterrier-t5's ``MonoT5ReRanker``/``DuoT5ReRanker`` or rank-llm's ``MonoT5``/``DuoT5`` on a T5 folder.

    python tests/reference/t5_rerankers.py INPUT.json OUTPUT.json

with the reference importable (``tests/test_fidelity.py`` puts the folder ``make setup`` installed it into
on ``PYTHONPATH``). Each runs as shipped, on the CPU: pyterrier-t5 over a PyTerrier frame of the requests
(in their order), rank-llm's ``rerank_batch`` over its ``Request`` records. The stubs are what rank-llm's
package imports for other rankers and the T5 rerankers never use: vLLM (it needs a GPU) and LiT5 (its
modelling code needs a transformers older than 5).

INPUT: a list of {"reference": "pyterrier-t5" | "rank-llm", "method": "mono" | "duo", "model": folder,
"batch_size", "requests": [{"qid", "query", "candidates": [[docid, text], ...]}]}, run in one process (the
imports cost more than the scoring).
OUTPUT: per entry, {"scores": {qid: {docid: score}}}: pyterrier-t5's log-probabilities (duo: its sums),
rank-llm's probabilities (duo: its sums over the pairs i < j).
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any


def _stub(name: str, *classes: str) -> None:
    module = types.ModuleType(name)
    module.__path__ = []  # type: ignore[attr-defined]
    for cls in classes:
        setattr(module, cls, type(cls, (), {}))
    sys.modules[name] = module


def pyterrier_t5(config: dict[str, Any]) -> dict[str, dict[str, float]]:
    import pandas as pd
    import pyterrier_t5

    rows = [
        {"qid": r["qid"], "query": r["query"], "docno": docid, "text": text, "score": 0.0, "rank": rank}
        for r in config["requests"]
        for rank, (docid, text) in enumerate(r["candidates"])
    ]
    cls = pyterrier_t5.MonoT5ReRanker if config["method"] == "mono" else pyterrier_t5.DuoT5ReRanker
    ranker = cls(tok_model=config["model"], model=config["model"], batch_size=config["batch_size"], device="cpu",
                 verbose=False)  # fmt: skip
    out = ranker.transform(pd.DataFrame(rows))
    scores: dict[str, dict[str, float]] = {}
    for row in out.itertuples(index=False):
        scores.setdefault(str(row.qid), {})[str(row.docno)] = float(row.score)
    return scores


def rank_llm(config: dict[str, Any]) -> dict[str, dict[str, float]]:
    _stub("vllm", "LLM", "SamplingParams", "RequestOutput")
    _stub("vllm.outputs", "RequestOutput")
    _stub("rank_llm.rerank.listwise.rank_fid", "RankFiDDistill", "RankFiDScore")  # LiT5: transformers < 5
    from rank_llm.data import Candidate, Query, Request

    if config["method"] == "mono":
        from rank_llm.rerank.pointwise.monot5 import MonoT5 as Ranker
    else:
        from rank_llm.rerank.pairwise.duot5 import DuoT5 as Ranker
    ranker = Ranker(model=config["model"], device="cpu", batch_size=config["batch_size"])
    requests = [
        Request(Query(r["query"], r["qid"]), [Candidate(docid, 0.0, {"text": t}) for docid, t in r["candidates"]])
        for r in config["requests"]
    ]
    results = ranker.rerank_batch(requests, rank_end=max(len(r.candidates) for r in requests))
    return {str(res.query.qid): {str(c.docid): float(c.score) for c in res.candidates} for res in results}


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as handle:
        configs = json.load(handle)
    outputs = [{"scores": (pyterrier_t5 if c["reference"] == "pyterrier-t5" else rank_llm)(c)} for c in configs]
    with open(target, "w", encoding="utf-8") as handle:
        json.dump(outputs, handle)


if __name__ == "__main__":
    main()
