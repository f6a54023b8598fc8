"""The CUDA paths, on a lent GPU: cross-encoder fp32/fp16/bf16 against sentence-transformers, and the
transformers LLM backend in bf16/fp32 (a prompt scores the same alone and in a batch).

    .venv/bin/python benchmarks/cuda_paths.py prepare out/gpu   # here: inputs small enough to carry
    python3 benchmarks/cuda_paths.py run out/gpu                # on the GPU machine

``prepare`` writes the MiniLM-shaped cross-encoder (fp16 weights, 45 MB), DL19's
4,300 BM25 top-100 pairs and a small random Llama-shaped LM with SmolLM2's tokenizer
(16 MB): no weights are downloaded on the GPU machine, which reaches nothing.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def prepare(folder: Path) -> None:
    import torch
    import transformers

    import data
    from data.models import resolve_model
    from rerank.llm.transformers_backend import fp32_copy_of_gguf
    from rerank.methods.cross_encoder import build_minilm_shaped_cross_encoder

    source = build_minilm_shaped_cross_encoder(str(folder / "ce-fp32"))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(source)
    model.half().save_pretrained(folder / "ce")
    transformers.AutoTokenizer.from_pretrained(source).save_pretrained(folder / "ce")
    with open(folder / "pairs.jsonl", "w", encoding="utf-8") as out:
        for request in data.load("msmarco-passage/trec-dl-2019").candidates("bm25"):
            for candidate in request.candidates:
                out.write(json.dumps([request.query.text, candidate.text]) + "\n")
    smol = fp32_copy_of_gguf(Path(resolve_model("smollm2-135m")))
    config = transformers.AutoConfig.from_pretrained(smol)
    config.hidden_size, config.intermediate_size, config.num_hidden_layers = 64, 128, 2
    config.num_attention_heads, config.num_key_value_heads, config.head_dim = 4, 2, 16
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder / "tiny-lm")
    transformers.AutoTokenizer.from_pretrained(smol).save_pretrained(folder / "tiny-lm")


def run(folder: Path) -> None:
    import numpy as np
    import torch
    from scipy.stats import spearmanr
    from sentence_transformers import CrossEncoder

    from rerank.llm.backend import load_backend
    from rerank.methods.cross_encoder import CrossEncoderReranker

    print("torch", torch.__version__, torch.cuda.get_device_name(0))
    pairs = [json.loads(line) for line in (folder / "pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    queries, texts = [p[0] for p in pairs], [p[1] for p in pairs]
    model = str(folder / "ce")

    def rate(fn, rounds=3):
        best, result = float("inf"), None
        for _ in range(rounds):
            torch.cuda.synchronize()
            start = time.perf_counter()
            result = fn()
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return result, len(pairs) / best

    identity = torch.nn.Identity()
    st32 = CrossEncoder(model, max_length=512, device="cuda")
    reference, ref_rate = rate(lambda: st32.predict(pairs, batch_size=32, activation_fn=identity))
    print(f"sentence-transformers CrossEncoder fp32: {ref_rate:.0f} pairs/s")
    st16 = CrossEncoder(model, max_length=512, device="cuda", model_kwargs={"torch_dtype": torch.float16})
    _, st16_rate = rate(lambda: st16.predict(pairs, batch_size=32, activation_fn=identity))
    print(f"sentence-transformers CrossEncoder fp16: {st16_rate:.0f} pairs/s")
    for precision in ("float32", "float16", "bfloat16"):
        ours = CrossEncoderReranker(model, max_length=512, precision=precision, device="cuda")
        got, got_rate = rate(lambda ours=ours: ours.score_pairs(queries, texts).scores)
        diff = float(np.abs(np.array(got) - np.array(reference)).max())
        print(f"ours {precision}: {got_rate:.0f} pairs/s ({got_rate / ref_rate:.2f}x st fp32, "
              f"{got_rate / st16_rate:.2f}x st fp16); max abs diff to st fp32 {diff:.2e}; "
              f"Spearman {spearmanr(got, reference)[0]:.4f}")  # fmt: skip

    conversations = [[{"role": "user", "content": f"Is passage {i} relevant? " + "word " * (7 * i)}] for i in range(6)]
    for dtype in ("bfloat16", "float32"):
        backend = load_backend(f"transformers(dtype={dtype})", str(folder / "tiny-lm"), batch_size=4)
        together = backend.next_token_scores(conversations, ["Yes", "No"])
        alone = [backend.next_token_scores([c], ["Yes", "No"])[0] for c in conversations]
        diff = max(
            abs(a.logprobs[k] - t.logprobs[k]) for a, t in zip(alone, together, strict=True) for k in ("Yes", "No")
        )
        made = [g.output_tokens for g in backend.generate(conversations[:3], max_new_tokens=5)]
        print(f"transformers backend {dtype} on {backend._device}: batched vs alone max |diff| {diff:.2e}; "
              f"generated tokens {made}")  # fmt: skip


if __name__ == "__main__":
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    {"prepare": prepare, "run": run}[sys.argv[1]](Path(sys.argv[2]))
