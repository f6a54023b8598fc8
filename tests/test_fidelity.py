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
from collections.abc import Callable
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
@pytest.mark.parametrize(("method", "reference"), [("listwise(template=rankzephyr", "rank_zephyr_template.yaml"),
                                                   ("listwise(template=rankgpt", "rank_gpt_template.yaml"),
                                                   ("first(template=first", "rank_zephyr_alpha_template.yaml")])  # fmt: skip
def test_listwise_prompts_are_rankllms(method, reference, rankllm_site, dl19, tmp_path):
    """The messages for DL19 windows (and passages RankLLM's cleaning rewrites) are RankLLM's, byte for byte:
    RankZephyr's and RankGPT's numbered templates for listwise, the alphabetical one for FIRST."""
    from rerank import load_reranker

    windows = [(query, passages[:5] + TRICKY) for query, passages in dl19_windows(dl19, 3, 5)]
    windows.append(("what is [2] in a list [x]?", TRICKY))
    prompts = [{"query": q, "passages": p, "max_length": 40} for q, p in windows]
    config = {"template": reference, "prompts": prompts, "use_alpha": method.startswith("first")}
    theirs = run_reference(rankllm_site, config, tmp_path)["messages"]
    reranker = load_reranker(f"{method}, backend=scripted, model=sort)")
    ours = [reranker.messages(q, p, 40) for q, p in windows]
    assert ours == theirs


def dl19_reference_config(dl19, template: str, **options) -> tuple[Path, list, dict]:
    """Two DL19 queries' BM25 top 15 on qwen2.5-coder-0.5b, window 10, stride 4 and a 1,536-token context
    (so passages are shrunk to fit): the model, the requests and the reference's input."""
    from data.models import resolve_model
    from data.records import RerankRequest

    model = Path(resolve_model("qwen2.5-coder-0.5b"))
    model = model if model.suffix == ".gguf" else next(model.glob("*.gguf"))
    requests = [RerankRequest(r.query, r.candidates[:15]) for r in dl19.candidates("bm25")[:2]]
    config = {
        "model": str(model), "template": template, "window_size": 10, "stride": 4, "context_size": 1536,
        "requests": [{"qid": r.query.qid, "query": r.query.text, "candidates": [[c.docid, c.text] for c in r.candidates]}
                     for r in requests],
        **options,
    }  # fmt: skip
    return model, requests, config


def assert_same_run(reranker, requests, theirs, prompts: Callable[[], list[str]]) -> None:
    """The reference's windows, prompts and rankings are ours, and the model changed BM25's order."""
    assert [call["span"] for call in theirs["calls"]] == [[5, 15], [1, 11], [0, 7]] * 2
    assert [list(span) for span in reranker._spans(15)] * 2 == [call["span"] for call in theirs["calls"]]
    results = [reranker.rerank([r])[0] for r in requests]  # one query at a time, as the reference runs
    assert prompts() == [c["prompt"] for c in theirs["calls"]]
    assert {r.ranking.qid: [c.docid for c in r.ranking.candidates] for r in results} == theirs["rankings"]
    assert any(
        rank != [c.docid for c in r.candidates] for r, rank in zip(requests, theirs["rankings"].values(), strict=True)
    )


@pytest.mark.integration
@pytest.mark.slow
def test_listwise_runs_as_rankllm_on_dl19(rankllm_site, dl19, tmp_path):
    """RankLLM's RankZephyr pipeline and ours, same GGUF model through llama.cpp, greedy, on DL19's BM25 top 15:
    the same windows (the top ones cut short), rendered prompts (passages shrunk to the context), answers
    and final rankings.
    """
    from rerank import load_reranker

    model, requests, config = dl19_reference_config(dl19, "rank_zephyr_template.yaml")
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
    assert_same_run(reranker, requests, theirs, lambda: [c["prompt"] for c in calls])
    assert [c["answer"] for c in calls] == [c["answer"] for c in theirs["calls"]]


@pytest.mark.integration
@pytest.mark.slow
def test_first_runs_as_rankllm_on_dl19(rankllm_site, dl19, tmp_path):
    """RankLLM's FIRST (``use_logits``, ``use_alpha``) and ours, same GGUF model through llama.cpp: the same
    windows, alphabetical prompts, and rankings from the letters' log-probabilities at the second answer
    token, letters outside the top 30 kept in window order."""
    from rerank import load_reranker

    model, requests, config = dl19_reference_config(
        dl19, "rank_zephyr_alpha_template.yaml", use_logits=True, use_alpha=True
    )
    theirs = run_reference(rankllm_site, config, tmp_path)
    reranker = load_reranker(f"first(backend=llama.cpp(threads=2), model={model}, window_size=10, stride=4, "
                             "context_size=1536)")  # fmt: skip
    backend, prompts = reranker.backend, []

    def observed(conversations, labels, prefix="", read_at=0, top=0):  # the real backend, watched
        prompts.extend(backend.render(c) for c in conversations)
        return type(backend).next_token_scores(backend, conversations, labels, prefix, read_at, top)

    backend.next_token_scores = observed
    assert_same_run(reranker, requests, theirs, lambda: prompts)
    sizes = [end - start for start, end in (call["span"] for call in theirs["calls"])]
    in_top = [sum(ord(letter) - ord("A") < size for letter in call["letters"])
              for size, call in zip(sizes, theirs["calls"], strict=True)]  # fmt: skip
    assert in_top != sizes, "every letter was among the top 30 in every window: the cut-off went untested"
