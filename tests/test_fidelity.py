"""Side by side with the reference implementations: the same model and inputs give the same prompts,
windows, answers and rankings (docs/design.md, "Fidelity to the reference implementations").

The references are installed from the package registry into a folder of their own (never into the
project's environment) and run in a subprocess by ``tests/reference/``; see there for the stubs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rerank.llm.backend import LLMBackend, TokenScores

RANK_LLM = "rank-llm==0.25.7"


LLM_RANKERS = "llm-rankers==0.0.2"
PYTERRIER_GENERATIVE = "pyterrier-generative==0.1.3"
REFERENCES = Path(__file__).parent / "reference"


def reference_site(requirement: str, package: str) -> Path:
    """A reference that ``make setup`` installed from the registry, without its dependencies, into a folder of its
    own beside the environment (``VENV/references``): never into the environment, never during a test."""
    site = Path(sys.prefix) / "references" / requirement.replace("==", "-")
    if not (site / package).is_dir():
        pytest.fail(f"{requirement} is not installed in {site}: `make setup` (scripts/setup.sh) installs it")
    return site


@pytest.fixture(scope="session")
def rankllm_site() -> Path:
    """rank-llm without its dependencies (vLLM needs a GPU), plus the few pure-Python ones it imports."""
    return reference_site(RANK_LLM, "rank_llm")


@pytest.fixture(scope="session")
def llmrankers_site() -> Path:
    """ielab/llm-rankers (it needs only transformers and torch, which the project has)."""
    return reference_site(LLM_RANKERS, "llmrankers")


def run_reference(site: Path, config: dict | list, tmp_path: Path, driver: str = "rankllm_listwise.py") -> Any:
    source, target = tmp_path / "input.json", tmp_path / "output.json"
    source.write_text(json.dumps(config), encoding="utf-8")
    root = Path(__file__).parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(root)])}
    subprocess.run([sys.executable, str(REFERENCES / driver), str(source), str(target)], check=True, env=env, cwd=root)
    return json.loads(target.read_text(encoding="utf-8"))


def load_module(path: Path) -> Any:
    """A reference script of tests/reference as a module (for the judge it records with)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_name(model: str) -> str:
    """The model as a recording names it: its file or folder, less the fp32 copy's cache key (a hash of the
    GGUF's path and mtime, so it differs from machine to machine)."""
    return re.sub(r"-[0-9a-f]{12}-fp32$", "-fp32", Path(model).name)


def recorded_reference(name: str, config: dict, live: Callable[[], dict] | None = None) -> dict:
    """What the reference's own code gave on ``config``, recorded in ``tests/reference/NAME.json``.

    The fast tier compares against the recording (the reference takes minutes on 2 cores); ``live`` runs the
    reference now, and ``RERANK_RECORD=1`` writes its output as the new recording. A recording made for
    other inputs (the config differs: another model file, template or candidates) is refused."""
    path = REFERENCES / f"{name}.json"
    if live is not None:
        output = live()
        if os.environ.get("RERANK_RECORD"):
            recorded = {**output, "config": {**config, "model": model_name(config["model"])}}
            path.write_text(json.dumps(recorded, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return output
    recorded = json.loads(path.read_text(encoding="utf-8"))
    wanted = {**config, "model": model_name(config["model"])}
    assert recorded.pop("config") == wanted, f"{path.name} was recorded on other inputs: RERANK_RECORD=1 re-records it"
    return recorded


def dl19_windows(dl19, n_queries: int, depth: int) -> list[tuple[str, list[str]]]:
    return [(r.query.text, [c.text for c in r.candidates[:depth]]) for r in dl19.candidates("bm25")[:n_queries]]


TRICKY = [  # what RankLLM's cleaning is for: brackets that pass for ids, mojibake, stray whitespace
    "  See [1] and [23] for details; the list [a] stays.  ",
    "Itâ€™s a cafÃ© â€” with “quotes”.",
    "plain text",
]


LISTWISE_TEMPLATES = [("listwise(template=rankzephyr", "rank_zephyr_template.yaml"),
                      ("listwise(template=rankgpt", "rank_gpt_template.yaml"),
                      ("listwise(template=insertrank", "insert_rank_template.yaml"),
                      ("listwise(template=qwen-thinking", "qwen_thinking_template.yaml"),
                      # ReasonRank's, from rank_llm's repository (the registry's 0.25.7 predates it)
                      ("listwise(template=reasonrank", "reasonrank_template.yaml"),
                      ("first(template=first", "rank_zephyr_alpha_template.yaml")]  # fmt: skip


def window_scores(n: int) -> list[float]:
    """First-stage scores for a window (InsertRank shows them; other templates ignore them): rounding cases
    of RankLLM's three decimals, negatives and integers among them."""
    return [[15.7806, 2.0005, -1.25, 0.0, 7.0, 10.12345, 3.99951][i % 7] for i in range(n)]


def listwise_windows(dl19) -> list[tuple[str, list[str]]]:
    windows = [(query, passages[:5] + TRICKY) for query, passages in dl19_windows(dl19, 3, 5)]
    return [*windows, ("what is [2] in a list [x]?", TRICKY)]


# Answers a listwise model may give, thinking first or not: RankLLM's own receive_permutation reads each.
ANSWERS = [
    ("[2] > [1] > [3]", 3),
    ("<think>\n[3] is about tides, [1] is not.\n</think>\n\n[3] > [2] > [1]", 3),  # a closed think block
    ("<think>\nFirst [3], then [1]; the rest", 4),  # never closed (a model stopped, or the budget cut it)
    ("<think>a</think><answer>[2] > [4] > [1] > [3]</answer>", 4),  # the answer inside ReasonRank's tags
    ("<think>a</think>[1] > [2] <answer>[2] > [1]</answer>", 3),  # an answer outside the tags, then inside
    ("<think>[9] first</think> [2] > [2] > [3] > [3] > [1]", 3),  # repeated ids after the reasoning
    ("[0] > [7] > [2]", 3),  # out of range
    ("I cannot rank these passages.", 3),  # junk
    ("③ > ① > ②", 3),  # digits that look like digits
    ("", 2),
]


@pytest.fixture(scope="module")
def rankllm_rendered(rankllm_site, dl19, tmp_path_factory) -> dict[str, Any]:
    """RankLLM's messages for the windows under each template, and its reading of ``ANSWERS``, in one run."""
    prompts = [{"query": q, "passages": p, "max_length": 40, "scores": window_scores(len(p))}
               for q, p in listwise_windows(dl19)]  # fmt: skip
    recorded = {path.name: str(path) for path in REFERENCES.glob("*_template.yaml")}  # from a repository, not 0.25.7
    renders = [{"template": recorded.get(reference, reference), "prompts": prompts, "use_alpha": method.startswith("first")}
               for method, reference in LISTWISE_TEMPLATES]  # fmt: skip
    parses = [{"answer": answer, "size": size} for answer, size in ANSWERS]
    output = run_reference(rankllm_site, {"renders": renders, "parses": parses}, tmp_path_factory.mktemp("rankllm"))
    messages = dict(zip([reference for _, reference in LISTWISE_TEMPLATES], output["messages"], strict=True))
    return {"messages": messages, "orders": output["orders"]}


@pytest.mark.integration
def test_listwise_answers_are_read_as_rankllm_reads_them(rankllm_rendered):
    """Thinking or not, tags or not, repeated, out-of-range, junk and look-alike ids: the same order as RankLLM's
    ``receive_permutation`` gives (reasoning=true with budget forcing differs on purpose where the think block
    never closes: no answer came, so the window keeps its order; tests/test_reasoning.py)."""
    from rerank.listwise_parsing import parse_permutation

    assert [parse_permutation(a, n).order for a, n in ANSWERS] == rankllm_rendered["orders"]


@pytest.mark.integration
@pytest.mark.parametrize(("method", "reference"), LISTWISE_TEMPLATES)
def test_listwise_prompts_are_rankllms(method, reference, rankllm_rendered, dl19):
    """The messages for DL19 windows (and passages RankLLM's cleaning rewrites) are RankLLM's, byte for byte:
    RankZephyr's, RankGPT's and InsertRank's (with each passage's score) numbered templates for listwise, the
    alphabetical one for FIRST."""
    from rerank import load_reranker

    reranker = load_reranker(f"{method}, backend=scripted, model=sort)")
    ours = [reranker.messages(q, p, 40, window_scores(len(p))) for q, p in listwise_windows(dl19)]
    assert ours == rankllm_rendered["messages"][reference]


def dl19_reference_config(
    dl19, template: str, *, scores: bool = False, pack: str = "smollm2-135m", **options
) -> tuple[Path, list, dict]:
    """Two DL19 queries' BM25 top 15 on a GGUF pack (smollm2-135m: the code paths under test do not depend on
    the model's size, and it decodes four times as fast as qwen2.5-coder-0.5b), window 10, stride 4 and a
    1,536-token context (so passages are shrunk to fit): the model, the requests and the reference's input
    (with BM25's scores for a template that shows them)."""
    from data.models import resolve_model
    from data.records import RerankRequest

    model = Path(resolve_model(pack))
    model = model if model.suffix == ".gguf" else next(model.glob("*.gguf"))
    requests = [RerankRequest(r.query, r.candidates[:15]) for r in dl19.candidates("bm25")[:2]]
    config = {
        "model": str(model), "template": template, "window_size": 10, "stride": 4, "context_size": 1536,
        "requests": [{"qid": r.query.qid, "query": r.query.text,
                      "candidates": [[c.docid, c.text, *([c.score] if scores else [])] for c in r.candidates]}
                     for r in requests],
        **options,
    }  # fmt: skip
    return model, requests, config


def assert_same_run(reranker, requests, theirs, prompts: Callable[[], list[str]]) -> None:
    """The reference's windows, prompts and rankings are ours on the first query, and the model changed BM25's
    order in the recording. The reference ran each query on its own, so the first query's three windows stand
    for the recording (the second query's would double the minutes and test the same code)."""
    windows = [[5, 15], [1, 11], [0, 7]]
    assert [call["span"] for call in theirs["calls"]] == windows * 2
    assert [list(span) for span in reranker._spans(15)] == windows
    first = requests[0]
    result = reranker.rerank([first])[0]
    assert prompts() == [c["prompt"] for c in theirs["calls"][: len(windows)]]
    assert [c.docid for c in result.ranking.candidates] == theirs["rankings"][first.query.qid]
    assert any(  # the recording is no identity: the model moved BM25's order somewhere
        rank != [c.docid for c in r.candidates] for r, rank in zip(requests, theirs["rankings"].values(), strict=True)
    )


LISTWISE = "rank_zephyr_template.yaml", {}
# FIRST on qwen2.5-coder-0.5b: smollm2 keeps every letter among its top 30, which would leave the cut-off untested
FIRST = "rank_zephyr_alpha_template.yaml", {"use_logits": True, "use_alpha": True, "pack": "qwen2.5-coder-0.5b"}
INSERTRANK = "insert_rank_template.yaml", {"answers": "reverse", "scores": True}


@pytest.mark.integration
@pytest.mark.slow
def test_listwise_runs_as_rankllm_on_dl19(dl19):
    """RankLLM's RankZephyr pipeline (recorded) and ours, same GGUF model through llama.cpp, greedy, on DL19's
    BM25 top 15: the same windows (the top ones cut short), rendered prompts (passages shrunk to the context),
    answers and final rankings.
    """
    from rerank import load_reranker

    model, requests, config = dl19_reference_config(dl19, LISTWISE[0], **LISTWISE[1])
    theirs = recorded_reference("rankllm_listwise_dl19", config)
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
    assert [c["answer"] for c in calls] == [c["answer"] for c in theirs["calls"][: len(calls)]]


@pytest.mark.integration
@pytest.mark.slow
def test_first_runs_as_rankllm_on_dl19(dl19):
    """RankLLM's FIRST (``use_logits``, ``use_alpha``; recorded) and ours, same GGUF model through llama.cpp: the
    same windows, alphabetical prompts, and rankings from the letters' log-probabilities at the second answer
    token, letters outside the top 30 kept in window order."""
    from rerank import load_reranker

    model, requests, config = dl19_reference_config(dl19, FIRST[0], **FIRST[1])
    theirs = recorded_reference("rankllm_first_dl19", config)
    reranker = load_reranker(f"first(backend=llama.cpp(threads=2), model={model}, window_size=10, stride=4, "
                             "context_size=1536)")  # fmt: skip
    backend, prompts = reranker.backend, []

    def observed(conversations, labels, prefix="", read_at=0, top=0):  # the real backend, watched
        prompts.extend(backend.render(c) for c in conversations)
        return type(backend).next_token_scores(backend, conversations, labels, prefix, read_at, top)

    backend.next_token_scores = observed
    assert_same_run(reranker, requests, theirs, lambda: prompts)
    calls = theirs["calls"][: len(prompts)]
    sizes = [end - start for start, end in (call["span"] for call in calls)]
    in_top = [sum(ord(letter) - ord("A") < size for letter in call["letters"])
              for size, call in zip(sizes, calls, strict=True)]  # fmt: skip
    assert in_top != sizes, "every letter was among the top 30 in every window: the cut-off went untested"


@pytest.mark.reference
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "template"),
    [("rankllm_listwise_dl19", LISTWISE), ("rankllm_first_dl19", FIRST), ("rankllm_insertrank_dl19", INSERTRANK)],
)
def test_the_rankllm_recordings_are_what_rankllm_gives(name, template, rankllm_site, dl19, tmp_path):
    """RankLLM itself, run now on the recorded inputs, gives the recording (``RERANK_RECORD=1`` re-records)."""
    _, _, config = dl19_reference_config(dl19, template[0], **template[1])
    live = recorded_reference(name, config, lambda: run_reference(rankllm_site, config, tmp_path))
    if not os.environ.get("RERANK_RECORD"):
        assert live == recorded_reference(name, config)


@pytest.mark.integration
def test_insertrank_runs_as_rankllm_on_dl19(dl19):
    """RankLLM's InsertRank template through its own sliding window (recorded), every window answered with its
    passages reversed on both sides (so no model decodes): the same windows, the same prompts, each passage
    shown with the BM25 score of the position it holds (RankLLM's ``receive_permutation`` moves passages and
    leaves scores in place), and the same final rankings, for both queries."""
    from rerank import load_reranker
    from rerank.llm.backend import Generation

    model, requests, config = dl19_reference_config(dl19, INSERTRANK[0], **INSERTRANK[1])
    theirs = recorded_reference("rankllm_insertrank_dl19", config)
    reranker = load_reranker(f"listwise(backend=llama.cpp(threads=2), model={model}, template=insertrank, "
                             "window_size=10, stride=4, context_size=1536)")  # fmt: skip
    backend, prompts = reranker.backend, []

    def reverse(conversations, max_new_tokens, min_new_tokens=0):
        answers = []
        for conversation in conversations:
            prompts.append(backend.render(conversation))
            num = int(re.search(r"I will provide you with (\d+) passages", prompts[-1]).group(1))
            answers.append(Generation(" > ".join(f"[{i}]" for i in range(num, 0, -1)), 0, 0))
        return answers

    backend.generate = reverse
    results = [reranker.rerank([r])[0] for r in requests]  # one query at a time, as the reference ran them
    assert prompts == [c["prompt"] for c in theirs["calls"]]
    assert {r.ranking.qid: [c.docid for c in r.ranking] for r in results} == theirs["rankings"]
    # the second window [1, 11) shows at its 5th place (position 5) the passage the first window moved there
    # from position 14, with position 5's score
    shown = prompts[1].split("BM25 score for passge [5]: ")[1].split("\n")[0]
    first = requests[0].candidates
    assert shown == f"{first[5].score:.3f}" != f"{first[14].score:.3f}"


@pytest.fixture(scope="module")
def tdpart_reference():
    """pyterrier-generative 0.1.3's TDPart module, imported alone: the package's ``__init__`` loads PyTerrier,
    pyterrier-rag and torch for its transformers, which the algorithm does not use (numpy, pandas, tqdm)."""
    import importlib
    import types

    site = reference_site(PYTERRIER_GENERATIVE, "pyterrier_generative")
    package = types.ModuleType("pyterrier_generative")
    package.__path__ = [str(site / "pyterrier_generative")]  # type: ignore[attr-defined]
    saved = {name: module for name, module in sys.modules.items() if name.startswith("pyterrier_generative")}
    sys.modules["pyterrier_generative"] = package
    try:
        yield importlib.import_module("pyterrier_generative.algorithms.tdpart")
    finally:
        for name in [n for n in sys.modules if n.startswith("pyterrier_generative")]:
            del sys.modules[name]
        sys.modules.update(saved)


class TDPartJudge:
    """What pyterrier-generative's ``tdpart`` calls for a window's order: here, the passages' hidden grades, best
    first (ties cannot happen); it keeps every window it is shown."""

    max_iters = 100

    def __init__(self, grade: dict[str, int], calls: list[list[str]], window: int, buffer: int, cutoff: int):
        self.grade, self.calls = grade, calls
        self.window_size, self.buffer, self.cutoff = window, buffer, cutoff

    def __call__(self, doc_idx: list[str], **_: Any) -> list[int]:
        self.calls.append(list(doc_idx))
        return sorted(range(len(doc_idx)), key=lambda p: -self.grade[doc_idx[p]])


TDPART_CASES = [  # (candidates, window, buffer, cutoff): the paper's setting at several depths, and edge cases
    (100, 20, 20, 10), (64, 20, 20, 10), (37, 20, 20, 10), (20, 20, 20, 10), (21, 20, 20, 10), (100, 20, 40, 10),
    (100, 10, 15, 5), (55, 8, 30, 3), (80, 20, 25, 20), (30, 5, 5, 5), (100, 20, 9, 10), (45, 12, 100, 1),
]  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize(("n", "window", "buffer", "cutoff"), TDPART_CASES)
def test_tdpart_schedules_windows_as_pyterrier_generative(n, window, buffer, cutoff, tdpart_reference):
    """pyterrier-generative's ``tdpart`` and ``listwise(strategy=tdpart)`` on the scripted backend, driven by
    the same judge (a passage's hidden grade, best first) on a shuffled list: the same windows, in the same
    order, and the same final ranking; three queries at once on ours, each alone on the reference."""
    import pandas as pd

    from data.records import Candidate, Query, RerankRequest
    from rerank import load_reranker

    requests, theirs = [], {}
    for q in range(3):
        rng = random.Random(f"{n}-{window}-{buffer}-{cutoff}-{q}")
        grades = rng.sample(range(1, 10 * n), n)  # distinct: the judge never ties
        docs = [f"q{q}d{i}" for i in range(n)]
        requests.append(
            RerankRequest(
                Query(f"q{q}", "a query"),
                tuple(
                    Candidate(d, float(n - i), f"grade {g} of {d}")
                    for i, (d, g) in enumerate(zip(docs, grades, strict=True))
                ),
            )
        )
        grade = dict(zip(docs, grades, strict=True))
        calls: list[list[str]] = []

        frame = pd.DataFrame(
            {
                "qid": f"q{q}",
                "query": "a query",
                "docno": docs,
                "text": [c.text for c in requests[-1].candidates],
                "score": [float(n - i) for i in range(n)],
            }
        )
        order, _ = tdpart_reference.tdpart(TDPartJudge(grade, calls, window, buffer, cutoff), "a query", frame)
        theirs[f"q{q}"] = (list(order), calls)
    reranker = load_reranker(f"listwise(model=sort, backend=scripted, strategy=tdpart, window_size={window}, "
                             f"buffer={buffer}, cutoff={cutoff})")  # fmt: skip
    ours: dict[str, list[list[str]]] = {r.query.qid: [] for r in requests}
    rank_windows = reranker._rank_windows
    asked: list[list[int]] = []

    def observed(conversations, windows):  # the method's own call, watched: which passages each window held
        asked.extend(len(w) for w in windows)
        for conversation in conversations:
            shown = re.findall(r"^\[\d+\] grade \d+ of (q(\d+)d\d+)", conversation[-1]["content"], re.M)
            ours[f"q{shown[0][1]}"].append([docid for docid, _ in shown])
        return rank_windows(conversations, windows)

    reranker._rank_windows = observed
    results = reranker.rerank(requests)
    for result in results:
        order, calls = theirs[result.ranking.qid]
        assert ours[result.ranking.qid] == [c for c in calls if len(c) > 1]  # a window of one is not asked
        assert [c.docid for c in result.ranking] == order
        assert result.cost.calls == len(ours[result.ranking.qid])
    assert max(asked) <= window


def _tourrank_recordings() -> list[dict]:
    """The games chenyiqun/TourRank's own code played (recorded by ``tests/reference/tourrank_schedules.py`` at
    the commit the file names: the script is not on the package registry)."""
    return json.loads((REFERENCES / "tourrank_schedules.json").read_text(encoding="utf-8"))["cases"]


@pytest.mark.integration
@pytest.mark.parametrize("case", _tourrank_recordings(), ids=lambda c: f"{c['n']}x{c['tournaments']}")
def test_tournament_plays_tourranks_games(case):
    """``listwise(strategy=tournament)`` on the scripted backend, judged by the passages' hidden grades as the
    recording's judge judged them: in every tournament, the same groups in the same stages (as sets: each side
    shuffles a group before showing it), the same number kept from each, and the same final ranking."""
    from data.records import Candidate, Query, RerankRequest
    from rerank import load_reranker
    from rerank.methods.schedules import TOURNAMENT_STAGES

    n, tournaments = case["n"], case["tournaments"]
    docs = [f"d{i}" for i in range(n)]
    request = RerankRequest(Query("q", "a query"), tuple(
        Candidate(d, float(n - i), f"grade {case['grades'][d]} of {d}") for i, d in enumerate(docs)))  # fmt: skip
    reranker = load_reranker(f"listwise(model=sort, backend=scripted, strategy=tournament, tournaments={tournaments})")
    steps: list[list[list[str]]] = []
    rank_windows = reranker._rank_windows

    def observed(conversations, windows):  # the method's own call, watched: which passages each group held
        steps.append([sorted(docs[c] for c in window) for window in windows])
        return rank_windows(conversations, windows)

    reranker._rank_windows = observed
    (result,) = reranker.rerank([request])
    for t, played in enumerate(case["played"]):
        groups = [
            group for step in steps for group in step[t * len(step) // tournaments : (t + 1) * len(step) // tournaments]
        ]
        assert groups == [game["group"] for game in played["games"]]
        assert [keep for _, count, keep in TOURNAMENT_STAGES for _ in range(count)] == [
            g["keep"] for g in played["games"]
        ]
    assert [c.docid for c in result.ranking] == case["ranking"]
    assert result.cost.calls == sum(len(p["games"]) for p in case["played"]) == 13 * tournaments


@pytest.mark.integration
def test_rank_r1_sends_and_decides_as_llm_rankers_rank_r1():
    """ielab/llm-rankers' ``RankR1SetwiseLlmRanker`` (recorded at the commit the file names) and
    ``setwise(template=rank-r1, reasoning=true, variant=llm-rankers)``, judged alike (the passage of highest
    grade named in answer tags, or no tags at all): the same messages, byte for byte (system prompt, numbered
    passages shuffled from the same 929-seeded sequence), the same winners where the answer parses and the
    set's first passage where it does not, and the same rankings."""
    from data.records import Candidate, Query, RerankRequest
    from rerank import load_reranker
    from rerank.llm.backend import Generation

    reference = json.loads((REFERENCES / "rank_r1_setwise.json").read_text(encoding="utf-8"))
    judge = load_module(REFERENCES / "rank_r1_setwise.py").judge
    requests = [RerankRequest(Query(qid, query), tuple(Candidate(f"{qid}d{i}", float(-i), f"grade {g} passage {i} of {qid}")
                for i, g in enumerate(grades))) for qid, query, grades in reference["queries"]]  # fmt: skip
    reranker = load_reranker("setwise(template=rank-r1, reasoning=true, scoring=generate, variant=llm-rankers, "
                             "num_child=3, k=4, max_words=none, model=r1, backend=scripted)")  # fmt: skip
    sent: list = []

    def answered(conversations, max_new_tokens, min_new_tokens=0):  # the reference's judge, on what is sent
        sent.extend(conversations)
        return [Generation(judge(c), 0, len(judge(c).split())) for c in conversations]

    reranker.backend.generate = answered
    results = reranker.rerank(requests)
    assert sent == reference["calls"]
    assert {r.ranking.qid: [c.docid for c in r.ranking] for r in results} == reference["rankings"]
    assert sum(r.cost.parse_failures for r in results) > 0  # the judge's untagged answers were exercised
    decided = []
    for completion in reference["table"]:  # closed, capitalised, unclosed, cut, outside the tags, two labels, junk
        reranker._sequence = random.Random(1)
        reranker.backend.generate = lambda conversations, *_, c=completion, **__: (
            [Generation(c, 0, 1)] * len(conversations)
        )
        ((winner, _),) = reranker._judge_tagged([("a query", [f"passage {i}" for i in range(4)])])
        decided.append(winner)
    assert decided == reference["decided"]


@pytest.mark.integration
def test_rank_k_prompts_and_answers_are_rank_ks():
    """hltcoe/rank-k's own prompt and parser (recorded at the commit the file names): ``listwise(template=rank-k)``
    sends the same message for a window, byte for byte (texts as they are, passages two lines apart), and reads
    every answer of the table (the last line, ties, repeats, [0], negative ids, prose) to the same order."""
    from rerank import load_reranker
    from rerank.listwise_parsing import parse_rank_k

    reference = json.loads((REFERENCES / "rank_k.json").read_text(encoding="utf-8"))
    reranker = load_reranker("listwise(template=rank-k, backend=scripted, model=sort)")
    ours = [reranker.messages(query, passages, 300) for query, passages in reference["windows"]]
    assert ours == [[{"role": "user", "content": prompt}] for prompt in reference["prompts"]]
    assert [parse_rank_k(answer, size).order for answer, size in reference["answers"]] == reference["orders"]


COMPARISON = ["setwise(strategy=heapsort, num_child=3", "pairwise(strategy=heapsort"]  # the bubble sorts' schedules
# and decisions: the simulation below


def comparison_config(method: str, dl19) -> tuple[str, list, dict]:
    """Two DL19 queries' BM25 top 10 with k = 3 on smollm2-135m (fp32, transformers): the model folder, the
    requests and llm-rankers' input."""
    from data.models import resolve_model
    from data.records import RerankRequest
    from rerank.llm.transformers_backend import fp32_copy_of_gguf

    folder = fp32_copy_of_gguf(Path(resolve_model("smollm2-135m")))  # a llama-type model, as llm-rankers needs
    requests = [RerankRequest(r.query, r.candidates[:10]) for r in dl19.candidates("bm25")[:2]]
    name, strategy = method.split("(")[0], method.split("strategy=")[1].split(",")[0]
    config = {
        "ranker": name, "model": str(folder), "method": strategy, "k": 3, "num_child": 3,
        "requests": [{"qid": r.query.qid, "query": r.query.text, "candidates": [[c.docid, c.text] for c in r.candidates]}
                     for r in requests],
        "truncate": {"query": 128, "passage": 128},  # run.py's defaults: the whole texts go in, each side cuts
    }  # fmt: skip
    return str(folder), requests, config


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("method", COMPARISON)
def test_comparison_methods_run_as_llm_rankers_on_dl19(method, dl19):
    """``variant=llm-rankers`` and ielab/llm-rankers' own rankers (recorded), same Hugging Face model on
    transformers: the same prompts (chat template plus `` Passage:``) in the same order, and the same final
    rankings, on two DL19 queries' BM25 top 10 with k = 3. Query and passages go in whole: llm-rankers cuts
    them to 128 tokens with its own ``truncate`` (as its run.py does), rerank with ``max_words=none,
    max_tokens=128``.

    With this model llm-rankers' pairwise prompt never gets a letter back (the model writes `` "``), so no
    pair is swapped on either side; the decisions themselves are compared in the simulation below. Setwise
    bubblesort is not run here: llm-rankers raises IndexError when the model names a letter outside the
    window, which this model does on these queries."""
    from rerank import load_reranker

    folder, requests, config = comparison_config(method, dl19)
    name = method.split("(")[0]
    theirs = recorded_reference(f"llmrankers_{name}_dl19", config)

    spec = f"{method}, model={folder}, backend=transformers, k=3, variant=llm-rankers, max_words=none, max_tokens=128)"
    reranker = load_reranker(spec)
    backend, prompts = reranker.backend, []
    assert any(backend.count_tokens(c.text) > 128 for r in requests for c in r.candidates)  # the cut is exercised

    def observed(conversations, labels, prefix="", read_at=0, top=0):  # the real backend, watched
        prompts.extend(backend.render(c) + prefix for c in conversations)
        return type(backend).next_token_scores(backend, conversations, labels, prefix, read_at, top)

    backend.next_token_scores = observed
    results = [reranker.rerank([r])[0] for r in requests]  # one query at a time, as the reference runs
    assert sorted(prompts) == sorted(c["prompt"] for c in theirs["calls"])
    if name == "setwise":  # pairwise asks a pair's two orders in one call, in either order
        assert prompts == [c["prompt"] for c in theirs["calls"]]
    assert {r.ranking.qid: [c.docid for c in r.ranking.candidates] for r in results} == theirs["rankings"]
    if name == "setwise":
        assert any(rank[:3] != [c.docid for c in r.candidates][:3]
                   for r, rank in zip(requests, theirs["rankings"].values(), strict=True))  # fmt: skip


@pytest.mark.reference
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("method", COMPARISON)
def test_the_llm_rankers_recordings_are_what_llm_rankers_gives(method, llmrankers_site, dl19, tmp_path):
    """llm-rankers itself, run now on the recorded inputs, gives the recording (``RERANK_RECORD=1`` re-records)."""
    _, _, config = comparison_config(method, dl19)
    name = f"llmrankers_{method.split('(')[0]}_dl19"
    live = recorded_reference(
        name, config, lambda: run_reference(llmrankers_site, config, tmp_path, driver="llm_rankers_comparison.py")
    )
    if not os.environ.get("RERANK_RECORD"):
        assert live == recorded_reference(name, config)


def _simulated_answer():
    """The noisy judge the llm-rankers driver answers with (loaded from its file, which stubs nothing on import)."""
    spec = importlib.util.spec_from_file_location("llm_rankers_comparison", REFERENCES / "llm_rankers_comparison.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.simulated_answer


class JudgeBackend(LLMBackend):
    """A backend whose greedy token is the driver's ``simulated_answer`` over the docids a prompt shows (the
    passages are docids), so llm-rankers' sorting can be replayed without a model."""

    name = "judge"
    shown: ClassVar[list[list[str]]] = []

    def __init__(self, model: str, batch_size: int = 1):
        self.model, self.seed, self.answer = model, int(model.removeprefix("judge-")), _simulated_answer()

    def render(self, messages):
        return messages[-1]["content"]

    def count_tokens(self, text):
        return len(text.split())

    def generate(self, conversations, max_new_tokens, min_new_tokens=0, stop=()):
        raise AssertionError("llm-rankers' variant reads one greedy token")

    def next_token_scores(self, conversations, labels, prefix="", read_at=0, top=0):
        assert (prefix, read_at, top) == (" Passage:", 0, 1)
        out = []
        for conversation in conversations:
            shown = re.findall(r'Passage [A-Z]: "(\w+)"', conversation[-1]["content"])
            JudgeBackend.shown.append(shown)
            written = f" {self.answer(self.seed, shown)}"
            scores = {label: 0.0 if label == written else -5.0 for label in labels}
            out.append(TokenScores(scores, 1, len(labels) - (written in labels)))
        return out


NOISY_JUDGE = [
    "setwise(strategy=heapsort, num_child=3", "setwise(strategy=bubblesort, num_child=3",
    "setwise(strategy=heapsort, num_child=2", "setwise(strategy=bubblesort, num_child=2",
    "setwise(strategy=heapsort, num_child=1", "setwise(strategy=bubblesort, num_child=1",
    "pairwise(strategy=heapsort", "pairwise(strategy=bubblesort",
]  # fmt: skip


def noisy_judge_config(method: str) -> dict:
    """60 shuffled lists of 2 to 14 docids, and the sort to run over them."""
    rng = random.Random(7)
    lists = [rng.sample([str(i) for i in range(n)], n) for n in (rng.randint(2, 14) for _ in range(60))]
    name, strategy = method.split("(")[0], method.split("strategy=")[1].split(",")[0]
    num_child = int(method.split("num_child=")[1]) if "num_child" in method else 1
    return {"simulate": 11, "ranker": name, "method": strategy, "k": 3, "num_child": num_child, "lists": lists}


NOISY_JUDGE_CONFIG = {"model": "judge-11", "methods": NOISY_JUDGE}  # the lists: noisy_judge_config


def noisy_judge_live(site: Path, tmp_path: Path) -> dict:
    """llm-rankers' sorts under the noisy judge, every method in one process."""
    outputs = run_reference(site, [noisy_judge_config(m) for m in NOISY_JUDGE], tmp_path, "llm_rankers_comparison.py")
    return {"sorts": dict(zip(NOISY_JUDGE, outputs, strict=True))}


@pytest.fixture(scope="module")
def noisy_judge_reference() -> dict[str, dict]:
    """What llm-rankers' sorts gave under the noisy judge (``tests/reference/llmrankers_noisy_judge.json``)."""
    return recorded_reference("llmrankers_noisy_judge", NOISY_JUDGE_CONFIG)["sorts"]


@pytest.mark.reference
@pytest.mark.integration
@pytest.mark.slow
def test_the_noisy_judge_recording_is_what_llm_rankers_gives(llmrankers_site, tmp_path):
    """llm-rankers itself, run now under the noisy judge, gives the recording (``RERANK_RECORD=1`` re-records)."""
    live = recorded_reference(
        "llmrankers_noisy_judge", NOISY_JUDGE_CONFIG, lambda: noisy_judge_live(llmrankers_site, tmp_path)
    )
    if not os.environ.get("RERANK_RECORD"):
        assert live == recorded_reference("llmrankers_noisy_judge", NOISY_JUDGE_CONFIG)


@pytest.mark.integration
@pytest.mark.parametrize("method", NOISY_JUDGE)
def test_comparison_sorting_is_llm_rankers_with_a_noisy_judge(method, noisy_judge_reference):
    """llm-rankers' own sorting (heapsort stopping at the k-th extraction, bubble sorts with their skips), its
    decisions (setwise: a letter else the parent; pairwise: a swap only when both orders agree) and its final
    order, against ``variant=llm-rankers`` on 60 shuffled lists of 2 to 14 passages judged alike on both
    sides by a noisy judge: the same sets asked in the same order, and the same rankings."""
    from data.records import Candidate, Query, RerankRequest
    from rerank import load_reranker
    from rerank.llm.backend import BACKENDS

    if "judge" not in BACKENDS:
        BACKENDS.register("judge", JudgeBackend)
    lists, name = noisy_judge_config(method)["lists"], method.split("(")[0]
    theirs = noisy_judge_reference[method]

    reranker = load_reranker(f"{method}, model=judge-11, backend=judge, k=3, variant=llm-rankers)")
    for docids, their_sets, their_ranking in zip(lists, theirs["calls"], theirs["rankings"], strict=True):
        JudgeBackend.shown.clear()
        request = RerankRequest(Query("q", "q"), tuple(Candidate(d, 0.0, d) for d in docids))
        (result,) = reranker.rerank([request])
        assert [c.docid for c in result.ranking.candidates] == their_ranking
        # llm-rankers' setwise bubblesort also asks about windows of one passage or none, where an answer in
        # range changes nothing; rerank does not send them
        ours, their_sets = JudgeBackend.shown, [shown for shown in their_sets if len(shown) > 1]
        if name == "pairwise":  # both orders of a pair in one call, the champion first (llm-rankers: the other)
            assert ours[1::2] == [pair[::-1] for pair in ours[::2]]
            ours, their_sets = [sorted(p) for p in ours[::2]], [sorted(p) for p in their_sets]
        assert ours == their_sets


def _jointrank_designs() -> list[dict]:
    """The blocks V3RGANz/jointrank's own code builds (recorded by ``tests/reference/jointrank_designs.py``:
    the project is not on the package registry, so CI cannot install it)."""
    return json.loads((REFERENCES / "jointrank_designs.json").read_text(encoding="utf-8"))["designs"]


@pytest.mark.unit
def test_jointrank_reference_design_is_jointranks():
    """``design=reference`` builds the blocks jointrank's evaluation builds, block for block and in order, for
    its two published settings (20 / 4 and 10 / 2) and edge cases (a Latin square, fewer candidates than a
    block, pools that run short), each from the same seeded generator."""
    from rerank.methods.jointrank import reference_design

    designs = _jointrank_designs()
    assert {d["replicas"] == 2 and d["n"] == d["block_size"] ** 2 for d in designs} == {True, False}
    for d in designs:
        ours = reference_design(d["n"], d["block_size"], d["replicas"], random.Random(d["seed"]))
        assert ours == d["blocks"], (d["n"], d["block_size"], d["replicas"], d["seed"])


@pytest.mark.unit
def test_jointrank_ranks_the_reference_blocks():
    """With ``design=reference`` the inner method is asked about exactly those blocks, in their order (its
    generator seeded with ``seed:qid``), and every candidate is ranked once."""
    from data.records import Candidate, Query, RerankRequest
    from rerank import load_reranker
    from rerank.testing import assert_permutation

    d = next(
        d
        for d in _jointrank_designs()
        if (d["n"], d["block_size"], d["replicas"], d["seed"]) == (37, 10, 2, "0:104861")
    )
    request = RerankRequest(Query("104861", "q"), tuple(Candidate(f"d{i}", 0.0, f"text {i}") for i in range(37)))
    reranker = load_reranker('jointrank(inner="first(model=sort, backend=scripted, window_size=10)", block_size=10, '
                             "replicas=2, design=reference)")  # fmt: skip
    asked: list[list[int]] = []
    rerank_blocks = reranker.inner.rerank

    def watched(requests):  # the real inner method, its requests kept
        asked.extend([int(c.docid[1:]) for c in r.candidates] for r in requests)
        return rerank_blocks(requests)

    reranker.inner.rerank = watched
    (result,) = reranker.rerank([request])
    assert asked == d["blocks"]
    assert_permutation(request, result)


def _diver() -> dict:
    """What GroupRank's own code (AQ-MedAI/Diver) sent and ranked (recorded by ``tests/reference/diver_groupwise.py``:
    Diver is not on the package registry, so CI cannot install it)."""
    return json.loads((REFERENCES / "diver_groupwise.json").read_text(encoding="utf-8"))


class AnswersBackend(LLMBackend):
    """A backend that answers every generation from ``answers`` in turn, as the recording's scripted model did;
    it keeps the user messages it was shown."""

    name = "answers"
    answers: ClassVar[list[str]] = []
    shown: ClassVar[list[str]] = []

    def __init__(self, model: str, batch_size: int = 1):
        self.model = model

    def render(self, messages):
        return messages[-1]["content"]

    def count_tokens(self, text):
        return len(text.split())

    def generate(self, conversations, max_new_tokens, min_new_tokens=0, stop=()):
        from rerank.llm.backend import Generation

        out = []
        for conversation in conversations:
            text = self.answers[len(self.shown) % len(self.answers)]
            self.shown.append(conversation[-1]["content"])
            out.append(Generation(text, 1, 1))
        return out

    def next_token_scores(self, conversations, labels, prefix="", read_at=0, top=0):
        raise AssertionError("groupwise generates")


def _assert_ranks_as_diver(result, request, diver_ranking: list[list]) -> None:
    """Diver's ranking leads ours, docid for docid, with its scores; the passages it left out (never scored) follow
    in their given order."""
    from rerank.testing import assert_permutation

    assert_permutation(request, result)
    ours = [(c.docid, c.score) for c in result.ranking.candidates]
    assert [d for d, _ in ours[: len(diver_ranking)]] == [d for d, _ in diver_ranking]
    assert [s for _, s in ours[: len(diver_ranking)]] == pytest.approx([s for _, s in diver_ranking], abs=1e-6)
    unscored = [c.docid for c in request.candidates if c.docid not in {d for d, _ in diver_ranking}]
    assert [d for d, _ in ours[len(diver_ranking) :]] == unscored


@pytest.mark.unit
def test_groupwise_diver_reads_answers_as_diver():
    """``variant=diver`` reads each scripted answer as Diver's code read it (its repairs, a whole group zeroed
    when it gives up, negative ids), averages as it does and keeps its tie order (the order passages were
    first scored), over the same shuffled groups of three in two rounds."""
    from data.records import Candidate, Query, RerankRequest
    from rerank import load_reranker
    from rerank.llm.backend import BACKENDS

    if "answers" not in BACKENDS:
        BACKENDS.register("answers", AnswersBackend)
    diver = _diver()
    run = diver["answers"]
    request = RerankRequest(Query("q", "query"), tuple(Candidate(d, 0.0, t) for d, t in run["candidates"]))
    reranker = load_reranker(
        f"groupwise(model=scripted, backend=answers, variant=diver, group_size={run['group_size']}, "
        f"rounds={run['num_epoch']}, max_words=none, max_chars={run['max_doc_lens']}, seed={diver['seed']})"
    )
    assert any(len(case["ranking"]) < len(run["candidates"]) for case in run["cases"])  # some never scored
    assert any(len({s for _, s in case["ranking"]}) < len(case["ranking"]) for case in run["cases"])  # ties
    for case in run["cases"]:
        AnswersBackend.answers, AnswersBackend.shown = case["answers"], []
        (result,) = reranker.rerank([request])
        _assert_ranks_as_diver(result, request, case["ranking"])
        if case["answers"] == ["I cannot decide."]:  # a group Diver zeroes is a parse failure here
            assert result.cost.parse_failures == result.cost.calls == 4


@pytest.mark.integration
@pytest.mark.slow
def test_groupwise_diver_variant_is_grouprank_on_dl19():
    """``groupwise(variant=diver, template=grouprank, group_size=10, max_words=none, max_chars=3000)`` against
    Diver's ``GroupReranker`` (recorded), the same Hugging Face model on transformers, greedy: the same rendered
    prompts in the same order (every round shuffled, the first too), the same answers, and the same ranking,
    on a DL19 query's BM25 top 20 in two rounds."""
    from data.models import resolve_model
    from data.records import Candidate, Query, RerankRequest
    from rerank import load_reranker
    from rerank.llm.transformers_backend import fp32_copy_of_gguf

    diver = _diver()
    run = diver["model"]
    folder = fp32_copy_of_gguf(Path(resolve_model(run["name"])))
    reranker = load_reranker(
        f"groupwise(model={folder}, backend=transformers, batch_size=1, variant=diver, template=grouprank, "
        f"group_size={run['group_size']}, rounds={run['num_epoch']}, max_words=none, max_chars={run['max_doc_lens']}, "
        f"max_new_tokens={diver['max_new_tokens']}, seed={diver['seed']})"
    )
    backend, calls = reranker.backend, []

    def watched(conversations, max_new_tokens, min_new_tokens=0):  # the real backend, its prompts and answers kept
        answers = type(backend).generate(backend, conversations, max_new_tokens, min_new_tokens)
        calls.extend(
            {"prompt": backend.render(c), "answer": a.text} for c, a in zip(conversations, answers, strict=True)
        )
        return answers

    backend.generate = watched
    assert any(len(q["ranking"]) < len(q["candidates"]) for q in run["queries"])  # a passage left unscored
    for q in run["queries"]:
        calls.clear()
        request = RerankRequest(Query(q["qid"], q["query"]), tuple(Candidate(d, 0.0, t) for d, t in q["candidates"]))
        (result,) = reranker.rerank([request])
        assert [c["prompt"] for c in calls] == [c["prompt"] for c in q["calls"]]
        assert calls == q["calls"]
        _assert_ranks_as_diver(result, request, q["ranking"])


# -- monoT5 and duoT5 ---------------------------------------------------------------------------------------

PYTERRIER_T5 = "pyterrier-t5==0.3.0"

# (reference, its method, its batch size) and the spec that gives its scores
T5_CASES = [
    (("pyterrier-t5", "mono", 1), "mono-t5(model={model})"),
    (("pyterrier-t5", "mono", 4), "mono-t5(model={model}, variant=pyterrier-t5, batch_size=4)"),
    (("pyterrier-t5", "duo", 1), "duo-t5(model={model})"),
    (("pyterrier-t5", "duo", 4), "duo-t5(model={model}, variant=pyterrier-t5, batch_size=4)"),
    # rank-llm one pair at a time: its generate() call passes no attention mask, which transformers 4 inferred
    # from the padding and transformers 5 does not, so its batched scores here attend to the padding
    (("rank-llm", "mono", 1), "mono-t5(model={model}, variant=rank-llm)"),
    (("rank-llm", "duo", 1), "duo-t5(model={model}, variant=rank-llm)"),
]


def dl19_with_a_long_passage(dl19, depth: int, long_from: int, long_to: int) -> list[dict]:
    """Three DL19 queries' top ``depth`` BM25 passages, the first with one more: its passages ``long_from`` to
    ``long_to`` joined, too long for the model, so the cut is compared too."""
    ranked = dl19.candidates("bm25")[:3]
    requests = [
        {"qid": r.query.qid, "query": r.query.text, "candidates": [[c.docid, c.text] for c in r.candidates[:depth]]}
        for r in ranked
    ]
    requests[0]["candidates"].append(["long", " ".join(c.text for c in ranked[0].candidates[long_from:long_to])])
    return requests


def as_requests(requests: list[dict]) -> list:
    from data.records import Candidate, Query, RerankRequest

    return [
        RerankRequest(Query(r["qid"], r["query"]), tuple(Candidate(d, 0.0, t) for d, t in r["candidates"]))
        for r in requests
    ]


def assert_scores_as(results, reference: dict[str, dict[str, float]]) -> None:
    """Every score within 1e-5 of the reference's, and the same ranking (ties by docid)."""
    for result in results:
        ours = {c.docid: c.score for c in result.ranking.candidates}
        theirs = reference[result.ranking.qid]
        assert ours.keys() == theirs.keys()
        assert max(abs(ours[d] - theirs[d]) for d in ours) < 1e-5
        assert [c.docid for c in result.ranking.candidates] == sorted(theirs, key=lambda d: (-theirs[d], d))


def t5_requests(dl19) -> list[dict]:
    """Top 8, and a passage too long for T5's 512 tokens."""
    return dl19_with_a_long_passage(dl19, 8, 8, 20)


def t5_config(t5_dir: str, dl19) -> dict:
    return {"model": t5_dir, "cases": [list(case) for case, _ in T5_CASES], "requests": t5_requests(dl19)}


def t5_live(config: dict, tmp_path: Path) -> dict:
    """pyterrier-t5 and rank-llm, every case in one process."""
    sites = os.pathsep.join(
        str(reference_site(*site)) for site in ((PYTERRIER_T5, "pyterrier_t5"), (RANK_LLM, "rank_llm"))
    )
    runs = [{"reference": ref, "method": method, "batch_size": batch, "model": config["model"],
             "requests": config["requests"]} for ref, method, batch in config["cases"]]  # fmt: skip
    return {"outputs": run_reference(Path(sites), runs, tmp_path, "t5_rerankers.py")}


@pytest.fixture(scope="module")
def t5_reference(t5_dir, dl19) -> list[dict]:
    """What pyterrier-t5 and rank-llm gave on the random T5 (``tests/reference/t5_rerankers_dl19.json``)."""
    return recorded_reference("t5_rerankers_dl19", t5_config(t5_dir, dl19))["outputs"]


@pytest.mark.reference
@pytest.mark.integration
@pytest.mark.slow
def test_the_t5_recording_is_what_pyterrier_t5_and_rank_llm_give(t5_dir, dl19, tmp_path):
    """pyterrier-t5 and rank-llm themselves, run now on the random T5, give the recording (``RERANK_RECORD=1``
    re-records)."""
    config = t5_config(t5_dir, dl19)
    live = recorded_reference("t5_rerankers_dl19", config, lambda: t5_live(config, tmp_path))
    if not os.environ.get("RERANK_RECORD"):
        assert live == recorded_reference("t5_rerankers_dl19", config)


@pytest.mark.integration
@pytest.mark.parametrize(
    "position",
    # the default path in make check; the reference variants in the full suite
    [pytest.param(n, marks=() if "variant" not in spec else pytest.mark.slow) for n, (_, spec) in enumerate(T5_CASES)],
    ids=[spec.split("(")[0] + "/" + c[0] + f"-b{c[2]}" for c, spec in T5_CASES],
)
def test_mono_and_duo_t5_score_as_pyterrier_t5_and_rank_llm(position, t5_dir, dl19, t5_reference):
    """The same random T5 and DL19 texts (one passage cut to fit): every score within 1e-5 of the reference's
    and the same ranking. pyterrier-t5 with batches of 1 is rerank's default; its batches of 4 (a shorter pair
    carries its batch's padding) and rank-llm's prompts and probabilities are each one option away."""
    from rerank import load_reranker

    _, spec = T5_CASES[position]
    results = load_reranker(spec.format(model=json.dumps(t5_dir))).rerank(as_requests(t5_requests(dl19)))
    assert_scores_as(results, t5_reference[position]["scores"])
    assert results[0].cost.truncated > 0  # the long passage was cut, as the reference cut it


# -- ColBERT ------------------------------------------------------------------------------------------------

PYLATE = "pylate==1.6.0"


def colbert_requests(dl19) -> list[dict]:
    """Top 10, and a passage longer than ColBERT's 180 tokens."""
    return dl19_with_a_long_passage(dl19, 10, 10, 16)


# Both checkpoint formats, each with its markers: PyLate's ([Q] and [D] added to the vocabulary, a Dense module)
# and ColBERT's own ([unused0] and [unused1], an HF_ColBERT config with its linear layer).
COLBERT_FORMATS = {"pylate": ("colbert_dir", "pylate_colbert_dl19"), "stanford": ("stanford_colbert_dir", "pylate_colbert_stanford_dl19")}  # fmt: skip


def colbert_reference(request, fmt: str, dl19) -> dict:
    fixture, name = COLBERT_FORMATS[fmt]
    return recorded_reference(name, {"model": request.getfixturevalue(fixture), "requests": colbert_requests(dl19)})


@pytest.mark.reference
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(COLBERT_FORMATS))
def test_the_colbert_recording_is_what_pylate_gives(fmt, request, dl19, tmp_path):
    """PyLate itself, run now on each checkpoint format, gives the recording (``RERANK_RECORD=1`` re-records)."""
    fixture, name = COLBERT_FORMATS[fmt]
    config = {"model": request.getfixturevalue(fixture), "requests": colbert_requests(dl19)}
    site = reference_site(PYLATE, "pylate")
    live = recorded_reference(name, config, lambda: run_reference(site, config, tmp_path, "pylate_colbert.py"))
    if not os.environ.get("RERANK_RECORD"):
        assert live == recorded_reference(name, config)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("fmt", "variant"),
    [("pylate", "rerank"), ("stanford", "rerank"), pytest.param("pylate", "pylate", marks=pytest.mark.slow)],
)
def test_colbert_scores_as_pylate(fmt, variant, request, dl19):
    """PyLate's encodings (markers, [MASK] expansion, the skiplist, the projection, a passage cut at 180
    tokens) and MaxSim, on PyLate's checkpoint format and on ColBERT's own: every score within 1e-5 of
    PyLate's and the same rankings, with both variants (they differ only where a similarity is negative,
    which this model's are not)."""
    from rerank import load_reranker

    reference = colbert_reference(request, fmt, dl19)
    model = request.getfixturevalue(COLBERT_FORMATS[fmt][0])
    spec = f"colbert(model={json.dumps(model)}, variant={variant})"
    results = load_reranker(spec).rerank(as_requests(colbert_requests(dl19)))
    assert_scores_as(results, reference["scores"])
    assert results[0].cost.truncated == 1


# -- Causal rerankers: chat templates ------------------------------------------------------------------------

CAUSAL_TEMPLATES = ["qwen3-reranker", "mxbai-rerank-v2", "bge-reranker-gemma"]
CAUSAL_MAX_LENGTH = 384  # the long passage is cut to fit, on both sides


def causal_requests(dl19) -> list[dict]:
    """Top 6, and a passage longer than CAUSAL_MAX_LENGTH tokens."""
    return dl19_with_a_long_passage(dl19, 6, 6, 16)


def sentence_transformers_causal(model_dir: str, template: str, requests: list[dict], instruction: str | None):
    """sentence-transformers' causal-LM CrossEncoder on the model folder with the template as its chat template
    (its LogitScore on the template's labels, no activation): each pair's input ids and score."""
    import torch
    from sentence_transformers import CrossEncoder

    from rerank.prompts import load_chat_template

    chat = load_chat_template(template)
    model = CrossEncoder(model_dir, processor_kwargs={"chat_template": chat.text}, max_length=CAUSAL_MAX_LENGTH,
                         activation_fn=torch.nn.Identity())  # fmt: skip
    tokenizer = model.tokenizer
    model[-1].true_token_id = tokenizer.convert_tokens_to_ids(chat.yes)
    model[-1].false_token_id = tokenizer.convert_tokens_to_ids(chat.no) if chat.no else None
    ids, scores = {}, {}
    for r in requests:
        pairs = [(r["query"], text) for _, text in r["candidates"]]
        features = model.preprocess(pairs, prompt=instruction)
        rows = zip(features["input_ids"].tolist(), features["attention_mask"].tolist(), strict=True)
        predicted = model.predict(pairs, prompt=instruction, batch_size=4)
        for (docid, _), (row, mask), score in zip(r["candidates"], rows, predicted, strict=True):
            ids[r["qid"], docid] = [t for t, m in zip(row, mask, strict=True) if m]
            scores.setdefault(r["qid"], {})[docid] = float(score)
    return ids, scores


@pytest.mark.integration
@pytest.mark.parametrize(
    ("template", "instruction"),
    # Qwen3's in make check, the others in the full suite; mxbai's with an instruction (its template writes the
    # instruction's line only when one is given)
    [
        pytest.param("qwen3-reranker", None),
        pytest.param("mxbai-rerank-v2", "Find the passage that defines the term", marks=pytest.mark.slow),
        pytest.param("bge-reranker-gemma", None, marks=pytest.mark.slow),
    ],
)
def test_causal_templates_render_and_score_as_sentence_transformers(template, instruction, qwen3_dir, dl19):
    """Qwen3-Reranker's, mxbai-rerank-v2's and bge-reranker-v2-gemma's templates on a random Qwen3 and DL19 texts
    (one passage cut to fit): the model reads the same tokens as under sentence-transformers' causal CrossEncoder,
    and every score is its LogitScore's within 1e-5 (Qwen3's log P(yes) is the log-sigmoid of it), in the same
    ranking."""
    import math

    from rerank import load_reranker

    requests = causal_requests(dl19)
    ids, theirs = sentence_transformers_causal(qwen3_dir, template, requests, instruction)
    if template == "qwen3-reranker":
        theirs = {q: {d: -math.log1p(math.exp(-s)) for d, s in scores.items()} for q, scores in theirs.items()}
    extra = f", instruction={json.dumps(instruction)}" if instruction else ""
    reranker = load_reranker(f"llm-pointwise(model={json.dumps(qwen3_dir)}, template={template}, "
                             f"max_length={CAUSAL_MAX_LENGTH}, batch_size=4{extra})")  # fmt: skip
    tokenizer = reranker.backend._tokenizer
    # The long passage's cut: sentence-transformers cuts the rendered prompt's tokens and writes the template's
    # tail back over the last ones; rerank cuts the document's text and renders it, so the model reads a
    # prompt as it tokenizes. They agree where the tail starts with a special token (Qwen3's "<|im_end|>");
    # elsewhere the cut's last piece and the tail's first can tokenize together (".\n"), one token apart.
    exact_cut = template == "qwen3-reranker"
    tail = reranker.render_prompt("q", "§§").split("§§", 1)[1]  # the template's text after the document
    for r in requests:
        for docid, text in r["candidates"]:
            prompt = reranker.render_prompt(r["query"], text)
            ours = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            if docid != "long" or exact_cut:
                assert ours == ids[r["qid"], docid], (r["qid"], docid)
            else:
                assert len(ours) <= CAUSAL_MAX_LENGTH < len(tokenizer(text)["input_ids"]) and prompt.endswith(tail)
    results = reranker.rerank(as_requests(requests))
    assert results[0].cost.truncated == 1
    compared = {q: {d: v for d, v in s.items() if d != "long" or exact_cut} for q, s in theirs.items()}
    for result in results:
        ours_scores = {c.docid: c.score for c in result.ranking.candidates if c.docid in compared[result.ranking.qid]}
        assert max(abs(ours_scores[d] - v) for d, v in compared[result.ranking.qid].items()) < 1e-5
        kept = [c.docid for c in result.ranking.candidates if c.docid in ours_scores]
        assert kept == sorted(ours_scores, key=lambda d: (-compared[result.ranking.qid][d], d))


@pytest.mark.integration
def test_the_qwen3_reranker_template_is_the_model_cards(qwen3_dir, dl19):
    """The Qwen3-Reranker model card's own code (tests/reference/qwen3_reranker_card.py) on the same pairs: the same
    input ids, and P(yes) = exp of rerank's score within 1e-5."""
    import math

    from reference.qwen3_reranker_card import card_scores

    from rerank import load_reranker

    requests = causal_requests(dl19)[1:]  # the card cuts a long pair's text before its suffix, in another way
    pairs = [(r["query"], text) for r in requests for _, text in r["candidates"]]
    ids, card = card_scores(qwen3_dir, pairs)
    reranker = load_reranker(f"llm-pointwise(model={json.dumps(qwen3_dir)}, template=qwen3-reranker, batch_size=4)")
    tokenizer = reranker.backend._tokenizer
    assert [tokenizer(reranker.render_prompt(q, t), add_special_tokens=False)["input_ids"] for q, t in pairs] == ids
    ours = reranker.score_pairs([q for q, _ in pairs], [t for _, t in pairs]).scores
    assert max(abs(math.exp(o) - c) for o, c in zip(ours, card, strict=True)) < 1e-5
