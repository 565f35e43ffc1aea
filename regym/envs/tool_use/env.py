"""ToolUse: multi-step function calling with deterministic offline tools (``regym/ToolUse-v0``).

Each task is a question that needs 1-5 chained tool calls (calculator, unit
conversion, calendar arithmetic, a per-task SQLite database, a key-value records API,
BM25 search over a local document set) and has one verifiable answer. The policy
calls tools in OpenAI's tool-call format (see ``regym.envs.tool_use.calls`` for every
accepted shape); each observation after a call is the tool's JSON result, exactly as
a ``tool`` message would carry it. ``Answer: <value>`` (or a ``final_answer`` call)
ends the episode and is graded exactly.

Malformed JSON, unknown tools and arguments that do not fit the tool's JSON schema
never raise: the policy gets ``Error: ...`` with what to fix, the step is invalid,
and ``info["invalid_calls"]`` counts it. A valid call the tool cannot answer (unknown
key, SQL error) returns ``Error: ...`` too, counted in ``info["tool_errors"]``.

Levels (``tool_use/levels.py``): ``level="single_call.1"`` plays one difficulty level in place of the
split's templates. ``dense_reward=True`` (rl-train's default, never evaluation's) pays progress along the
reference solution: per reference call, 0.10 for a valid call, 0.15 for calling its tool and 0.25 for
obtaining its result, each divided by the number of reference calls, so the whole plan is worth 0.5; the
correct answer pays the rest of 1 (``reward_correct`` minus what was paid), a wrong one ``reward_wrong``.
Success stays the exact answer.

Extra ``info`` keys: ``tools`` (OpenAI tool schemas offered), ``task_type`` (the
template), ``required_tools`` (tool families the task needs), ``answer_format``,
``invalid_calls``, ``tool_errors``, ``tool_calls``, and at the end ``reference_answer``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from regym.envs.actions import ParsedAction
from regym.envs.base import Outcome, TextEnv
from regym.envs.options import ClientOption
from regym.envs.tool_use.calls import CALL_FORMAT_HINT, parse_turn
from regym.envs.tool_use.levels import TOOL_USE_LEVELS
from regym.envs.tool_use.tasks import TEMPLATES, Answer, Step, Task, grade, make_task, template_of
from regym.envs.tool_use.toolbox import CallResult, Toolbox

EXAMPLE_CALL = '{"name": "calculate", "arguments": {"expression": "2 * 3"}}'
DENSE_VALID_CALL, DENSE_RIGHT_TOOL, DENSE_RIGHT_ARGUMENTS = 0.10, 0.15, 0.25
"""Dense credit per reference call, divided by the reference's number of calls: the plan is worth 0.5."""
DENSE_CAP = DENSE_VALID_CALL + DENSE_RIGHT_TOOL + DENSE_RIGHT_ARGUMENTS
"""The most an episode's dense credit pays (0.5), below any win."""


class ToolUseEnv(TextEnv):
    """Answer a question by chaining OpenAI-style tool calls; reward on the exact final answer."""

    splits = ("in_distribution", "near_out_of_distribution", "out_of_distribution")
    difficulty_levels = TOOL_USE_LEVELS.descriptions()
    level_splits = TOOL_USE_LEVELS.split_levels()
    rl_defaults = {"max_turns": 6, "max_new_tokens": 64, "max_episode_tokens": 1024, "context": "full"}
    """rl-train's episode shape (``regym.rl.config.resolve_config``): the expert needs 4 turns (median; at most
    5), its tool calls take up to 47 tokens, its whole sequence up to 965; later calls use earlier results, so
    the policy sees the full context."""
    client_options = {**TextEnv.client_options, "reward_correct": ClientOption(float, -10.0, 10.0),
                      "reward_wrong": ClientOption(float, -10.0, 10.0),
                      "distractor_families": ClientOption(int, 0, 16), "max_calls_per_turn": ClientOption(int, 1, 20),
                      "dense_reward": ClientOption(bool),
                      "level": ClientOption(str, choices=tuple(TOOL_USE_LEVELS.levels), nullable=True)}
    lazy_imports = ("bm25s",)

    def __init__(
        self,
        split: str = "in_distribution",
        max_turns: int = 10,
        invalid_action_penalty: float = 0.0,
        reward_correct: float = 1.0,
        reward_wrong: float = 0.0,
        distractor_families: int = 1,
        max_calls_per_turn: int = 5,
        dense_reward: bool = False,
        level: str | None = None,
        render_mode: str | None = None,
    ):
        """``reward_wrong=-1.0`` gives ±1 rewards; ``distractor_families`` tool families the task does not
        need are offered too (0 offers exactly the needed ones; near-OOD tasks offer all). ``level``: play one
        difficulty level (``TOOL_USE_LEVELS``) in place of the split's templates. ``dense_reward``: pay
        progress along the reference calls (module docstring)."""
        super().__init__(split=split, max_turns=max_turns, invalid_action_penalty=invalid_action_penalty,
                         render_mode=render_mode)
        if max_calls_per_turn < 1:
            raise ValueError("max_calls_per_turn must be >= 1")
        self.reward_correct = float(reward_correct)
        self.reward_wrong = float(reward_wrong)
        self.distractor_families = int(distractor_families)
        self.max_calls_per_turn = int(max_calls_per_turn)
        self.dense_reward = bool(dense_reward)
        self.level = TOOL_USE_LEVELS.level(level) if level is not None else None
        self.templates = tuple(sorted(self.level.settings["templates"] if self.level else TEMPLATES[self.split]))
        self.task: Task | None = None
        self.toolbox: Toolbox | None = None
        self.steps: list[Step] = []
        self.answer: Answer | None = None
        self.satisfied: list[bool] = []
        self.schemas: list[dict[str, Any]] = []
        self.invalid_calls = self.tool_errors = self.tool_calls = 0
        self.tools_called: list[bool] = []
        self.valid_calls = 0
        self.paid = 0.0

    # --- TextEnv hooks ------------------------------------------------------------------
    def _task_id_for(self, rng: np.random.Generator) -> str:
        names = self.templates
        return f"{names[int(rng.integers(len(names)))]}-{int(rng.integers(100_000)):05d}"

    def _begin(self, task_id: str) -> Outcome:
        template = template_of(task_id)
        if template.name not in self.templates:
            playing = f"level {self.level.name!r}" if self.level else f"split {self.split!r}"
            raise ValueError(f"task {task_id!r} belongs to another split or level, not {playing} "
                             f"(templates {', '.join(self.templates)})")
        self.close()
        self.task = make_task(task_id, self.distractor_families)
        self.toolbox, self.steps, self.answer = self.task.open()
        self.satisfied = [False] * len(self.steps)
        self.tools_called = [False] * len(self.steps)
        self.invalid_calls = self.tool_errors = self.tool_calls = self.valid_calls = 0
        self.paid = 0.0
        self.schemas = self.toolbox.schemas
        observation = (
            f"{self.task.question}\nAnswer format: {self.answer.format_hint}.\n\n"
            f"Tools (OpenAI function schemas are in info[\"tools\"]):\n{self.toolbox.describe()}\n\n"
            f"Call a tool with JSON, e.g. {EXAMPLE_CALL} (also accepted: <tool_call>{{...}}</tool_call> "
            "and {\"tool_calls\": [...]}). Each tool's JSON result comes back as the next message. "
            "When you know the answer, reply with one line \"Answer: <value>\"."
        )
        return Outcome(observation, info=self._extras())

    def parse(self, text: str) -> ParsedAction:
        """Keep the whole raw text: calls are JSON that may span lines."""
        if isinstance(text, dict | list):
            try:
                text = json.dumps(text)
            except (TypeError, ValueError, RecursionError):
                text = ""
        return ParsedAction(text if isinstance(text, str) else "")

    def _act(self, action: str) -> Outcome:
        parsed = parse_turn(action)
        if parsed.error is not None:
            return self._refuse(parsed.error)
        if parsed.calls:
            return self._run_calls(parsed.calls, ignored_answer=parsed.answer is not None)
        won = grade(self.answer, parsed.answer)
        observation = "Correct." if won else f"Incorrect: {parsed.answer!r} is not the answer."
        reward = self.reward_correct if won else self.reward_wrong
        if won and self.dense_reward:
            reward -= self.paid  # the episode's rewards sum to reward_correct
        return Outcome(observation, reward=reward, terminated=True, won=won, info=self._extras(final=True))

    def _refuse(self, reason: str) -> Outcome:
        """An unreadable reply (too long, no call, no answer) is a malformed call: ``Error: ...``, counted."""
        self.invalid_calls += 1
        return Outcome(f"Error: {reason}", valid=False, info=self._extras())

    # --- calls ----------------------------------------------------------------------------
    def _run_calls(self, calls, ignored_answer: bool) -> Outcome:
        results: list[CallResult] = []
        credit = 0.0
        for call in calls[: self.max_calls_per_turn]:
            if call.valid:
                result = self.toolbox.call(call.name, call.arguments)
            else:
                result = CallResult(call.name, call.arguments, error=f"{call.error}. {CALL_FORMAT_HINT}", invalid=True)
            self.tool_calls += 1
            if result.invalid:
                self.invalid_calls += 1
            elif not result.ok:
                self.tool_errors += 1
            if not result.invalid:
                credit += self._call_credit(result)
            results.append(result)
        if len(results) == 1:
            observation = results[0].as_text()
        else:
            observation = "\n".join(f"[{i + 1}] {r.name}: {r.as_text()}" for i, r in enumerate(results))
        if len(calls) > self.max_calls_per_turn:
            skipped = len(calls) - self.max_calls_per_turn
            observation += f"\n(Only {self.max_calls_per_turn} calls run per turn; {skipped} were skipped.)"
        if ignored_answer:
            observation += "\n(The answer in this message was ignored because it also called tools; "
            observation += "send \"Answer: <value>\" on its own.)"
        valid = not any(result.invalid for result in results)
        reward = 0.0
        if self.dense_reward:
            reward = min(credit, DENSE_CAP - self.paid)
            self.paid += reward
        return Outcome(observation, reward=reward, valid=valid, info=self._extras())

    def _call_credit(self, result: CallResult) -> float:
        """Mark the reference calls this valid call matches; its dense credit (paid once per reference call)."""
        share = 1.0 / max(len(self.steps), 1)
        credit = 0.0
        self.valid_calls += 1
        if self.valid_calls <= len(self.steps):
            credit += DENSE_VALID_CALL * share
        for index, step in enumerate(self.steps):
            if not self.tools_called[index] and step.name == result.name:
                self.tools_called[index] = True
                credit += DENSE_RIGHT_TOOL * share
                break
        if result.ok:
            for index, step in enumerate(self.steps):
                if not self.satisfied[index] and step.satisfied_by(result.name, result.result):
                    self.satisfied[index] = True
                    credit += DENSE_RIGHT_ARGUMENTS * share
        return credit

    def _expert_action(self) -> str:
        for step, done in zip(self.steps, self.satisfied, strict=True):
            if not done:
                return json.dumps({"name": step.name, "arguments": step.arguments})
        return f"Answer: {self.answer.text}"

    def _extras(self, final: bool = False) -> dict[str, Any]:
        info = {
            "tools": self.schemas,
            "task_type": self.task.template.name,
            "task_level": self._level_of(self.task.template.name),
            "required_tools": list(self.task.template.families),
            "answer_format": self.answer.format_hint,
            "invalid_calls": self.invalid_calls,
            "tool_errors": self.tool_errors,
            "tool_calls": self.tool_calls,
            "expert_action": None if final else self._expert_action(),
        }
        if final:
            info["reference_answer"] = self.answer.text
        return info

    @staticmethod
    def _level_of(template: str) -> str:
        return next(name for name, level in TOOL_USE_LEVELS.levels.items() if template in level.settings["templates"])

    def close(self) -> None:
        if self.toolbox is not None:
            self.toolbox.close()
            self.toolbox = None
