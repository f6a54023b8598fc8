"""The one source of dependency metadata: rerank's own package metadata (pyproject.toml's dependencies and extras).

``optional_import``'s hint names the extra that installs a missing module, ``rerank doctor`` lists every
library rerank depends on with the command that installs it, and manifests record the versions of the
libraries the registered components compute with: all three read this module, so none keeps a list of
its own that could drift from what ``pip install 'rerank[…]'`` actually installs.
"""

from __future__ import annotations

import functools
import re
from importlib.metadata import PackageNotFoundError, metadata

# Import names that are not their distribution's name (with _ read as -): what a missing import is looked up by.
DISTRIBUTIONS = {
    "faiss": "faiss-cpu",
    "llama_cpp": "llama-cpp-python",
    "llama_index": "llama-index-core",
    "pyterrier": "python-terrier",
    "yaml": "pyyaml",
}
# Not in any extra on purpose: install it first, choosing the build (pyproject.toml says why).
TORCH = "pip install torch --index-url https://download.pytorch.org/whl/cpu (or the CUDA build; before the rest)"
UMBRELLA = "all"  # the extra that only gathers the others


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.lru_cache(maxsize=1)
def requirements() -> dict[str, str | None]:
    """Every distribution rerank's metadata names -> the extra that installs it (None: a core dependency).

    A distribution in several extras is named by the extra of its own name (``pandas``), else one its name
    starts with (``onnxruntime``: ``onnx``), else the first in the order pyproject.toml gives them."""
    try:
        lines = metadata("rerank").get_all("Requires-Dist") or []
    except PackageNotFoundError:  # a source tree that was never installed: nothing to derive from
        return {}
    found: dict[str, str | None] = {}
    extras: dict[str, list[str]] = {}
    for line in lines:
        requirement, _, marker = line.partition(";")
        name = normalize(re.split(r"[\s\[<>=!~(]", requirement.strip(), maxsplit=1)[0])
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if name == "rerank" or (extra and extra.group(1) == UMBRELLA) or not _applies(marker):
            continue
        if extra is None:
            found[name] = None
        else:
            extras.setdefault(name, []).append(extra.group(1))
    for name, named in extras.items():
        if name not in found:
            found[name] = next((e for e in named if e == name), None) or next(
                (e for e in named if name.startswith(e)), named[0]
            )
    return found


def _applies(marker: str) -> bool:
    """Whether a requirement's environment marker (beyond its extra) holds for this interpreter."""
    condition = re.sub(r"""(and\s+)?extra\s*==\s*["'][^"']+["']""", "", marker).strip()
    if not condition:
        return True
    try:
        from packaging.markers import Marker
    except ImportError:  # without packaging, keep it listed
        return True
    return Marker(condition).evaluate()


def distribution_of(module: str) -> str:
    """The distribution that installs an import name (``faiss`` -> ``faiss-cpu``)."""
    top = module.split(".")[0]
    return DISTRIBUTIONS.get(top, normalize(top))


def extra_of(module: str) -> str | None:
    """The rerank extra that installs an importable module, or None (a core dependency, or not rerank's)."""
    return requirements().get(distribution_of(module))


def install_hint(distribution: str) -> str:
    """The command that installs a distribution rerank depends on."""
    name = normalize(distribution)
    if name == "torch":
        return TORCH
    extra = requirements().get(name)
    return f"pip install 'rerank[{extra}]'" if extra else f"pip install {name}"
