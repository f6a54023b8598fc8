import threading
import time

import pytest

from data import Document, DocumentNotFoundError, MemoryDocumentStore, ParseError, SqliteDocumentStore
from data.docstore import cached_store, get_document


def docs(n):
    return [Document(f"d{i}", f"text {i}", f"title {i}" if i % 2 else "") for i in range(n)]


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
@pytest.mark.unit
def test_lookup_in_any_order_with_repeats(tmp_path, kind):
    store = (
        SqliteDocumentStore.build(tmp_path / "s.sqlite", docs(2000))
        if kind == "sqlite"
        else MemoryDocumentStore(docs(2000))
    )
    wanted = ["d1999", "d0", "d7", "d0", *[f"d{i}" for i in range(100, 1300)]]
    got = store.get_many(wanted)
    assert [d.docid for d in got] == wanted
    assert got[2] == Document("d7", "text 7", "title 7")
    assert len(store) == 2000 and "d5" in store and "zz" not in store
    assert get_document(store, "d3").title == "title 3"
    with pytest.raises(DocumentNotFoundError, match="'nope'"):
        store.get_many(["d1", "nope"])
    assert [d.docid for d in store] == [f"d{i}" for i in range(2000)]


@pytest.mark.unit
def test_duplicate_ids_fail_the_build_and_leave_nothing(tmp_path):
    with pytest.raises(ParseError, match="duplicate document id 'd1'"):
        SqliteDocumentStore.build(tmp_path / "s.sqlite", [*docs(3), Document("d1", "again")], source="corpus.jsonl")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.unit
def test_store_serves_threads(tmp_path):
    store = SqliteDocumentStore.build(tmp_path / "s.sqlite", docs(500))
    errors = []

    def worker(offset):
        try:
            for i in range(offset, 500, 4):
                assert store.get_many([f"d{i}"])[0].text == f"text {i}"
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.unit
def test_cached_store_is_built_once_and_rebuilt_when_the_source_changes(tmp_path):
    source = tmp_path / "corpus.tsv"
    source.write_text("a\tfirst\n")
    built = []

    def stream(text):
        built.append(text)
        yield Document("a", text)

    cache = tmp_path / "cache"
    assert cached_store(source, stream("first"), cache).get_many(["a"])[0].text == "first"
    assert cached_store(source, stream("unused"), cache).get_many(["a"])[0].text == "first"
    assert built == ["first"]
    time.sleep(0.01)
    source.write_text("a\tsecond version\n")
    assert cached_store(source, stream("second"), cache).get_many(["a"])[0].text == "second"


@pytest.mark.integration
def test_dl_passages_store(dl19):
    store = dl19.docs()
    assert len(store) == 30005
    ids = [c.docid for r in dl19.run("bm25") for c in r]
    texts = store.get_many(ids)
    assert all(d.text for d in texts)
