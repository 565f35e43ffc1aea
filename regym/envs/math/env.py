"""Math (``regym/Math-v0``): a sandboxed Python tool, or one boxed answer.

One problem per episode, in one of two modes (``mode=``):

* ``"tool"`` (the default): each turn the policy either calls the Python tool, with
  ``<python>...</python>`` or an OpenAI-style tool call
  (``{"name": "python", "arguments": {"code": ...}}``), and sees its output, or answers
  with ``\\boxed{...}`` or ``Answer: ...``, which ends the episode. Reward 1 if right, else 0
  (or -1 with ``signed_reward=True``).
* ``"single_turn"``: the policy reasons briefly and answers once, with ``\\boxed{...}``; the
  episode ends after that one reply, with reward +1 if right and -1 otherwise (the paper's
  GRPO reward; ``signed_reward=False`` gives 1/0). No tool is offered. The answer is the last
  ``\\boxed{}``, else (``extraction="flexible"``, the default) an 'Answer:' line or the reply's last
  number; ``info["answer_source"]`` says which.

Answers are graded with ``math-verify`` against the reference (``\\boxed{1/2}`` = ``0.5`` =
``\\frac{1}{2}``). Problems come from reasoning-gym families, named difficulty levels
(``level=``/``levels=``, see ``levels``) or a local dataset (``problems``).

The tool-mode expert is a demonstration of the protocol, not a solver: it calls the tool with
code that prints the (known) reference answer, then answers ``\\boxed{reference}``. The
single-turn expert writes a worked solution computed from the problem (``solutions``) where
the family has one, else the bare ``\\boxed{reference}``. See ``docs/math.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from regym.envs.actions import ParsedAction
from regym.envs.base import Outcome, TextEnv
from regym.envs.math.answers import (
    EXTRACTIONS,
    answer_in,
    extract_answer,
    grade,
)
from regym.envs.math.levels import LEVEL_SETS, LEVEL_SPLITS, LEVELS, split_levels
from regym.envs.math.problems import DatasetProblems, LevelProblems, Problem, ReasoningGymProblems
from regym.envs.math.solutions import worked_solution
from regym.envs.options import ClientOption
from regym.envs.sandbox import Sandbox, make_sandbox, shared_sandbox

MODES = ("tool", "single_turn")
PYTHON_TOOL = {
    "type": "function",
    "function": {
        "name": "python",
        "description": "Run a Python 3 program in a sandbox (no network, no files outside a scratch dir) and "
        "return its printed output. The value of a final bare expression is printed too. "
        "numpy and sympy are available.",
        "parameters": {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "The program to run."}},
            "required": ["code"],
        },
    },
}
INSTRUCTIONS = (
    "Solve the problem below. You may run Python by writing <python>your code</python> "
    "(or by calling the `python` tool); you will see what it prints. "
    "When you are sure, give the final answer as \\boxed{...} or as a line 'Answer: ...'."
)
SINGLE_TURN_INSTRUCTIONS = "Solve the problem with a short calculation, then write the final answer as \\boxed{...}."
"""Put after the problem: SmolLM2-135M-Instruct answered more problems with the instruction after the problem
than before it, and copied any example answer given in the instruction (docs/math.md, "The prompt")."""
HELP = "Call the tool with <python>...</python> or answer with \\boxed{...} (or 'Answer: ...')."

_PYTHON_BLOCK = re.compile(r"<python>(.*?)(?:</python>|\Z)", re.DOTALL | re.IGNORECASE)
_TOOL_CALL_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL | re.IGNORECASE)
def _code_from_call(call: Any) -> str | None:
    """Code of a python tool call in any common JSON shape (OpenAI, tool_calls list, plain)."""
    if isinstance(call, list):
        return next((code for code in map(_code_from_call, call) if code is not None), None)
    if not isinstance(call, dict):
        return None
    if "tool_calls" in call:
        return _code_from_call(call["tool_calls"])
    if isinstance(call.get("function"), dict):
        return _code_from_call(call["function"])
    if call.get("name") not in ("python", "run_python", "execute_python"):
        return None
    arguments = call.get("arguments", call.get("parameters"))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    if isinstance(arguments, dict) and isinstance(arguments.get("code"), str):
        return arguments["code"]
    return None


def tool_call_code(text: str) -> str | None:
    """Code of the first python tool call in ``text``, or None."""
    block = _PYTHON_BLOCK.search(text)
    if block:
        return block.group(1).strip("\n")
    candidates = [m.group(1) for m in _TOOL_CALL_TAG.finditer(text)] + [text]
    for candidate in candidates:
        candidate = candidate.strip()
        if not candidate.startswith(("{", "[")):
            continue
        try:
            code = _code_from_call(json.loads(candidate))
        except (json.JSONDecodeError, RecursionError):
            continue
        if code is not None:
            return code
    return None


# --- the env --------------------------------------------------------------------------------
class MathEnv(TextEnv):
    """Math problems, with a sandboxed Python tool or as one boxed answer; reward from math-verify."""

    splits = ("in_distribution", "near_out_of_distribution", "out_of_distribution", *LEVEL_SPLITS)
    """``near_out_of_distribution`` exists under a ``level_set`` only (harder settings of the ID families)."""
    difficulty_levels = {name: f"{level.family}: {level.description}" for name, level in LEVELS.items()}
    level_splits = dict(LEVEL_SPLITS)
    rl_defaults = {"max_turns": 4, "max_new_tokens": 48, "max_episode_tokens": 1024, "context": "full"}
    """rl-train's episode shape (``regym.rl.config.resolve_config``): the expert answers in 2 turns (a tool
    call, then the answer), in replies of up to 24 tokens; 4 turns leave room for a failed call. Tool mode's:
    a single-turn run sets its own (one turn, replies of ~192 tokens)."""
    client_options = {**TextEnv.client_options, "families": ClientOption(list, nullable=True),
                      "mode": ClientOption(str, choices=("tool", "single_turn"), nullable=True),
                      "level": ClientOption(str, choices=tuple(LEVELS), nullable=True),
                      "level_set": ClientOption(str, choices=tuple(LEVEL_SETS), nullable=True),
                      "levels": ClientOption(list, choices=tuple(LEVELS), nullable=True),
                      "extraction": ClientOption(str, choices=tuple(EXTRACTIONS)),
                      "signed_reward": ClientOption(bool, nullable=True),
                      "tool_output_chars": ClientOption(int, 1, 16_000)}
    """The problems, levels, mode and reward shape are the client's; ``dataset`` and its columns (host
    files) and ``sandbox`` (a backend) are the operator's."""
    lazy_imports = ("reasoning_gym", "math_verify")

    @classmethod
    def splits_with(cls, **options: Any) -> tuple[str, ...]:
        if options.get("level_set") or options.get("level") or options.get("levels") or options.get("dataset"):
            return cls.splits
        return tuple(split for split in cls.splits if split != "near_out_of_distribution")

    def __init__(
        self,
        split: str = "in_distribution",
        max_turns: int = 6,
        invalid_action_penalty: float = 0.0,
        render_mode: str | None = None,
        *,
        mode: str | None = None,
        level: str | None = None,
        levels: Sequence[str] | None = None,
        level_set: str | None = None,
        families: tuple[str, ...] | list[str] | None = None,
        dataset: str | None = None,
        question_column: str = "question",
        answer_column: str = "answer",
        dataset_split: str | None = None,
        signed_reward: bool | None = None,
        extraction: str = "flexible",
        sandbox: Sandbox | str | None = None,
        tool_output_chars: int = 4000,
    ):
        """``mode``: "tool" or "single_turn"; None means single-turn on the level-based ``smollm2_*``
        splits (the suite of the SFT-to-RL lab) and tool elsewhere. ``level``/``levels``: named
        difficulty levels (``regym.envs.math.levels.LEVELS``) to draw problems from, in place of the
        split's. ``level_set``: a named map of the usual splits onto level splits (``"smollm2"``:
        ``in_distribution`` plays ``smollm2_id``, ``near_out_of_distribution`` ``smollm2_near``,
        ``out_of_distribution`` ``smollm2_far``). ``signed_reward``: -1 for a wrong answer; None means yes in single-turn mode (the
        paper's ±1), no in tool mode. ``extraction``: how a single-turn reply's answer is found
        ("flexible" or "boxed", see ``answers.EXTRACTIONS``). ``dataset``: a local dataset path;
        it then replaces the procedural problems for every split. ``sandbox``: a Sandbox, a
        backend name ("local"/"docker"), or None for the process-wide shared local sandbox."""
        super().__init__(split=split, max_turns=max_turns, invalid_action_penalty=invalid_action_penalty,
                         render_mode=render_mode)
        chosen_levels = _chosen_levels(level, levels)
        if sum(option is not None for option in (dataset, chosen_levels, families or None, level_set)) > 1:
            raise ValueError("give at most one of dataset=, level=/levels=, level_set= and families=")
        self.level_set = level_set
        level_split = split_levels(self.split, level_set)
        if self.split == "near_out_of_distribution" and level_split is None and dataset is None \
                and chosen_levels is None:
            raise ValueError(f"{type(self).__name__} has splits {self.splits_with()} without a level set, not "
                             f"{split!r}: near-OOD is defined by a level set, so pass level_set= (one of "
                             f"{', '.join(LEVEL_SETS)}) or level=/levels=")
        if dataset is not None:
            self.problems = DatasetProblems(dataset, question_column, answer_column, dataset_split)
        elif chosen_levels is not None:
            self.problems = LevelProblems(chosen_levels)
        elif level_split is not None:
            if families:
                raise ValueError(f"split {self.split!r} is made of levels; families= applies to in/out_of_distribution")
            self.problems = LevelProblems(level_split)
        else:
            self.problems = ReasoningGymProblems(self.split, tuple(families) if families else None)
        self.mode = mode if mode is not None else ("single_turn" if level_split else "tool")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if extraction not in EXTRACTIONS:
            raise ValueError(f"extraction must be one of {EXTRACTIONS}, not {extraction!r}")
        self.signed_reward = (self.mode == "single_turn") if signed_reward is None else bool(signed_reward)
        self.extraction = extraction
        self.tool_output_chars = tool_output_chars
        self._sandbox_spec = sandbox
        self._sandbox: Sandbox | None = sandbox if not isinstance(sandbox, str | None) else None
        self._owns_sandbox = isinstance(sandbox, str)
        self.problem: Problem | None = None
        self.tool_calls = 0
        self._worked: str | None = None

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            spec = self._sandbox_spec
            self._sandbox = make_sandbox(spec) if isinstance(spec, str) else shared_sandbox()
        return self._sandbox

    # --- TextEnv hooks --------------------------------------------------------------------
    def _task_id_for(self, rng: np.random.Generator) -> str:
        return self.problems.task_id_for(rng)

    def _begin(self, task_id: str) -> Outcome:
        self.problem = self.problems.get(task_id)
        self.tool_calls = 0
        if self.mode == "single_turn":
            self._worked = worked_solution(self.problem.family, self.problem.metadata, self.problem.answer)
            return Outcome(f"Problem: {self.problem.question}\n\n{SINGLE_TURN_INSTRUCTIONS}", info=self._extras())
        return Outcome(f"{INSTRUCTIONS}\n\nProblem: {self.problem.question}", info=self._extras())

    def parse(self, text: str) -> ParsedAction:
        if not isinstance(text, str):
            return ParsedAction(None, error=f"action must be text, got {type(text).__name__}")
        if self.mode == "single_turn":
            return ParsedAction(json.dumps({"reply": text}))
        code = tool_call_code(text)
        if code is not None:
            return ParsedAction(json.dumps({"python": code}))
        answer = answer_in(text)
        if answer is not None:
            return ParsedAction(json.dumps({"answer": answer}))
        # Handled in _act, so that the invalid turn still carries the env's info extras.
        return ParsedAction(json.dumps({"invalid": HELP}))

    def _act(self, action: str) -> Outcome:
        request = json.loads(action)
        if "reply" in request:
            return self._answer_once(request["reply"])
        if "invalid" in request:
            return Outcome(f"No tool call and no answer found. {request['invalid']}", valid=False,
                           info=self._extras())
        if "python" in request:
            self.tool_calls += 1
            result = self.sandbox.run(request["python"])
            output = result.describe()
            if len(output) > self.tool_output_chars:
                output = output[: self.tool_output_chars] + "\n[tool output cut]"
            return Outcome(f"Python output:\n{output}", info=self._extras())
        correct = grade(request["answer"], self.problem.answer)
        reward = 1.0 if correct else (-1.0 if self.signed_reward else 0.0)
        verdict = "Correct." if correct else "Incorrect."
        return Outcome(f"{verdict} The episode is over.", reward=reward, terminated=True, won=correct,
                       info=self._extras(answer=request["answer"]))

    def _answer_once(self, reply: str) -> Outcome:
        """Single-turn mode: grade the reply's answer; the episode ends whatever the reply holds."""
        answer, source = extract_answer(reply, self.extraction)
        correct = answer is not None and grade(answer, self.problem.answer)
        reward = 1.0 if correct else (-1.0 if self.signed_reward else 0.0)
        verdict = "Correct." if correct else ("Incorrect." if answer is not None else "No answer found.")
        return Outcome(f"{verdict} The episode is over.", reward=reward, terminated=True, won=correct,
                       valid=answer is not None, info=self._extras(answer=answer or "", answer_source=source))

    def _refuse(self, reason: str) -> Outcome:
        """A single-turn episode ends on its one reply, even one with no action in it (too long, not text)."""
        if self.mode != "single_turn":
            return super()._refuse(reason)
        return Outcome(f"No answer found ({reason}). The episode is over.",
                       reward=-1.0 if self.signed_reward else 0.0, terminated=True, valid=False,
                       info=self._extras(answer="", answer_source=None))

    def _extras(self, answer: str | None = None, **more: Any) -> dict[str, Any]:
        if answer is not None or self.problem is None:
            expert = None
        elif self.mode == "single_turn":
            expert = self._worked or f"\\boxed{{{self.problem.answer}}}"
        elif self.tool_calls == 0:
            expert = f"<python>\nprint({self.problem.answer!r})\n</python>"
        else:
            expert = f"\\boxed{{{self.problem.answer}}}"
        extras = {
            "tools": [PYTHON_TOOL] if self.mode == "tool" else [],
            "task_family": self.problem.family if self.problem else None,
            "tool_calls": self.tool_calls,
            "expert_action": expert,
        }
        if self.problem is not None and self.problem.level is not None:
            extras["task_level"] = self.problem.level
        if self.mode == "single_turn":
            extras["mode"] = self.mode
        if answer is not None:
            extras["answer"] = answer
        extras.update(more)
        return extras

    def close(self) -> None:
        if self._owns_sandbox and self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
        super().close()


def _chosen_levels(level: str | None, levels: Sequence[str] | None) -> tuple[str, ...] | None:
    """``level=`` or ``levels=`` as one tuple of names (None: neither); both at once is an error."""
    if level is not None and levels is not None:
        raise ValueError("give level= or levels=, not both")
    if level is not None:
        if not isinstance(level, str):
            raise TypeError(f"level must be a level name, not {type(level).__name__}; use levels=[...] for several")
        return (level,)
    if levels is None:
        return None
    if isinstance(levels, str):
        raise TypeError("levels must be a list of level names; use level= for one")
    return tuple(levels)
