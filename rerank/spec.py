"""Method specs: ``cross-encoder(model=minilm, max_length=512)`` as a value that prints and parses back.

Values are integers, floats, booleans (``true``/``false``), ``none``, or strings.
A string is written bare when it reads back as the same string, else in JSON
double quotes. Parameters print sorted by name, so equal specs print equally.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from data.errors import InvalidSpecError

Value = bool | int | float | str | None

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_BARE = re.compile(r"[A-Za-z0-9_./:@+-][A-Za-z0-9_./:@+\-]*")


@dataclass(frozen=True, slots=True)
class MethodSpec:
    name: str
    params: tuple[tuple[str, Value], ...] = ()

    @classmethod
    def of(cls, name: str, params: Mapping[str, Value] | None = None) -> MethodSpec:
        return cls(name, tuple(sorted((params or {}).items())))

    @property
    def kwargs(self) -> dict[str, Value]:
        return dict(self.params)

    def __str__(self) -> str:
        if not self.params:
            return self.name
        return f"{self.name}({', '.join(f'{k}={format_value(v)}' for k, v in self.params)})"


def format_value(value: Value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if _BARE.fullmatch(value) and parse_value(value) == value:
        return value
    return json.dumps(value, ensure_ascii=False)


def parse_value(text: str) -> Value:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_spec(text: str) -> MethodSpec:
    """Parse ``name`` or ``name(key=value, ...)``; a repeated key is an error."""
    source = text.strip()
    match = _NAME.match(source)
    if match is None:
        raise InvalidSpecError(f"spec {text!r} must start with a method name")
    name, pos = match.group(), match.end()
    if pos == len(source):
        return MethodSpec(name)
    if source[pos] != "(" or not source.endswith(")"):
        raise InvalidSpecError(f"spec {text!r}: expected 'name(key=value, ...)'")
    body, pos = source[pos + 1 : -1], 0
    params: dict[str, Value] = {}
    while pos < len(body):
        pos = _skip_space(body, pos)
        key_match = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(body, pos)
        if (
            key_match is None
            or body[_skip_space(body, key_match.end()) : _skip_space(body, key_match.end()) + 1] != "="
        ):
            raise InvalidSpecError(f"spec {text!r}: expected 'key=value' at {body[pos:]!r}")
        key = key_match.group()
        pos = _skip_space(body, _skip_space(body, key_match.end()) + 1)
        if pos < len(body) and body[pos] == '"':
            try:
                value, end = json.JSONDecoder().raw_decode(body, pos)
            except json.JSONDecodeError as err:
                raise InvalidSpecError(f"spec {text!r}: bad quoted string for {key!r}: {err.msg}") from None
            pos = end
        else:
            end = body.find(",", pos)
            end = len(body) if end < 0 else end
            raw = body[pos:end].strip()
            if not raw:
                raise InvalidSpecError(f"spec {text!r}: no value for {key!r}")
            value, pos = parse_value(raw), end
        if key in params:
            raise InvalidSpecError(f"spec {text!r}: parameter {key!r} given twice")
        params[key] = value
        pos = _skip_space(body, pos)
        if pos < len(body):
            if body[pos] != ",":
                raise InvalidSpecError(f"spec {text!r}: expected ',' at {body[pos:]!r}")
            pos += 1
    return MethodSpec.of(name, params)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos
