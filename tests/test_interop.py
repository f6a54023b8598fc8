"""Interop: runs as pandas frames in PyTerrier's columns, rerankers and retrievers as PyTerrier transformers,
a LangChain document compressor and a LlamaIndex node postprocessor, each checked against the real package."""

from __future__ import annotations

import asyncio
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DL19_MINILM

import data
from data import Candidate, MissingDependencyError, Query, Ranking, Run
from data.docstore import MemoryDocumentStore
from data.frames import COLUMNS

pd = pytest.importorskip("pandas")


def _run_with_texts() -> tuple[Run, list[Query], MemoryDocumentStore]:
    """Two queries; equal scores, a ranking not in score order (a listwise method's), and qids not sorted."""
    docs = MemoryDocumentStore(
        [data.Document(d, f"text of {d}", title="T" if d == "a" else "") for d in ("a", "b", "c", "d")]
    )
    run = Run.from_rankings(
        [
            Ranking("q2", (Candidate("c", 3.0), Candidate("a", 2.0), Candidate("b", 2.0))),
            Ranking("q10", (Candidate("d", 0.5), Candidate("a", 1.5))),
        ],
        name="mine",
    )
    return run, [Query("q2", "second query"), Query("q10", "tenth query")], docs


def _example_frame(k: int = 10):
    """The example collection's BM25 run, top k, with query and document texts."""
    example = data.load("example")
    return example.run("bm25").cut(k).to_frame(example.queries(), example.docs()), example


def _order(frame) -> dict[str, list[str]]:
    return {qid: list(rows.sort_values("rank")["docno"]) for qid, rows in frame.groupby("qid", sort=False)}


# -- frames -----------------------------------------------------------------------------------------------------


@pytest.mark.unit
def test_run_to_frame_has_pyterriers_columns_and_round_trips():
    run, queries, docs = _run_with_texts()
    frame = run.to_frame(queries, docs)
    assert tuple(frame.columns) == COLUMNS
    assert list(frame["qid"]) == ["q2"] * 3 + ["q10"] * 2  # the run's order
    assert list(frame["docno"]) == ["c", "a", "b", "d", "a"]
    assert list(frame["rank"]) == [0, 1, 2, 0, 1]  # positions, 0-based, whatever the scores
    assert list(frame["query"]) == ["second query"] * 3 + ["tenth query"] * 2
    assert frame["text"].iloc[1] == "T text of a"  # the document's full text: title and text
    assert (frame["score"].dtype, frame["rank"].dtype) == ("float64", "int64")

    back = Run.from_frame(frame, name="mine")
    assert back.qids == ["q2", "q10"]
    assert [(c.docid, c.score) for c in back["q10"]] == [("d", 0.5), ("a", 1.5)]  # rank decides, not score
    assert [c.text for c in back["q2"]] == ["text of c", "T text of a", "text of b"]
    assert Run.from_frame(run.to_frame(), name="mine") == run  # without texts: the same run exactly
    assert tuple(run.to_frame().columns) == ("qid", "docno", "score", "rank")
    assert tuple(run.to_frame(queries={"q2": "x", "q10": "y"}).columns) == ("qid", "query", "docno", "score", "rank")


@pytest.mark.unit
def test_example_run_round_trips_through_a_frame_with_texts():
    frame, example = _example_frame(k=1000)
    run = example.run("bm25")
    back = Run.from_frame(frame, name=run.name)
    assert back.qids == run.qids
    for ranking in run:
        assert [(c.docid, c.score) for c in back[ranking.qid]] == [(c.docid, c.score) for c in ranking]
        assert [c.text for c in back[ranking.qid]] == [d.full_text for d in example.docs().get_many(ranking.docids)]
    assert Run.from_frame(back.to_frame(), name=run.name) == back  # texts carried by candidates stay


@pytest.mark.unit
def test_a_frame_without_rank_is_ordered_by_score_and_ties_keep_the_frames_order():
    frame = pd.DataFrame(
        {"qid": [7, 7, 7, 3], "docno": ["x", "y", "z", "w"], "score": [1.0, 5.0, 1.0, 2.0]}
    )  # integer qids, as some PyTerrier frames have them
    run = Run.from_frame(frame)
    assert run.qids == ["7", "3"]
    assert run["7"].docids == ["y", "x", "z"]
    assert all(c.text is None for r in run for c in r)


@pytest.mark.unit
def test_frame_mistakes_are_named():
    run, queries, docs = _run_with_texts()
    with pytest.raises(
        ValueError, match=r"Run.from_frame needs the column\(s\) score in the frame \(it has qid, docno\)"
    ):
        Run.from_frame(pd.DataFrame({"qid": ["1"], "docno": ["a"]}))
    with pytest.raises(TypeError, match="takes a pandas DataFrame, not a list"):
        Run.from_frame([("1", "a", 1.0)])
    with pytest.raises(ValueError, match="query 'q10' of the run is not among the queries given"):
        run.to_frame([queries[0]])
    partly = Run.from_rankings([Ranking("q", (Candidate("a", 1.0, "has text"), Candidate("b", 0.5)))])
    with pytest.raises(ValueError, match="document 'b' of query 'q' has no text while others have theirs"):
        partly.to_frame()
    assert partly.to_frame(docs=docs)["text"].tolist() == ["has text", "text of b"]  # the store fills the gap
    two_texts = pd.DataFrame({"qid": ["1", "1"], "query": ["a", "b"], "docno": ["x", "y"], "score": [1.0, 0.0]})
    with pytest.raises(ValueError, match="query '1' has two texts in the frame"):
        Run.from_frame(two_texts)
    with pytest.raises(ValueError, match="score is NaN"):
        Run.from_frame(pd.DataFrame({"qid": ["1"], "docno": ["a"], "score": [float("nan")]}))


# -- missing extras ---------------------------------------------------------------------------------------------


class _NotInstalled:
    """A meta path finder that answers for one distribution's modules as Python does when it is absent."""

    def __init__(self, module: str):
        self.module = module

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == self.module or name.startswith(f"{self.module}."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def _missing(monkeypatch, module: str, *ours: str) -> None:
    """``module`` is as if not installed; our modules that import it load afresh (all restored after the test)."""
    for name in [m for m in sys.modules if m == module or m.startswith(f"{module}.")] + list(ours):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NotInstalled(module), *sys.meta_path])


def _hint(module: str, extra: str) -> str:
    """The whole message, as data/optional.py words it for a module that is not installed."""
    words = f"{module} is required here but could not be imported (No module named '{module}'); "
    return "^" + re.escape(words + f"pip install 'rerank[{extra}]'") + "$"


@pytest.mark.unit
def test_missing_pandas_names_its_extra(monkeypatch):
    run, _, _ = _run_with_texts()
    _missing(monkeypatch, "pandas")
    with pytest.raises(MissingDependencyError, match=_hint("pandas", "pandas")):
        run.to_frame()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("module", "extra", "ours", "build"),
    [
        ("pyterrier", "pyterrier", "rerank.integrations.pyterrier", lambda r, _: r.as_pyterrier()),
        ("pyterrier", "pyterrier", "retrievers.pyterrier", lambda _, retriever: retriever.as_pyterrier()),
        ("langchain_core", "langchain", "rerank.integrations.langchain", lambda r, _: r.as_langchain()),
        ("llama_index", "llamaindex", "rerank.integrations.llamaindex", lambda r, _: r.as_llamaindex()),
    ],
    ids=["pyterrier-reranker", "pyterrier-retriever", "langchain", "llamaindex"],
)
def test_missing_framework_names_its_extra(monkeypatch, module, extra, ours, build):
    from eval.baselines import RandomReranker
    from retrievers.fusion import FusionRetriever

    reranker, retriever = RandomReranker(seed=1), FusionRetriever([])
    _missing(monkeypatch, module, ours)
    with pytest.raises(MissingDependencyError, match=_hint(module, extra)) as raised:
        build(reranker, retriever)
    assert isinstance(raised.value, ImportError)
    with pytest.raises(MissingDependencyError, match=_hint(module, extra)):
        importlib.import_module(ours)  # importing the module itself says the same


@pytest.mark.integration
def test_the_packages_import_no_framework():
    """``import rerank`` stays light: pandas and the frameworks load only when an integration is used."""
    probe = (
        "import sys, rerank, data, retrievers, data.frames, rerank.base, retrievers.base, rerank.integrations\n"
        "rerank.Reranker; rerank.load_reranker\n"
        "print(','.join(sorted(sys.modules)))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    heavy = {"pandas", "pyterrier", "langchain_core", "llama_index", "torch"}
    assert not [m for m in loaded.strip().split(",") if m.split(".")[0] in heavy]


# -- rerankers on frames and in PyTerrier -----------------------------------------------------------------------


@pytest.mark.integration
def test_rerank_frame_gives_the_rerankers_order_scores_and_ranks(minilm_bi_encoder):
    from rerank.inputs import requests_from_run

    frame, example = _example_frame(k=10)
    queries = {q.qid: q for q in example.queries()}
    requests = list(requests_from_run(example.run("bm25"), queries, example.docs(), k=10))
    expected = {r.ranking.qid: r.ranking for r in minilm_bi_encoder.rerank(requests)}

    shuffled = frame.sample(frac=1.0, random_state=3).drop(columns=["score", "rank"]).assign(origin="bm25")
    reranked = minilm_bi_encoder.rerank_frame(shuffled)
    assert list(reranked.columns) == [*shuffled.columns, "score", "rank"]  # other columns come along
    assert list(reranked["qid"]) == sorted(reranked["qid"])  # sorted by qid, then rank
    for qid, rows in reranked.groupby("qid", sort=False):
        assert list(rows["rank"]) == list(range(len(rows)))
        assert list(rows["docno"]) == expected[qid].docids
        # the shuffled rows batch the texts differently: float noise from padding, no more
        assert list(rows["score"]) == pytest.approx([c.score for c in expected[qid]], abs=1e-6)
        assert set(rows["origin"]) == {"bm25"}

    from_store = minilm_bi_encoder.rerank_frame(shuffled.drop(columns=["text"]), docs=example.docs())
    assert _order(from_store) == _order(reranked)  # texts read from the store instead
    with pytest.raises(ValueError, match=r"rerank_frame needs the column\(s\) text"):
        minilm_bi_encoder.rerank_frame(shuffled.drop(columns=["text"]))


@pytest.mark.integration
def test_reranker_transformer_composes_with_pyterriers_operators(minilm_bi_encoder):
    import pyterrier as pt

    from eval import evaluate

    frame, example = _example_frame(k=1000)
    topics = pd.DataFrame({"qid": [q.qid for q in example.queries()], "query": [q.text for q in example.queries()]})
    ours = minilm_bi_encoder.as_pyterrier()
    assert isinstance(ours, pt.Transformer)
    pipeline = pt.Transformer.from_df(frame) % 5 >> ours % 3
    result = pipeline(topics)
    assert isinstance(result, pd.DataFrame)

    # our own pipeline on the same run: the same documents in the same order, with the same scores
    expected = (minilm_bi_encoder % 3)(example.run("bm25").cut(5), docs=example.docs(), queries=example.queries())
    assert _order(result) == {r.qid: r.docids for r in expected}
    assert Run.from_frame(result) == Run.from_rankings(
        Ranking(r.qid, tuple(Candidate(c.docid, c.score, d.full_text) for c, d in zip(
            r.candidates, example.docs().get_many(r.docids), strict=True
        ))) for r in expected
    )  # fmt: skip

    qrels = pd.DataFrame(
        [(q, d, rel) for q in example.qrels().qids for d, rel in example.qrels()[q].items()],
        columns=["qid", "docno", "label"],
    )
    table = pt.Experiment([pipeline], topics, qrels, [pt.measures.nDCG @ 3], names=["ours"], verbose=False)
    assert table["nDCG@3"][0] == pytest.approx(evaluate(expected, example.qrels(), "nDCG@3").aggregate["nDCG@3"])


@pytest.mark.integration
def test_retriever_transformer_fuses_a_cutoff_and_feeds_a_reranker(tmp_path, minilm_bi_encoder):
    import pyterrier as pt

    from retrievers.dense import DenseRetriever
    from retrievers.pyterrier import RetrieverTransformer

    example = data.load("example")
    retriever = DenseRetriever.build(example.iter_documents(), tmp_path / "dense", batch_size=8)
    topics = pd.DataFrame(
        {"qid": [q.qid for q in example.queries()], "query": [q.text for q in example.queries()], "query_0": "orig"}
    )
    ours = retriever.as_pyterrier(docs=example.docs())
    assert isinstance(ours, pt.Transformer)
    fused = (ours % 4).compile()
    assert isinstance(fused, RetrieverTransformer) and fused.retriever.k == 4  # the cutoff became the retriever's k

    retrieved = fused(topics)
    assert _order(retrieved) == {r.qid: r.docids for r in retriever.retrieve(example.queries(), 4)}
    assert set(retrieved["query_0"]) == {"orig"} and "text" in retrieved.columns

    pipeline = ours % 4 >> minilm_bi_encoder.as_pyterrier()
    expected = (retriever % 4 >> minilm_bi_encoder)(example.queries(), docs=example.docs())
    assert _order(pipeline(topics)) == {r.qid: r.docids for r in expected}


@pytest.mark.slow
@pytest.mark.acceptance
def test_pyterrier_experiment_reproduces_the_dl19_ndcg(dl19, tmp_path, dl19_minilm_cache):
    """The MiniLM bi-encoder over BM25's top 100 on TREC DL 2019: 0.6424 nDCG@10 (as `rerank run --eval` gives),
    here through pt.Experiment on a PyTerrier pipeline fed our BM25 run as a frame (no Java)."""
    import pyterrier as pt

    from eval import evaluate
    from rerank.registry import load_reranker

    requests = dl19.candidates("bm25")
    bm25 = Run.from_rankings((Ranking(r.query.qid, r.candidates) for r in requests), name="bm25")
    first_stage = pt.Transformer.from_df(bm25.to_frame(queries=[r.query for r in requests]))
    from rerank.cache import OutputCache

    scorer = load_reranker(DL19_MINILM)
    scorer.use_cache(OutputCache(dl19_minilm_cache))  # the session's scores: PyTerrier's path is under test here
    reranker = scorer.as_pyterrier()
    topics = pd.DataFrame({"qid": [q.qid for q in dl19.queries()], "query": [q.text for q in dl19.queries()]})
    qrels = pd.DataFrame(
        [(q, d, rel) for q in dl19.qrels().qids for d, rel in dl19.qrels()[q].items()],
        columns=["qid", "docno", "label"],
    )
    table = pt.Experiment(
        [first_stage % 100, first_stage % 100 >> reranker], topics, qrels, [pt.measures.nDCG @ 10],
        names=["bm25", "minilm"], save_dir=str(tmp_path), verbose=False,
    )  # fmt: skip
    print(table)
    ndcg = dict(zip(table["name"], table["nDCG@10"], strict=True))
    assert (round(ndcg["bm25"], 4), round(ndcg["minilm"], 4)) == (0.5058, 0.6424)
    # the run PyTerrier saved, read and measured by our own evaluation: the same number
    saved = data.read_trec_run(next(Path(tmp_path).glob("minilm.*")))
    assert evaluate(saved, dl19.qrels(), "nDCG@10").aggregate["nDCG@10"] == pytest.approx(ndcg["minilm"], abs=1e-9)


def _pt_rankings(frame) -> dict[str, list[tuple[str, float]]]:
    return {
        str(qid): [(str(d), float(x)) for d, x in zip(rows["docno"], rows["score"], strict=True)]
        for qid, rows in frame.sort_values(["qid", "rank"]).groupby("qid", sort=False)
    }


def _tie_free(ranking: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """A ranking in (score descending, docid) order: PyTerrier breaks ties by docno ascending, trec_eval (and
    rerank) descending; their measures read a run the same way."""
    return sorted(ranking, key=lambda pair: (-pair[1], pair[0]))


@pytest.mark.unit
def test_concatenation_is_pyterriers_operator_on_the_same_runs():
    """``concatenate`` against PyTerrier's own ``^`` (pyterrier._ops.Concatenate) on runs with overlaps, ties,
    negative scores and three members: the same candidates with the same scores, in the same order up to ties."""
    import random as random_module

    import pyterrier as pt

    from retrievers.fusion import concatenate

    rng = random_module.Random(7)
    runs = []
    for member in range(3):
        rankings = []
        for q in ("q1", "q2", "q10"):
            docs = rng.sample([f"d{i}" for i in range(30)], rng.randint(3, 12) if member else 5)
            scores = [round(rng.uniform(-3, 9), 1) for _ in docs]  # rounded: ties happen
            rankings.append(Ranking.sorted(q, (Candidate(d, x) for d, x in zip(docs, scores, strict=True))))
        runs.append(Run.from_rankings(rankings))
    ours = concatenate(runs)
    left, middle, right = (pt.Transformer.from_df(r.to_frame()) for r in runs)
    theirs = _pt_rankings((left ^ middle ^ right).transform(runs[0].to_frame()[["qid"]].drop_duplicates()))
    assert set(theirs) == set(ours.qids)
    for qid in ours.qids:
        mine = [(c.docid, c.score) for c in ours[qid].candidates]
        assert [d for d, _ in _tie_free(mine)] == [d for d, _ in _tie_free(theirs[qid])]
        assert dict(mine) == pytest.approx(dict(theirs[qid]), abs=1e-12)
    # where the left has nothing for a query, PyTerrier drops the right's candidates too; rerank keeps them
    lone = concatenate([Run.from_rankings([]), runs[1]])
    assert [c.docid for c in lone["q2"].candidates] == runs[1]["q2"].docids
    with pytest.raises(ValueError, match=r"member 2 ranks queries .* pipelines over different topics"):
        concatenate([runs[0], Run.from_rankings([Ranking("other", (Candidate("d1", 1.0),))])])


@pytest.mark.integration
@pytest.mark.slow  # DL19's MiniLM scores (the session fixture, 45 s): make test, not make check
def test_a_cascade_that_keeps_its_tail_is_pyterriers_concatenation_on_dl19(dl19, tmp_path, dl19_minilm_cache):
    """``(bm25 % 10 >> minilm) ^ bm25`` through ``rerank.run`` and through pt.Experiment on PyTerrier's own ``^``:
    the same rankings, and the recall the cascade delivers is BM25's at 100 (the tail is kept), not the top 10's."""
    import pyterrier as pt

    import rerank
    from eval import evaluate
    from rerank.cache import OutputCache
    from rerank.registry import load_reranker

    result = rerank.run(
        f"(run(name=bm25) % 10 >> {DL19_MINILM}) ^ run(name=bm25)", dataset=dl19, cache=dl19_minilm_cache,
        work_dir=tmp_path / "stages",
    )  # fmt: skip
    ours = result.run()
    requests = dl19.candidates("bm25")
    bm25 = Run.from_rankings((Ranking(r.query.qid, r.candidates) for r in requests), name="bm25")
    first_stage = pt.Transformer.from_df(bm25.to_frame(queries=[r.query for r in requests]))
    scorer = load_reranker(DL19_MINILM)
    scorer.use_cache(OutputCache(dl19_minilm_cache))
    pipeline = (first_stage % 10 >> scorer.as_pyterrier()) ^ first_stage % 100
    topics = pd.DataFrame({"qid": [q.qid for q in dl19.queries()], "query": [q.text for q in dl19.queries()]})
    qrels = pd.DataFrame(
        [(q, d, rel) for q in dl19.qrels().qids for d, rel in dl19.qrels()[q].items()],
        columns=["qid", "docno", "label"],
    )
    measures = [pt.measures.nDCG @ 10, pt.measures.R(rel=2) @ 100]
    table = pt.Experiment([pipeline], topics, qrels, measures, names=["cascade"], save_dir=str(tmp_path), verbose=False)
    theirs = data.read_trec_run(next(Path(tmp_path).glob("cascade.*")))
    assert ours.qids and set(ours.qids) == set(theirs.qids)
    for qid in ours.qids:
        mine = [(c.docid, c.score) for c in ours[qid].candidates]
        other = [(c.docid, c.score) for c in theirs[qid].candidates]
        assert [d for d, _ in _tie_free(mine)] == [d for d, _ in _tie_free(other)], qid
        assert dict(mine) == pytest.approx(dict(other), abs=1e-6)  # MiniLM scores are float32
    mine = evaluate(ours, dl19.qrels(), ["nDCG@10", "R(rel=2)@100"]).aggregate
    assert mine["nDCG@10"] == pytest.approx(float(table["nDCG@10"][0]), abs=1e-9)
    assert mine["R(rel=2)@100"] == pytest.approx(float(table["R(rel=2)@100"][0]), abs=1e-9)
    assert mine["R(rel=2)@100"] == evaluate(bm25, dl19.qrels(), "R(rel=2)@100").aggregate["R(rel=2)@100"]


# -- RAG frameworks ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def passages(dl19):
    """A DL19 query and eight of its BM25 candidates (real MS MARCO passages)."""
    request = dl19.candidates("bm25")[0]
    return request.query.text, [(c.docid, c.text) for c in request.candidates[:8]]


@pytest.mark.integration
def test_langchain_compressor_keeps_the_rerankers_top_n(minilm_bi_encoder, passages):
    from langchain_core.documents import BaseDocumentCompressor, Document

    query, found = passages
    expected = minilm_bi_encoder.rank(query, [text for _, text in found]).ranking
    documents = [Document(page_content=text, metadata={"docid": docid}, id=docid) for docid, text in found]

    compressor = minilm_bi_encoder.as_langchain(top_n=3)
    assert isinstance(compressor, BaseDocumentCompressor)
    kept = compressor.compress_documents(documents, query)
    assert [d.metadata["docid"] for d in kept] == [found[int(c.docid)][0] for c in expected.candidates[:3]]
    assert [d.metadata["relevance_score"] for d in kept] == [c.score for c in expected.candidates[:3]]
    assert [d.id for d in kept] == [d.metadata["docid"] for d in kept]
    assert all("relevance_score" not in d.metadata for d in documents)  # the inputs are left as they were

    every = asyncio.run(minilm_bi_encoder.as_langchain(top_n=None).acompress_documents(documents, query))
    assert [d.metadata["docid"] for d in every] == [found[int(c.docid)][0] for c in expected.candidates]
    assert compressor.compress_documents([], query) == []
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        minilm_bi_encoder.as_langchain(top_n=0)


@pytest.mark.integration
def test_llamaindex_postprocessor_keeps_the_rerankers_top_n(minilm_bi_encoder, passages):
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    query, found = passages
    expected = minilm_bi_encoder.rank(query, [text for _, text in found]).ranking
    nodes = [
        NodeWithScore(node=TextNode(text=text, id_=docid, metadata={"source": "msmarco"}), score=0.0)
        for docid, text in found
    ]

    postprocessor = minilm_bi_encoder.as_llamaindex(top_n=3)
    assert isinstance(postprocessor, BaseNodePostprocessor)
    kept = postprocessor.postprocess_nodes(nodes, query_bundle=QueryBundle(query))
    assert [n.node.node_id for n in kept] == [found[int(c.docid)][0] for c in expected.candidates[:3]]
    assert [n.score for n in kept] == [c.score for c in expected.candidates[:3]]
    every = minilm_bi_encoder.as_llamaindex(top_n=None).postprocess_nodes(nodes, query_str=query)
    assert [n.node.node_id for n in every] == [found[int(c.docid)][0] for c in expected.candidates]
    assert postprocessor.postprocess_nodes([], query_str=query) == []
    with pytest.raises(ValueError, match="needs the query"):
        postprocessor.postprocess_nodes(nodes)
