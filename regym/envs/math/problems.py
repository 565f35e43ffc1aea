"""Where the Math env's problems come from.

* ``ReasoningGymProblems``: procedural generators of ``reasoning-gym`` at fixed seeds.
  The in-distribution split is a set of arithmetic/algebra families; the
  out-of-distribution split is made of *different* task families (word problems,
  counting, probability, sequences, geometry, polynomial algebra), so that a policy
  trained on the first is tested on skills it never practised. Item ``i`` of a family
  is a pure function of (family, split seed, ``i``).
* ``DatasetProblems``: any local ``datasets`` dataset with question/answer columns
  (a ``save_to_disk`` folder, or a JSON/JSONL/Parquet/CSV file), e.g. a GSM8K copy.

* ``LevelProblems``: the same generators at the fixed settings of named difficulty levels
  (``regym.envs.math.levels``); item ``i`` of a level is a pure function of (level, its seed, ``i``).

Task ids: ``math-id-<family>-<index>``, ``math-ood-<family>-<index>``, ``math-<level>-<index>``
(e.g. ``math-chain_sum.2-000042``), ``math-data-<index>``. Any procedural task id rebuilds its
problem whichever split or levels the env was made with.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from regym.envs.math.levels import get_level

ID_FAMILIES = (
    "basic_arithmetic",
    "chain_sum",
    "decimal_chain_sum",
    "fraction_simplification",
    "simple_equations",
    "gcd",
    "lcm",
    "products",
)
OOD_FAMILIES = (
    "gsm_symbolic",
    "count_primes",
    "count_bits",
    "leg_counting",
    "dice",
    "number_sequence",
    "simple_geometry",
    "polynomial_multiplication",
)
SPLIT_FAMILIES = {"in_distribution": ID_FAMILIES, "out_of_distribution": OOD_FAMILIES}
SPLIT_TAGS = {"in_distribution": "id", "out_of_distribution": "ood"}
SPLIT_SEEDS = {"id": 20_251, "ood": 20_252}
PROBLEMS_PER_FAMILY = 100_000
_TASK_ID = re.compile(r"^math-(id|ood)-([a-z0-9_]+)-(\d+)$")
_LEVEL_TASK_ID = re.compile(r"^math-([a-z0-9_]+\.\d+)-(\d+)$")
_DATA_TASK_ID = re.compile(r"^math-data-(\d+)$")


@dataclass(frozen=True)
class Problem:
    task_id: str
    question: str
    answer: str
    family: str
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """What reasoning-gym records about the item (its expression, numbers...): worked solutions read it."""
    level: str | None = None


@functools.lru_cache(maxsize=64)
def _generator(family: str, seed: int):
    """A reasoning-gym dataset, built once per (family, seed); items are generated on access."""
    import reasoning_gym

    return reasoning_gym.create_dataset(family, size=PROBLEMS_PER_FAMILY, seed=seed)


@functools.lru_cache(maxsize=64)
def _level_generator(name: str):
    """A level's reasoning-gym dataset (its family at its settings and seed), built once per level."""
    import reasoning_gym

    level = get_level(name)
    return reasoning_gym.create_dataset(level.family, size=PROBLEMS_PER_FAMILY, seed=level.seed,
                                        **dict(level.settings))


def _checked_index(index: int, task_id: str) -> int:
    if index >= PROBLEMS_PER_FAMILY:
        raise ValueError(f"task index {index} out of range (< {PROBLEMS_PER_FAMILY}) in {task_id!r}")
    return index


def procedural_problem(task_id: str) -> Problem:
    """The problem of any procedural task id: ``math-<id|ood>-<family>-<index>`` or ``math-<level>-<index>``."""
    match = _LEVEL_TASK_ID.match(task_id)
    if match:
        level, index = get_level(match.group(1)), _checked_index(int(match.group(2)), task_id)
        entry = _level_generator(level.name)[index]
        return Problem(task_id, str(entry["question"]), str(entry["answer"]), level.family,
                       dict(entry.get("metadata") or {}), level.name)
    match = _TASK_ID.match(task_id)
    if not match:
        raise ValueError(f"bad Math task id {task_id!r}; expected math-<id|ood>-<family>-<index> or "
                         f"math-<level>-<index>")
    tag, family, index = match.group(1), match.group(2), int(match.group(3))
    if family not in known_families():
        raise ValueError(f"unknown reasoning-gym family {family!r} in task id {task_id!r}")
    entry = _generator(family, SPLIT_SEEDS[tag])[_checked_index(index, task_id)]
    return Problem(task_id, str(entry["question"]), str(entry["answer"]), family, dict(entry.get("metadata") or {}))


def known_families() -> list[str]:
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


class ReasoningGymProblems:
    """Procedural problems from fixed-seed reasoning-gym generators."""

    def __init__(self, split: str, families: tuple[str, ...] | None = None):
        self.tag = SPLIT_TAGS[split]
        self.families = tuple(families) if families else SPLIT_FAMILIES[split]
        unknown = sorted(set(self.families) - set(known_families()))
        if unknown:
            raise ValueError(f"unknown reasoning-gym families {unknown}; see reasoning_gym.factory.DATASETS")

    def task_id_for(self, rng: np.random.Generator) -> str:
        family = self.families[int(rng.integers(len(self.families)))]
        return f"math-{self.tag}-{family}-{int(rng.integers(PROBLEMS_PER_FAMILY)):06d}"

    def get(self, task_id: str) -> Problem:
        return procedural_problem(task_id)


class LevelProblems:
    """Procedural problems from named difficulty levels, drawn uniformly over the levels, then over items."""

    def __init__(self, levels: tuple[str, ...]):
        if not levels:
            raise ValueError("levels must name at least one level")
        self.levels = tuple(get_level(name).name for name in levels)
        self.families = tuple(dict.fromkeys(get_level(name).family for name in self.levels))

    def task_id_for(self, rng: np.random.Generator) -> str:
        level = self.levels[int(rng.integers(len(self.levels)))]
        return f"math-{level}-{int(rng.integers(PROBLEMS_PER_FAMILY)):06d}"

    def get(self, task_id: str) -> Problem:
        return procedural_problem(task_id)


def reference_from_text(answer: str) -> str:
    """The final answer in a dataset's answer column (GSM8K writes the working, then ``#### 72``)."""
    answer = str(answer)
    if "####" in answer:
        answer = answer.rsplit("####", 1)[1]
    return answer.strip()


class DatasetProblems:
    """Problems from a local ``datasets`` dataset with question and answer columns."""

    def __init__(self, path: str | Path, question_column: str = "question", answer_column: str = "answer",
                 dataset_split: str | None = None):
        self.path = Path(path).expanduser()
        self.rows = _load_local_dataset(self.path, dataset_split)
        missing = [c for c in (question_column, answer_column) if c not in self.rows.column_names]
        if missing:
            raise ValueError(f"dataset {self.path} has no column(s) {missing}; columns: {self.rows.column_names}")
        if len(self.rows) == 0:
            raise ValueError(f"dataset {self.path} is empty")
        self.question_column, self.answer_column = question_column, answer_column
        self.families = ("data",)

    def task_id_for(self, rng: np.random.Generator) -> str:
        return f"math-data-{int(rng.integers(len(self.rows))):06d}"

    def get(self, task_id: str) -> Problem:
        match = _DATA_TASK_ID.match(task_id)
        if not match:
            raise ValueError(f"bad dataset task id {task_id!r}; expected math-data-<index>")
        index = int(match.group(1))
        if index >= len(self.rows):
            raise ValueError(f"task index {index} out of range: the dataset has {len(self.rows)} rows")
        row = self.rows[index]
        answer = reference_from_text(row[self.answer_column])
        return Problem(task_id, str(row[self.question_column]), answer, "data")


def _load_local_dataset(path: Path, dataset_split: str | None):
    import datasets

    if not path.exists():
        raise ValueError(f"dataset path {path} does not exist (regym loads local datasets only)")
    if path.is_dir() and any((path / name).exists() for name in ("dataset_info.json", "state.json",
                                                                   "dataset_dict.json")):
        loaded = datasets.load_from_disk(str(path))
    else:
        suffix = path.suffix.lower().lstrip(".")
        builder = {"json": "json", "jsonl": "json", "parquet": "parquet", "csv": "csv"}.get(suffix)
        if builder is None:
            raise ValueError(f"cannot load {path}: use a save_to_disk folder or a .json/.jsonl/.parquet/.csv file")
        loaded = datasets.load_dataset(builder, data_files=str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if dataset_split is None:
            dataset_split = "test" if "test" in loaded else next(iter(loaded))
        if dataset_split not in loaded:
            raise ValueError(f"dataset {path} has splits {list(loaded)}, not {dataset_split!r}")
        loaded = loaded[dataset_split]
    return loaded
