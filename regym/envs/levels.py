"""Difficulty levels shared by the env families: named generator settings and the splits made of them.

A level is one kind of task at fixed generator settings, named ``<kind>.<n>`` with n = 1 for the
kind's easiest (``single_call.1``, ``options.2``, ``house.3``); a harder setting of the same kind
is the next number. A ``LevelTable`` holds a family's levels and maps its usual splits onto them:
in-distribution, near-OOD (harder settings of the ID kinds) and far-OOD (other kinds), so
``regym envs`` and the docs can say which split asks what. Each family reads its own settings
off the table (``ToolUse``: templates and distractor tools; ``WebShop``: how an instruction is
written; ``TextWorld``: world sizes); this module knows nothing of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

LEVEL_NAME = re.compile(r"^[a-z0-9_]+\.\d+$")
"""``<kind>.<n>``: lower-case kind, a dot, the level's number within its kind."""


@dataclass(frozen=True)
class Level:
    """One kind of task at fixed generator settings."""

    name: str
    """``<kind>.<n>``, n = 1 for the kind's easiest level."""
    description: str
    """What the level asks, in words (``regym envs`` and the docs show it)."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """The family's generator settings for this level (read-only)."""

    def __post_init__(self) -> None:
        if not LEVEL_NAME.match(self.name):
            raise ValueError(f"level name {self.name!r} is not '<kind>.<n>' (e.g. 'single_call.1')")
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))

    @property
    def kind(self) -> str:
        return self.name.rsplit(".", 1)[0]

    @property
    def number(self) -> int:
        return int(self.name.rsplit(".", 1)[1])


def find_level(levels: Mapping[str, Any], name: object, family: str) -> Any:
    """``levels[name]``, or a ValueError naming the family and listing its levels."""
    try:
        return levels[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {family} level {name!r}; known levels: {', '.join(levels)}") from None


@dataclass(frozen=True)
class LevelTable:
    """A family's levels and the splits made of them."""

    family: str
    """The family's name in messages (``"ToolUse"``)."""
    levels: Mapping[str, Level]
    splits: Mapping[str, tuple[str, ...]]
    """Split name -> the levels it plays (every name in ``levels``)."""

    def __post_init__(self) -> None:
        for split, names in self.splits.items():
            unknown = [name for name in names if name not in self.levels]
            if unknown or not names:
                raise ValueError(f"{self.family} split {split!r} names unknown levels {unknown} or none")
        object.__setattr__(self, "levels", MappingProxyType(dict(self.levels)))
        object.__setattr__(self, "splits", MappingProxyType({k: tuple(v) for k, v in self.splits.items()}))

    @classmethod
    def of(cls, family: str, levels: tuple[Level, ...], splits: Mapping[str, tuple[str, ...]]) -> LevelTable:
        names = [level.name for level in levels]
        if len(set(names)) != len(names):
            raise ValueError(f"{family} levels repeat a name: {names}")
        return cls(family, {level.name: level for level in levels}, splits)

    def level(self, name: object) -> Level:
        """A level by name, or a ValueError listing the known ones."""
        return find_level(self.levels, name, self.family)

    def split_of(self, name: str) -> str | None:
        """The split whose levels include ``name`` (None: a level no split plays)."""
        return next((split for split, names in self.splits.items() if name in names), None)

    def descriptions(self) -> dict[str, str]:
        """Level -> what it asks (``TextEnv.difficulty_levels``)."""
        return {name: level.description for name, level in self.levels.items()}

    def split_levels(self) -> dict[str, tuple[str, ...]]:
        """Split -> its levels (``TextEnv.level_splits``)."""
        return dict(self.splits)
