"""The tools of one episode, built from the task's world, and the call dispatcher.

A ``World`` is the task's private data (key-value records, SQL tables, documents);
a ``Toolbox`` instantiates the offered tool families over it and runs calls. Every
failure comes back as a ``CallResult`` with an error message, never as an exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from regym.envs.tool_use.calculator import calculator_tools
from regym.envs.tool_use.calendar import calendar_tools
from regym.envs.tool_use.calls import FINAL_ANSWER_TOOL
from regym.envs.tool_use.kv_api import KeyValueStore, kv_tools
from regym.envs.tool_use.schema import ArgumentError, Tool, ToolError
from regym.envs.tool_use.search import Document, DocumentIndex, search_tools
from regym.envs.tool_use.sql import SqlDatabase, Table, sql_tools
from regym.envs.tool_use.units import unit_tools

FAMILIES = ("calculator", "units", "calendar", "sql", "kv", "search")
MAX_RESULT_CHARS = 4000

FINAL_ANSWER = Tool(
    name=FINAL_ANSWER_TOOL,
    description="Submit the final answer and end the episode (same as a line \"Answer: <value>\").",
    parameters={
        "type": "object",
        "properties": {"answer": {"type": "string", "description": "The answer, in the format the task asks."}},
        "required": ["answer"],
        "additionalProperties": False,
    },
    function=lambda answer: {"answer": answer},
)


@dataclass
class World:
    """One task's private data."""

    kv: dict[str, Any] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)


@dataclass
class CallResult:
    """What one call produced: a JSON-able ``result``, or an ``error`` message for the policy.

    ``invalid`` marks a malformed request (unknown tool, arguments not fitting the
    schema); a valid request the tool could not answer (unknown key, SQL error) has
    ``error`` set but ``invalid`` False.
    """

    name: str | None
    arguments: dict[str, Any] | None
    result: Any = None
    error: str | None = None
    invalid: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_text(self) -> str:
        """The content a ``tool`` message would carry."""
        if self.error is not None:
            return f"Error: {self.error}"
        text = json.dumps(self.result, ensure_ascii=False)
        if len(text) > MAX_RESULT_CHARS:
            text = text[:MAX_RESULT_CHARS] + " ...(cut)"
        return text


class Toolbox:
    """The tool families offered in an episode, built over one world."""

    def __init__(self, world: World, families: tuple[str, ...]):
        unknown = set(families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown tool families {sorted(unknown)}; known: {FAMILIES}")
        self.families = families
        self._database: SqlDatabase | None = None
        builders: dict[str, Callable[[], list[Tool]]] = {
            "calculator": calculator_tools,
            "units": unit_tools,
            "calendar": calendar_tools,
            "sql": lambda: sql_tools(self._open_database(world)),
            "kv": lambda: kv_tools(KeyValueStore(world.kv)),
            "search": lambda: search_tools(DocumentIndex(world.documents)),
        }
        self.tools: dict[str, Tool] = {}
        for family in FAMILIES:
            if family in families:
                for tool in builders[family]():
                    self.tools[tool.name] = tool

    def _open_database(self, world: World) -> SqlDatabase:
        self._database = SqlDatabase(world.tables)
        return self._database

    @property
    def schemas(self) -> list[dict[str, Any]]:
        """OpenAI tool schemas of every offered tool, ``final_answer`` last."""
        return [tool.schema for tool in self.tools.values()] + [FINAL_ANSWER.schema]

    def describe(self) -> str:
        lines = [f"- {tool.signature()}: {tool.description}" for tool in self.tools.values()]
        lines.append(f"- {FINAL_ANSWER.signature()}: {FINAL_ANSWER.description}")
        return "\n".join(lines)

    def call(self, name: str | None, arguments: dict[str, Any] | None) -> CallResult:
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            available = ", ".join(self.tools)
            return CallResult(name, arguments, error=f"unknown tool {name!r}; available tools: {available}",
                              invalid=True)
        try:
            return CallResult(name, arguments, result=tool(arguments or {}))
        except ArgumentError as error:
            return CallResult(name, arguments, error=f"bad arguments for {name}: {error}. "
                              f"Expected {tool.signature()}", invalid=True)
        except ToolError as error:
            return CallResult(name, arguments, error=f"{name} failed: {error}")
        except Exception as error:  # noqa: BLE001 - a tool bug must reach the policy as an error, not end the run
            return CallResult(name, arguments, error=f"{name} failed: {type(error).__name__}: {error}")

    def close(self) -> None:
        if self._database is not None:
            self._database.close()
            self._database = None

