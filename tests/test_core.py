"""The pipeline core: one plan, however it is run. The same spec from Python (``rerank.run``), the CLI, the
leaderboard and the service ranks every query alike; the plan walks every stage once."""

from __future__ import annotations

import json

import pytest

SPEC = "bi-encoder(model=minilm)"
DEPTH = 10


def orders(run) -> dict[str, list[str]]:
    return {r.qid: [c.docid for c in r.candidates] for r in run}


@pytest.mark.integration
@pytest.mark.slow  # it starts the service (8 s): make test runs it, make check does not
def test_the_same_spec_ranks_alike_from_python_the_cli_the_leaderboard_and_the_service(tmp_path, minilm_server):
    import httpx
    from conftest import SERVE_KEY

    import data
    import rerank
    from data.trec import read_trec_run
    from eval.leaderboard import load_config, run_leaderboard
    from eval.leaderboard.cells import CellRunner
    from rerank.cli import main

    ds = data.load("example")
    python = orders(rerank.run(SPEC, dataset="example", run="bm25", top_k=DEPTH, work_dir=tmp_path / "py").run())

    out = tmp_path / "cli.trec"
    assert main(["run", "-q", "--dataset", "example", "--run", "bm25", "--top-k", str(DEPTH), "--reranker", SPEC,
                 "--output", str(out), "--work-dir", str(tmp_path / "cli")]) == 0  # fmt: skip
    cli = orders(read_trec_run(out))

    pipeline = f"run(name=bm25) % {DEPTH} >> {SPEC}"
    config = tmp_path / "board.toml"
    config.write_text(f'[[datasets]]\nname = "example"\npipelines = [{json.dumps(pipeline)}]\n', encoding="utf-8")
    run_leaderboard(load_config(config), tmp_path / "board", cache=tmp_path / "cache")
    cell = CellRunner(tmp_path / "board", tmp_path / "cache").existing("example", rerank.pipeline(pipeline))
    assert cell is not None
    board = orders(cell.run())

    given = ds.run("bm25").cut(DEPTH)
    queries = {q.qid: q.text for q in ds.queries()}
    served = {}
    http = httpx.Client(base_url=minilm_server, headers={"Authorization": f"Bearer {SERVE_KEY}"})
    for ranking in given:
        documents = [d.full_text for d in ds.docs().get_many([c.docid for c in ranking.candidates])]
        answer = http.post("/v1/rerank", json={"query": queries[ranking.qid], "documents": documents}).json()
        served[ranking.qid] = [ranking.candidates[r["index"]].docid for r in answer["results"]]

    assert python == cli == served
    assert board == {qid: python[qid] for qid in board} and board  # the leaderboard ranks the judged queries
    assert set(python) == set(given.qids)


@pytest.mark.unit
def test_every_stage_is_walked_once_inputs_first():
    from rerank.core.plan import every_stage, needs, resolve_pipeline
    from rerank.spec import parse_pipeline

    pipeline = parse_pipeline("rrf(run(name=bm25) | run(name=bm25) % 50) % 20 >> random(seed=1) % 5 >> random(seed=2)")
    stages = [str(s) for s in every_stage(pipeline)]
    assert len(stages) == len(set(stages)) == 5  # two members (one shared form each), the fusion, two rerankers
    resolved = resolve_pipeline(pipeline)
    assert stages[-1] == str(resolved) and stages[-2] == str(resolved.prefix(2))
    for position, stage in enumerate(every_stage(pipeline)):
        assert all(str(needed) in stages[:position] for needed in needs(stage))


@pytest.mark.unit
def test_rerank_run_checks_its_arguments_before_any_work(tmp_path):
    import rerank

    for kwargs, message in (
        ({"top_k": 0}, "--top-k must be at least 1"),
        ({"batch_queries": -1}, "--batch-queries must be at least 1"),
        ({"resume": True, "fresh": True}, "contradict"),
        ({"output_format": "csv"}, "--output-format 'csv'"),
        ({"engine": "spark"}, "--engine 'spark'"),
        ({"workers": 2}, "--workers goes with --engine ray"),
    ):
        with pytest.raises(ValueError, match=message):
            rerank.run("random(seed=1)", dataset="example", run="bm25", work_dir=tmp_path, **kwargs)
    assert not any(tmp_path.iterdir()), "nothing was written"


class _BatchDependent:
    """A pointwise method whose every score depends on its batch, as dynamic int8's per-batch scales make them."""

    @staticmethod
    def build():  # type: ignore[no-untyped-def]
        from rerank.base import PairScores, PointwiseReranker

        class BatchDependent(PointwiseReranker):
            method = "batch-dependent"

            @property
            def batch_invariant(self) -> bool:
                return False

            def score_pairs(self, queries, texts, docids=()):  # type: ignore[no-untyped-def]
                scale = float(len(texts))
                return PairScores([len(t) / scale for t in texts], [1] * len(texts), [False] * len(texts), 1)

        return BatchDependent()


@pytest.mark.unit
def test_a_batch_dependent_method_reads_its_cache_only_for_the_same_batch(tmp_path):
    """A pair scored in one batch is not read back in another (its score there is another number); the same
    batch again is read back whole, costing no call."""
    from data.records import Candidate, Query, RerankRequest
    from rerank.cache import OutputCache

    def request(*texts: str) -> RerankRequest:
        return RerankRequest(Query("q", "why"), tuple(Candidate(t, 0.0, t) for t in texts))

    cached, plain = _BatchDependent.build(), _BatchDependent.build()
    cached.use_cache(OutputCache(tmp_path))
    first = cached.rerank([request("aa", "bbbb")])[0]
    other = cached.rerank([request("aa", "c", "dddddd")])[0]  # "aa" again, in another batch
    assert {c.docid: c.score for c in other.ranking.candidates} == {
        c.docid: c.score for c in plain.rerank([request("aa", "c", "dddddd")])[0].ranking.candidates
    }
    again = cached.rerank([request("aa", "bbbb")])[0]
    assert again.ranking == first.ranking and again.cost.calls == 0
