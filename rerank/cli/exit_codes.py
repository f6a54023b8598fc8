"""The CLI's exit codes. Stable: scripts may rely on them.

| code | name               | meaning                                                        |
|------|--------------------|----------------------------------------------------------------|
| 0    | OK                 | success                                                        |
| 1    | INTERNAL           | an unexpected error (a bug: please report it)                  |
| 2    | USAGE              | bad command-line arguments                                     |
| 3    | INVALID_INPUT      | a malformed file, spec or value (the message names file:line)  |
| 4    | MISSING_DEPENDENCY | an optional package, Java or a model pack is not installed    |
| 5    | NOT_FOUND          | a dataset, model, run, document or file does not exist         |
| 6    | UNAVAILABLE        | a model server failed after its retries (finished batches are  |
|      |                    | checkpointed: --resume continues)                              |
| 130  | INTERRUPTED        | stopped by Ctrl-C (SIGINT); a resumable command can resume     |
"""

from __future__ import annotations

from enum import IntEnum

from data.errors import (
    BackendError,
    DatasetNotFoundError,
    DocumentNotFoundError,
    MissingDependencyError,
    ModelNotFoundError,
    RerankError,
)


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    INVALID_INPUT = 3
    MISSING_DEPENDENCY = 4
    NOT_FOUND = 5
    UNAVAILABLE = 6
    INTERRUPTED = 130


def exit_code_for(error: BaseException) -> ExitCode:
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(error, MissingDependencyError):
        return ExitCode.MISSING_DEPENDENCY
    if isinstance(error, BackendError):
        return ExitCode.UNAVAILABLE
    if isinstance(error, (DatasetNotFoundError, ModelNotFoundError, DocumentNotFoundError, FileNotFoundError)):
        return ExitCode.NOT_FOUND
    if isinstance(error, (RerankError, ValueError)):
        return ExitCode.INVALID_INPUT
    return ExitCode.INTERNAL
