import gzip
from pathlib import Path

import ir_measures
import pytest

from data import Candidate, ParseError, Qrels, Ranking, Run, read_trec_qrels, read_trec_run, write_trec_run
from data.trec import iter_run_rankings, write_trec_qrels

pytestmark = pytest.mark.unit


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_run_round_trip_is_exact(tmp_path):
    run = Run.from_rankings(
        [
            Ranking.sorted("q1", [Candidate("d1", 0.1 + 0.2), Candidate("d2", 1e-7), Candidate("d3", -3.5)]),
            Ranking.sorted("q2", [Candidate("x", 12345678.123456789)]),
        ]
    )
    write_trec_run(run, tmp_path / "run.trec")
    back = read_trec_run(tmp_path / "run.trec")
    assert back.rankings == run.rankings


def test_gzip_is_transparent_by_content(tmp_path):
    text = "q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 1.0 t\n"
    plain = read_trec_run(write(tmp_path / "a.trec", text))
    packed = read_trec_run(write(tmp_path / "b.dat", gzip.compress(text.encode())))
    assert plain.rankings == packed.rankings
    write_trec_run(plain, tmp_path / "c.trec.gz")
    assert (
        gzip.decompress((tmp_path / "c.trec.gz").read_bytes()).decode()
        == "q1 Q0 d1 1 2.0 rerank\nq1 Q0 d2 2 1.0 rerank\n"
    )


def test_ties_are_written_in_trec_eval_order(tmp_path):
    """Equal scores: docid descending, so ranks agree with what trec_eval computes."""
    ranking = Ranking.sorted("q1", [Candidate("a", 1.0), Candidate("c", 1.0), Candidate("b", 1.0), Candidate("z", 2.0)])
    assert ranking.docids == ["z", "c", "b", "a"]
    write_trec_run([ranking], tmp_path / "r.trec")
    lines = (tmp_path / "r.trec").read_text().splitlines()
    assert [line.split()[2:4] for line in lines] == [["z", "1"], ["c", "2"], ["b", "3"], ["a", "4"]]
    # trec_eval (through ir-measures/pytrec_eval) reads the same order: only "c" is relevant at rank 2.
    qrels = [ir_measures.Qrel("q1", "c", 1)]
    rr = ir_measures.calc_aggregate([ir_measures.RR], qrels, list(ir_measures.read_trec_run(str(tmp_path / "r.trec"))))
    assert rr[ir_measures.RR] == pytest.approx(0.5)


def test_reading_orders_by_score_not_by_rank_column(tmp_path):
    run = read_trec_run(write(tmp_path / "r", "q Q0 low 1 1.0 t\nq Q0 high 2 5.0 t\n"))
    assert run["q"].docids == ["high", "low"]


def test_crlf_bom_and_blank_lines(tmp_path):
    run = read_trec_run(write(tmp_path / "r", b"\xef\xbb\xbfq Q0 d1 1 2 t\r\n\r\nq Q0 d2 2 1 t\r\n"))
    assert run["q"].docids == ["d1", "d2"]


@pytest.mark.parametrize(
    ("content", "line", "needle"),
    [
        ("q Q0 d1 1 1.0 t\nq Q0 d2 2 1.0\n", 2, "6 whitespace-separated columns"),
        ("q Q0 d1 1 1.0 t\nq Q0 d2 2 high t\n", 2, "is not a number"),
        ("q Q0 d1 1 nan t\n", 1, "not finite"),
        ("q Q0 d1 one 1.0 t\n", 1, "rank 'one' is not an integer"),
        ("q Q0 d1 1 1.0 t\nq Q0 d2 2 0.5 t\nq Q0 d1 3 0.1 t\n", 3, "duplicate docid 'd1'"),
    ],
)
def test_malformed_run_names_file_and_line(tmp_path, content, line, needle):
    path = write(tmp_path / "bad.trec", content)
    with pytest.raises(ParseError) as err:
        read_trec_run(path)
    assert err.value.line == line
    assert f"bad.trec:{line}:" in str(err.value)
    assert needle in str(err.value)


def test_invalid_utf8_names_the_line(tmp_path):
    path = write(tmp_path / "bad.trec", b"q Q0 d1 1 1.0 t\nq Q0 d\xff2 2 0.5 t\n")
    with pytest.raises(ParseError, match=r"bad.trec:2: invalid UTF-8"):
        read_trec_run(path)


def test_streaming_rankings_and_ungrouped_runs(tmp_path):
    grouped = write(tmp_path / "g", "a Q0 1 1 3 t\na Q0 2 2 2 t\nb Q0 1 1 1 t\n")
    assert [r.qid for r in iter_run_rankings(grouped)] == ["a", "b"]
    ungrouped = write(tmp_path / "u", "a Q0 1 1 3 t\nb Q0 1 1 1 t\na Q0 2 2 2 t\n")
    with pytest.raises(ParseError, match=r"u:3: .*not grouped"):
        list(iter_run_rankings(ungrouped))
    assert read_trec_run(ungrouped)["a"].docids == ["1", "2"]  # the whole-file reader accepts it


def test_writer_refuses_ids_it_cannot_represent(tmp_path):
    with pytest.raises(ValueError, match="whitespace"):
        write_trec_run([Ranking("q", (Candidate("a b", 1.0),))], tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_failed_write_leaves_no_file(tmp_path):
    def rankings():
        yield Ranking("q", (Candidate("a", 1.0),))
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        write_trec_run(rankings(), tmp_path / "out.trec")
    assert list(tmp_path.iterdir()) == []


def test_qrels_read_write_and_errors(tmp_path):
    qrels = read_trec_qrels(write(tmp_path / "q", "1 0 a 2\n1 0 b 0\n2 Q0 c 1\n"))
    assert qrels.judgments == {"1": {"a": 2, "b": 0}, "2": {"c": 1}}
    write_trec_qrels(qrels, tmp_path / "q2")
    assert read_trec_qrels(tmp_path / "q2") == qrels
    with pytest.raises(ParseError, match=r"bad:2: .*4 whitespace-separated columns"):
        read_trec_qrels(write(tmp_path / "bad", "1 0 a 1\n1 0 b\n"))
    with pytest.raises(ParseError, match=r"bad2:2: relevance 'yes'"):
        read_trec_qrels(write(tmp_path / "bad2", "1 0 a 1\n1 0 b yes\n"))
    with pytest.raises(ParseError, match=r"bad3:2: duplicate judgment"):
        read_trec_qrels(write(tmp_path / "bad3", "1 0 a 1\n1 0 a 0\n"))
    assert isinstance(qrels, Qrels)
