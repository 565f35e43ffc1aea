"""Reading a policy's answer and grading it: the last ``\\boxed{}``, an 'Answer:' line, the last number.

Shared by both modes of ``regym/Math-v0`` and by the worked solutions. Every pattern here
runs in linear time on any text (replies are capped, but an attacker may send the cap).
"""

from __future__ import annotations

import re
import threading

MAX_ANSWER_CHARS = 300
EXTRACTIONS = ("flexible", "boxed")
"""How a single-turn reply's answer is found: ``boxed`` reads only a ``\\boxed{}`` (TRL's ``accuracy_reward``
and the paper's boxed-answer reward); ``flexible`` then falls back to an 'Answer:' line and to the reply's
last number (lm-evaluation-harness's "flexible-extract" for GSM8K)."""

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




# A minus sign belongs to the number only where it cannot be an operator (not after a word or ")"):
# "10-3" ends with 3, "x = -5" with -5. Thousands separators only in groups of three ("3,18" is two numbers).
_NUMBER = re.compile(r"(?:(?<![\w)])-)?(?:\d{1,3}(?:,\d{3})++|\d++)(?:\.\d++)?(?:/\d++)?")


def last_number(text: str) -> str | None:
    """The last number in ``text`` (an integer, decimal or ``p/q``), thousands separators removed."""
    found = None
    for found in _NUMBER.finditer(text):  # noqa: B007 - keep the last match
        pass
    return found.group().replace(",", "") if found else None


def extract_answer(text: str, extraction: str = "flexible") -> tuple[str | None, str | None]:
    """``(answer, where it was found)``: ``"boxed"``, ``"answer line"``, ``"last number"``, or ``(None, None)``."""
    if extraction not in EXTRACTIONS:
        raise ValueError(f"extraction must be one of {EXTRACTIONS}, not {extraction!r}")
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip(), "boxed"
    if extraction == "boxed":
        return None, None
    answer = answer_in(text)
    if answer is not None:
        return answer, "answer line"
    number = last_number(text)
    return (number, "last number") if number is not None else (None, None)
