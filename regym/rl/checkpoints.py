"""RL checkpoints: what ``--resume`` needs beyond TRL's own state.

A checkpoint folder is written under a hidden temp name and renamed into place, so a
run killed mid-save leaves the previous checkpoints intact and no half folder that
``--resume`` could pick (models alone are saved by ``regym.checkpoints.save_model``). Besides the model, optimizer, scheduler, RNG and trainer state
(written by ``transformers.Trainer``), each checkpoint holds ``regym_state.json``: the
byte length of every JSONL log at that step, so a resumed run first cuts the logs back
to the checkpoint and then re-plays the lost steps: nothing duplicated, nothing lost.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from regym.paths import atomic_directory

__all__ = ["STATE_FILE", "atomic_directory", "last_checkpoint", "list_checkpoints", "log_offsets",
           "prune_checkpoints", "read_state", "truncate_logs", "write_state"]

STATE_FILE = "regym_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete ``checkpoint-N`` folders, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [path for _, path in sorted(found)]


def last_checkpoint(run_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (keep <= 0 keeps all)."""
    if keep <= 0:
        return
    for path in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def log_offsets(paths: dict[str, Path]) -> dict[str, int]:
    return {name: (path.stat().st_size if path.exists() else 0) for name, path in paths.items()}


def write_state(folder: Path, state: dict[str, Any]) -> None:
    (folder / STATE_FILE).write_text(json.dumps(state, indent=2))


def read_state(folder: Path) -> dict[str, Any]:
    path = Path(folder) / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def truncate_logs(paths: dict[str, Path], offsets: dict[str, int]) -> None:
    """Cut each log back to its length at the checkpoint (a log not in ``offsets`` is emptied)."""
    for name, path in paths.items():
        if path.exists():
            with path.open("r+b") as handle:
                handle.truncate(min(offsets.get(name, 0), path.stat().st_size))
