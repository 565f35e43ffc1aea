"""A key-value "API": exact lookups and prefix listings over a per-task store.

It stands in for a REST lookup service (catalogue, registry, price list) without
any network: keys are paths such as ``product/SKU-4821/weight_lb``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regym.envs.tool_use.schema import Tool, ToolError

MAX_LISTED_KEYS = 50


class KeyValueStore:
    def __init__(self, entries: Mapping[str, Any]):
        self.entries = dict(entries)

    def get(self, key: str) -> dict[str, Any]:
        key = key.strip()
        if key not in self.entries:
            prefix = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
            near = [k for k in sorted(self.entries) if prefix and k.startswith(prefix)][:5]
            hint = f"; keys under {prefix!r}: {near}" if near else "; use kv_list to browse the keys"
            raise ToolError(f"key {key!r} not found{hint}")
        return {"key": key, "value": self.entries[key]}

    def list(self, prefix: str = "") -> dict[str, Any]:
        keys = [key for key in sorted(self.entries) if key.startswith(prefix)]
        return {"prefix": prefix, "keys": keys[:MAX_LISTED_KEYS], "truncated": len(keys) > MAX_LISTED_KEYS}

    def namespaces(self) -> list[str]:
        return sorted({key.split("/", 1)[0] + "/" for key in self.entries})


def kv_tools(store: KeyValueStore) -> list[Tool]:
    namespaces = ", ".join(store.namespaces())
    return [
        Tool(
            name="kv_get",
            description=(
                "Look up one key in the records API. Keys are paths like 'namespace/id/field' "
                f"(namespaces: {namespaces}). Returns {{\"key\": string, \"value\": ...}}."
            ),
            parameters={
                "type": "object",
                "properties": {"key": {"type": "string", "minLength": 1, "maxLength": 200}},
                "required": ["key"],
                "additionalProperties": False,
            },
            function=lambda key: store.get(key),
        ),
        Tool(
            name="kv_list",
            description=f"List the keys that start with a prefix (at most {MAX_LISTED_KEYS}). "
            "Returns {\"prefix\", \"keys\", \"truncated\"}.",
            parameters={
                "type": "object",
                "properties": {"prefix": {"type": "string", "maxLength": 200}},
                "required": ["prefix"],
                "additionalProperties": False,
            },
            function=lambda prefix: store.list(prefix),
        ),
    ]
