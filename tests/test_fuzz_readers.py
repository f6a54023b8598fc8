"""Fuzzed readers: any file either parses, keeping every record, or raises ParseError naming file and line.

CI runs a small, derandomised budget (the ``ci`` profile in conftest.py). The long fuzz run is
``HYPOTHESIS_PROFILE=fuzz .venv/bin/python -m pytest tests/test_fuzz_readers.py``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data import (
    Candidate,
    ParseError,
    Query,
    RerankRequest,
    Run,
    read_candidates_jsonl,
    read_rankllm_requests,
    read_topics,
    read_trec_qrels,
    read_trec_run,
    write_candidates_jsonl,
    write_rankllm_requests,
    write_trec_run,
)
from data.beir import iter_beir_corpus, iter_beir_queries, read_beir_qrels
from data.records import Ranking

pytestmark = pytest.mark.unit

# name -> (reader returning its record count, a valid file, whether each non-blank line is one record)
READERS: dict[str, tuple[Callable[[Path], int], bytes, bool]] = {
    "trec-run": (
        lambda p: read_trec_run(p).num_candidates(),
        b"q1 Q0 d1 1 2.5 bm25\nq1 Q0 d2 2 1.5 bm25\nq2 Q0 d1 1 0.25 bm25\nq2 Q0 d3 2 -1e-3 bm25\n",
        True,
    ),
    "trec-qrels": (
        lambda p: read_trec_qrels(p).num_judgments(),
        b"q1 0 d1 1\nq1 0 d2 0\nq2 0 d1 2\nq2 Q0 d9 3\n",
        True,
    ),
    "topics": (lambda p: len(read_topics(p)), b"q1\tfirst query\nq2\tsecond query\n3\tthird one\n", True),
    "beir-corpus": (
        lambda p: len(list(iter_beir_corpus(p))),
        b'{"_id": "d1", "title": "T", "text": "one"}\n{"_id": "d2", "text": "two"}\n{"_id": 3, "text": ""}\n',
        True,
    ),
    "beir-queries": (
        lambda p: len(list(iter_beir_queries(p))),
        b'{"_id": "q1", "text": "one"}\n{"_id": "q2", "text": "two"}\n',
        True,
    ),
    "beir-qrels": (
        lambda p: read_beir_qrels(p).num_judgments(),
        b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td1\t2\n",
        False,  # the header line holds no record
    ),
    "jsonl": (
        lambda p: len(read_candidates_jsonl(p)),
        b'{"qid": "q1", "query": "a", "candidates": [{"docid": "d1", "score": 1.0, "text": "x"}]}\n'
        b'{"qid": "q2", "query": "b", "candidates": [{"docid": "d1", "score": 2}, {"docid": "d2", "score": 1}]}\n',
        True,
    ),
    "rankllm": (
        lambda p: sum(len(r.candidates) for r in read_rankllm_requests(p)),
        json.dumps(
            [
                {
                    "query": "a",
                    "hits": [
                        {"qid": "q1", "docid": "d1", "rank": 1, "score": 2.0, "content": "x"},
                        {"qid": "q1", "docid": "d2", "rank": 2, "score": 1.0, "content": "y"},
                    ],
                },
                {"query": "b", "hits": [{"qid": "q2", "docid": "d1", "rank": 1, "score": 0.5, "content": ""}]},
            ],
            indent=1,
        ).encode(),
        False,  # one JSON document over many lines
    ),
}
FORMATS = sorted(READERS)
# Formats in which a repeated line is a repeated record, which must be refused.
DUPLICATES_REFUSED = ["trec-run", "trec-qrels", "topics", "beir-corpus", "beir-queries", "beir-qrels", "jsonl"]

FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)


def _read(name: str, path: Path) -> int | ParseError:
    """The record count, or the ParseError; anything else raised fails the test."""
    reader = READERS[name][0]
    try:
        return reader(path)
    except ParseError as err:
        assert err.path == str(path)
        assert isinstance(err.line, int) and err.line >= 1, err
        assert f"{path}:{err.line}" in str(err)
        return err


def _records_expected(name: str, content: bytes) -> int | None:
    """Records a successful parse must hold: one per non-blank line, where a line is one record."""
    if not READERS[name][2]:
        return None
    raw = gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
    lines = raw.decode("utf-8").removeprefix("\ufeff").split("\n")
    return sum(1 for line in lines if line.split() and line.strip())


def _mutate(data: bytes, ops: list[tuple[str, int, bytes]]) -> bytes:
    for op, position, payload in ops:
        at = position % (len(data) + 1)
        lines = data.split(b"\n")
        if op == "insert":
            data = data[:at] + payload + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + 1 + len(payload) :]
        elif op == "replace":
            data = data[:at] + payload + data[at + len(payload) :]
        elif op == "truncate":
            data = data[:at]
        elif op == "duplicate-line":
            i = position % len(lines)
            data = b"\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])
        elif op == "swap-lines":
            i, j = position % len(lines), (position // 7) % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
            data = b"\n".join(lines)
        elif op == "crlf":
            data = data.replace(b"\n", b"\r\n")
        elif op == "lone-cr":
            data = data.replace(b"\n", b"\r", 1)
        elif op == "bom":
            data = b"\xef\xbb\xbf" + data
        elif op == "invalid-utf8":
            data = data[:at] + b"\xff\xfe" + data[at:]
        elif op == "gzip":
            data = gzip.compress(data, mtime=0)
    return data


MUTATION = st.tuples(
    st.sampled_from(
        [
            "insert",
            "delete",
            "replace",
            "truncate",
            "duplicate-line",
            "swap-lines",
            "crlf",
            "lone-cr",
            "bom",
            "invalid-utf8",
            "gzip",
        ]
    ),
    st.integers(min_value=0, max_value=10_000),
    st.one_of(
        st.binary(min_size=1, max_size=8),
        st.sampled_from([b" ", b"\t", b"\n", b"\r\n", b"\x00", b'"', b"{", b"[", b"]", b"nan", b"1e999", b"9" * 5000]),
    ),
)


@pytest.mark.parametrize("name", FORMATS)
@FUZZ
@given(content=st.binary(max_size=512))
def test_random_bytes_parse_or_raise_parse_error(tmp_path, name, content):
    path = tmp_path / "random.txt"
    path.write_bytes(content)
    _read(name, path)


@pytest.mark.parametrize("name", FORMATS)
@FUZZ
@given(ops=st.lists(MUTATION, min_size=1, max_size=4))
def test_mutated_files_parse_completely_or_raise_parse_error(tmp_path, name, ops):
    content = _mutate(READERS[name][1], ops)
    path = tmp_path / "mutated.txt"
    path.write_bytes(content)
    result = _read(name, path)
    if isinstance(result, int):
        try:
            expected = _records_expected(name, content)
        except (UnicodeDecodeError, EOFError, OSError):
            pytest.fail("a file that is not valid UTF-8 (or gzip) parsed")
        if expected is not None:
            assert result == expected, "a record was dropped or added"


@pytest.mark.parametrize("name", DUPLICATES_REFUSED)
@FUZZ
@given(index=st.integers(min_value=0, max_value=100))
def test_a_repeated_record_is_refused_on_its_line(tmp_path, name, index):
    lines = READERS[name][1].decode().splitlines()
    first = 1 if name == "beir-qrels" else 0  # not the header
    i = first + index % (len(lines) - first)
    repeated = [*lines, lines[i]]
    path = tmp_path / "dup.txt"
    path.write_text("\n".join(repeated) + "\n")
    result = _read(name, path)
    assert isinstance(result, ParseError) and result.line == len(repeated)
    assert "duplicate" in result.message


@pytest.mark.parametrize("name", FORMATS)
def test_encodings_and_line_endings_do_not_change_what_is_read(tmp_path, name):
    content = READERS[name][1]
    variants = {
        "plain": content,
        "bom": b"\xef\xbb\xbf" + content,
        "crlf": content.replace(b"\n", b"\r\n"),
        "mixed": content.replace(b"\n", b"\r\n", 1),
        "gzip": gzip.compress(b"\xef\xbb\xbf" + content.replace(b"\n", b"\r\n")),
        "no-final-newline": content.rstrip(b"\n"),
    }
    counts = {}
    for variant, data in variants.items():
        path = tmp_path / variant
        path.write_bytes(data)
        counts[variant] = _read(name, path)
    assert set(counts.values()) == {counts["plain"]} and isinstance(counts["plain"], int) and counts["plain"] > 0


@pytest.mark.parametrize("name", FORMATS)
def test_empty_and_whitespace_files(tmp_path, name):
    for variant, data in {"empty": b"", "blank": b"\n\n  \n", "bom-only": b"\xef\xbb\xbf"}.items():
        path = tmp_path / variant
        path.write_bytes(data)
        result = _read(name, path)
        if name == "rankllm":
            assert isinstance(result, ParseError) and "JSON array" in result.message
        else:
            assert result == 0


@pytest.mark.parametrize("name", FORMATS)
def test_a_huge_line_is_read_or_refused_cleanly(tmp_path, name):
    path = tmp_path / "huge.txt"
    big = "x" * 8_000_000
    good = READERS[name][1].decode()
    path.write_text(good.replace("d1", "d" + big, 1).replace("one", big, 1))
    result = _read(name, path)
    assert isinstance(result, int) and result > 0, result


@pytest.mark.parametrize("name", FORMATS)
def test_a_corrupt_gzip_is_a_parse_error(tmp_path, name):
    packed = gzip.compress(READERS[name][1] * 50)
    for variant, data in {"truncated": packed[: len(packed) // 2], "garbled": packed[:20] + b"\x00" * 40}.items():
        path = tmp_path / variant
        path.write_bytes(data)
        result = _read(name, path)
        assert isinstance(result, ParseError) and "gzip" in result.message, (variant, result)


TOKEN = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Z", "C"]), min_size=1, max_size=12)
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)


@FUZZ
@given(
    rows=st.dictionaries(
        st.tuples(TOKEN, TOKEN),
        FINITE,
        max_size=40,
    )
)
def test_any_run_written_is_read_back_exactly(tmp_path, rows):
    by_query: dict[str, list[Candidate]] = {}
    for (qid, docid), score in rows.items():
        by_query.setdefault(qid, []).append(Candidate(docid, score))
    run = Run.from_rankings(Ranking.sorted(qid, cands) for qid, cands in by_query.items())
    path = tmp_path / "run.trec"
    write_trec_run(run, path)
    back = read_trec_run(path)
    assert {(r.qid, c.docid, c.score) for r in back for c in r} == {
        (qid, docid, score) for (qid, docid), score in rows.items()
    }


@FUZZ
@given(
    requests=st.lists(
        st.tuples(
            TOKEN,
            st.text(min_size=1, max_size=30).filter(str.strip),  # a blank query is refused (its own test)
            st.dictionaries(TOKEN, st.tuples(FINITE, st.text(max_size=30))),
        ),
        max_size=5,
        unique_by=lambda r: r[0],
    )
)
def test_any_candidates_written_as_json_are_read_back_exactly(tmp_path, requests):
    records = [
        RerankRequest(Query(qid, text), tuple(Candidate(d, s, t) for d, (s, t) in cands.items()))
        for qid, text, cands in requests
    ]
    write_candidates_jsonl(records, tmp_path / "c.jsonl")
    assert read_candidates_jsonl(tmp_path / "c.jsonl") == records
    write_rankllm_requests(records, tmp_path / "c.json")
    assert read_rankllm_requests(tmp_path / "c.json") == records


def test_a_blank_query_is_a_parse_error_on_its_line(tmp_path):
    (tmp_path / "c.jsonl").write_text(
        '{"qid": "q1", "query": "x", "candidates": []}\n{"qid": "q2", "query": " ", "candidates": []}\n'
    )
    result = _read("jsonl", tmp_path / "c.jsonl")
    assert isinstance(result, ParseError) and result.line == 2 and "has no text" in str(result)


@pytest.mark.parametrize(
    "score",
    ["1e400", "1" + "0" * 400, "9" * 5000, "NaN", "-Infinity", "true", '"1.0"'],
)
def test_json_scores_beyond_float_are_parse_errors(tmp_path, score):
    line = '{"qid": "q1", "query": "x", "candidates": [{"docid": "d1", "score": SCORE}]}'.replace("SCORE", score)
    (tmp_path / "c.jsonl").write_text(line + "\n")
    result = _read("jsonl", tmp_path / "c.jsonl")
    assert isinstance(result, ParseError) and result.line == 1
    hit = '{"qid": "q1", "docid": "d1", "rank": 1, "score": SCORE, "content": ""}'.replace("SCORE", score)
    (tmp_path / "c.json").write_text(f'[\n{{"query": "x", "hits": [{hit}]}}\n]\n')
    result = _read("rankllm", tmp_path / "c.json")
    assert isinstance(result, ParseError) and result.line == 2


@pytest.mark.parametrize("name", ["jsonl", "beir-corpus", "rankllm"])
def test_json_nested_too_deep_is_a_parse_error(tmp_path, name):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    assert isinstance(_read(name, tmp_path / "deep.json"), ParseError)
