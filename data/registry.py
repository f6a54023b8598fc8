"""One registry type for everything looked up by an explicit name: methods, LLM backends, retrievers, model packs.

Entries are import paths (``"package.module:Name"``) or the objects themselves, so looking a name
up imports only that entry's module. Other packages add entries through an entry-point group
(``rerank.methods``, ``rerank.backends``, ``rerank.retrievers``, ``rerank.models``). A name is
registered once: a second registration, from code or from a plugin, is an error naming both.

For classes, ``check`` compares parameters with the constructor's signature (following
``**kwargs`` up the base classes) before anything is built, and ``resolve`` adds the defaults,
so a spec's key holds every parameter. ``create`` then calls the constructor and lets its own
errors through with their messages.
"""

from __future__ import annotations

import importlib
import inspect
import math
import sys
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from data.errors import InvalidSpecError, SpecTypeError

T = TypeVar("T")
_OPEN = object()  # a constructor that takes any keyword (``**kwargs`` all the way up)


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str | None = None):
        self.kind, self.group = kind, group
        self._entries: dict[str, str | T] = {}
        self._plugins_loaded = group is None

    def register(self, name: str, target: str | T) -> None:
        if name in self._entries:
            raise ValueError(
                f"{self.kind} {name!r} is registered twice: {_describe(self._entries[name])} and {_describe(target)}"
            )
        self._entries[name] = target

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        seen: dict[str, str] = {}
        for entry in entry_points(group=self.group or ""):
            if seen.get(entry.name) == entry.value:
                continue  # the same distribution seen twice on the path
            seen[entry.name] = entry.value
            self.register(entry.name, entry.value)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def get(self, name: str) -> T:
        """The entry itself (a class or an object), imported on first use."""
        self._load_plugins()
        try:
            target = self._entries[name]
        except KeyError:
            raise InvalidSpecError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}") from None
        if isinstance(target, str):
            module_name, _, attribute = target.partition(":")
            target = getattr(importlib.import_module(module_name), attribute)
            self._entries[name] = target
        return target

    def signature(self, name: str) -> dict[str, Any]:
        """Each constructor parameter and its default (``inspect.Parameter.empty`` when required)."""
        return constructor_parameters(self.get(name))  # type: ignore[arg-type]

    def check(self, name: str, params: Mapping[str, Any], *, given: str = "", environment: bool = False) -> None:
        """Refuse unknown or missing parameters, and values of the wrong type, before anything is built.

        With ``environment``, also the class's own ``check_params`` (a model that exists here, a device
        this machine has): for work about to run here, not for a spec's key or a config's parsing.
        """
        accepted = self.signature(name)
        where = given or name
        if _OPEN not in accepted:
            unknown = sorted(set(params) - set(accepted))
            if unknown:
                raise InvalidSpecError(
                    f"{where}: {self.kind} {name!r} has no parameter {unknown[0]!r}; it takes {', '.join(sorted(accepted)) or 'none'}"
                )
        missing = [k for k, v in accepted.items() if v is inspect.Parameter.empty and k not in params]
        if missing:
            raise InvalidSpecError(f"{where}: {self.kind} {name!r} needs {', '.join(missing)}")
        target = self.get(name)
        if isinstance(target, type):
            check_values(params, constructor_annotations(target), where)
            check = getattr(target, "check_params", None)
            if environment and callable(
                check
            ):  # the class's own up-front checks: a model that exists, a device that is there
                check(dict(params), where)

    def resolve(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters with every default filled in (checked first)."""
        self.check(name, params)
        defaults = {
            k: v for k, v in self.signature(name).items() if k is not _OPEN and v is not inspect.Parameter.empty
        }
        return {**defaults, **params}

    def create(self, name: str, params: Mapping[str, Any], *, given: str = "") -> Any:
        """Build the named class with checked parameters; the constructor's own errors pass through."""
        self.check(name, params, given=given, environment=True)
        return self.get(name)(**params)  # type: ignore[operator]


def _constructors(cls: type) -> Iterator[Any]:
    """The ``__init__`` of each class in ``cls``'s MRO that defines one, most derived first."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None and klass is not object:
            yield init


def constructor_parameters(cls: type) -> dict[Any, Any]:
    """Keyword parameters of ``cls``'s constructor, following ``**kwargs`` into base classes' constructors."""
    found: dict[Any, Any] = {}
    for init in _constructors(cls):
        forwards = False
        for parameter in list(inspect.signature(init).parameters.values())[1:]:
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                forwards = True
            elif parameter.kind is not inspect.Parameter.VAR_POSITIONAL:
                found.setdefault(parameter.name, parameter.default)
        if not forwards:
            return found
    found[_OPEN] = None
    return found


def constructor_annotations(cls: type) -> dict[str, Any]:
    """Each constructor parameter's type (from the class that declares it), where it can be evaluated."""
    found: dict[str, Any] = {}
    for init in _constructors(cls):
        for key, annotation in function_annotations(init).items():
            found.setdefault(key, annotation)
    return found


def function_annotations(function: Any) -> dict[str, Any]:
    """A function's parameter types, evaluated in its module (one that cannot be, say a name imported
    only for type checking, is ``Any``: not checked)."""
    function = getattr(function, "__func__", function)
    namespace = dict(vars(sys.modules.get(function.__module__, object())))
    found: dict[str, Any] = {}
    for key, annotation in getattr(function, "__annotations__", {}).items():
        if key == "return":
            continue
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace, {})
            except Exception:
                annotation = Any
        found[key] = annotation
    return found


# Parameters that count something (texts, tokens, windows, threads) mean nothing below 1, whichever method or
# backend takes them: refused when the spec is checked, before a model loads (0 would fail later, or silently).
COUNTS = frozenset({
    "batch_size", "batch_tokens", "window_size", "stride", "k", "num_child", "group_size", "rounds", "replicas",
    "block_size", "max_length", "max_words", "max_tokens", "max_chars", "context_size", "query_length",
    "document_length", "threads", "concurrency", "n_ctx", "max_documents", "depth", "passes", "max_new_tokens",
})  # fmt: skip
# Counts where 0 means something (FIRST's top_logprobs=0: every token; max_retries=0: one attempt).
NON_NEGATIVE = frozenset({"top_logprobs", "max_retries", "calibration"})


def check_values(params: Mapping[str, Any], annotations: Mapping[str, Any], where: str) -> None:
    """Each value against its parameter's type, a count against 1 (or 0): ``SpecTypeError`` naming the first that
    does not fit."""
    for key, value in params.items():
        problem = value_problem(value, annotations.get(key, Any))
        if problem:
            raise SpecTypeError(f"{where}: {key} must be {problem}, not {_show(value)}")
        if isinstance(value, int) and not isinstance(value, bool):
            if key in COUNTS and value < 1:
                raise InvalidSpecError(f"{where}: {key} must be at least 1, not {value}")
            if key in NON_NEGATIVE and value < 0:
                raise InvalidSpecError(f"{where}: {key} must be 0 or more, not {value}")


def value_problem(value: Any, annotation: Any) -> str:
    """What ``value`` should have been for ``annotation`` (``""`` when it fits, or the type is not checked)."""
    origin = typing.get_origin(annotation)
    if annotation is Any or isinstance(annotation, TypeVar):
        return ""
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        return (
            ""
            if value in choices and type(value) in {type(c) for c in choices}
            else "one of " + ", ".join(map(str, choices))
        )
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        if value is None and type(None) in members:
            return ""
        problems = [value_problem(value, m) for m in members if m is not type(None)]
        if any(p == "" for p in problems):
            return ""
        return " or ".join(problems) + (" or none" if type(None) in members else "")
    if annotation is type(None):
        return "" if value is None else "none"
    if annotation is bool:
        return "" if isinstance(value, bool) else "true or false"
    if annotation is int:
        return "" if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
        return "" if ok else "a number"
    if annotation is str:  # a nested spec (``backend=llama.cpp(n_ctx=4096)``) is a spec written as a string
        return (
            "" if isinstance(value, str) or type(value).__name__ == "MethodSpec" else f'a string (quote it: "{value}")'
        )
    if origin in (list, tuple, typing.Sequence, Sequence) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return "a list [a, b, ...]"
        inner = typing.get_args(annotation)
        if len(inner) == 1 or (len(inner) == 2 and inner[1] is Ellipsis):
            problems = [value_problem(v, inner[0]) for v in value]
            bad = next((p for p in problems if p), "")
            return f"a list whose items are each {bad}" if bad else ""
        return ""
    return ""  # any other type (a path, a spec, a mapping): the constructor checks it


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _describe(target: object) -> str:
    if isinstance(target, str):
        return target
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', type(target).__name__)}"
