"""Difficulty levels of the ToolUse env, read off its own task generator: which templates a level draws.

* ``single_call.1``: one call answers the question (a records lookup, a unit conversion, a weekday);
* ``chained_calls.1``: two calls, the second fed by the first's result;
* ``composed_calls.1``: the in-distribution templates, 2-4 calls across 2-3 tool families, each on an
  earlier result (the in-distribution split, unchanged);
* ``composed_calls.2``: the same questions with all six tool families offered, so the policy must pick
  its tools among every one (near-OOD, its own task ids);
* ``unseen_combinations.1``: tool combinations and chain orders no other level uses (the
  out-of-distribution split, unchanged).
"""

from __future__ import annotations

from regym.envs.levels import Level, LevelTable
from regym.envs.tool_use.tasks import (
    ALL_TOOLS_TEMPLATES,
    CHAINED_CALL_TEMPLATES,
    ID_TEMPLATES,
    OOD_TEMPLATES,
    SINGLE_CALL_TEMPLATES,
)

TOOL_USE_LEVELS = LevelTable.of("ToolUse", (
    Level("single_call.1", "one tool call answers the question (records lookup, unit conversion, weekday)",
          {"templates": tuple(SINGLE_CALL_TEMPLATES)}),
    Level("chained_calls.1", "two calls, the second on the first's result (lookup then convert, date then weekday)",
          {"templates": tuple(CHAINED_CALL_TEMPLATES)}),
    Level("composed_calls.1", "2-4 calls across 2-3 tool families, each on an earlier result; 1 unneeded family "
          "offered", {"templates": tuple(ID_TEMPLATES)}),
    Level("composed_calls.2", "the composed_calls.1 questions with all six tool families offered",
          {"templates": tuple(ALL_TOOLS_TEMPLATES)}),
    Level("unseen_combinations.1", "tool combinations and chain orders no other level uses, up to 5 calls",
          {"templates": tuple(OOD_TEMPLATES)}),
), {"in_distribution": ("composed_calls.1",), "near_out_of_distribution": ("composed_calls.2",),
    "out_of_distribution": ("unseen_combinations.1",)})
