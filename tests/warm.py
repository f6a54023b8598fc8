"""A warm interpreter for the docs' commands: torch, transformers and sentence-transformers imported once, then
one fork per command.

A docs page runs dozens of ``rerank`` commands and python blocks, each in a fresh interpreter that spends about
five of its six seconds importing the same libraries. Here a server imports them once; ``rerank`` and ``python``
on the page's PATH are small clients that hand the server their arguments, folder, environment and standard
streams (the file descriptors themselves, over a Unix socket). The server forks; the child takes the streams,
folder and environment, runs ``rerank.cli``'s console entry (or the ``-c`` code) exactly as the console script
would, and reports its exit status when it ends. Only third-party libraries are preloaded: every module of
ours is imported by the command that uses it, as in a fresh process. Nothing is started before the fork (no
thread pool, no JVM), so each child starts clean.

Servers a page starts (``rerank serve``) bypass it: they get signals, which a client does not forward.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

PRELOAD = ("numpy", "scipy.stats", "torch", "transformers", "sentence_transformers")

CLIENT = """#!{python}
import json, os, socket, struct, sys
kind = {kind!r}
if kind == "python" and sys.argv[1:2] != ["-c"]:  # anything but `python -c CODE` runs the real interpreter
    os.execv({python!r}, [{python!r}, *sys.argv[1:]])
connection = socket.socket(socket.AF_UNIX)
connection.connect({address!r})
request = json.dumps({{"kind": kind, "argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}).encode()
socket.send_fds(connection, [struct.pack("!Q", len(request))], [0, 1, 2])
connection.sendall(request)
answer = b""
while chunk := connection.recv(64):
    answer += chunk
sys.exit(int(answer) if answer.strip() else 1)  # no answer: the command died of a signal
"""


class WarmInterpreter:
    """The server, and a folder of clients to put first on a command's PATH."""

    def __init__(self, folder: Path, env: dict[str, str]):
        folder.mkdir(parents=True, exist_ok=True)
        self.bin = folder / "bin"
        self.bin.mkdir(exist_ok=True)
        # A Unix socket's path is limited to 107 bytes: under a deep temporary folder, the socket goes in /tmp.
        self.sockets = Path(tempfile.mkdtemp(prefix="warm-", dir="/tmp" if len(str(folder)) > 90 else folder))
        address = str(self.sockets / "warm.sock")
        self.process = subprocess.Popen(
            [sys.executable, __file__, address], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline().strip()  # the server says so once its socket listens
        assert ready == "ready", f"the warm interpreter did not start (exit {self.process.poll()})"
        for kind in ("rerank", "python"):
            client = self.bin / kind
            client.write_text(CLIENT.format(python=sys.executable, kind=kind, address=address), encoding="utf-8")
            client.chmod(0o755)

    def path(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` with the clients first on its PATH."""
        return {**env, "PATH": os.pathsep.join([str(self.bin), env["PATH"]])}

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        shutil.rmtree(self.sockets, ignore_errors=True)


def serve(address: str) -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel: no thread waits on them
    listener = socket.socket(socket.AF_UNIX)
    Path(address).unlink(missing_ok=True)
    listener.bind(address)
    listener.listen(64)
    print("ready", flush=True)
    while True:
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            run(connection)
        connection.close()


def run(connection: socket.socket) -> None:
    """In the child: take the client's streams, folder and environment, and run its command."""
    header, fds, _, _ = socket.recv_fds(connection, 8, 3)
    size, body = struct.unpack("!Q", header)[0], b""
    while len(body) < size:
        body += connection.recv(size - len(body))
    request = json.loads(body)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the command waits on its own subprocesses
    code = 1
    try:
        if request["kind"] == "rerank":
            sys.argv = [str(Path(sys.executable).parent / "rerank"), *request["argv"]]
            sys.path[0] = str(Path(sys.executable).parent)  # as the console script's
            from rerank.cli import console_main

            console_main()
        else:
            sys.argv = ["-c", *request["argv"][2:]]
            sys.path[0] = ""  # as `python -c`'s
            exec(compile(request["argv"][1], "<string>", "exec"), {"__name__": "__main__"})
        code = 0
    except SystemExit as stop:  # as the interpreter reads it: None is 0, a message is printed and is 1
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    # The exit handlers run (temporary folders, pools), then the process ends without tearing down torch's
    # modules one by one (a second per command, and a fresh process's teardown is not under test).
    threading._shutdown()  # as interpreter shutdown does first: thread pools stop, non-daemon threads end
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    connection.sendall(str(code).encode())  # last, as a process's status comes after its output
    os._exit(code)


if __name__ == "__main__":
    sys.path[0] = str(Path(sys.executable).parent)  # not this folder (tests/): each command sets its own first entry
    serve(sys.argv[1])
