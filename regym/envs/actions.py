"""Extracting an env action from a policy's raw text.

Policies answer in many shapes: a bare command ("go north"), ReAct
("Thought: ... Action: go north"), a chat message (JSON with a "content" field),
markdown fences or an ``<action>`` tag. Every env parses with the same function so
that a policy's format never changes what the game sees.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

MAX_ACTION_CHARS = 512
"""Longest action passed to a game; longer text is cut (engines choke on kilobytes)."""

_ACTION_LINE = re.compile(r"^\s*(?:\**\s*)?(?:action|command|act)\s*(?:\d+\s*)?\**\s*[:：]\s*(.*)$", re.IGNORECASE)
_THOUGHT_LINE = re.compile(r"^\s*(?:\**\s*)?(?:thought|think|reasoning)\s*\**\s*[:：]", re.IGNORECASE)
_ACTION_TAG = re.compile(r"<action>(.*?)</action>", re.IGNORECASE | re.DOTALL)
_FENCE = re.compile(r"```[a-zA-Z]*\n?(.*?)```", re.DOTALL)
_PROMPT_MARK = re.compile(r"^\s*>+\s*")


@dataclass(frozen=True)
class ParsedAction:
    """The action found in a policy's text, or why none was found."""

    action: str | None
    thought: str | None = None
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.action is not None


def clean_text(text: str) -> str:
    """Drop control and format characters (keep newlines and tabs) so engines never see them."""
    out = []
    for char in text:
        if char in "\n\t":
            out.append(char)
        elif unicodedata.category(char)[0] == "C":
            continue
        else:
            out.append(char)
    return "".join(out)


def _from_chat_message(text: str) -> str:
    """If the text is a JSON chat message ({"role": ..., "content": ...}), return its content."""
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return text
    try:
        message = json.loads(stripped)
    except (json.JSONDecodeError, RecursionError):
        return text
    if isinstance(message, dict):
        for key in ("content", "action", "text"):
            if isinstance(message.get(key), str):
                return message[key]
    return text


def parse_action(text: object, max_chars: int = MAX_ACTION_CHARS) -> ParsedAction:
    """Extract one action from ``text``; never raises.

    Order: ``<action>`` tag, then the last "Action:" line of a ReAct answer, then the
    first non-empty, non-thought line. The result is single-line, stripped of control
    characters and cut to ``max_chars``.
    """
    if not isinstance(text, str):
        return ParsedAction(None, error=f"action must be text, got {type(text).__name__}")
    text = clean_text(_from_chat_message(text))
    thought = None

    tagged = _ACTION_TAG.findall(text)
    if tagged:
        candidate = tagged[-1]
    else:
        fenced = _FENCE.findall(text)
        if fenced and not _ACTION_LINE.search(text):
            text = fenced[-1]
        lines = [line for line in text.splitlines() if line.strip()]
        action_lines = [i for i, line in enumerate(lines) if _ACTION_LINE.match(line)]
        if action_lines:
            index = action_lines[-1]
            candidate = _ACTION_LINE.match(lines[index]).group(1)
            if not candidate.strip() and index + 1 < len(lines):
                candidate = lines[index + 1]
            thought_text = "\n".join(lines[:index]).strip()
            thought = _THOUGHT_LINE.sub("", thought_text, count=1).strip() or None
        else:
            plain = [line for line in lines if not _THOUGHT_LINE.match(line)]
            candidate = plain[0] if plain else ""
            if len(plain) < len(lines):
                thought = "\n".join(line for line in lines if _THOUGHT_LINE.match(line)) or None

    action = candidate.strip().splitlines()[0] if candidate.strip() else ""
    action = _PROMPT_MARK.sub("", action).strip().strip("`*\"'").strip()
    action = " ".join(action.split())[:max_chars].strip()
    if not action:
        return ParsedAction(None, thought=thought, error="empty action")
    return ParsedAction(action, thought=thought)
