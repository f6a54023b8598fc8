"""A Qwen3 causal LM with random weights and the Qwen tokenizer, for the causal rerankers' parity tests.

No Qwen3-Reranker (or any reranker) weights can be downloaded here; the Qwen tokenizer comes from the offline
Qwen2.5 GGUF pack, whose vocabulary Qwen3 shares. Its scores mean nothing: it shows that rerank and the
references compute the same thing on the same weights.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from data.models import quiet_loading, resolve_model
from data.optional import optional_import

QWEN3_SHAPES = {  # (hidden, intermediate, layers, heads, kv heads, head dim)
    "tiny": (64, 128, 2, 4, 2, 16),
    "0.6b": (1024, 3072, 28, 16, 8, 128),
}


def build_random_qwen3(
    path: str, tokenizer_from: str = "qwen2.5-coder-0.5b", shape: str = "tiny", seed: int = 0
) -> str:
    """A ``Qwen3ForCausalLM`` with random weights (tied embeddings) and the tokenizer of ``tokenizer_from`` (a GGUF
    pack or file), saved once into ``path``."""
    torch = optional_import("torch")
    transformers = optional_import("transformers")
    target = Path(path)
    if (target / "config.json").is_file():
        return str(target)
    gguf = Path(resolve_model(tokenizer_from))
    with quiet_loading():
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    hidden, intermediate, layers, heads, kv_heads, head_dim = QWEN3_SHAPES[shape]
    config = transformers.Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim, max_position_embeddings=32768,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    staging = target.with_name(f".{target.name}.{time.time_ns()}")
    with quiet_loading():
        transformers.Qwen3ForCausalLM(config).save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)
    except OSError:  # built meanwhile by another process
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)
