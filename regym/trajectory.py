"""The one trajectory record used everywhere: rollouts, SFT data, RL batches, eval logs.

A ``Trajectory`` is a list of ``Turn``s (what the env showed, what the policy said,
what it earned). RL rollouts also fill the token view: the whole episode as one
token sequence with a ``loss_mask`` (1 on policy tokens, 0 on prompt and env tokens)
and the behaviour policy's log-probs, so no text is ever re-tokenised for training.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def _jsonable(value: Any) -> Any:
    """Make info values JSON-safe (numpy scalars, tuples, sets, NaN) without losing content."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


@dataclass
class Turn:
    """One policy move: the observation it saw, the text it produced, and what followed."""

    observation: str
    action: str
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trajectory:
    """One episode of one task, with an optional token-level view for training.

    ``observation`` and ``info`` always hold the env's latest output: while the episode
    runs they are what the policy must answer; at the end, the final observation.
    """

    env_id: str
    task_id: str | None
    split: str
    seed: int | None = None
    agent: str = ""
    observation: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    reset_info: dict[str, Any] = field(default_factory=dict)
    turns: list[Turn] = field(default_factory=list)
    error: str | None = None
    group: int = 0
    # Token view (filled by regym.rl.rollout): one sequence for the whole episode.
    token_ids: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    prompt_length: int = 0

    @property
    def total_reward(self) -> float:
        return float(sum(turn.reward for turn in self.turns))

    @property
    def success(self) -> bool:
        if self.error is not None or not self.turns:
            return False
        return bool(self.turns[-1].info.get("success", self.turns[-1].info.get("won", False)))

    @property
    def num_turns(self) -> int:
        return len(self.turns)

    @property
    def done(self) -> bool:
        if self.error is not None:
            return True
        return bool(self.turns) and (self.turns[-1].terminated or self.turns[-1].truncated)

    @property
    def invalid_actions(self) -> int:
        return sum(bool(turn.info.get("invalid_action")) for turn in self.turns)

    def record(self, action: str, observation: str, reward: float, terminated: bool, truncated: bool,
               info: dict[str, Any]) -> Turn:
        """Append the turn the policy just played and move the current observation on."""
        turn = Turn(self.observation, action, float(reward), bool(terminated), bool(truncated), info)
        self.turns.append(turn)
        self.observation, self.info = observation, info
        return turn

    def messages(self, system_prompt: str | None = None) -> list[dict[str, str]]:
        """The episode as chat messages: env text as "user", policy text as "assistant"."""
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        for turn in self.turns:
            messages.append({"role": "user", "content": turn.observation})
            messages.append({"role": "assistant", "content": turn.action})
        return messages

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total_reward"] = self.total_reward
        data["success"] = self.success
        return _jsonable(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        data = dict(data)
        data.pop("total_reward", None)
        data.pop("success", None)
        turns = [Turn(**turn) for turn in data.pop("turns", [])]
        return cls(turns=turns, **data)


def save_jsonl(trajectories: Iterable[Trajectory], path: str | Path, append: bool = False) -> Path:
    """Write trajectories one JSON object per line (append for resumable logs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w", encoding="utf-8") as handle:
        for trajectory in trajectories:
            handle.write(json.dumps(trajectory.to_dict(), ensure_ascii=False) + "\n")
    return path


class CorruptLogError(ValueError):
    """A JSONL log has an unreadable line that is not a torn last line."""


def read_jsonl(path: str | Path, *, repair: bool = False, torn_tail: bool = True,
               numbered: bool = False) -> list[Any]:
    """Every JSON value of a JSONL file, in order; the one JSONL reader of regym (logs, calibration files, lab curves).

    A torn last line (a writer killed mid-line: no final newline, not valid JSON) is
    skipped, and with ``repair`` cut from the file (a whole last record that lost its
    newline gets one) so later appends start on a clean line. Any other unreadable line is damage, not a crash artefact: it raises
    ``CorruptLogError`` naming the file and line rather than silently losing records.
    Files a person wrote (``torn_tail=False``) have no crash artefacts, so an unreadable last line raises too.
    ``numbered`` returns ``(line number, value)`` pairs, for callers that name the line of a bad record.
    A missing file reads as empty.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")  # not splitlines(): JSON strings may hold U+2028
    tail = lines.pop()  # b"" when the file ends with a newline
    values: list[Any] = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            values.append((number, _json_line(path, number, line, torn_tail)))
    if tail.strip():
        if not torn_tail:
            values.append((len(lines) + 1, _json_line(path, len(lines) + 1, tail, torn_tail)))
        else:
            try:
                values.append((len(lines) + 1, json.loads(tail)))
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                if repair:
                    with path.open("r+b") as handle:
                        handle.truncate(len(data) - len(tail))
            else:
                if repair:  # a whole record whose newline was lost: end it, or the next append joins it
                    with path.open("ab") as handle:
                        handle.write(b"\n")
    return values if numbered else [value for _, value in values]


def _json_line(path: Path, number: int, line: bytes, torn_tail: bool) -> Any:
    try:
        return json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        why = "; only a torn last line is skipped, so this file was damaged after it was written" if torn_tail else ""
        raise CorruptLogError(f"{path}, line {number}: not JSON ({error}){why}") from error


def load_jsonl(path: str | Path) -> list[Trajectory]:
    """Read trajectories written by ``save_jsonl`` (``read_jsonl``: a torn last line is skipped)."""
    return [Trajectory.from_dict(record) for record in read_jsonl(path)]
