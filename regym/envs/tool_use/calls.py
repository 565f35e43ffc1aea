"""Reading tool calls and final answers out of a policy's raw text.

Accepted shapes of a tool call (anywhere in the text, prose around it is ignored):

* ``{"name": "calculate", "arguments": {"expression": "2 + 2"}}``; ``arguments`` may
  also be a JSON *string* (as OpenAI sends it) and ``parameters`` is read as an alias;
* a JSON list of such objects (several calls in one turn);
* OpenAI's message shape ``{"tool_calls": [{"type": "function", "function":
  {"name": ..., "arguments": "..."}}]}`` (or a bare ``{"function": {...}}``);
* Qwen/Hermes tags ``<tool_call>{...}</tool_call>`` (one tag per call);
* the same JSON inside a markdown code fence.

A final answer is a line ``Answer: ...`` or a call to the ``final_answer`` tool
(``{"name": "final_answer", "arguments": {"answer": "..."}}``). When a text holds
both tool calls and an answer, the calls run and the answer is ignored, so a policy
never ends an episode by accident while it is still calling tools.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from regym.envs.actions import reply_length_error

FINAL_ANSWER_TOOL = "final_answer"
MAX_CALLS_SCANNED = 16
MAX_JSON_STARTS = 64

# Every pattern runs in time linear in the text: only [ \t] inside a line (\s would span blank
# lines), and possessive quantifiers (*+) where two runs meet, so no run is backtracked over.
_TOOL_CALL_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```(?:json|tool_call|javascript)?\s*+(.*?)```", re.DOTALL | re.IGNORECASE)
_ANSWER_LINE = re.compile(r"^[ \t*#>]*+(?:final[ \t]++)?answer[ \t]*+\**+[ \t]*+[:：=][ \t]*+(.*)$",
                          re.IGNORECASE | re.MULTILINE)
_ANSWER_TAG = re.compile(r"<(/?)answer>", re.IGNORECASE)
_LOOKS_LIKE_CALL = re.compile(r"[{\[]\s*+\"?(?:name|tool_calls|function|arguments)\b", re.IGNORECASE)
_JSON_START = re.compile(r"[{\[]")

CALL_FORMAT_HINT = (
    'Call a tool as JSON: {"name": "<tool name>", "arguments": {<argument>: <value>, ...}} '
    '(or <tool_call>{...}</tool_call>); give the final answer as a line "Answer: <value>".'
)


@dataclass
class ToolCall:
    """One requested call; ``error`` is set when the request itself is malformed."""

    name: str | None
    arguments: dict[str, Any] | None
    error: str | None = None
    call_id: str | None = None

    @property
    def valid(self) -> bool:
        return self.error is None


@dataclass
class ParsedTurn:
    """Everything found in one action text."""

    calls: list[ToolCall] = field(default_factory=list)
    answer: str | None = None
    error: str | None = None  # nothing usable was found, and why


def parse_turn(text: str) -> ParsedTurn:
    """Find the tool calls and final answer in ``text``; never raises."""
    try:
        return _parse_turn(text)
    except (RecursionError, MemoryError, ValueError, TypeError) as error:
        return ParsedTurn(error=f"could not read the action ({type(error).__name__}). {CALL_FORMAT_HINT}")


def _parse_turn(text: str) -> ParsedTurn:
    if not isinstance(text, str):
        return ParsedTurn(error=f"the action must be text, got {type(text).__name__}. {CALL_FORMAT_HINT}")
    too_long = reply_length_error(text)
    if too_long is not None:
        return ParsedTurn(error=too_long)
    if not text.strip():
        return ParsedTurn(error=f"empty action. {CALL_FORMAT_HINT}")

    calls: list[ToolCall] = []
    json_error: str | None = None
    tagged = _TOOL_CALL_TAG.findall(text)
    if tagged:
        for body in tagged[:MAX_CALLS_SCANNED]:
            value, error = _load_json(_strip_fence(body))
            calls.extend(_calls_from(value) if error is None else [ToolCall(None, None, f"malformed JSON in "
                                                                             f"<tool_call>: {error}")])
    else:
        for candidate in [*islice(_fenced(text), MAX_CALLS_SCANNED), text]:
            value, error = _first_call_json(candidate)
            if value is not None:
                calls = _calls_from(value)
                break
            json_error = json_error or error

    answer = _final_answer(text)
    calls, answers = _split_answer_calls(calls)
    if answer is None and answers:
        answer = answers[-1]
    if calls or answer is not None:
        return ParsedTurn(calls=calls[:MAX_CALLS_SCANNED], answer=answer)
    if json_error is not None:
        return ParsedTurn(calls=[ToolCall(None, None, f"malformed JSON: {json_error}")])
    return ParsedTurn(error=f"no tool call or final answer found. {CALL_FORMAT_HINT}")


def _fenced(text: str):
    return (match.group(1) for match in _FENCE.finditer(text))


def _strip_fence(text: str) -> str:
    return next(_fenced(text), text)


def _load_json(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text.strip()), None
    except json.JSONDecodeError as error:
        return None, f"{error.msg} at line {error.lineno} column {error.colno}"
    except RecursionError:
        return None, "nested too deeply"


def _first_call_json(text: str) -> tuple[Any, str | None]:
    """The first JSON value in ``text`` that looks like a tool call, or the decode error of the first try."""
    decoder = json.JSONDecoder()
    first_error = None
    for match in islice(_JSON_START.finditer(text), MAX_JSON_STARTS):
        start = match.start()
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError as error:
            if first_error is None and _LOOKS_LIKE_CALL.match(text, start):
                first_error = f"{error.msg} at line {error.lineno} column {error.colno}"
            continue
        except RecursionError:
            first_error = first_error or "nested too deeply"
            continue
        if _looks_like_call(value):
            return value, None
    return None, first_error


def _looks_like_call(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(item, dict) and _looks_like_call(item) for item in value)
    return isinstance(value, dict) and bool({"name", "function", "tool_calls"} & set(value))


def _calls_from(value: Any) -> list[ToolCall]:
    """Normalise any accepted JSON shape to a list of ``ToolCall``."""
    if isinstance(value, list):
        if not value:
            return [ToolCall(None, None, "empty list of tool calls")]
        calls = []
        for item in value[:MAX_CALLS_SCANNED]:
            calls.extend(_calls_from(item))
        return calls
    if not isinstance(value, dict):
        return [ToolCall(None, None, f"a tool call must be a JSON object, got {type(value).__name__}")]
    if "tool_calls" in value:
        inner = value["tool_calls"]
        if not isinstance(inner, list) or not inner:
            return [ToolCall(None, None, '"tool_calls" must be a non-empty list')]
        return _calls_from(inner)
    call_id = value.get("id") if isinstance(value.get("id"), str) else None
    if "function" in value and isinstance(value["function"], dict):
        value = value["function"]
    elif "function" in value and "name" not in value:
        return [ToolCall(None, None, '"function" must be an object {"name": ..., "arguments": ...}')]
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        return [ToolCall(None, None, 'a tool call needs "name": "<tool name>" (a string)', call_id)]
    arguments = value.get("arguments", value.get("parameters", {}))
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        if not arguments.strip():
            arguments = {}
        else:
            arguments, error = _load_json(arguments)
            if error is not None:
                return [ToolCall(name.strip(), None, f"the arguments string is not valid JSON: {error}", call_id)]
    if not isinstance(arguments, dict):
        return [ToolCall(name.strip(), None, f'"arguments" must be a JSON object, got {_json_kind(arguments)}',
                         call_id)]
    return [ToolCall(name.strip(), arguments, call_id=call_id)]


def _json_kind(value: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _split_answer_calls(calls: list[ToolCall]) -> tuple[list[ToolCall], list[str]]:
    """Separate ``final_answer`` calls (answers) from real tool calls."""
    others, answers = [], []
    for call in calls:
        if call.valid and call.name == FINAL_ANSWER_TOOL:
            answer = call.arguments.get("answer") if call.arguments else None
            if isinstance(answer, str | int | float) and not isinstance(answer, bool):
                answers.append(str(answer))
                continue
            call = ToolCall(call.name, call.arguments, 'final_answer needs {"answer": "<value>"}', call.call_id)
        others.append(call)
    if answers and others:
        return others, []
    return others, answers


def _final_answer(text: str) -> str | None:
    latest_open = start = end = None  # the answer is between the last </answer> and the <answer> before it
    for tag in _ANSWER_TAG.finditer(text):
        if tag.group(1):
            start, end = latest_open, tag.start()
        else:
            latest_open = tag.end()
    if start is not None:
        return " ".join(text[start:end].split()) or None
    matches = list(_ANSWER_LINE.finditer(text))
    if not matches:
        return None
    answer = matches[-1].group(1).strip().strip("*`").strip()
    if not answer:  # "Answer:" alone on its line: the answer is the next non-empty line
        following = [line for line in text[matches[-1].end():].splitlines() if line.strip()]
        answer = following[0].strip().strip("*`").strip() if following else ""
    return answer or None
