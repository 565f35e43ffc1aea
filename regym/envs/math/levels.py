"""Difficulty levels of the Math env: named, frozen reasoning-gym generator settings.

A level is one reasoning-gym family at fixed settings (the fields of that family's config
dataclass, e.g. ``ChainSumConfig.min_terms``) and a seed of its own; item ``i`` of a level is
a pure function of (level, seed, ``i``), and its task id ``math-<level>-<index>`` (e.g.
``math-chain_sum.2-000042``) names the level, so a task id alone rebuilds the problem.
Levels are numbered within a family from the easiest, as SmolLM2-135M-Instruct measured them.

The ``smollm2_*`` splits map the usual three splits onto levels, calibrated on
SmolLM2-135M-Instruct zero-shot greedy in single-turn mode (``benchmarks/math_levels.py``,
table in ``docs/math.md``): ID = levels where it sits at 15-60 %, near-OOD = harder settings
of the ID families, far-OOD = other families. Changing a level's settings or seed changes
its problems: add a new level instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from regym.envs.levels import find_level

LEVEL_SEED_SPACING = 1_000_000
"""Levels' seeds are multiples of this, so that no two levels share a random stream: reasoning-gym seeds item
``i`` with ``seed + i``, and a level has fewer items than this."""


@dataclass(frozen=True)
class Level:
    """One reasoning-gym family at fixed generator settings."""

    name: str
    """``<family>.<n>``, n = 1 for the family's easiest level."""
    family: str
    """The reasoning-gym dataset name (``reasoning_gym.factory.DATASETS``)."""
    settings: Mapping[str, Any]
    """Keyword arguments of the family's config dataclass (read-only)."""
    seed: int
    """The generator's seed: a multiple of ``LEVEL_SEED_SPACING``, unique to this level."""
    description: str
    """What the level asks, in words."""


def _level(name: str, description: str, seed_slot: int, **settings: Any) -> Level:
    return Level(name, name.split(".", 1)[0], MappingProxyType(settings), seed_slot * LEVEL_SEED_SPACING,
                 description)


_ADD_SUB_MUL = {"operators": ("+", "-", "*"), "allow_parentheses": False, "allow_negation": False}
"""Only with 2 terms: without parentheses reasoning-gym 0.1.19 computes left to right (``8 - 1 * 10`` = 70)."""

LEVELS: dict[str, Level] = {level.name: level for level in (
    _level("chain_sum.1", "2 terms of 1 digit, + or -", 101, min_terms=2, max_terms=2, min_digits=1, max_digits=1),
    _level("chain_sum.2", "2 terms of up to 2 digits, + or -", 102,
           min_terms=2, max_terms=2, min_digits=1, max_digits=2),
    _level("chain_sum.3", "2 terms of up to 2 digits, either sign, + or -", 106,
           min_terms=2, max_terms=2, min_digits=1, max_digits=2, allow_negation=True),
    _level("chain_sum.4", "3 terms of 1 digit, + or -", 103, min_terms=3, max_terms=3, min_digits=1, max_digits=1),
    _level("chain_sum.5", "3 terms of up to 2 digits, + or -", 104,
           min_terms=3, max_terms=3, min_digits=1, max_digits=2),
    _level("chain_sum.6", "2 terms of 3 digits, + or -", 105, min_terms=2, max_terms=2, min_digits=3, max_digits=3),
    _level("chain_sum.7", "3 terms of 2 digits, + or -", 107, min_terms=3, max_terms=3, min_digits=2, max_digits=2),
    _level("chain_sum.8", "4 terms of up to 2 digits, + or -", 108,
           min_terms=4, max_terms=4, min_digits=1, max_digits=2),
    _level("products.1", "2 factors of 1 digit", 111, min_terms=2, max_terms=2, min_digits=1, max_digits=1),
    _level("products.2", "2 factors of 1 digit, either sign", 112,
           min_terms=2, max_terms=2, min_digits=1, max_digits=1, allow_negation=True),
    _level("products.3", "3 factors of 1 digit", 113, min_terms=3, max_terms=3, min_digits=1, max_digits=1),
    _level("products.4", "2 factors of 2 digits", 114, min_terms=2, max_terms=2, min_digits=2, max_digits=2),
    _level("products.5", "2 factors of up to 2 digits (both 1 digit or both 2 digits)", 115,
           min_terms=2, max_terms=2, min_digits=1, max_digits=2),
    _level("basic_arithmetic.1", "2 terms of 0-10, +, - or *", 121,
           min_terms=2, max_terms=2, min_digits=1, max_digits=1, **_ADD_SUB_MUL),
    _level("basic_arithmetic.2", "3 terms of 1 digit, +, - or *, with parentheses and negative numbers", 122,
           min_terms=3, max_terms=3, min_digits=1, max_digits=1, operators=("+", "-", "*")),
    _level("simple_equations.1", "a*x + b = c with a, b up to 10", 131,
           min_terms=2, max_terms=2, min_value=1, max_value=10),
    _level("gcd.1", "gcd of two numbers up to 20", 141, min_value=1, max_value=20),
    _level("lcm.1", "lcm of two numbers up to 10", 151, min_value=1, max_value=10),
    _level("fraction_simplification.1", "reduce p/q (p, q up to 10) multiplied by 2-5 on top and bottom", 161,
           min_value=1, max_value=10, min_factor=2, max_factor=5, styles=("plain",)),
    _level("decimal_chain_sum.1", "2 terms of 1 digit and 1 decimal place, + or -", 171,
           min_terms=2, max_terms=2, min_digits=1, max_digits=1, min_decimal_places=1, max_decimal_places=1),
    _level("count_bits.1", "ones in the binary form of a number up to 15", 181, min_n=1, max_n=15),
    _level("leg_counting.1", "legs of 1-2 kinds of animals, 1-3 of each", 191,
           min_animals=1, max_animals=2, min_instances=1, max_instances=3),
)}

LEVEL_SPLITS: dict[str, tuple[str, ...]] = {
    "smollm2_id": ("chain_sum.2", "products.2"),
    "smollm2_near": ("chain_sum.3", "chain_sum.4", "products.3"),
    "smollm2_far": ("gcd.1", "lcm.1", "fraction_simplification.1"),
    "smollm2_sft_id": ("chain_sum.5", "products.5"),
    "smollm2_sft_near": ("chain_sum.8", "products.3"),
    "smollm2_sft_far": ("gcd.1", "lcm.1", "fraction_simplification.1"),
}
"""The splits of the SmolLM2 math suite (issue 26): ID levels where SmolLM2-135M-Instruct sits at 15-60 %
zero-shot, near-OOD = harder settings of the same families (either sign, more terms), far-OOD = other
families (docs/math.md). The ``smollm2_sft_*`` splits are calibrated on SmolLM2 *after* SFT (the lab's second
exploration): ID levels where 2 epochs of SFT on 64 of their worked solutions leave it at 15-60 % greedy, so RL
has room above the moderate start (on ``smollm2_id`` 2 epochs of SFT reached 0.875, 4 epochs 1.000)."""

LEVEL_SETS: dict[str, dict[str, str]] = {
    "smollm2": {"in_distribution": "smollm2_id", "near_out_of_distribution": "smollm2_near",
                "out_of_distribution": "smollm2_far"},
    "smollm2_sft": {"in_distribution": "smollm2_sft_id", "near_out_of_distribution": "smollm2_sft_near",
                    "out_of_distribution": "smollm2_sft_far"},
}
"""Named maps of the three usual splits onto level-based splits: with ``level_set="smollm2"`` the Math env's
``in_distribution`` is ``smollm2_id``, and so on, so that code written for the usual split names (the lab,
rl-train's evaluations, eval suites) plays a level suite unchanged."""

def get_level(name: str) -> Level:
    """A level by name, or a ValueError listing the known ones."""
    return find_level(LEVELS, name, "Math")


def split_levels(split: str, level_set: str | None = None) -> tuple[str, ...] | None:
    """The levels of a level-based split (``smollm2_id``..., or a usual split name under ``level_set``), or
    None for a split of families."""
    if level_set is not None:
        if level_set not in LEVEL_SETS:
            raise ValueError(f"unknown Math level set {level_set!r}; known: {', '.join(LEVEL_SETS)}")
        split = LEVEL_SETS[level_set].get(split, split)
    return LEVEL_SPLITS.get(split)
