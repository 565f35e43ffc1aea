"""ToolUse: multi-step function calling with deterministic offline tools.

See ``docs/tool_use.md``. ``ToolUseEnv`` (``env``) is registered as ``regym/ToolUse-v0``.
The tools, one module per family: ``calculator``, ``units``, ``calendar``, ``sql``,
``kv_api``, ``search``; ``schema`` what a tool is and how arguments are validated;
``calls`` how tool calls are read from a policy's text; ``toolbox`` the tools of one
episode; ``tasks`` the task templates and their seeded worlds.
"""

from regym.envs.tool_use.calls import ParsedTurn, ToolCall, parse_turn
from regym.envs.tool_use.env import ToolUseEnv
from regym.envs.tool_use.schema import ArgumentError, Tool, ToolError, validate
from regym.envs.tool_use.tasks import ID_TEMPLATES, OOD_TEMPLATES, make_task
from regym.envs.tool_use.toolbox import FAMILIES, CallResult, Toolbox, World

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
    "ToolUseEnv",
    "Toolbox",
    "World",
    "make_task",
    "parse_turn",
    "validate",
]
