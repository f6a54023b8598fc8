"""Commands that other packages add to ``rerank`` through the ``rerank.commands`` entry-point group.

An entry point names a module (``eval = "eval.cli"`` in pyproject.toml) that has
``add_arguments(parser)``, ``run(args) -> int`` and ``HELP``, a one-line help; its
docstring is the command's description. A command may also offer functions to other
commands, found the same way (``command_module("eval")``), so no module of ``rerank/``
imports the package that provides it.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

from data.errors import InvalidSpecError, MissingDependencyError

GROUP = "rerank.commands"


def _target(entry: EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    return f"{entry.value} (from {dist.name})" if dist is not None else entry.value


def command_entry_points(builtin: dict[str, str] | None = None) -> dict[str, EntryPoint]:
    """Name -> entry point of every installed command, sorted by name. A name given twice (with two
    different targets), or the name of a built-in command (``builtin``: name -> its module), is an error
    that names both targets."""
    found: dict[str, EntryPoint] = {}
    for entry in sorted(entry_points(group=GROUP), key=lambda e: (e.name, e.value)):
        if builtin and entry.name in builtin:
            raise InvalidSpecError(
                f"command {entry.name!r} of entry point {_target(entry)} in group {GROUP} "
                f"collides with the built-in command {entry.name!r} ({builtin[entry.name]})"
            )
        previous = found.get(entry.name)
        if previous is not None and previous.value != entry.value:
            raise InvalidSpecError(
                f"command {entry.name!r} is given twice in entry-point group {GROUP}: "
                f"by {_target(previous)} and by {_target(entry)}"
            )
        found.setdefault(entry.name, entry)
    return found


def command_module(name: str, needed_by: str | None = None) -> ModuleType:
    """The module of the installed command ``name``; MissingDependencyError when no package provides it."""
    entry = command_entry_points().get(name)
    if entry is None:
        who = f"{needed_by} needs" if needed_by else "rerank has no"
        raise MissingDependencyError(
            f"{who} the {name!r} command, which no installed package provides (entry-point group {GROUP}); "
            "rerank's own eval package provides eval and leaderboard: reinstall rerank (pip install -e .)"
        )
    module = entry.load()
    if not isinstance(module, ModuleType):
        raise InvalidSpecError(f"entry point {_target(entry)} in group {GROUP} must name a module")
    return module
