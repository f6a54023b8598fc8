"""The evaluation harness reproduces published numbers and tests significance correctly."""

import pytest
from scipy import stats

import data
from eval import Evaluation, compare, evaluate, holm, paired_p_value

PUBLISHED = [
    ("msmarco-passage/trec-dl-2019", "bm25", "nDCG@10", 0.5058),
    ("msmarco-passage/trec-dl-2020", "bm25", "nDCG@10", 0.4796),
    ("msmarco-passage/trec-dl-2019", "splade-pp-ed", "nDCG@10", 0.7308),
    ("msmarco-passage/trec-dl-2020", "splade-pp-ed", "nDCG@10", 0.7197),
    ("beir/scifact", "bm25-flat", "nDCG@10", 0.6789),
    ("beir/scifact", "bm25-flat", "R@100", 0.9253),
]


@pytest.mark.parametrize(("dataset", "run", "measure", "expected"), PUBLISHED)
@pytest.mark.acceptance
def test_published_numbers_to_four_decimals(data_dir, dataset, run, measure, expected):
    ds = data.load(dataset, data_dir)
    result = evaluate(ds.run(run), ds.qrels(), ds.measures)
    assert round(result.aggregate[measure], 4) == expected


@pytest.mark.integration
def test_per_query_values_average_to_the_aggregate(data_dir):
    ds = data.load("msmarco-passage/trec-dl-2019", data_dir)
    result = evaluate(ds.run("bm25"), ds.qrels(), ["nDCG@10", "AP(rel=2)"])
    assert result.num_queries == 43
    for measure in ("nDCG@10", "AP(rel=2)"):
        values = result.per_query[measure]
        assert sum(values.values()) / len(values) == pytest.approx(result.aggregate[measure])


@pytest.mark.unit
def test_unknown_measure_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown measure 'nDCG@@10'"):
        evaluate(data.Run(), data.Qrels(), ["nDCG@@10"])


def _evaluation(name, values):
    return Evaluation(("m",), {"m": sum(values) / len(values)}, {"m": {str(i): v for i, v in enumerate(values)}}, name)


@pytest.mark.unit
def test_paired_tests_match_scipy():
    a = [0.1, 0.4, 0.35, 0.8, 0.5, 0.2, 0.9]
    b = [0.2, 0.5, 0.30, 0.9, 0.7, 0.4, 0.95]
    assert paired_p_value(a, b, "t-test") == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert paired_p_value(a, b, "wilcoxon") == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert paired_p_value(a, a, "t-test") == 1.0
    assert paired_p_value(a, a, "wilcoxon") == 1.0


@pytest.mark.unit
def test_holm_adjustment():
    # Holm on (0.01, 0.04, 0.03): sorted 0.01*3=0.03, 0.03*2=0.06, max(0.06, 0.04*1)=0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


@pytest.mark.unit
def test_compare_corrects_across_runs_and_uses_shared_queries():
    base = _evaluation("base", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    better = _evaluation("better", [0.3, 0.45, 0.5, 0.62, 0.75, 0.8, 0.95, 1.0])
    same_but_one = _evaluation("partial", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])  # lacks query "7"
    rows = compare(base, [better, same_but_one])
    assert [r.run for r in rows] == ["better", "partial"]
    assert rows[0].significant and not rows[1].significant
    assert rows[0].p_adjusted == pytest.approx(min(1.0, 2 * rows[0].p_value))
    assert rows[0].num_queries == 8 and rows[0].delta == pytest.approx(0.22125)
    assert rows[1].num_queries == 7 and rows[1].p_value == 1.0


@pytest.mark.integration
def test_a_run_over_some_queries_is_averaged_over_those_queries_only(data_dir):
    from data import Run

    ds = data.load("msmarco-passage/trec-dl-2019", data_dir)
    full = evaluate(ds.run("bm25"), ds.qrels(), ds.measures)
    rankings = list(ds.run("bm25"))[:10]
    part = evaluate(Run.from_rankings(rankings), ds.qrels(), ds.measures)
    for measure in ds.measures:
        assert set(part.per_query[measure]) == {r.qid for r in rankings}
        expected = sum(full.per_query[measure][r.qid] for r in rankings) / 10
        assert part.aggregate[measure] == pytest.approx(expected)


@pytest.mark.integration
def test_interpolation_weights_are_fitted_on_the_given_qrels(tmp_path, capsys):
    import data
    from data.records import Candidate, Ranking, Run
    from data.trec import write_trec_run
    from eval.fit_weights import fit_interpolation, main

    ds = data.load("example")
    qrels = ds.qrels()
    judged = Run.from_rankings(
        Ranking.sorted(qid, (Candidate(d, float(g)) for d, g in qrels[qid].items())) for qid in qrels.qids
    )
    ranked = fit_interpolation([ds.run("bm25"), judged], qrels, "nDCG@10", step=0.25)
    assert [w for w, _ in sorted(ranked)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert ranked[0][1] == pytest.approx(1.0) and ranked[0][0] > 0  # the judged run wins, with the least weight
    best = dict(ranked)
    assert best[0.0] == pytest.approx(evaluate(ds.run("bm25"), qrels, ["nDCG@10"]).aggregate["nDCG@10"])
    path = tmp_path / "judged.trec"
    write_trec_run(judged, path)
    assert main(["--dataset", "example", "bm25", str(path), "--step", "0.5"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("best on example: weights=[0.00, 1.00] (nDCG@10 1.0000)")
    assert main(["--dataset", "example", "bm25", str(tmp_path / "missing.trec")]) == 5
    assert "missing.trec" in capsys.readouterr().err


@pytest.mark.integration
def test_a_depth_sweep_measures_each_depth_and_scores_each_pair_once(tmp_path, capsys, monkeypatch):
    """``rerank eval --depths``: each depth's measures are those of the run ``rerank run --top-k D`` writes; the
    depths share one output cache, so the bi-encoder scores each pair once, and the cost given for depth 10 (the
    work of every depth up to it) is what reranking the top 10 from scratch costs."""
    import json

    import rerank
    from rerank.cli import main

    monkeypatch.setenv("RERANK_CACHE_DIR", str(tmp_path / "cache"))
    spec = "run(name=bm25) >> bi-encoder(model=minilm)"
    argv = ["eval", "--dataset", "example", "--depths", "10,2,5", "--pipeline", spec, "--pipeline",
            "run(name=bm25) >> random(seed=1)", "--format", "json", "--plot", str(tmp_path / "depths.png")]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["depths"] == [2, 5, 10] and len(report["points"]) == 6
    assert "depth   10: nDCG@10" in captured.err  # a line per point as the sweep goes
    example = data.load("example")
    points = {(p["pipeline"], p["depth"]): p for p in report["points"]}
    for depth in (2, 5, 10):
        alone = rerank.run(
            spec.split(" >> ")[1], dataset=example, run="bm25", top_k=depth, work_dir=tmp_path / f"w{depth}"
        )
        ours = points[(spec, depth)]
        assert ours["measures"] == evaluate(alone.run(), example.qrels(), report["measures"]).aggregate
        if depth == 10:
            assert ours["tokens_per_query"] == pytest.approx(alone.cost.input_tokens / len(example.queries()))
    tokens = [points[(spec, d)]["tokens_per_query"] for d in (2, 5, 10)]
    assert tokens[0] < tokens[1] < tokens[2]
    best = report["best_depth"]["nDCG@10"][spec]
    assert points[(spec, best)]["measures"]["nDCG@10"] == max(
        points[(spec, d)]["measures"]["nDCG@10"] for d in (2, 5, 10)
    )
    assert (tmp_path / "depths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.unit
def test_only_batch_invariant_pointwise_rerankers_carry_their_cost_across_depths():
    from eval.depths import pointwise
    from rerank.spec import parse_pipeline

    assert pointwise(parse_pipeline("run(name=bm25) >> bi-encoder(model=minilm)"))
    assert pointwise(parse_pipeline("run(name=bm25) >> bi-encoder(model=minilm, precision=int8, calibration=8)"))
    assert not pointwise(parse_pipeline("run(name=bm25) >> bi-encoder(model=minilm, precision=int8)"))  # per batch
    assert not pointwise(parse_pipeline("run(name=bm25) >> listwise(model=m)"))
    assert not pointwise(parse_pipeline("run(name=bm25) >> bi-encoder(model=minilm) % 5 >> random"))
