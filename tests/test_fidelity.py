"""Side by side with the reference implementations: the same model and inputs give the same prompts,
windows, answers and rankings (docs/design.md, "Fidelity to the reference implementations").

The references are installed from the package registry into a folder of their own (never into the
project's environment) and run in a subprocess by ``tests/reference/``; see there for the stubs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RANK_LLM = "rank-llm==0.25.7"
REFERENCE = Path(__file__).parent / "reference" / "rankllm_listwise.py"


@pytest.fixture(scope="session")
def rankllm_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rank-llm without its dependencies (vLLM needs a GPU), plus the few pure-Python ones it imports."""
    from data.config import cache_dir

    site = cache_dir() / "references" / RANK_LLM.replace("==", "-")
    if not (site / "rank_llm").is_dir():
        staging = tmp_path_factory.mktemp("rank-llm")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(staging),
             RANK_LLM, "dacite", "openai", "distro", "jiter"],
            check=True,
        )  # fmt: skip
        site.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(site)
    return site


def run_reference(site: Path, config: dict, tmp_path: Path) -> dict:
    source, target = tmp_path / "input.json", tmp_path / "output.json"
    source.write_text(json.dumps(config), encoding="utf-8")
    root = Path(__file__).parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(root)])}
    subprocess.run([sys.executable, str(REFERENCE), str(source), str(target)], check=True, env=env, cwd=root)
    return json.loads(target.read_text(encoding="utf-8"))


def dl19_windows(dl19, n_queries: int, depth: int) -> list[tuple[str, list[str]]]:
    return [(r.query.text, [c.text for c in r.candidates[:depth]]) for r in dl19.candidates("bm25")[:n_queries]]


TRICKY = [  # what RankLLM's cleaning is for: brackets that pass for ids, mojibake, stray whitespace
    "  See [1] and [23] for details; the list [a] stays.  ",
    "Itâ€™s a cafÃ© â€” with “quotes”.",
    "plain text",
]


@pytest.mark.integration
@pytest.mark.parametrize(("template", "reference"), [("rankzephyr", "rank_zephyr_template.yaml"),
                                                     ("rankgpt", "rank_gpt_template.yaml")])  # fmt: skip
def test_listwise_prompts_are_rankllms(template, reference, rankllm_site, dl19, tmp_path):
    """The messages for DL19 windows (and passages RankLLM's cleaning rewrites) are RankLLM's, byte for byte."""
    from rerank import load_reranker

    windows = [(query, passages[:5] + TRICKY) for query, passages in dl19_windows(dl19, 3, 5)]
    windows.append(("what is [2] in a list [x]?", TRICKY))
    prompts = [{"query": q, "passages": p, "max_length": 40} for q, p in windows]
    theirs = run_reference(rankllm_site, {"template": reference, "prompts": prompts}, tmp_path)["messages"]
    reranker = load_reranker(f"listwise(backend=scripted, model=sort, template={template})")
    ours = [reranker.messages(q, p, 40) for q, p in windows]
    assert ours == theirs


@pytest.mark.integration
@pytest.mark.slow
def test_listwise_runs_as_rankllm_on_dl19(rankllm_site, dl19, tmp_path):
    """RankLLM's RankZephyr pipeline and ours, same GGUF model through llama.cpp, greedy, on DL19's BM25 top 15:
    the same windows (the top ones cut short), rendered prompts (passages shrunk to the context), answers
    and final rankings.
    """
    from data.models import resolve_model
    from data.records import RerankRequest
    from rerank import load_reranker

    model = Path(resolve_model("qwen2.5-coder-0.5b"))
    model = model if model.suffix == ".gguf" else next(model.glob("*.gguf"))
    requests = [RerankRequest(r.query, r.candidates[:15]) for r in dl19.candidates("bm25")[:2]]
    config = {
        "model": str(model), "template": "rank_zephyr_template.yaml", "window_size": 10, "stride": 4,
        "context_size": 1536,
        "requests": [{"qid": r.query.qid, "query": r.query.text, "candidates": [[c.docid, c.text] for c in r.candidates]}
                     for r in requests],
    }  # fmt: skip
    theirs = run_reference(rankllm_site, config, tmp_path)

    reranker = load_reranker(f"listwise(backend=llama.cpp(threads=2), model={model}, window_size=10, stride=4, "
                             "context_size=1536)")  # fmt: skip
    backend, calls = reranker.backend, []

    def observed(conversations, max_new_tokens, min_new_tokens=0):  # the real backend, watched
        answers = type(backend).generate(backend, conversations, max_new_tokens, min_new_tokens)
        calls.extend(
            {"prompt": backend.render(c), "answer": a.text} for c, a in zip(conversations, answers, strict=True)
        )
        return answers

    backend.generate = observed
    results = [reranker.rerank([r])[0] for r in requests]  # one query at a time, as the reference runs

    assert [call["span"] for call in theirs["calls"]] == [[5, 15], [1, 11], [0, 7]] * 2
    assert [list(span) for span in reranker._spans(15)] * 2 == [call["span"] for call in theirs["calls"]]
    assert [c["prompt"] for c in calls] == [c["prompt"] for c in theirs["calls"]]
    assert [c["answer"] for c in calls] == [c["answer"] for c in theirs["calls"]]
    assert {r.ranking.qid: [c.docid for c in r.ranking.candidates] for r in results} == theirs["rankings"]
    assert any(
        rank != [c.docid for c in r.candidates] for r, rank in zip(requests, theirs["rankings"].values(), strict=True)
    )
