import shutil
import zipfile

import pytest

import data
from data import DatasetNotFoundError


@pytest.mark.unit
def test_registry_lists_the_datasets():
    names = data.registered()
    for name in ("beir/scifact", "msmarco-passage/trec-dl-2019", "msmarco-passage/trec-dl-2020", "example"):
        assert name in names
    with pytest.raises(DatasetNotFoundError, match="unknown dataset 'beir/nope'"):
        data.load("beir/nope")


@pytest.mark.parametrize(
    ("name", "queries", "judged"),
    [("msmarco-passage/trec-dl-2019", 43, 9260), ("msmarco-passage/trec-dl-2020", 54, 11386)],
)
@pytest.mark.integration
def test_dl_datasets(data_dir, name, queries, judged):
    ds = data.load(name, data_dir)
    assert len(ds.queries()) == queries
    assert ds.qrels().num_judgments() == judged
    assert ds.runs == ("bm25", "bm25-rm3", "splade-pp-ed", "tasb", "openai-ada2", "repllama")
    for run in ds.runs:
        assert len(ds.run(run)) == queries
    assert ds.measures == ("nDCG@10", "RR(rel=2)@10", "R(rel=2)@100")


@pytest.mark.integration
def test_scifact(data_dir):
    ds = data.load("beir/scifact", data_dir)
    assert len(ds.queries()) == 300
    assert ds.qrels().num_judgments() == 339
    assert len(ds.docs()) == 5183
    assert ds.docs().get_many(["4983"])[0].title.startswith("Microstructural development")
    run = ds.run("bm25-flat")
    assert len(run) == 300 and max(len(r) for r in run) == 100


@pytest.mark.integration
def test_missing_dataset_names_the_fix(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="RERANK_DATA_DIR"):
        data.load("beir/scifact", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="has no run 'nope'"):
        data.load("example").run_path("nope")


@pytest.mark.integration
def test_example_collection_ships_with_the_package():
    ds = data.load("example")
    assert len(ds.queries()) == 8 and len(ds.docs()) == 32 and len(ds.run("bm25")) == 8


@pytest.mark.integration
def test_dl_topics_and_qrels_fall_back_to_pyserini_jar(data_dir, tmp_path):
    pytest.importorskip("pyserini")
    mirror = tmp_path / "msmarco-passage"
    (mirror / "trec-dl-2019").mkdir(parents=True)
    shutil.copytree(data_dir / "msmarco-passage/trec-dl-2019/runs", mirror / "trec-dl-2019/runs")
    ds = data.load("msmarco-passage/trec-dl-2019", tmp_path)
    local = data.load("msmarco-passage/trec-dl-2019", data_dir)
    assert ds.qrels() == local.qrels()
    assert sorted(ds.queries(), key=lambda q: q.qid) == sorted(local.queries(), key=lambda q: q.qid)


@pytest.mark.integration
def test_beir_download_from_a_url(tmp_path, monkeypatch):
    """The download path, fed from a local file URL in BEIR's zip layout."""
    example = data.load("example").root
    archive = tmp_path / "server" / "nfcorpus.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
            zf.write(example / name, f"nfcorpus/{name}")
    monkeypatch.setenv("RERANK_BEIR_BASE_URL", archive.parent.as_uri())
    target = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError, match="--download"):
        data.load("beir/nfcorpus", target)
    ds = data.load("beir/nfcorpus", target, download=True)
    assert (target / "beir/nfcorpus/corpus.jsonl").is_file()
    assert len(ds.queries()) == 8 and len(ds.docs()) == 32
    assert data.load("beir/nfcorpus", target).qrels() == ds.qrels()  # now local, no download


@pytest.mark.integration
def test_failed_download_says_where_from(tmp_path, monkeypatch):
    monkeypatch.setenv("RERANK_BEIR_BASE_URL", (tmp_path / "empty").as_uri())
    with pytest.raises(DatasetNotFoundError, match="could not download BEIR dataset 'fiqa'"):
        data.load("beir/fiqa", tmp_path / "data", download=True)
    assert not (tmp_path / "data" / "beir" / "fiqa").exists()
