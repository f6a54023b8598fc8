"""The ``rerank`` command line: ``main(argv) -> int``, one module per subcommand.

The built-in commands are SUBCOMMANDS; other packages add theirs through the
``rerank.commands`` entry-point group (``rerank.cli.plugins``): eval/ adds ``eval``
and ``leaderboard``. Exit codes are listed in ``rerank.cli.exit_codes``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from data.errors import RerankError
from rerank.cli.exit_codes import ExitCode, exit_code_for
from rerank.cli.plugins import command_entry_points

# subcommand -> module; each module has add_arguments(parser) and run(args) -> int
SUBCOMMANDS = {
    "index": ("rerank.cli.index_cmd", "build a BM25, SPLADE or dense index from a corpus"),
    "retrieve": ("rerank.cli.retrieve_cmd", "search an index and write a TREC run"),
    "fuse": ("rerank.cli.fuse_cmd", "fuse runs (reciprocal rank fusion or interpolation)"),
    "run": ("rerank.cli.run_cmd", "rerank a TREC run or candidate file with a method spec"),
    "serve": ("rerank.cli.serve_cmd", "serve a reranker over HTTP (Cohere, Jina and TEI APIs)"),
    "doctor": ("rerank.cli.doctor", "report what is installed and where data is"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rerank",
        description="Neural retrieval and reranking over TREC runs, BEIR and TREC DL.",
        epilog="Exit codes: 0 ok, 1 internal error, 2 usage, 3 invalid input, 4 missing dependency, "
        "5 not found, 6 model server unavailable, 130 interrupted.",
    )
    from rerank import __version__

    parser.add_argument("--version", action="version", version=f"rerank {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    # then the commands of other packages (entry-point group rerank.commands), sorted by name
    for name, entry in command_entry_points({n: m for n, (m, _) in SUBCOMMANDS.items()}).items():
        module = entry.load()
        command = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except RerankError as err:  # a broken installation: two packages give the same command
        print(f"rerank: error: {err}", file=sys.stderr)
        return exit_code_for(err)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("rerank: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``rerank eval … | head``): not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.OK
    except Exception as err:
        code = exit_code_for(err)
        if code == ExitCode.INTERNAL:
            raise
        print(f"rerank: error: {err}", file=sys.stderr)
        return code


def console_main() -> None:
    sys.exit(main())
