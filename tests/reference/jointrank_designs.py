"""Record the block designs V3RGANz/jointrank's evaluation builds, from its own code, for ``tests/test_fidelity.py``.

    PYTHONPATH=CHECKOUT python tests/reference/jointrank_designs.py tests/reference/jointrank_designs.json COMMIT

(CHECKOUT: a checkout of github.com/V3RGANz/jointrank at COMMIT.)

jointrank is not on the package registry and CI reaches only the registry, so its designs are recorded
here, with the commit they came from, and the test compares rerank's ``design=reference`` with them.
The design is chosen as ``jointrank.evaluation.reranker_factory.get_joint`` chooses it (that module
imports the whole evaluation stack, so the choice is restated below from its lines 87-97); the global
``random`` is seeded with the same string rerank seeds its generator with, before each build.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from jointrank.blocks.design import (
    BlockDesignCollection,
    EquiReplicateBlockDesign,
    LatinSquarePBIBD,
    ReplicateBlockDesign,
)

CASES = [  # (n, block_size, replicas): the paper's two settings at several depths, and the edge cases
    (100, 20, 4), (100, 10, 2), (50, 20, 4), (37, 10, 2), (30, 20, 4), (23, 10, 3), (16, 4, 2), (9, 3, 2),
    (8, 10, 2), (5, 20, 4), (2, 2, 2), (25, 5, 3), (25, 5, 2), (100, 10, 3), (41, 7, 5),
]  # fmt: skip
SEEDS = ["0:1037798", "0:104861", "7:q"]


def design(replicas: int) -> BlockDesignCollection:
    if replicas != 2:
        return BlockDesignCollection(EquiReplicateBlockDesign(replicas), ReplicateBlockDesign(replicas))
    return BlockDesignCollection(LatinSquarePBIBD(), EquiReplicateBlockDesign(replicas), ReplicateBlockDesign(replicas))


def main(target: str, commit: str) -> None:
    records = []
    for n, block_size, replicas in CASES:
        for seed in SEEDS:
            random.seed(seed)
            records.append({"n": n, "block_size": block_size, "replicas": replicas, "seed": seed,
                            "blocks": design(replicas).build(n, block_size)})  # fmt: skip
    out = {"source": "https://github.com/V3RGANz/jointrank", "commit": commit, "designs": records}
    Path(target).write_text(json.dumps(out, separators=(",", ":")) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
