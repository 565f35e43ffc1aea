"""Where the Math env's problems come from.

* ``ReasoningGymProblems``: procedural generators of ``reasoning-gym`` at fixed seeds.
  The in-distribution split is a set of arithmetic/algebra families; the
  out-of-distribution split is made of *different* task families (word problems,
  counting, probability, sequences, geometry, polynomial algebra), so that a policy
  trained on the first is tested on skills it never practised. Item ``i`` of a family
  is a pure function of (family, split seed, ``i``).
* ``DatasetProblems``: any local ``datasets`` dataset with question/answer columns
  (a ``save_to_disk`` folder, or a JSON/JSONL/Parquet/CSV file), e.g. a GSM8K copy.

Task ids: ``math-id-<family>-<index>``, ``math-ood-<family>-<index>``, ``math-data-<index>``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
_DATA_TASK_ID = re.compile(r"^math-data-(\d+)$")


@dataclass(frozen=True)
class Problem:
    task_id: str
    question: str
    answer: str
    family: str


@functools.lru_cache(maxsize=64)
def _generator(family: str, seed: int):
    """A reasoning-gym dataset, built once per (family, seed); items are generated on access."""
    import reasoning_gym

    return reasoning_gym.create_dataset(family, size=PROBLEMS_PER_FAMILY, seed=seed)


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
        match = _TASK_ID.match(task_id)
        if not match:
            raise ValueError(f"bad Math task id {task_id!r}; expected math-<id|ood>-<family>-<index>")
        tag, family, index = match.group(1), match.group(2), int(match.group(3))
        if family not in known_families():
            raise ValueError(f"unknown reasoning-gym family {family!r} in task id {task_id!r}")
        if index >= PROBLEMS_PER_FAMILY:
            raise ValueError(f"task index {index} out of range (< {PROBLEMS_PER_FAMILY})")
        entry = _generator(family, SPLIT_SEEDS[tag])[index]
        return Problem(task_id, str(entry["question"]), str(entry["answer"]), family)


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
