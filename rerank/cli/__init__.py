"""The ``rerank`` command line: ``main(argv) -> int``, one module per subcommand.

The built-in commands are SUBCOMMANDS; other packages add theirs through the
``rerank.commands`` entry-point group (``rerank.plugins``): eval/ adds ``eval``
and ``leaderboard``. Exit codes are listed in ``rerank.cli.exit_codes``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from data.errors import RerankError
from rerank.cli.exit_codes import ExitCode, exit_code_for
from rerank.plugins import command_entry_points

# subcommand -> module; each module has add_arguments(parser) and run(args) -> int
SUBCOMMANDS = {
    "index": ("rerank.cli.index_cmd", "build a BM25, SPLADE or dense index from a corpus"),
    "retrieve": ("rerank.cli.retrieve_cmd", "search an index and write a TREC run"),
    "fuse": ("rerank.cli.fuse_cmd", "fuse runs (reciprocal rank fusion or interpolation)"),
    "run": ("rerank.cli.run_cmd", "rerank a TREC run or candidate file with a method spec"),
    "generate-queries": ("rerank.cli.generate_cmd", "write synthetic queries for corpus passages with an LLM (InPars)"),
    "train": ("rerank.cli.train_cmd", "train a cross-encoder from labels or a teacher pipeline"),
    "serve": ("rerank.cli.serve_cmd", "serve a reranker over HTTP (Cohere, Jina and TEI APIs)"),
    "list": ("rerank.cli.list_cmd", "list methods, backends, retrievers, model packs or datasets"),
    "models": ("rerank.cli.models_cmd", "list the offline model packs, or install one"),
    "doctor": ("rerank.cli.doctor", "report what is installed and where data is"),
}


class Parser(argparse.ArgumentParser):
    """A usage error is one line that points at ``--help``, not the whole usage block above the line that matters."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="rerank",
        description="Neural retrieval and reranking over TREC runs, BEIR and TREC DL.",
        epilog="Exit codes: 0 ok, 1 internal error, 2 usage, 3 invalid input, 4 missing dependency, "
        "5 not found, 6 model server unavailable, 130 interrupted.",
    )
    from rerank import __version__

    parser.add_argument("--version", action="version", version=f"rerank {__version__}")
    # Flags every subcommand takes, with the same meaning everywhere.
    shared = Parser(add_help=False)
    shared.add_argument("--quiet", "-q", action="store_true", help="no progress bars or library chatter on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    formatter = argparse.RawDescriptionHelpFormatter
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(
            name, help=help_text, description=module.__doc__, parents=[shared], formatter_class=formatter
        )
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    # then the commands of other packages (entry-point group rerank.commands), sorted by name
    for name, entry in command_entry_points({n: m for n, (m, _) in SUBCOMMANDS.items()}).items():
        module = entry.load()
        command = sub.add_parser(
            name, help=module.HELP, description=module.__doc__, parents=[shared], formatter_class=formatter
        )
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def show_warnings() -> None:
    """rerank's own warnings as one line each on stderr (``rerank: warning: …``), once per message."""
    import warnings

    from data.errors import RerankWarning

    shown = warnings.showwarning
    if getattr(shown, "one_line", False):
        return

    def one_line(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if issubclass(category, RerankWarning):
            print(f"rerank: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    one_line.one_line = True  # type: ignore[attr-defined]
    warnings.showwarning = one_line
    warnings.simplefilter("default", RerankWarning)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (main() may run many times in one process)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def show_status(quiet: bool) -> None:
    """Status lines of the ``rerank`` logger ("computing …", "indexing …") on stderr as they are, at INFO;
    with ``--quiet`` only errors (and progress bars off: they follow this logger's level)."""
    logger = logging.getLogger("rerank")
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.ERROR if quiet else logging.INFO)


def quiet() -> None:
    """Silence progress bars and the libraries' own logging and warnings (``--quiet``)."""
    import logging
    import warnings

    os.environ.update(TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except RerankError as err:  # a broken installation: two packages give the same command
        print(f"rerank: error: {err}", file=sys.stderr)
        return exit_code_for(err)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # `rerank` alone: what it can do
        parser.print_help()
        return ExitCode.OK
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    show_status(bool(getattr(args, "quiet", False)))
    if getattr(args, "quiet", False):
        quiet()
    else:
        show_warnings()
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        resumable = getattr(args, "resume", None) is not None  # a checkpointing command (run, retrieve)
        hint = ": the finished batches are kept; the same command with --resume goes on" if resumable else ""
        print(f"rerank: interrupted{hint}", file=sys.stderr)
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
