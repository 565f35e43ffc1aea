"""Deterministic offline tools for the ToolUse env, one module per tool family.

``calculator``, ``units``, ``calendar``, ``sql``, ``kv_api``, ``search`` define the tools;
``schema`` what a tool is and how arguments are validated; ``calls`` how tool calls are
read from a policy's text; ``toolbox`` the tools of one episode; ``tasks`` the task
templates and their seeded worlds.
"""

from regym.envs.tools.calls import ParsedTurn, ToolCall, parse_turn
from regym.envs.tools.schema import ArgumentError, Tool, ToolError, validate
from regym.envs.tools.tasks import ID_TEMPLATES, OOD_TEMPLATES, make_task
from regym.envs.tools.toolbox import FAMILIES, CallResult, Toolbox, World

__all__ = [
    "FAMILIES",
    "ID_TEMPLATES",
    "OOD_TEMPLATES",
    "ArgumentError",
    "CallResult",
    "ParsedTurn",
    "Tool",
    "ToolCall",
    "ToolError",
    "Toolbox",
    "World",
    "make_task",
    "parse_turn",
    "validate",
]
