"""Extracting an env action from a policy's raw text.

Policies answer in many shapes: a bare command ("go north"), ReAct
("Thought: ... Action: go north"), a chat message (JSON with a "content" field),
markdown fences or an ``<action>`` tag. Every env parses with the same function so
that a policy's format never changes what the game sees.

Parsing costs time linear in the text's length: a reply longer than
``MAX_REPLY_CHARS`` is refused before anything reads it, and no pattern here can
backtrack over a run of characters more than once (possessive quantifiers, and
tags found by a single scan), so a hostile reply of spaces, newlines, braces or
repeated tags costs no more than any other reply of its length.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

MAX_ACTION_CHARS = 512
"""Longest action passed to a game; longer text is cut (engines choke on kilobytes)."""

MAX_REPLY_CHARS = 32_768
"""Longest reply any env reads (about 8k tokens): longer replies are an invalid action, unread.

Parsing is linear, so the cap bounds a step's cost (a few ms at the cap); it is set
well above what a policy writes in one turn, tool-call JSON and code included."""

# Possessive quantifiers (``*+``) never give back what they matched: with plain ``\s*``
# a line of spaces made these patterns backtrack quadratically (32 KB: a minute).
_ACTION_LINE = re.compile(
    r"^\s*+(?:\**+\s*+)?(?:action|command|act)\s*+(?:\d++\s*+)?\**+\s*+[:：]\s*+(.*)$", re.IGNORECASE
)
_THOUGHT_LINE = re.compile(r"^\s*+(?:\**+\s*+)?(?:thought|think|reasoning)\s*+\**+\s*+[:：]", re.IGNORECASE)
_ACTION_TAG = re.compile(r"<(/?)action>", re.IGNORECASE)
_FENCE = re.compile(r"```[a-zA-Z]*+\n?(.*?)```", re.DOTALL)
_PROMPT_MARK = re.compile(r"^\s*+>++\s*+")


@dataclass(frozen=True)
class ParsedAction:
    """The action found in a policy's text, or why none was found."""

    action: str | None
    thought: str | None = None
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.action is not None


def reply_length_error(text: object, max_chars: int = MAX_REPLY_CHARS) -> str | None:
    """Why ``text`` is refused unread (longer than ``max_chars``), or None when it may be parsed."""
    if isinstance(text, str) and len(text) > max_chars:
        return f"reply too long: {len(text):,} characters, over the limit of {max_chars:,}; it was not read"
    return None


def clean_text(text: str) -> str:
    """Drop control and format characters (keep newlines and tabs) so engines never see them."""
    if text.replace("\n", " ").replace("\t", " ").isprintable():  # no category-C character: the common case
        return text
    return "".join(char for char in text if char in "\n\t" or unicodedata.category(char)[0] != "C")


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


def _last_tagged(text: str) -> str | None:
    """Content of the last ``<action>...</action>``, in one scan (a lazy ``<action>(.*?)</action>``
    rescans to the end from every unclosed tag: quadratic)."""
    last, opened_at = None, None
    for tag in _ACTION_TAG.finditer(text):
        if not tag.group(1):
            if opened_at is None:
                opened_at = tag.end()
        elif opened_at is not None:
            last, opened_at = text[opened_at:tag.start()], None
    return last


def parse_action(text: object, max_chars: int = MAX_ACTION_CHARS) -> ParsedAction:
    """Extract one action from ``text``; never raises.

    Order: ``<action>`` tag, then the last "Action:" line of a ReAct answer, then the
    first non-empty, non-thought line. The result is single-line, stripped of control
    characters and cut to ``max_chars``. Text over ``MAX_REPLY_CHARS`` is refused unread.
    """
    if not isinstance(text, str):
        return ParsedAction(None, error=f"action must be text, got {type(text).__name__}")
    too_long = reply_length_error(text)
    if too_long is not None:
        return ParsedAction(None, error=too_long)
    text = clean_text(_from_chat_message(text))
    thought = None

    tagged = _last_tagged(text)
    if tagged is not None:
        candidate = tagged
    else:
        fenced = _FENCE.findall(text)
        if fenced and not _ACTION_LINE.match(text):
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
