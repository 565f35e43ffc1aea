"""The lab's ledger: one small, committed result file per finished job, so no measurement is lost.

A long lab run on a machine that stops without warning must resume at job granularity, even on a
fresh machine whose working folder is empty. Each job (a ladder measurement, an arm's pre-RL
evaluation, an RL run, the SFT ladder, the rejuvenated starts) is named by a key and fixed by its
settings; when it finishes, its result and its small files (summaries, metrics, per-episode
outcomes: never checkpoints or trajectories) are written to ``<folder>/<key>.json`` and, with
``commit``, committed to git at once. A rerun reads the ledger first: a job recorded with the same
settings is not run again (its small files are put back where the report reads them); one recorded
with other settings stops the lab, naming what differs, because mixing designs in one report would
mislead. Checkpoints are not stored: a lost one is rebuilt from its seed and checked against the
SHA-256 the ledger recorded (``checkpoint_digest``).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regym.cache import SettingsMismatch, differing, read_stamp, write_text

SMALL_FILE_BYTES = 512 * 1024
"""Files up to this size are kept with a job's result (summaries, metrics rows, per-episode outcomes)."""
SKIPPED_NAMES = ("trajectories.jsonl", "events.out.tfevents")
"""Large or binary files never kept (episode texts, TensorBoard event files)."""


class LedgerMismatch(SettingsMismatch, RuntimeError):
    """A job is recorded in the ledger with other settings than this run's."""


@dataclass
class Ledger:
    """Committed job results under ``folder``; ``out`` is the lab's working folder (paths are stored
    relative to it, and ``aliases`` replace machine-specific paths such as the base model's cache folder)."""

    folder: Path
    out: Path
    commit: bool = False
    aliases: dict[str, str] = field(default_factory=dict)
    stamp: dict[str, Any] = field(default_factory=dict)
    """Settings every job shares but no job names (the CPU numerics path): merged into each job's."""

    def __post_init__(self):
        self.folder, self.out = Path(self.folder), Path(self.out)

    # --- settings -----------------------------------------------------------------------------
    def portable(self, value: Any) -> Any:
        """``value`` with the working folder and every alias written as a name (``<out>``, ``<base>``), so
        the same job has the same settings on any machine."""
        if isinstance(value, Mapping):
            return {str(key): self.portable(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.portable(item) for item in value]
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, str):
            for path, name in sorted({**self.aliases, str(self.out.resolve()): "<out>", str(self.out): "<out>"}.items(),
                                     key=lambda pair: -len(pair[0])):
                if path and value.startswith(path):
                    return name + value[len(path):]
        return value

    def path(self, key: str) -> Path:
        return self.folder / f"{key.replace('/', '__')}.json"

    # --- read ---------------------------------------------------------------------------------
    def lookup(self, key: str, settings: Mapping[str, Any]) -> dict[str, Any] | None:
        """The recorded result of ``key`` (its small files restored under ``out``), None when not recorded;
        ``LedgerMismatch`` when recorded with other settings."""
        path = self.path(key)
        entry = read_stamp(path)
        if entry is None:
            return None
        changed = differing(entry["settings"], self.portable({**settings, **self.stamp}))
        if changed:
            raise LedgerMismatch(f"lab job {key!r} is recorded in {path} with other settings ({', '.join(changed)}): "
                                 "this run's design differs from the recorded one. Use another results folder "
                                 "(--results), or delete that file to rerun the job.")
        for relative, text in entry.get("files", {}).items():
            target = self.out / relative
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                write_text(target, text)
        return entry["result"]

    # --- write --------------------------------------------------------------------------------
    def record(self, key: str, settings: Mapping[str, Any], result: Any, files: Iterable[Path] = (),
               seconds: float | None = None) -> Path:
        """Write ``key``'s entry (atomically) and, with ``commit``, commit that one file."""
        kept = {}
        for file in sorted(set(files)):
            file = Path(file)
            if file.is_file() and file.stat().st_size <= SMALL_FILE_BYTES and \
                    not any(file.name.startswith(name) for name in SKIPPED_NAMES):
                kept[str(file.resolve().relative_to(self.out.resolve()))] = file.read_text()
        entry = {"key": key, "settings": self.portable({**settings, **self.stamp}), "result": self.portable(result),
                 "seconds": None if seconds is None else round(seconds, 1), "files": kept}
        path = self.path(key)
        write_text(path, json.dumps(entry, indent=1, default=str) + "\n")
        if self.commit:
            commit_file(path, f"lab results: {key}")
        return path


def small_files(folder: Path) -> list[Path]:
    """The JSON/JSONL files of a run folder worth keeping (not inside checkpoints)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [path for path in folder.rglob("*") if path.suffix in (".json", ".jsonl") and path.is_file()
            and not any(part.startswith("checkpoint-") or part in ("model", "final") for part in
                        path.relative_to(folder).parts[:-1])]


def checkpoint_digest(folder: Path) -> str:
    """SHA-256 over a checkpoint's weight files (names and bytes), to check a rebuilt one is bit-identical."""
    digest = hashlib.sha256()
    files = sorted(Path(folder).glob("*.safetensors")) or sorted(Path(folder).glob("*.bin"))
    if not files:
        raise FileNotFoundError(f"no weight files in {folder}")
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def commit_file(path: Path, message: str, attempts: int = 5) -> bool:
    """``git commit`` of this one file only (other staged changes stay staged); False outside a repository.
    Retried a few times when another git command holds the index lock."""
    path = Path(path).resolve()
    cwd = path.parent
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=cwd, capture_output=True, text=True)
    if inside.returncode != 0:
        return False
    error = ""
    for attempt in range(attempts):
        added = subprocess.run(["git", "add", "--", str(path)], cwd=cwd, capture_output=True, text=True)
        error = added.stderr
        if added.returncode == 0:
            done = subprocess.run(["git", "commit", "-q", "-m", message, "--only", "--", str(path)], cwd=cwd,
                                  capture_output=True, text=True)
            error = done.stdout + done.stderr
            if done.returncode == 0 or "nothing to commit" in error or "no changes added" in error:
                return True
        time.sleep(1 + attempt)
    raise RuntimeError(f"could not commit {path}: {error.strip()}")
