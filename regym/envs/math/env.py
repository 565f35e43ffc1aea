"""Math with a Python tool (``regym/Math-v0``): think, compute in a sandbox, answer.

One problem per episode. Each turn the policy either calls the Python tool, with
``<python>...</python>`` or an OpenAI-style tool call
(``{"name": "python", "arguments": {"code": ...}}``), and sees its output, or answers
with ``\\boxed{...}`` or ``Answer: ...``, which ends the episode. The answer is graded
with ``math-verify`` against the reference (``\\boxed{1/2}`` = ``0.5`` = ``\\frac{1}{2}``):
reward 1 if right, else 0 (or -1 with ``signed_reward=True``).

The expert is a demonstration format, not a solver: it calls the tool with code that
prints the (known) reference answer, then answers ``\\boxed{reference}``. Its
correctness comes from the reference; it exists so that SFT data shows the tool-use
protocol. See ``docs/math.md`` for the splits and the sandbox's protections.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import numpy as np

from regym.envs.actions import ParsedAction
from regym.envs.base import Outcome, TextEnv
from regym.envs.math.problems import DatasetProblems, Problem, ReasoningGymProblems
from regym.envs.options import ClientOption
from regym.envs.sandbox import Sandbox, make_sandbox, shared_sandbox

MAX_ANSWER_CHARS = 300
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
HELP = "Call the tool with <python>...</python> or answer with \\boxed{...} (or 'Answer: ...')."

_PYTHON_BLOCK = re.compile(r"<python>(.*?)(?:</python>|\Z)", re.DOTALL | re.IGNORECASE)
_TOOL_CALL_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL | re.IGNORECASE)
# Linear-time patterns: the indent before "answer" stays on its line ([^\S\n], not \s, which let every
# newline of a blank run rescan the rest: cubic), and possessive quantifiers (*+) never backtrack.
_ANSWER_LINE = re.compile(r"(?:^|\n)[^\S\n]*+\**+[^\S\n]*+(?:final\s++)?answer\s*+\**+\s*+[:：]\s*(.+)",
                          re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*+\{")
_BRACE = re.compile(r"[{}]")


# --- reading the policy's text ------------------------------------------------------------
def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (braces balanced), or None.

    One pass matches every brace with a stack, so thousands of unclosed ``\\boxed{``
    cost linear time (scanning forward from each one was quadratic).
    """
    boxed_braces = {match.end() - 1 for match in _BOXED.finditer(text)}
    if not boxed_braces:
        return None
    found, found_at, open_braces = None, -1, []
    for brace in _BRACE.finditer(text):
        if brace.group() == "{":
            open_braces.append(brace.start())
        elif open_braces:
            opened = open_braces.pop()
            if opened in boxed_braces and opened > found_at:
                found, found_at = text[opened + 1:brace.start()], opened
    return found


def answer_in(text: str) -> str | None:
    """The final answer: the last ``\\boxed{}``, else the last 'Answer: ...' line."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    lines = _ANSWER_LINE.findall(text)
    if not lines:
        return None
    answer = lines[-1].strip().strip("*").strip()
    return answer.strip("$").rstrip(".").strip() or None


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


# --- grading --------------------------------------------------------------------------------
def _normalize(text: str) -> str:
    return "".join(text.split()).rstrip(".").casefold()


def grade(answer: str, reference: str) -> bool:
    """Is ``answer`` equivalent to ``reference``? math-verify, after an exact-text check.

    math-verify's timeouts use SIGALRM, which works only in the main thread; elsewhere
    they are off and the answer length cap bounds the work instead.
    """
    if not answer or len(answer) > MAX_ANSWER_CHARS:
        return False
    if _normalize(answer) == _normalize(reference):
        return True
    from math_verify import parse, verify

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold = parse(reference, parsing_timeout=timeout)
        if not gold:
            return False
        predicted = parse(f"\\boxed{{{answer}}}", parsing_timeout=timeout)
        return bool(predicted) and bool(verify(gold, predicted, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001 - a grader failure is a wrong answer, never a crash
        return False


# --- the env --------------------------------------------------------------------------------
class MathEnv(TextEnv):
    """Math problems with a sandboxed Python tool; reward from math-verify."""

    rl_defaults = {"max_turns": 4, "max_new_tokens": 48, "max_episode_tokens": 1024, "context": "full"}
    """rl-train's episode shape (``regym.rl.config.resolve_config``): the expert answers in 2 turns (a tool
    call, then the answer), in replies of up to 24 tokens; 4 turns leave room for a failed call."""
    client_options = {**TextEnv.client_options, "families": ClientOption(list, nullable=True),
                      "signed_reward": ClientOption(bool), "tool_output_chars": ClientOption(int, 1, 16_000)}
    """The problems and reward shape are the client's; ``dataset`` and its columns (host files) and
    ``sandbox`` (a backend) are the operator's."""
    lazy_imports = ("reasoning_gym", "math_verify")

    def __init__(
        self,
        split: str = "in_distribution",
        max_turns: int = 6,
        invalid_action_penalty: float = 0.0,
        render_mode: str | None = None,
        *,
        families: tuple[str, ...] | list[str] | None = None,
        dataset: str | None = None,
        question_column: str = "question",
        answer_column: str = "answer",
        dataset_split: str | None = None,
        signed_reward: bool = False,
        sandbox: Sandbox | str | None = None,
        tool_output_chars: int = 4000,
    ):
        """``dataset``: a local dataset path; it then replaces the procedural problems
        for every split. ``sandbox``: a Sandbox, a backend name ("local"/"docker"), or
        None for the process-wide shared local sandbox (one warm pool for all envs)."""
        super().__init__(split=split, max_turns=max_turns, invalid_action_penalty=invalid_action_penalty,
                         render_mode=render_mode)
        if dataset is not None:
            self.problems = DatasetProblems(dataset, question_column, answer_column, dataset_split)
        else:
            self.problems = ReasoningGymProblems(self.split, tuple(families) if families else None)
        self.signed_reward = signed_reward
        self.tool_output_chars = tool_output_chars
        self._sandbox_spec = sandbox
        self._sandbox: Sandbox | None = sandbox if not isinstance(sandbox, str | None) else None
        self._owns_sandbox = isinstance(sandbox, str)
        self.problem: Problem | None = None
        self.tool_calls = 0

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
        return Outcome(f"{INSTRUCTIONS}\n\nProblem: {self.problem.question}", info=self._extras())

    def parse(self, text: str) -> ParsedAction:
        if not isinstance(text, str):
            return ParsedAction(None, error=f"action must be text, got {type(text).__name__}")
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

    def _extras(self, answer: str | None = None) -> dict[str, Any]:
        if answer is not None or self.problem is None:
            expert = None
        elif self.tool_calls == 0:
            expert = f"<python>\nprint({self.problem.answer!r})\n</python>"
        else:
            expert = f"\\boxed{{{self.problem.answer}}}"
        extras = {
            "tools": [PYTHON_TOOL],
            "task_family": self.problem.family if self.problem else None,
            "tool_calls": self.tool_calls,
            "expert_action": expert,
        }
        if answer is not None:
            extras["answer"] = answer
        return extras

    def close(self) -> None:
        if self._owns_sandbox and self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
        super().close()
