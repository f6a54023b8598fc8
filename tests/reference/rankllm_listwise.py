"""Run RankLLM's own listwise reranker (``RankListwiseOSLLM``) on a GGUF model through llama.cpp.

    python tests/reference/rankllm_listwise.py INPUT.json OUTPUT.json [--vllm]

with rank-llm importable (``tests/test_fidelity.py`` installs it into a folder of its own and puts
that on ``PYTHONPATH``). Everything of RankLLM runs as shipped: its template, inference handler,
``create_prompt`` (chat template, ``fix_text``, passage shrinking), answer length, sliding windows
and ``receive_permutation``. The stubs are only what cannot run here: vLLM (no GPU; its place is taken
by an engine that decodes greedily with llama.cpp, EOS held back until ``min_tokens`` as vLLM does)
and the T5 rerankers its package imports (which need an older transformers). With ``--vllm`` (in the vllm
environment, on a Hugging Face folder) nothing of vLLM is stubbed: RankLLM's own ``VllmHandler`` runs the
real engine, and each of its prompts and answers is recorded.

With ``"renders"`` in INPUT it only renders messages (no model), for several templates in one process (its
imports cost more than the rendering): each entry's windows through RankLLM's inference handler for its
template (a file it ships, or a path to a template from its repository), as ``{"renders": [{"template",
"use_alpha", "prompts": [{"query", "passages", "max_length"}]}]}`` → ``{"messages": [[[{"role", "content"},
...], ...], ...]}`` (per entry, per window); and ``"parses": [{"answer", "size"}]`` → ``"orders"``: each
answer read by RankLLM's ``receive_permutation`` on a window of ``size``.

INPUT: {"model": GGUF path, "template": "rank_zephyr_template.yaml", "window_size", "stride",
"context_size", "requests": [{"qid", "query", "candidates": [[docid, text], ...]}]}, and for FIRST
``"use_logits": true, "use_alpha": true`` (the answer is then two tokens, read for their log-probabilities).
A candidate ``[docid, text, score]`` carries its first-stage score (InsertRank's prompt shows it);
``"answers": "reverse"`` answers every window with its passages reversed instead of running the model.
OUTPUT: {"calls": [{"span": [start, end], "prompt", "answer"}], "rankings": {qid: [docid, ...]}}.
"""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path
from typing import Any, ClassVar


def _stub(name: str, *classes: str) -> None:
    module = types.ModuleType(name)
    module.__path__ = []  # type: ignore[attr-defined]
    for cls in classes:
        setattr(module, cls, type(cls, (), {}))
    sys.modules[name] = module


if "--vllm" not in sys.argv:  # with --vllm, RankLLM's own vLLM path runs (the vllm environment)
    _stub("vllm", "LLM", "SamplingParams", "RequestOutput")
    _stub("vllm.outputs", "RequestOutput")
_stub("rank_llm.rerank.listwise.rank_fid", "RankFiDDistill", "RankFiDScore")
_stub("rank_llm.rerank.pairwise.duot5", "DuoT5")
_stub("rank_llm.rerank.pointwise.monot5", "MonoT5")


class LlamaEngine:
    """vLLM's place in RankLLM: greedy decoding of rendered prompt strings, with a Hugging Face tokenizer."""

    calls: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, model: str, **_: Any):
        from transformers import AutoTokenizer

        from rerank.llm.llama_cpp_backend import LlamaCppBackend

        self.llama = LlamaCppBackend(model, threads=2)  # the defaults the method under test runs with
        path = Path(model)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def generate_output(
        self, prompts: list[str], min_tokens: int, max_tokens: int, temperature: float, logprobs: int = 0, **_: Any
    ) -> Any:
        assert temperature == 0.0
        out = []
        for prompt in prompts:
            tokens = self.llama._tokenize(prompt)
            shared = self.llama._keep_shared_prefix(tokens)
            if logprobs:
                completion = self._with_logprobs(tokens[shared:], max_tokens, min_tokens, logprobs)
            else:
                text, produced = self.llama._greedy(tokens[shared:], max_tokens, min_tokens)
                completion = types.SimpleNamespace(text=text, token_ids=list(range(produced)))
            call = {"prompt": prompt, "answer": completion.text}
            if logprobs:  # the capital letters among the top tokens at FIRST's position
                call["letters"] = sorted({t.decoded_token for t in completion.logprobs[1].values()
                                          if len(t.decoded_token) == 1 and "A" <= t.decoded_token <= "Z"})  # fmt: skip
            LlamaEngine.calls.append(call)
            out.append(types.SimpleNamespace(outputs=[completion]))
        return out

    def _with_logprobs(self, pending: list[int], max_tokens: int, min_tokens: int, top: int) -> Any:
        """vLLM's ``SamplingParams(logprobs=top)``: at each generated position, the ``top`` most likely
        tokens (raw log-softmax of the logits, before ``min_tokens`` holds the end back) by id."""
        import numpy as np

        llm, produced, positions = self.llama._llm, [], []
        end_ids = self.llama._end_of_generation_ids
        while len(produced) < max_tokens:
            llm.eval(pending)
            logits = self.llama._last_logits().astype(np.float64)
            logprobs = logits - logits.max()
            logprobs -= np.log(np.exp(logprobs).sum())
            best = np.argsort(-logprobs, kind="stable")[:top]
            positions.append({int(t): types.SimpleNamespace(decoded_token=self.tokenizer.decode([int(t)]),
                                                            logprob=float(logprobs[t])) for t in best})  # fmt: skip
            if len(produced) < min_tokens:
                logits[end_ids] = -np.inf
            token = int(logits.argmax())
            if token in end_ids:
                break
            produced.append(token)
            pending = [token]
        text = self.tokenizer.decode(produced)
        return types.SimpleNamespace(text=text, token_ids=produced, logprobs=positions)


def recording_vllm_handler() -> type:
    """RankLLM's own ``VllmHandler``, unchanged, with each prompt and answer recorded (for FIRST, the capital
    letters among the top tokens at its read position, as ``LlamaEngine`` records them)."""
    from rank_llm.rerank.vllm_handler import VllmHandler

    class Recording(VllmHandler):  # type: ignore[misc,valid-type]
        def generate_output(self, prompts: list[Any], *args: Any, **kwargs: Any) -> Any:
            outputs = super().generate_output(prompts, *args, **kwargs)
            for prompt, output in zip(prompts, outputs, strict=True):
                answer = output.outputs[0]
                call = {"prompt": prompt, "answer": answer.text}
                if kwargs.get("logprobs"):
                    call["letters"] = sorted({t.decoded_token for t in answer.logprobs[1].values()
                                              if len(t.decoded_token) == 1 and "A" <= t.decoded_token <= "Z"})  # fmt: skip
                LlamaEngine.calls.append(call)
            return outputs

    return Recording


class ReverseEngine(LlamaEngine):
    """An engine that answers every window with its passages in reverse order, without decoding: RankLLM's
    schedule, prompts and ``receive_permutation`` run on answers both sides know, in seconds."""

    def generate_output(self, prompts: list[str], min_tokens: int, max_tokens: int, temperature: float,
                        logprobs: int = 0, **_: Any) -> Any:  # fmt: skip
        import re

        out = []
        for prompt in prompts:
            num = int(re.search(r"I will provide you with (\d+) passages", prompt).group(1))  # type: ignore[union-attr]
            answer = " > ".join(f"[{i}]" for i in range(num, 0, -1))
            LlamaEngine.calls.append({"prompt": prompt, "answer": answer})
            out.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text=answer, token_ids=[0])]))
        return out


def rendered(config: dict[str, Any]) -> list[Any]:
    from importlib.resources import files

    import yaml
    from rank_llm.data import Candidate, Query, Result
    from rank_llm.rerank.listwise.multiturn_listwise_inference_handler import MultiTurnListwiseInferenceHandler
    from rank_llm.rerank.listwise.singleturn_listwise_inference_handler import SingleTurnListwiseInferenceHandler

    shipped = files("rank_llm.rerank.prompt_templates") / config["template"]
    source = Path(config["template"]) if config["template"].endswith(".yaml") and "/" in config["template"] else shipped
    template = yaml.safe_load(source.read_text())
    handler = {"singleturn_listwise": SingleTurnListwiseInferenceHandler,
               "multiturn_listwise": MultiTurnListwiseInferenceHandler}[template["method"]](template)  # fmt: skip
    messages = []
    for item in config["prompts"]:
        scores = item.get("scores") or [0.0] * len(item["passages"])
        candidates = [Candidate(str(i), score, {"text": text})
                      for i, (text, score) in enumerate(zip(item["passages"], scores, strict=True))]  # fmt: skip
        result = Result(Query(item["query"], "q"), candidates)
        messages.append(handler.generate_prompt(result, rank_start=0, rank_end=len(candidates),
                                                max_length=item["max_length"],
                                                use_alpha=bool(config.get("use_alpha"))))  # fmt: skip
    return messages


def parsed(answers: list[dict[str, Any]]) -> list[list[int]]:
    """Each answer through RankLLM's own ``receive_permutation`` (its ``_clean_response``, duplicate removal and
    appending of what is missing) on a window of ``size`` candidates: the new order, 0-based."""
    from importlib.resources import files

    import yaml
    from rank_llm.data import Candidate, Query, Result
    from rank_llm.rerank.listwise.listwise_rankllm import ListwiseRankLLM
    from rank_llm.rerank.listwise.singleturn_listwise_inference_handler import SingleTurnListwiseInferenceHandler

    template = files("rank_llm.rerank.prompt_templates") / "rank_zephyr_template.yaml"
    ranker = types.SimpleNamespace(
        _inference_handler=SingleTurnListwiseInferenceHandler(yaml.safe_load(template.read_text())),
        _use_alpha=False,
    )
    ranker._remove_duplicate = lambda response: ListwiseRankLLM._remove_duplicate(ranker, response)
    orders = []
    for item in answers:
        result = Result(Query("q", "q"), [Candidate(str(i), 0.0, {"text": ""}) for i in range(item["size"])])
        ListwiseRankLLM.receive_permutation(ranker, result, item["answer"], 0, item["size"])  # type: ignore[arg-type]
        orders.append([int(c.docid) for c in result.candidates])
    return orders


def main(target: str) -> None:
    from importlib.resources import files

    import rank_llm.rerank.listwise.rank_listwise_os_llm as os_llm
    from rank_llm.data import Candidate, Query, Request

    if "--vllm" in sys.argv:
        os_llm.VllmHandler = recording_vllm_handler()  # type: ignore[attr-defined]
    else:
        os_llm.VllmHandler = ReverseEngine if CONFIG.get("answers") == "reverse" else LlamaEngine  # type: ignore[attr-defined,misc]
    reranker = os_llm.RankListwiseOSLLM(
        model=CONFIG["model"],
        context_size=int(CONFIG["context_size"]),
        prompt_template_path=str(files("rank_llm.rerank.prompt_templates") / CONFIG["template"]),
        window_size=int(CONFIG["window_size"]),
        stride=int(CONFIG["stride"]),
        device="cpu",
        use_logits=bool(CONFIG.get("use_logits")),  # FIRST: both set
        use_alpha=bool(CONFIG.get("use_alpha")),
    )
    spans: list[list[int]] = []
    batched = reranker.permutation_pipeline_batched

    def record(results: Any, rank_start: int, rank_end: int, *args: Any, **kwargs: Any) -> Any:
        spans.extend([[rank_start, rank_end]] * len(results))
        return batched(results, rank_start, rank_end, *args, **kwargs)

    reranker.permutation_pipeline_batched = record  # type: ignore[method-assign]
    rankings, seconds = {}, {}
    if CONFIG.get("timed"):  # a warm-up query first, neither recorded nor timed (the engine's first calls)
        item = CONFIG["requests"][0]
        candidates = [Candidate(c[0], float(-rank), {"text": c[1]}) for rank, c in enumerate(item["candidates"][:3])]
        reranker.rerank_batch([Request(Query(item["query"], item["qid"]), candidates)], rank_start=0, rank_end=3)
        spans.clear()
        LlamaEngine.calls.clear()
    requests = [
        Request(
            Query(item["query"], item["qid"]),
            # a candidate's score is the given one (InsertRank shows it), else one that keeps the order
            [
                Candidate(c[0], float(c[2]) if len(c) > 2 else float(-rank), {"text": c[1]})
                for rank, c in enumerate(item["candidates"])
            ],
        )
        for item in CONFIG["requests"]
    ]
    # one query at a time (RankLLM batches only equal-length lists), or, with "batched" (benchmarks/llm.py), all
    # of them in one rerank_batch, which runs each window position of every query in one engine call
    groups = [requests] if CONFIG.get("batched") else [[r] for r in requests]
    for group in groups:
        start = time.perf_counter()
        results = reranker.rerank_batch(group, rank_start=0, rank_end=len(group[0].candidates))
        spent = (time.perf_counter() - start) / len(group)
        for request, result in zip(group, results, strict=True):
            rankings[request.query.qid] = [c.docid for c in result.candidates]
            seconds[request.query.qid] = spent
    calls = [{"span": span, **call} for span, call in zip(spans, LlamaEngine.calls, strict=True)]
    timed = {"seconds": seconds} if CONFIG.get("timed") else {}  # benchmarks/llm.py: each query's rerank_batch
    Path(target).write_text(json.dumps({"calls": calls, "rankings": rankings, **timed}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    CONFIG = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    if "renders" in CONFIG:
        messages = [rendered(config) for config in CONFIG["renders"]]
        orders = parsed(CONFIG.get("parses", []))
        Path(sys.argv[2]).write_text(json.dumps({"messages": messages, "orders": orders}, indent=1), encoding="utf-8")
    else:
        main(sys.argv[2])
