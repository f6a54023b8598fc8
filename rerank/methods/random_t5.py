"""A T5 with random weights for parity tests and benchmarks: no T5 weights can be downloaded here."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from data.models import quiet_loading
from data.optional import optional_import

T5_SHAPES = {  # (d_model, d_ff, layers, heads, d_kv): a small one for tests, t5-base's for speed
    "tiny": (64, 128, 2, 4, 16),
    "base": (768, 3072, 12, 12, 64),
}


def build_random_t5(
    path: str,
    texts: Sequence[str],
    shape: str = "tiny",
    seed: int = 0,
    symbols: Sequence[str] = ("▁true", "▁false", "▁yes", "▁no"),
) -> str:
    """A T5 with random weights and a SentencePiece tokenizer trained on ``texts``, saved once into ``path``.

    No T5 weights can be downloaded here: parity with the references is shown on this model (its scores
    mean nothing). ``symbols`` are single tokens (``true``/``false`` and ``yes``/``no``, as in T5's own
    vocabulary). The config carries what a real monoT5 checkpoint's does (``n_positions``,
    ``decoder_start_token_id``). The vocabulary has 2,000 pieces whatever the shape (t5-base's has 32,000: only
    the output layer, one row per piece, is smaller).
    """
    import io
    import shutil

    sentencepiece = optional_import("sentencepiece")
    torch = optional_import("torch")
    transformers = optional_import("transformers")
    target = Path(path)
    if (target / "config.json").is_file():
        return str(target)
    staging = target.with_name(f".{target.name}.{time.time_ns()}")
    staging.mkdir(parents=True)
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=2000, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, num_threads=1, minloglevel=2,
        hard_vocab_limit=False,  # a small corpus gets the pieces it has
        user_defined_symbols=list(symbols),
    )  # fmt: skip
    (staging / "spiece.model").write_bytes(model.getvalue())
    tokenizer = transformers.T5Tokenizer.from_pretrained(staging)
    d_model, d_ff, layers, heads, d_kv = T5_SHAPES[shape]
    config = transformers.T5Config(
        vocab_size=len(tokenizer), d_model=d_model, d_ff=d_ff, num_layers=layers, num_decoder_layers=layers,
        num_heads=heads, d_kv=d_kv, n_positions=512, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    torch.manual_seed(seed)
    with quiet_loading():
        transformers.T5ForConditionalGeneration(config).save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "spiece.model").unlink()  # the tokenizer's own files hold it (T5Tokenizer reads spiece.model first)
    try:
        staging.rename(target)
    except OSError:  # built meanwhile by another process
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)
