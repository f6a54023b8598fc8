"""Importing optional dependencies with an error that names the extra to install."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType

from data.errors import MissingDependencyError


def optional_import(module: str) -> ModuleType:
    """Import ``module`` or raise ``MissingDependencyError`` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise _missing(module, err) from err


@contextlib.contextmanager
def optional_dependency(module: str) -> Iterator[None]:
    """An import in this block that fails raises ``MissingDependencyError`` naming ``module``'s extra.

    For modules built on an optional library (``with optional_dependency("pyterrier"): import pyterrier``):
    the imports stay plain, so type checkers read them.
    """
    try:
        yield
    except MissingDependencyError:
        raise
    except ImportError as err:
        raise _missing(module, err) from err


def _missing(module: str, err: ImportError) -> MissingDependencyError:
    from data.dependencies import distribution_of, install_hint

    hint = install_hint(distribution_of(module))
    return MissingDependencyError(f"{module} is required here but could not be imported ({err}); {hint}")
