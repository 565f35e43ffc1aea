"""Math: problems solved with a sandboxed Python tool, graded by ``math-verify``.

See ``docs/math.md``. ``MathEnv`` (``env``) is registered as ``regym/Math-v0``; ``problems``
says where problems come from. The code sandbox lives beside the families, in
``regym.envs.sandbox``, where any of them can reach it.
"""

from regym.envs.math.env import PYTHON_TOOL, MathEnv, answer_in, grade, tool_call_code
from regym.envs.math.problems import (
    ID_FAMILIES,
    OOD_FAMILIES,
    DatasetProblems,
    Problem,
    ReasoningGymProblems,
)

__all__ = [
    "ID_FAMILIES",
    "OOD_FAMILIES",
    "PYTHON_TOOL",
    "DatasetProblems",
    "MathEnv",
    "Problem",
    "ReasoningGymProblems",
    "answer_in",
    "grade",
    "tool_call_code",
]
