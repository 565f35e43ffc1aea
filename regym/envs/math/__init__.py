"""Math: problems solved with a sandboxed Python tool or in one boxed answer, graded by ``math-verify``.

See ``docs/math.md``. ``MathEnv`` (``env``) is registered as ``regym/Math-v0``; ``problems``
says where problems come from, ``levels`` names difficulty levels and the splits made of them,
``answers`` reads and grades answers, ``solutions`` writes the single-turn expert's worked solutions. The code sandbox lives beside the families, in
``regym.envs.sandbox``, where any of them can reach it.
"""

from regym.envs.math.answers import answer_in, extract_answer, grade
from regym.envs.math.env import MODES, PYTHON_TOOL, MathEnv, tool_call_code
from regym.envs.math.levels import LEVEL_SETS, LEVEL_SPLITS, LEVELS, Level, get_level
from regym.envs.math.problems import (
    ID_FAMILIES,
    OOD_FAMILIES,
    DatasetProblems,
    LevelProblems,
    Problem,
    ReasoningGymProblems,
)
from regym.envs.math.solutions import SOLVERS, worked_solution

__all__ = [
    "ID_FAMILIES",
    "LEVELS",
    "LEVEL_SETS",
    "LEVEL_SPLITS",
    "MODES",
    "OOD_FAMILIES",
    "PYTHON_TOOL",
    "SOLVERS",
    "DatasetProblems",
    "Level",
    "LevelProblems",
    "MathEnv",
    "Problem",
    "ReasoningGymProblems",
    "answer_in",
    "extract_answer",
    "get_level",
    "grade",
    "tool_call_code",
    "worked_solution",
]
