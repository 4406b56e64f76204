"""Server-side enforcement of the AWS service models: every member's type, length, range, pattern, enum
and required rule, with a message that names the member and the rule it broke.

botocore checks only required members, minimums and types on the client, and other clients check less,
so the server checks all of it (the models are in iotjobs/wire/models, see scripts/extract_models.py).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regex

from iotjobs.domain.errors import invalid

MODELS = Path(__file__).resolve().parent / "models"

# Java's POSIX classes are ASCII-only; the `regex` module would read them as Unicode classes.
_JAVA_CLASSES = {
    r"\p{Upper}": "A-Z",
    r"\p{Digit}": "0-9",
    r"\p{Graph}": r"\x21-\x7e",
    r"\p{Cntrl}": r"\x00-\x1f\x7f",
}


@functools.cache
def _pattern(java: str) -> regex.Pattern[str]:
    translated = java
    for java_class, ascii_range in _JAVA_CLASSES.items():
        translated = translated.replace(java_class, ascii_range)
    return regex.compile(translated)


@dataclass(frozen=True)
class ServiceModel:
    operations: dict[str, Any]
    shapes: dict[str, Any]

    @staticmethod
    @functools.cache
    def load(service: str) -> ServiceModel:
        data = json.loads((MODELS / f"{service}.json").read_text())
        return ServiceModel(data["operations"], data["shapes"])

    def input_members(self, operation: str) -> dict[str, dict[str, Any]]:
        shape = self.operations[operation].get("input")
        return {} if shape is None else dict(self.shapes[shape]["members"])

    def validate_input(self, operation: str, params: Mapping[str, Any]) -> None:
        """Raise InvalidRequest for the first member of `params` that breaks the operation's model."""
        shape = self.operations[operation].get("input")
        if shape is not None:
            self._check(shape, dict(params), "")

    def _check(self, name: str, value: Any, path: str) -> None:
        shape = self.shapes[name]
        kind = shape["type"]
        where = path or "request"
        if kind == "structure":
            if not isinstance(value, dict):
                raise invalid(f"{where} must be an object")
            for member in shape.get("required", []):
                if value.get(member) is None:
                    raise invalid(f"{_join(path, member)} is required")
            for member, spec in shape["members"].items():
                if value.get(member) is not None:
                    self._check(spec["shape"], value[member], _join(path, member))
            return
        if kind == "list":
            if not isinstance(value, list):
                raise invalid(f"{where} must be a list")
            _bounds(shape, len(value), where, "entries")
            for i, item in enumerate(value):
                self._check(shape["member"], item, f"{where}[{i}]")
            return
        if kind == "map":
            if not isinstance(value, dict):
                raise invalid(f"{where} must be a map")
            _bounds(shape, len(value), where, "entries")
            for key, item in value.items():
                self._check(shape["key"], key, f"{where} key")
                self._check(shape["value"], item, f"{where}.{key}")
            return
        _scalar(shape, value, where)


def _join(path: str, member: str) -> str:
    return f"{path}.{member}" if path else member


def _bounds(shape: dict[str, Any], size: float, where: str, unit: str) -> None:
    if "min" in shape and size < shape["min"]:
        raise invalid(f"{where} must have at least {shape['min']} {unit}, got {size}")
    if "max" in shape and size > shape["max"]:
        raise invalid(f"{where} must have at most {shape['max']} {unit}, got {size}")


INTEGER_RANGES = {"integer": (32, -(2**31), 2**31 - 1), "long": (64, -(2**63), 2**63 - 1)}
"""What AWS's models mean by integer and long (Java's int and long): a value outside cannot be stored."""


def _scalar(shape: dict[str, Any], value: Any, where: str) -> None:
    kind = shape["type"]
    if kind == "string":
        if not isinstance(value, str):
            raise invalid(f"{where} must be a string")
        _bounds(shape, len(value), where, "characters")
        if "enum" in shape and value not in shape["enum"]:
            raise invalid(f"{where} must be one of {', '.join(shape['enum'])}, got '{value}'")
        if "pattern" in shape and not _pattern(shape["pattern"]).fullmatch(value):
            shown = value if len(value) <= 80 else value[:77] + "..."
            raise invalid(f"{where} '{shown}' does not match pattern {shape['pattern']}")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(f"{where} must be an integer")
        bits, low, high = INTEGER_RANGES[kind]
        if not low <= value <= high:
            raise invalid(f"{where} must be a {bits}-bit integer, from {low} to {high}, got {value}")
        _range(shape, value, where)
    elif kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid(f"{where} must be a number")
        _range(shape, value, where)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise invalid(f"{where} must be true or false")
    elif kind == "timestamp":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise invalid(f"{where} must be a timestamp")
    elif kind == "blob" and not isinstance(value, str):
        raise invalid(f"{where} must be base64 text")


def _range(shape: dict[str, Any], value: float, where: str) -> None:
    if "min" in shape and value < shape["min"]:
        raise invalid(f"{where} must be at least {shape['min']}, got {value}")
    if "max" in shape and value > shape["max"]:
        raise invalid(f"{where} must be at most {shape['max']}, got {value}")


def from_query(shape: dict[str, Any], raw: list[str], name: str) -> Any:
    """A querystring value as the type its shape declares (lists repeat the parameter)."""
    kind = shape["type"]
    if kind == "list":
        return raw
    text = raw[-1]
    if kind in ("integer", "long"):
        try:
            return int(text)
        except ValueError:
            raise invalid(f"{name} must be an integer, got '{text}'") from None
    if kind == "boolean":
        if text not in ("true", "false"):
            raise invalid(f"{name} must be true or false, got '{text}'")
        return text == "true"
    return text
