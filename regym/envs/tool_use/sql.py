"""A read-only SQL tool over a small in-memory SQLite database generated per task.

Safety: one statement at a time, and an authorizer that allows only reading
(``SELECT``, column reads, scalar/aggregate functions); every write, ``PRAGMA``,
``ATTACH`` or recursive CTE is denied by SQLite itself before it runs. A progress
handler stops any query after a fixed number of VM steps, and results are cut to
``MAX_ROWS`` rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from regym.envs.tool_use.calculator import tidy_number
from regym.envs.tool_use.schema import Tool, ToolError

MAX_ROWS = 50
MAX_QUERY_CHARS = 2000
MAX_VM_STEPS = 2_000_000
MAX_VALUE_BYTES = 100_000
_PROGRESS_EVERY = 10_000

_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION}


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, SQL type)
    rows: tuple[tuple[Any, ...], ...]

    def describe(self) -> str:
        return f"{self.name}({', '.join(f'{name} {kind}' for name, kind in self.columns)})"


class SqlDatabase:
    """An in-memory SQLite database that answers only read-only single SELECT statements."""

    def __init__(self, tables: Sequence[Table]):
        self.tables = tuple(tables)
        self.connection = sqlite3.connect(":memory:", check_same_thread=False)
        for table in self.tables:
            columns = ", ".join(f"{name} {kind}" for name, kind in table.columns)
            self.connection.execute(f"CREATE TABLE {table.name} ({columns})")
            marks = ", ".join("?" for _ in table.columns)
            self.connection.executemany(f"INSERT INTO {table.name} VALUES ({marks})", table.rows)
        self.connection.commit()
        self.connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        self.connection.set_authorizer(self._authorize)
        self._steps = 0
        self.connection.set_progress_handler(self._progress, _PROGRESS_EVERY)

    @staticmethod
    def _authorize(action: int, arg1, arg2, database, trigger) -> int:
        return sqlite3.SQLITE_OK if action in _ALLOWED_ACTIONS else sqlite3.SQLITE_DENY

    def _progress(self) -> int:
        self._steps += _PROGRESS_EVERY
        return 1 if self._steps > MAX_VM_STEPS else 0

    def describe(self) -> str:
        return "; ".join(table.describe() for table in self.tables)

    def query(self, sql: str) -> dict[str, Any]:
        """Run one SELECT; returns ``{"columns", "rows", "truncated"}`` or raises ``ToolError``."""
        statement = sql.strip().rstrip(";").strip()
        if not statement:
            raise ToolError("empty query")
        if len(statement) > MAX_QUERY_CHARS:
            raise ToolError(f"query too long (> {MAX_QUERY_CHARS} characters)")
        if statement.split(None, 1)[0].upper() not in ("SELECT", "WITH"):
            raise ToolError("only read-only SELECT queries are allowed")
        self._steps = 0
        try:
            cursor = self.connection.execute(statement)
            rows = cursor.fetchmany(MAX_ROWS + 1)
            columns = [column[0] for column in cursor.description or ()]
            cursor.close()
        except sqlite3.Warning:
            raise ToolError("send exactly one SQL statement per call") from None
        except sqlite3.DatabaseError as error:
            message = str(error)
            if "interrupted" in message:
                message = "query took too long and was stopped"
            elif "not authorized" in message or "prohibited" in message:
                message = "not allowed: the database is read-only (one SELECT only)"
            raise ToolError(f"SQL error: {message}") from None
        except (sqlite3.Error, ValueError, OverflowError, MemoryError) as error:
            raise ToolError(f"SQL error: {error}") from None
        truncated = len(rows) > MAX_ROWS
        rows = [[tidy_number(v) if isinstance(v, float) else v for v in row] for row in rows[:MAX_ROWS]]
        rows = [[v if isinstance(v, str | int | float) or v is None else repr(v) for v in row] for row in rows]
        return {"columns": columns, "rows": rows, "truncated": truncated}

    def close(self) -> None:
        self.connection.close()


def sql_tools(database: SqlDatabase) -> list[Tool]:
    return [
        Tool(
            name="sql_query",
            description=(
                "Run one read-only SQLite SELECT query on the task database and get "
                f"{{\"columns\", \"rows\", \"truncated\"}} (at most {MAX_ROWS} rows). "
                f"Tables: {database.describe()}. Dates are TEXT 'YYYY-MM-DD'."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "description": "One SELECT statement, e.g. \"SELECT COUNT(*) FROM orders\".",
                        "minLength": 1,
                        "maxLength": MAX_QUERY_CHARS,
                    }
                },
                "required": ["query"],
                "additionalProperties": False,
            },
            function=lambda query: database.query(query),
        )
    ]
