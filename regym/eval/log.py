"""The eval log: one JSONL line per finished episode, flushed and fsynced line by line.

A killed run loses at most the episodes in flight, and its last line may be torn; the
rerun drops that line (``regym.trajectory.read_jsonl`` with ``repair``), skips every
logged episode and plays the rest. Any other unreadable line is damage, and reading
the log raises ``regym.trajectory.CorruptLogError`` naming the file and line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from regym.eval.episodes import Episode
from regym.trajectory import CorruptLogError, Trajectory, read_jsonl


class TrajectoryLog:
    """An append-only JSONL of finished episodes, durable line by line.

    Opening cuts a torn last line (a writer killed mid-line), so appends start on a
    fresh line; ``records`` holds the episodes already logged, by key.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # ``repair`` cuts a torn last line and ends a whole one that lost its newline.
        self.records = {record["key"]: record for record in read_log(self.path, repair=True)}
        self._handle = self.path.open("a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.records[record["key"]] = record

    def close(self) -> None:
        self._handle.close()


def read_log(path: str | Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """The episode records of a log, in order, the first record of each key.

    A missing file reads as empty and a torn last line is skipped (with ``repair``, cut
    from the file); any other line that is not an episode record raises
    ``CorruptLogError``.
    """
    records: dict[str, dict[str, Any]] = {}
    for record in read_jsonl(path, repair=repair):
        if not isinstance(record, dict) or "key" not in record:
            raise CorruptLogError(f"{path}: a line holds JSON that is not an episode record (no \"key\"): "
                                  f"{json.dumps(record)[:80]}")
        records.setdefault(record["key"], record)
    return list(records.values())


def episode_record(episode: Episode, trajectory: Trajectory, tokens_generated: int = 0) -> dict[str, Any]:
    """One log line: the scores the metrics need, then the full trajectory."""
    return {
        "key": episode.key,
        "env_id": episode.env_id,
        "split": episode.split,
        "task_seed": episode.task_seed,
        "sample": episode.sample,
        "task_index": episode.task_index,
        "task_id": trajectory.task_id,
        "success": trajectory.success,
        "reward": trajectory.total_reward,
        "turns": trajectory.num_turns,
        "invalid_actions": trajectory.invalid_actions,
        "tokens_generated": int(tokens_generated),
        "error": trajectory.error,
        "trajectory": trajectory.to_dict(),
    }


__all__ = ["TrajectoryLog", "episode_record", "read_log"]
