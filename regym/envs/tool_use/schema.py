"""What a tool is: a name, an OpenAI function schema, and a deterministic function.

Arguments are checked against the tool's JSON schema before the function runs, with
a small validator for the subset of JSON Schema the tools use (``type``,
``properties``, ``required``, ``additionalProperties``, ``enum``, ``pattern``,
``minimum``/``maximum``, ``minLength``/``maxLength``, ``items``, ``maxItems``).
Its messages say what to change, so a policy can fix its call on the next turn.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ToolError(Exception):
    """A tool ran on valid arguments but could not answer (unknown key, SQL error, ...)."""


class ArgumentError(Exception):
    """The arguments do not fit the tool's schema."""


@dataclass(frozen=True)
class Tool:
    """One callable tool. ``function`` takes the validated arguments and returns JSON-able data."""

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]

    @property
    def schema(self) -> dict[str, Any]:
        """The tool in OpenAI's ``tools=[...]`` format."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def signature(self) -> str:
        """A one-line human-readable signature, e.g. ``kv_get(key: string)``."""
        properties = self.parameters.get("properties", {})
        required = set(self.parameters.get("required", []))
        parts = []
        for name, spec in properties.items():
            kind = spec.get("type", "any")
            if "enum" in spec:
                kind = "|".join(str(v) for v in spec["enum"])
            parts.append(f"{name}: {kind}" + ("" if name in required else "?"))
        return f"{self.name}({', '.join(parts)})"

    def __call__(self, arguments: dict[str, Any]) -> Any:
        """Validate, then run. Raises ``ArgumentError`` or ``ToolError`` (the env reports both)."""
        arguments = validate(arguments, self.parameters)
        return self.function(**arguments)


_JSON_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "an array",
    "object": "an object",
    "null": "null",
}


def _describe(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:37] + "..."


def _type_matches(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "null":
        return value is None
    return False


def validate(value: Any, schema: dict[str, Any], where: str = "arguments") -> Any:
    """Return ``value`` checked against ``schema`` (integral floats become ints); raise ``ArgumentError``."""
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        matching = [kind for kind in kinds if _type_matches(value, kind)]
        if not matching:
            wanted = " or ".join(_JSON_TYPES.get(kind, kind) for kind in kinds)
            got = "a string" if isinstance(value, str) else _JSON_TYPES.get(_json_type(value), type(value).__name__)
            hint = ""
            if isinstance(value, str) and set(kinds) & {"integer", "number"}:
                hint = " (write the number without quotes)"
            raise ArgumentError(f"{where} must be {wanted}, got {got} {_describe(value)}{hint}")
        if matching == ["integer"] and isinstance(value, float):
            value = int(value)
    if "enum" in schema and value not in schema["enum"]:
        options = ", ".join(_describe(option) for option in schema["enum"])
        raise ArgumentError(f"{where} must be one of {options}; got {_describe(value)}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            raise ArgumentError(f"{where} must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise ArgumentError(f"{where} must have at most {schema['maxLength']} characters")
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            example = schema.get("examples", [None])[0]
            suffix = f", e.g. {_describe(example)}" if example is not None else ""
            raise ArgumentError(f"{where} {_describe(value)} does not match the format {schema['pattern']}{suffix}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise ArgumentError(f"{where} must be >= {schema['minimum']}, got {value}")
        if "maximum" in schema and value > schema["maximum"]:
            raise ArgumentError(f"{where} must be <= {schema['maximum']}, got {value}")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise ArgumentError(f"{where} must have at most {schema['maxItems']} items")
        if "items" in schema:
            value = [validate(item, schema["items"], f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        value = _validate_object(value, schema, where)
    return value


def _validate_object(value: dict[str, Any], schema: dict[str, Any], where: str) -> dict[str, Any]:
    properties = schema.get("properties", {})
    prefix = "" if where == "arguments" else f"{where}."
    missing = [name for name in schema.get("required", []) if name not in value]
    if missing:
        names = ", ".join(repr(name) for name in missing)
        raise ArgumentError(f"missing required argument(s) {names} in {where}")
    if schema.get("additionalProperties") is False:
        extra = [name for name in value if name not in properties]
        if extra:
            allowed = ", ".join(repr(name) for name in properties) or "none"
            raise ArgumentError(
                f"unexpected argument(s) {', '.join(repr(str(name)) for name in extra)}; allowed: {allowed}"
            )
    checked = {}
    for name, item in value.items():
        checked[name] = validate(item, properties[name], f"{prefix}{name}") if name in properties else item
    return checked


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if value is None:
        return "null"
    return type(value).__name__
