"""One-off (issue 17): carry the leaderboard's cells over to the executor's stage keys, or recompute them.

Before, a cell's key held a digest of the source its method imported. Now it holds the resolved spec,
input digests, weights, library versions, device, dtype and the method's version (rerank.core.keys).
A cell is carried over only where `git log` shows its method's code unchanged since the commit that
computed it, its code digest still matched at the last commit of the old scheme (4e59846), and the
libraries that compute it are the versions installed now. That evidence was gathered at 4e59846 by
running the old code (``EVIDENCE``, one record per cell folder). Every other cell is deleted here and
computed again by the executor; the script then records what it did in ``leaderboard/migration.json``.

    .venv/bin/python scripts/migrate_leaderboard_keys.py EVIDENCE.json
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

from data.config import cache_dir
from eval.leaderboard import DEFAULT_CONFIG, DEFAULT_OUTPUT, load_config
from eval.leaderboard.cells import CellRunner
from rerank.core.plan import resolve_pipeline
from rerank.core.store import read_manifest
from rerank.identity import digest_path, digest_text
from rerank.spec import parse_pipeline

BASE = "4e59846"


def new_syntax(old: str) -> str:
    """The old leaderboard grammar's quoted nested specs, written as specs."""
    old = re.sub(r'rrf\(runs="([^"]*)"\)', r"rrf(\1)", old)
    return re.sub(r'inner="([^"]*)"', r"inner=\1", old)


def carryable(record: dict) -> tuple[bool, str]:
    if record.get("commits_since") != []:
        return False, "the commit that computed it is not in the history, so git log cannot vouch for its code"
    if not record.get("fresh_at_base") or not record.get("old_code_digest_matches"):
        return False, f"not up to date under the old key at {BASE}"
    if record.get("package_differences"):
        return False, f"computed with other library versions: {record['package_differences']}"
    return (
        True,
        f"git log {record['cell_commit'][:7]}..{BASE} over its {len(record['source_files'])} source files is empty",
    )


def same_fusion(folder: Path, stage, members) -> bool:
    """Whether fusing the members as they are now gives the cell's ranking (rank fusion reads ranks only)."""
    from data.trec import read_trec_run
    from retrievers.fusion import reciprocal_rank_fusion

    spec = stage.first.spec
    fused = reciprocal_rank_fusion([m.run() for m in members], k=int(spec.kwargs.get("k", 60)))
    now = [(r.qid, [(c.docid, c.score) for c in r.candidates[: stage.first.cutoff]]) for r in fused]
    kept = [(r.qid, [(c.docid, c.score) for c in r.candidates]) for r in read_trec_run(folder / "run.trec.gz")]
    return now == kept


def main(evidence_path: str) -> int:
    evidence = {r["folder"]: r for r in json.loads(Path(evidence_path).read_text(encoding="utf-8"))}
    output = DEFAULT_OUTPUT
    cells = output / "cells"
    # old folders by the stage they hold (the manifest's pipeline, in the new syntax, resolved)
    old: dict[tuple[str, str], Path] = {}
    for manifest_path in sorted(cells.glob("*/*/manifest.json")):
        manifest = read_manifest(manifest_path)
        assert manifest is not None
        stage = str(resolve_pipeline(parse_pipeline(new_syntax(manifest["pipeline"]))))
        old[(manifest_path.parent.parent.name, stage)] = manifest_path.parent
    runner = CellRunner(output, cache_dir(), batch_queries=4, log=print)
    executor = runner.executor
    record: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for entry in load_config(DEFAULT_CONFIG).datasets:
        source = runner.source(entry.name)
        for pipeline in entry.pipelines:
            for status in executor.status(pipeline, source):
                stage = status.pipeline
                slot = (source.name, str(stage))
                if slot in seen:
                    continue
                seen.add(slot)
                done = executor.output(stage, source, compute=False)
                if done is not None:  # migrated by an earlier, interrupted pass of this script
                    carried = done.manifest.get("carried")
                    record.append({"dataset": entry.name, "stage": str(stage), "folder": done.directory.name,
                                   "carried": carried is not None,
                                   "why": carried["evidence"] if carried else "recomputed by an earlier pass"})  # fmt: skip
                    continue
                folder = old.get((status.directory.parent.name, str(stage)))
                if folder is None:
                    raise SystemExit(f"no cell holds {entry.name}: {stage}")
                facts = evidence[f"{folder.parent.name}/{folder.name}"]
                carry, why = carryable(facts)
                target = executor.directory(stage, source)
                manifest = read_manifest(folder / "manifest.json")
                assert manifest is not None
                previous = None
                if len(stage.stages) > 1:
                    previous = executor.output(stage.prefix(len(stage.stages) - 1), source, compute=False)
                    assert previous is not None, f"{stage}: its input stage is not migrated"
                members = [executor.output(m, source, compute=False) for m in executor.fusion_members(stage)]
                assert all(m is not None for m in members)
                if carry and previous is not None and manifest["key"]["inputs"] != digest_path(previous.run_path):
                    carry, why = False, "the run it reranked was recomputed and differs"
                if carry and members:
                    now = digest_text(*(digest_path(m.run_path) for m in members if m is not None))
                    if manifest["key"]["inputs"] != now and not same_fusion(folder, stage, members):
                        carry, why = False, "a run it fuses was recomputed and the fusion differs"
                    elif manifest["key"]["inputs"] != now:
                        why += (
                            "; a run it fuses was recomputed (last-digit score changes) and fuses to the same ranking"
                        )
                if carry:
                    key = executor.stage_key(stage, source, previous, [m for m in members if m is not None])
                    manifest.update(
                        key=key,
                        pipeline=str(stage),
                        prefix=None if previous is None else previous.directory.relative_to(output).as_posix(),
                        carried={"from_key": manifest["key"], "evidence": why},
                    )
                    if folder != target:
                        shutil.move(str(folder), str(target))
                    (target / "manifest.json").write_text(
                        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
                    )
                else:
                    shutil.rmtree(folder)
                found = executor.output(stage, source)  # reused when carried, else computed now
                assert found is not None
                record.append({"dataset": entry.name, "stage": str(stage), "old_folder": folder.name,
                               "folder": target.name, "carried": carry, "why": why})  # fmt: skip
    (output / "migration.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    carried = sum(r["carried"] for r in record)
    print(f"{carried} cells carried over, {len(record) - carried} recomputed; see {output / 'migration.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
