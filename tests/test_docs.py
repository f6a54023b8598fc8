"""Every command and snippet of the README, run for real.

Bash blocks run line by line in one working folder, in the README's order; the Python blocks then run
in one interpreter, one after another, as a reader pasting them into a session would. What would be slow
is scaled, never skipped: the datasets are the real DL19 and scifact cut to a few queries (scifact's
corpus to the documents those queries retrieve or have judged), and the placeholders a command names
(``SPEC``, ``…``, ``FILE``s) are filled in by the table below. The only README lines not run are listed in
``NOT_RUN`` with the reason.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

pytestmark = pytest.mark.pyserini

NOT_RUN = {
    "make test": "it is the command that runs this test",
}

SPEC = "'bi-encoder(model=minilm)'"
# `rerank run … --flag`: the elided part is a small job on the cut DL19.
ELIDED = "--dataset msmarco-passage/trec-dl-2019 --run bm25 --k 10 --output elided-{n}.trec"
CUT = {"msmarco-passage/trec-dl-2019": 2, "beir/scifact": 2}  # queries kept


@dataclass(frozen=True)
class Block:
    language: str
    line: int  # the README line of the opening fence
    text: str


def blocks(path: Path = README) -> list[Block]:
    found, lines = [], path.read_text(encoding="utf-8").splitlines()
    start, language = -1, ""
    for number, line in enumerate(lines, 1):
        if line.startswith("```") and start < 0:
            start, language = number, line[3:].strip()
        elif line.startswith("```"):
            found.append(Block(language, start, "\n".join(lines[start : number - 1])))
            start = -1
    return found


def commands(block: Block) -> list[tuple[int, str]]:
    """(README line, command) for each command of a bash block: continuations joined, comments dropped."""
    out, pending, first = [], "", 0
    for offset, raw in enumerate(block.text.splitlines(), 1):
        line = re.sub(r"\s+#\s.*$", "", raw) if "#" in raw else raw
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


def expand(command: str, n: int) -> list[str]:
    """Fill the placeholders: optional ``[...]`` parts included, ``a|b|c`` alternatives each run."""
    command = re.sub(r"\[(--[^\]]+)\]", r"\1", command)
    command = command.replace("SPEC", SPEC)
    if "…" in command:
        command = command.replace("…", ELIDED.format(n=n), 1)
        if command.startswith("rerank run") and not re.search(r"--(reranker|pipeline|method) ", command):
            command += f" --reranker {SPEC}"  # `rerank run … --resume`: the elided job is whole
    alternatives = re.search(r"(?<![\w'\"(])(\w+(?:\|\w+)+)(?![\w'\")])", command)
    if alternatives:
        return [command.replace(alternatives.group(1), word) for word in alternatives.group(1).split("|")]
    return [command]


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


def write_files(work: Path, datasets: Path, cross_encoder: str) -> None:
    """The files the README's commands name as examples of a user's own."""
    import data

    example = data.load("example").root
    (work / "out").mkdir()
    server = work / "beir-server"  # what `data.load("beir/nfcorpus", download=True)` downloads
    server.mkdir()
    with zipfile.ZipFile(server / "nfcorpus.zip", "w") as zf:
        for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
            zf.write(example / name, f"nfcorpus/{name}")
    dl19 = datasets / "msmarco-passage" / "trec-dl-2019"
    (work / "first.trec").write_bytes(gzip.decompress((dl19 / "runs" / "bm25.top100.trec.gz").read_bytes()))
    (work / "run1.trec").write_bytes((work / "first.trec").read_bytes())
    (work / "run2.trec").write_bytes(gzip.decompress((dl19 / "runs" / "tasb.top100.trec.gz").read_bytes()))
    (work / "topics.tsv").write_bytes((dl19 / "queries.tsv").read_bytes())
    (work / "qrels.txt").write_bytes((dl19 / "qrels.txt").read_bytes())
    wanted = {line.split()[2] for line in (work / "first.trec").read_text().splitlines()}
    with gzip.open(work / "corpus.jsonl.gz", "wt", encoding="utf-8") as corpus:
        for doc in data.load("msmarco-passage/trec-dl-2019", datasets).iter_documents():
            if doc.docid in wanted:
                corpus.write(json.dumps({"_id": doc.docid, "text": doc.text}) + "\n")
    rankllm = dl19 / "runs" / "bm25.top100.rankllm.json.gz"
    (work / "bm25.rankllm.json").write_bytes(gzip.decompress(rankllm.read_bytes()))
    pipelines = {
        "msmarco-passage/trec-dl-2019": [
            "run(name=bm25) % 100",
            "run(name=bm25) % 10 >> bi-encoder(model=minilm)",
            "run(name=bm25) % 5 >> first(backend=llama.cpp, model=smollm2-135m)",
        ],
        "beir/scifact": ["bm25", "bm25 % 10 >> bi-encoder(model=minilm)"],
    }
    config = [
        "[quick]",
        "queries = 1",
        'pipelines = ["run(name=*) % 100", "bm25", "run(name=bm25) % 10 >> bi-encoder(*"]',
    ]
    for name, rows in pipelines.items():
        config += ["", "[[datasets]]", f'name = "{name}"', f"pipelines = {json.dumps(rows)}"]
    (work / "board.toml").write_text("\n".join(config) + "\n", encoding="utf-8")
    (work / "cross-encoder").symlink_to(cross_encoder)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def split_environment(command: str) -> tuple[dict[str, str], str]:
    env = {}
    while match := re.match(r"([A-Z_]+)=(\S+) ", command):
        env[match.group(1)] = match.group(2)
        command = command[match.end() :]
    return env, command


class Background:
    """A README command that keeps running (a server): started, waited on until it answers, stopped."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str]):
        self.process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], cwd=cwd, env=env, text=True,
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
        self.listening.wait(timeout=900)  # the server's own log line (or its exit) ends the wait
        assert self.url, f"did not start (exit {self.process.poll()}):\n{''.join(self.lines)}"
        return self.url

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout=300)


def post(url: str, body: dict, key: str | None = None) -> tuple[int, object]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request, timeout=600) as response:
        return response.status, json.loads(response.read())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, data_dir, cross_encoder_dir):
    work = tmp_path_factory.mktemp("readme")
    datasets = work / "datasets"
    cut_datasets(data_dir, datasets)
    write_files(work, datasets, cross_encoder_dir)
    env = {
        **os.environ,
        "RERANK_DATA_DIR": str(datasets),
        "RERANK_BEIR_BASE_URL": (work / "beir-server").as_uri(),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "PYTHONPATH": str(REPO),
    }
    return work, env


def substitute(command: str, ports: dict[str, str]) -> str:
    """What the test changes: the hub cross-encoder (unreachable offline) for a local one of its shape, the
    0.5B LLM for the 135M one (the same plumbing in a quarter of the time), and fixed ports for free ones."""
    command = command.replace("cross-encoder/ms-marco-MiniLM-L-6-v2", "cross-encoder")
    command = command.replace("qwen2.5-coder-0.5b", "smollm2-135m")
    for port, free in ports.items():
        command = command.replace(f":{port}", f":{free}").replace(f"--port {port}", f"--port {free}")
    return command


def run_bash_blocks(work: Path, env: dict[str, str]) -> list[str]:
    failures, background, ports, n = [], [], {"8000": str(free_port())}, 0
    for block in blocks():
        if block.language != "bash":
            continue
        for line, original in commands(block):
            if original in NOT_RUN:
                continue
            for command in expand(original, n := n + 1):
                command = substitute(command, ports)
                extra, command = split_environment(command)
                environment = {**env, **extra}
                where = f"README.md:{line}: {original}"
                if command.startswith("rerank serve"):
                    failures += serve(command, work, environment, where)
                elif command.endswith("&"):
                    server = Background(command[:-1].strip(), work, environment)
                    background.append(server)
                    wait_until_answers(f"http://127.0.0.1:{ports['8000']}/v1/models", server, where)
                else:
                    if command.startswith(("python -m eval.leaderboard", "rerank leaderboard")):
                        command += " --config board.toml"
                    # `make` targets run in the repository; the demo writes its output under the work folder.
                    cwd = REPO if command.startswith("make ") else work
                    environment["DEMO_OUT"] = str(work / "out")
                    done = subprocess.run(
                        ["bash", "-c", command], cwd=cwd, env=environment, capture_output=True, text=True
                    )
                    if done.returncode != 0 or "Traceback" in done.stderr:
                        failures.append(f"{where}\n  ran: {command}\n  exit {done.returncode}: {done.stderr[-1500:]}")
    for server in background:
        server.stop()
    return failures


def wait_until_answers(url: str, server: Background, where: str) -> None:
    # Polls the server's own endpoint until it answers; only the server's exit ends the wait otherwise.
    while server.process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            threading.Event().wait(0.5)
    raise AssertionError(f"{where}: the server exited {server.process.returncode}:\n{''.join(server.lines)}")


def serve(command: str, work: Path, env: dict[str, str], where: str) -> list[str]:
    """Start a README `rerank serve`, rerank through it once, stop it: it must exit 0 having answered."""
    command = re.sub(r"--port \d+", "", command) + " --port 0"
    server = Background(command, work, env)
    url = server.wait()
    status, answer = post(
        f"{url}/v2/rerank",
        {"model": "m", "query": "why is the sky blue", "documents": ["Blue paint.", "Rayleigh scattering.", "Sky."]},
        key=env.get(named.group(1)) if (named := re.search(r"--api-key-env (\S+)", command)) else None,
    )
    code = server.stop()
    results = answer["results"] if isinstance(answer, dict) else []
    if status != 200 or sorted(r["index"] for r in results) != [0, 1, 2] or code != 0:
        return [f"{where}\n  status {status}, exit {code}: {answer}\n{''.join(server.lines)[-1500:]}"]
    return []


PYTHON_DRIVER = """
import json, sys, traceback
namespace = {"__name__": "__readme__"}
for line, code in json.load(open(sys.argv[1])):
    try:
        exec(compile(code, f"README.md:{line}", "exec"), namespace)
    except Exception:
        print(f"README.md:{line}: the snippet failed", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
    print(f"ran README.md:{line}", flush=True)
"""


def run_python_blocks(work: Path, env: dict[str, str]) -> list[str]:
    snippets = [(b.line, substitute(b.text, {})) for b in blocks() if b.language == "python"]
    (work / "snippets.json").write_text(json.dumps(snippets), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", PYTHON_DRIVER, "snippets.json"], cwd=work, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        return [f"{done.stderr[-3000:]}"]
    assert done.stdout.count("ran README.md:") == len(snippets)
    return []


def test_the_readme_blocks_are_found():
    found = blocks()
    assert {b.language for b in found} >= {"bash", "python"}
    bash = [c for b in found if b.language == "bash" for _, c in commands(b)]
    assert "make demo" in bash and any(c.startswith("rerank run --dataset") for c in bash)
    assert all(command in bash for command in NOT_RUN), "NOT_RUN names a command the README no longer has"
    assert expand("rerank list methods|backends", 1) == ["rerank list methods", "rerank list backends"]
    assert expand("rerank eval x [--test wilcoxon]", 1) == ["rerank eval x --test wilcoxon"]


def test_every_readme_command_and_snippet_runs(workspace):
    work, env = workspace
    failures = run_bash_blocks(work, env) + run_python_blocks(work, env)
    assert not failures, "\n\n".join(failures)
