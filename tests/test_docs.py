"""Every code block of README.md and docs/**/*.md, run for real; the documentation site, built with --strict.

Each page runs in its own working folder, its blocks in the page's order, as a reader following the page
would: bash blocks command by command (continuations joined, comments dropped), python blocks in one
interpreter per page, so a later block sees what an earlier one defined. Two markers, each an HTML comment
on the line right before a fence, change that:

- ``<!-- not-run: REASON -->``: the block is not run; the reason is required (keep such blocks few);
- ``<!-- file: NAME -->``: the block is written to ``NAME`` in the working folder (a config or a request
  body that the next commands read).

Any other block must be ``bash`` or ``python``. What would be slow is scaled, never skipped: DL19 and scifact
are cut to a few queries (scifact's corpus to the documents those queries retrieve or have judged), a
leaderboard command that names no ``--config`` runs on a small matrix, the Hugging Face cross-encoder id
(unreachable offline) becomes a local folder of its shape, monoT5's and duoT5's a random T5, the 0.5B LLM the 135M one, and fixed ports free
ones. A server a page starts in the background (``… &``) is waited on until it answers and stopped when the
page ends; ``rerank serve`` must then exit 0. Foreground ``rerank`` commands and the python blocks start
from a warm interpreter (``tests/warm.py``) that has imported torch and its kin once.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port
from warm import WarmInterpreter

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
RUN = ("bash", "python")
MARK = re.compile(r"^<!--\s*(not-run|file):(.*?)-->\s*$")
FIXED_PORTS = ("8000", "8080")
CUT = {"msmarco-passage/trec-dl-2019": 2, "beir/scifact": 2}  # queries kept
BLOCK_TIMEOUT = 900  # seconds; a block that takes longer has hung


def page_id(path: Path) -> str:
    return str(path.relative_to(REPO))


@dataclass(frozen=True)
class Block:
    page: Path
    language: str
    line: int  # the line of the opening fence
    text: str
    mark: str = ""  # "not-run" or "file"
    argument: str = ""  # the reason, or the file name

    @property
    def where(self) -> str:
        return f"{page_id(self.page)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a page, each with the marker on the line before its fence, if any."""
    found, lines = [], path.read_text(encoding="utf-8").splitlines()
    start, language = -1, ""
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```") and start < 0:
            start, language = number, line.lstrip()[3:].strip()
        elif line.lstrip().startswith("```"):
            mark = MARK.match(lines[start - 2]) if start >= 2 else None
            text = "\n".join(lines[start : number - 1])
            found.append(
                Block(path, language, start, text, mark.group(1) if mark else "", mark.group(2).strip() if mark else "")
            )
            start = -1
    assert start < 0, f"{page_id(path)}:{start}: a fence is never closed"
    return found


def commands(block: Block) -> list[tuple[int, str]]:
    """(page line, command) for each command of a bash block: continuations joined, comments dropped."""
    out, pending, first = [], "", 0
    for offset, raw in enumerate(block.text.splitlines(), 1):
        line = re.sub(r"(^|\s+)#\s.*$", "", raw) if "#" in raw else raw
        first = first or block.line + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command = " ".join((pending + line).split())
        pending = ""
        if command:
            out.append((first, command))
        first = 0
    return out


# -- the workspace: the real datasets cut down, and the files the docs name as a user's own ----------------


def _cut_lines(source: Path, target: Path, keep) -> None:
    opener = gzip.open if source.suffix == ".gz" else open
    target.parent.mkdir(parents=True, exist_ok=True)
    with opener(source, "rt", encoding="utf-8") as reader, opener(target, "wt", encoding="utf-8") as writer:
        for number, line in enumerate(reader):
            if keep(number, line):
                writer.write(line)


def cut_datasets(real: Path, target: Path) -> None:
    """DL19 and scifact with a few queries each (the first judged ones), in the published layout."""
    dl19 = real / "msmarco-passage" / "trec-dl-2019"
    (target / "msmarco-passage").mkdir(parents=True)
    os.symlink(real / "msmarco-passage" / "passages.tsv.gz", target / "msmarco-passage" / "passages.tsv.gz")
    judged = list(dict.fromkeys(line.split()[0] for line in (dl19 / "qrels.txt").read_text().splitlines()))
    qids = set(judged[: CUT["msmarco-passage/trec-dl-2019"]])
    mine = target / "msmarco-passage" / "trec-dl-2019"
    _cut_lines(dl19 / "qrels.txt", mine / "qrels.txt", lambda _, line: line.split()[0] in qids)
    _cut_lines(dl19 / "queries.tsv", mine / "queries.tsv", lambda _, line: line.split("\t")[0] in qids)
    for run in (dl19 / "runs").iterdir():
        if run.name.endswith(".trec.gz"):
            _cut_lines(run, mine / "runs" / run.name, lambda _, line: line.split()[0] in qids)
        else:  # RankLLM JSON: one request per query
            requests = json.loads(gzip.decompress(run.read_bytes()))
            kept = [r for r in requests if r["hits"] and str(r["hits"][0]["qid"]) in qids]
            (mine / "runs" / run.name).write_bytes(gzip.compress(json.dumps(kept).encode()))

    scifact, mine = real / "beir" / "scifact", target / "beir" / "scifact"
    qrels = (scifact / "qrels" / "test.tsv").read_text().splitlines()
    judged = list(dict.fromkeys(line.split("\t")[0] for line in qrels[1:]))
    qids = set(judged[: CUT["beir/scifact"]])
    _cut_lines(scifact / "qrels" / "test.tsv", mine / "qrels" / "test.tsv",
               lambda number, line: number == 0 or line.split("\t")[0] in qids)  # fmt: skip
    _cut_lines(scifact / "queries.jsonl", mine / "queries.jsonl", lambda _, line: json.loads(line)["_id"] in qids)
    docs = {line.split("\t")[1] for line in qrels[1:] if line.split("\t")[0] in qids}
    for run in (scifact / "runs").iterdir():
        _cut_lines(run, mine / "runs" / run.name, lambda _, line: line.split()[0] in qids)
        docs |= {
            line.split()[2] for line in gzip.decompress((mine / "runs" / run.name).read_bytes()).decode().splitlines()
        }
    _cut_lines(scifact / "corpus.jsonl.gz", mine / "corpus.jsonl.gz", lambda _, line: json.loads(line)["_id"] in docs)


def write_files(shared: Path, datasets: Path, cross_encoder: str, t5: str) -> None:
    """The files the docs' commands name as examples of a user's own, and the test's small leaderboard."""
    import data

    example = data.load("example").root
    server = shared / "beir-server"  # what `data.load("beir/nfcorpus", download=True)` downloads
    server.mkdir()
    with zipfile.ZipFile(server / "nfcorpus.zip", "w") as zf:
        for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
            zf.write(example / name, f"nfcorpus/{name}")
    dl19 = datasets / "msmarco-passage" / "trec-dl-2019"
    (shared / "first.trec").write_bytes(gzip.decompress((dl19 / "runs" / "bm25.top100.trec.gz").read_bytes()))
    (shared / "topics.tsv").write_bytes((dl19 / "queries.tsv").read_bytes())
    (shared / "qrels.txt").write_bytes((dl19 / "qrels.txt").read_bytes())
    wanted = {line.split()[2] for line in (shared / "first.trec").read_text().splitlines()}
    with gzip.open(shared / "corpus.jsonl.gz", "wt", encoding="utf-8") as corpus:
        for doc in data.load("msmarco-passage/trec-dl-2019", datasets).iter_documents():
            if doc.docid in wanted:
                corpus.write(json.dumps({"_id": doc.docid, "text": doc.text}) + "\n")
    rankllm = dl19 / "runs" / "bm25.top100.rankllm.json.gz"
    (shared / "bm25.rankllm.json").write_bytes(gzip.decompress(rankllm.read_bytes()))
    config = [
        "[quick]",
        "queries = 2",
        'pipelines = ["run(name=*) % 10"]',
        "",
        "[[datasets]]",
        'name = "example"',
        'pipelines = ["run(name=bm25) % 10", "run(name=bm25) % 10 >> random(seed=0)"]',
    ]
    (shared / "board.toml").write_text("\n".join(config) + "\n", encoding="utf-8")
    (shared / "cross-encoder").symlink_to(cross_encoder)
    (shared / "t5").symlink_to(t5)


@dataclass(frozen=True)
class Workspace:
    root: Path
    datasets: Path
    shared: Path  # linked into every page's folder
    warm: WarmInterpreter  # `rerank` and `python -c` without the five seconds of imports each (tests/warm.py)

    def folder(self, page: Path) -> Path:
        work = self.root / re.sub(r"\W+", "-", page_id(page))
        work.mkdir()
        for item in self.shared.iterdir():
            (work / item.name).symlink_to(item)
        (work / "out").mkdir()
        return work

    def environment(self, work: Path) -> dict[str, str]:
        return {
            **os.environ,  # RERANK_CACHE_DIR: the session's cache (tests/conftest.py), as a user's ~/.cache/rerank
            "RERANK_DATA_DIR": str(self.datasets),
            "RERANK_BEIR_BASE_URL": (self.shared / "beir-server").as_uri(),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
            "PYTHONPATH": str(REPO),
            "DEMO_OUT": str(work / "out"),  # where `make demo` writes its run
        }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, data_dir, cross_encoder_dir, t5_dir):
    root = tmp_path_factory.mktemp("docs")
    datasets, shared = root / "datasets", root / "shared"
    shared.mkdir()
    cut_datasets(data_dir, datasets)
    write_files(shared, datasets, cross_encoder_dir, t5_dir)
    warm = WarmInterpreter(root / "warm", {**os.environ, "PYTHONPATH": str(REPO)})
    try:
        yield Workspace(root, datasets, shared, warm)
    finally:
        warm.close()


# -- running a page ------------------------------------------------------------------------------------------


def substitute(text: str, ports: dict[str, str]) -> str:
    """The hub cross-encoder (unreachable offline) becomes a local one of its shape, the hub monoT5 and duoT5 a
    random T5, the 0.5B LLM the 135M one (the same plumbing in a fraction of the time), and fixed ports free
    ones."""
    text = text.replace("cross-encoder/ms-marco-MiniLM-L-6-v2", "cross-encoder")
    text = re.sub(r"castorini/(mono|duo)t5-base-msmarco", "t5", text)
    text = text.replace("qwen2.5-coder-0.5b", "smollm2-135m")
    for port, free in ports.items():
        text = re.sub(rf"(?<=[:\s=]){port}\b", free, text)
    return text


def split_environment(command: str) -> tuple[dict[str, str], str]:
    env = {}
    while match := re.match(r"([A-Z_]+)=(\S+) ", command):
        env[match.group(1)] = match.group(2)
        command = command[match.end() :]
    return env, command


class Background:
    """A command that keeps running (a server): started in its own session, stopped with SIGTERM."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str]):
        extra, command = split_environment(command)
        self.command = command
        self.process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], cwd=cwd, env={**env, **extra}, text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.listening = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            found = re.search(r"(?:listening on|running on) (http://[\w.:]+)", line, re.IGNORECASE)
            if found and not self.url:
                self.url = found.group(1)
                self.listening.set()
        self.listening.set()

    def wait(self) -> str:
        self.listening.wait(timeout=BLOCK_TIMEOUT)  # the server's own log line (or its exit) ends the wait
        assert self.url, f"did not start (exit {self.process.poll()}):\n{''.join(self.lines)}"
        return self.url

    def wait_until_answers(self, port: str) -> None:
        """Until anything answers HTTP on the port (an error status counts: the server is up)."""
        while self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                threading.Event().wait(0.5)
        raise AssertionError(f"the server exited {self.process.returncode}:\n{''.join(self.lines)[-3000:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout=300)


def post(url: str, body: dict, key: str | None = None) -> tuple[int, object]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request, timeout=600) as response:
        return response.status, json.loads(response.read())


def serve_once(command: str, work: Path, env: dict[str, str], where: str) -> list[str]:
    """A foreground `rerank serve`: started, asked to rerank once, stopped; it must exit 0 having answered."""
    server = Background(re.sub(r"--port \d+", "", command) + " --port 0", work, env)
    url = server.wait()
    named = re.search(r"--api-key-env (\S+)", command)
    status, answer = post(
        f"{url}/v2/rerank",
        {"model": "m", "query": "why is the sky blue", "documents": ["Blue paint.", "Rayleigh scattering.", "Sky."]},
        key=({**env, **split_environment(command)[0]}.get(named.group(1)) if named else None),
    )
    code = server.stop()
    results = answer["results"] if isinstance(answer, dict) else []
    if status != 200 or sorted(r["index"] for r in results) != [0, 1, 2] or code != 0:
        return [f"{where}\n  status {status}, exit {code}: {answer}\n{''.join(server.lines)[-1500:]}"]
    return []


DRIVER = r"""
import json, os, sys, traceback
protocol = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # what the snippets print goes to the log, with their warnings
namespace = {"__name__": "__main__"}
for line in sys.stdin:
    where, code = json.loads(line)
    try:
        exec(compile(code, where, "exec"), namespace)
        answer = "ok"
    except BaseException:
        traceback.print_exc()
        answer = "failed"
    sys.stdout.flush()
    sys.stderr.flush()
    protocol.write(answer + "\n")
    protocol.flush()
"""


class PythonSession:
    """One interpreter for a page's python blocks, run one after another in one namespace."""

    def __init__(self, work: Path, env: dict[str, str], warm: WarmInterpreter):
        self.log = work / "python.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(warm.bin / "python"), "-c", DRIVER], cwd=work, env=env, text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            )  # fmt: skip

    def run(self, filename: str, code: str) -> str | None:
        """None when the block ran; else what it printed, ending with its traceback."""
        assert self.process.stdin is not None and self.process.stdout is not None
        start = self.log.stat().st_size
        self.process.stdin.write(json.dumps([filename, code]) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], BLOCK_TIMEOUT)
        answer = self.process.stdout.readline().strip() if ready else "timed out"
        if answer == "ok":
            return None
        printed = self.log.read_bytes()[start:].decode("utf-8", "replace")
        return f"{answer} (interpreter exit {self.process.poll()}):\n{printed[-3000:]}"

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def is_leaderboard(command: str) -> bool:
    return command.startswith(("rerank leaderboard", "python -m eval.leaderboard"))


def run_command(command: str, work: Path, env: dict[str, str], where: str) -> list[str]:
    """A foreground command through bash, as typed (env: with the warm interpreter's clients on its PATH)."""
    if is_leaderboard(command) and "--config" not in command:
        command += " --config board.toml"  # the test's small matrix, not the published one
    cwd = REPO if command.startswith("make ") else work  # `make` targets run in the repository
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=BLOCK_TIMEOUT,
    )  # fmt: skip
    if done.returncode != 0 or "Traceback" in done.stderr:
        return [f"{where}\n  ran: {command}\n  exit {done.returncode}: {done.stderr[-2000:]}"]
    return []


def run_page(page: Path, workspace: Workspace) -> list[str]:
    work = workspace.folder(page)
    env = workspace.environment(work)
    ports = {port: str(free_port()) for port in FIXED_PORTS}
    failures: list[str] = []
    python: PythonSession | None = None
    servers: list[Background] = []
    try:
        for block in blocks(page):
            if block.mark == "not-run":
                continue
            if block.mark == "file":
                (work / block.argument).write_text(substitute(block.text, ports) + "\n", encoding="utf-8")
                continue
            if block.language == "python":
                python = python or PythonSession(work, env, workspace.warm)
                # Padded so that a traceback's line numbers are the page's.
                failed = python.run(page_id(page), "\n" * block.line + substitute(block.text, ports))
                failures += [f"{block.where}: the python block failed: {failed}"] if failed else []
                continue
            for line, original in commands(block):
                command, where = substitute(original, ports), f"{page_id(page)}:{line}: {original}"
                if command.endswith("&"):
                    server = Background(command[:-1].strip(), work, env)
                    servers.append(server)
                    port = re.search(r"(?:--port |:)(\d{4,5})\b", command)
                    assert port, f"{where}: a background command must name its port"
                    server.wait_until_answers(port.group(1))
                elif split_environment(command)[1].startswith("rerank serve"):
                    failures += serve_once(command, work, env, where)
                else:
                    failures += run_command(command, work, workspace.warm.path(env), where)
            if failures:
                break  # later blocks build on this one
    finally:
        if python is not None:
            python.close()
        for server in servers:
            code = server.stop()
            if server.command.startswith("rerank serve") and code != 0:
                failures.append(f"{server.command}: exit {code} on SIGTERM:\n{''.join(server.lines)[-1500:]}")
    return failures


# -- the tests ------------------------------------------------------------------------------------------------


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in blocks(page)]


@pytest.mark.unit
def test_every_block_is_run_or_says_why_not():
    found = all_blocks()
    assert any(b.page == README for b in found) and any(b.page.is_relative_to(DOCS) for b in found)
    for block in found:
        if block.mark:
            assert block.argument, f"{block.where}: <!-- {block.mark}: --> needs a reason or a file name"
        else:
            assert block.language in RUN, f"{block.where}: a {block.language or 'plain'} block must be marked not-run"
        assert block.text.strip(), f"{block.where}: an empty block"
    not_run = [b for b in found if b.mark == "not-run"]
    assert len(not_run) <= len(found) // 5, "more than a fifth of the blocks are not run: " + ", ".join(
        b.where for b in not_run
    )


@pytest.mark.unit
def test_blocks_and_commands_are_found():
    text = "x\n<!-- not-run: it installs -->\n```bash\npip install a  # why\nrerank run \\\n  --k 1\n```\n"
    (block,) = _parse(text, DOCS / "example.md")
    assert (block.language, block.line, block.mark, block.argument) == ("bash", 3, "not-run", "it installs")
    assert commands(block) == [(4, "pip install a"), (5, "rerank run --k 1")]
    assert substitute("--port 8080 http://127.0.0.1:8000/v1 x8080", {"8080": "1", "8000": "2"}) == (
        "--port 1 http://127.0.0.1:2/v1 x8080"
    )


def _parse(text: str, page: Path) -> list[Block]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / page.name
        path.write_text(text, encoding="utf-8")
        return [Block(page, b.language, b.line, b.text, b.mark, b.argument) for b in blocks(path)]


@pytest.mark.unit
def test_the_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 150, f"README.md has {len(lines)} lines"


LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|href=\"([^\"]+)\"")


@pytest.mark.unit
def test_no_link_leaves_the_repository():
    """Links stay inside the repository: no web addresses, no paths above it, and the README's resolve."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert "../shared" not in text, f"{page_id(page)} points outside the repository"
        for match in LINK.finditer(text):
            target = match.group(1) or match.group(2)
            assert not re.match(r"\w+:", target), f"{page_id(page)}: {target} leaves the repository"
            path = (page.parent / target.split("#")[0]).resolve()
            assert path == REPO or REPO in path.parents, f"{page_id(page)}: {target} leaves the repository"
            if page == README and target.split("#")[0]:
                assert path.exists(), f"README.md: {target} does not exist"
    for package in ("data", "eval", "rerank", "retrievers"):
        for module in (REPO / package).rglob("*.py"):
            assert "../shared" not in module.read_text(encoding="utf-8"), f"{module} points outside the repository"


MEASURED = re.compile(r"(?<![\w.])0\.\d{4}(?!\d)")  # how nDCG and its kin are written


@pytest.mark.unit
def test_numbers_live_in_the_leaderboard():
    """The README's headline numbers are leaderboard.json's; the docs hold no measured number of their own
    (their results page and method pages are filled from the result files when the site is built)."""
    board = json.loads((REPO / "leaderboard" / "leaderboard.json").read_text(encoding="utf-8"))
    text = README.read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\S+) \| `(.+?)` \| (0\.\d{4})(†?) \|", text, re.MULTILINE)
    assert len(rows) >= 3, "the README's headline table is missing"
    for dataset, pipeline, value, dagger in rows:
        pipeline = pipeline.replace("\\|", "|")
        row = next(r for r in board["datasets"][dataset]["rows"] if r["pipeline"] == pipeline)
        assert f"{row['measures']['nDCG@10']:.4f}" == value, f"README: {pipeline} on {dataset}"
        assert bool(dagger) == row["significance"].get("nDCG@10", {}).get("significant", False), pipeline
    assert sorted(MEASURED.findall(text)) == sorted(value for _, _, value, _ in rows), "a number outside the table"
    for page in DOCS.rglob("*.md"):
        found = MEASURED.findall(page.read_text(encoding="utf-8"))
        assert not found, f"{page_id(page)} holds measured numbers {found}: generate them (docs/hooks.py)"


@pytest.mark.unit
def test_a_quoted_number_is_the_one_row_its_pattern_names():
    """Prose quotes a leaderboard number through a marker the site build fills; a pattern that names no row, or
    several, stops the build rather than quoting the wrong one."""
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    board = json.loads((REPO / "leaderboard" / "leaderboard.json").read_text(encoding="utf-8"))
    bm25 = next(
        r for r in board["datasets"]["msmarco-passage/trec-dl-2019"]["rows"] if r["pipeline"] == "run(name=bm25) % 100"
    )
    page = "BM25 scores <!-- nDCG@10: msmarco-passage/trec-dl-2019: run(name=bm25) % 100 -->."
    assert hooks.on_page_markdown(page, None, None, None) == f"BM25 scores {bm25['measures']['nDCG@10']:.4f}."
    for pattern in ("run(name=bm25) % 100 >> *", "run(name=nothing)"):
        with pytest.raises(ValueError, match=r"rows of leaderboard\.json match"):
            hooks.on_page_markdown(f"<!-- nDCG@10: msmarco-passage/trec-dl-2019: {pattern} -->", None, None, None)


@pytest.mark.integration
@pytest.mark.slow  # 6 s of API rendering: make test builds the site, make check does not
def test_the_site_builds_strict_without_warnings(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=REPO, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    warnings = [line for line in done.stderr.splitlines() if re.match(r"(WARNING|ERROR)\b", line)]
    assert done.returncode == 0 and not warnings, done.stderr[-4000:]
    # The results page is generated from the result files: every leaderboard number is on it.
    results = (site / "results" / "index.html").read_text(encoding="utf-8")
    board = json.loads((REPO / "leaderboard" / "leaderboard.json").read_text(encoding="utf-8"))
    for table in board["datasets"].values():
        for row in table["rows"]:
            assert f"{row['measures']['nDCG@10']:.4f}" in results, row["pipeline"]
    assert "rerank serve under load" in results  # from benchmarks/RESULTS.md
    for dataset in board["datasets"]:  # each dataset's figure, and the depth sweeps', as the page shows them
        figure = "leaderboard-" + dataset.replace("/", "-") + ".png"
        assert (site / figure).is_file() and f'src="../{figure}"' in results, figure
    assert (site / "depths" / "msmarco-passage-trec-dl-2019.png").is_file()
    assert (site / "api" / "rerank" / "index.html").is_file()
    # A real browser renders the figures: each decodes, and the page shows it at least 600 px wide.
    for page in ("results", "evaluation"):
        shown = rendered_images(site / page / "index.html", tmp_path / f"{page}.png")
        assert shown and all(natural[0] >= 1000 and width >= 600 for natural, width in shown.values()), shown
        assert (tmp_path / f"{page}.png").read_bytes()[:4] == b"\x89PNG"  # the screenshot, for a person to look at


def rendered_images(page: Path, screenshot: Path) -> dict[str, tuple[tuple[int, int], int]]:
    """Every image of ``page`` as headless Chromium renders it: its decoded size and its width on the page (a
    script added to a copy of the page writes them into the DOM, which Chromium prints); and a screenshot."""
    import shutil

    browser = shutil.which("chromium-headless-shell") or shutil.which("chromium")
    if browser is None:  # make setup installs it from apt; a machine where apt could not is told, not failed
        pytest.skip("no headless Chromium to render the figures: apt-get install chromium-headless-shell")
    probe = page.with_name("probe.html")
    script = (
        "<script>window.addEventListener('load', () => { for (const i of document.images) "
        "{ i.setAttribute('data-shown', i.naturalWidth + 'x' + i.naturalHeight + 'x' + i.width); } "
        "document.body.setAttribute('data-loaded', '1'); });</script>"
    )
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    flags = [browser, "--no-sandbox", "--disable-gpu", "--window-size=1400,1000", "--virtual-time-budget=10000"]
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    subprocess.run([*flags, f"--screenshot={screenshot}", page.as_uri()], capture_output=True, timeout=120)
    assert 'data-loaded="1"' in dom.stdout, dom.stderr[-2000:]
    found = re.findall(r'<img[^>]*?src="([^"]+\.png)"[^>]*?data-shown="(\d+)x(\d+)x(\d+)"', dom.stdout)
    return {src: ((int(w), int(h)), int(shown)) for src, w, h, shown in found}


@pytest.mark.acceptance
@pytest.mark.slow
@pytest.mark.pyserini
@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_block_runs(page, workspace):
    failures = run_page(page, workspace)
    assert not failures, "\n\n".join(failures)
