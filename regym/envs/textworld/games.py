"""TextWorld games, generated procedurally and seeded, compiled once and cached.

Every task id names one game: ``tw-id-00042`` is game 42 of the in-distribution pool.
A game is generated from a seed derived from (split, index), compiled once with
TextWorld's Inform 7 tool chain into a cache folder, and replayed from there.

Splits differ in size and quest length, or only in seed (documented in docs/textworld.md):

* ``in_distribution``: 3-5 rooms, 4-10 objects, quests of 3-4 steps;
* ``near_out_of_distribution``: the in-distribution ranges, drawn from its own seed namespace,
  so its games are not the in-distribution games (a held-out set at the size a small model can win);
* ``out_of_distribution``: 6-8 rooms, 8-14 objects, quests of 5-7 steps.

Levels (``textworld/levels.py``) name these sizes ``house.2`` (ID and near-OOD) and ``house.4`` (OOD) and
add two pools of their own, ``house.1`` (smaller) and ``house.3`` (between ID and OOD), whose task ids
carry the level (``tw-house.3-00042``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import textworld


@dataclass(frozen=True)
class WorldSpec:
    """Ranges (inclusive) from which a split draws each game's size."""

    rooms: tuple[int, int]
    objects: tuple[int, int]
    quest_length: tuple[int, int]
    theme: str = "house"


_ID_SPEC = WorldSpec(rooms=(3, 5), objects=(4, 10), quest_length=(3, 4))
SPLIT_SPECS = {
    "in_distribution": _ID_SPEC,
    "near_out_of_distribution": _ID_SPEC,
    "out_of_distribution": WorldSpec(rooms=(6, 8), objects=(8, 14), quest_length=(5, 7)),
}
LEVEL_SPECS = {
    "house.1": WorldSpec(rooms=(1, 2), objects=(2, 4), quest_length=(1, 2)),
    "house.3": WorldSpec(rooms=(5, 6), objects=(8, 12), quest_length=(4, 5)),
}
"""The pools that only a level plays: smaller than ID, and between ID and OOD."""
POOL_SPECS = {**SPLIT_SPECS, **LEVEL_SPECS}
SPLIT_SHORT = {"in_distribution": "id", "near_out_of_distribution": "near", "out_of_distribution": "ood",
               **{level: level for level in LEVEL_SPECS}}
"""The pool's name in task ids (``tw-id-00042``, ``tw-house.1-00042``)."""
SPLIT_OF_SHORT = {short: split for split, short in SPLIT_SHORT.items()}


@dataclass(frozen=True)
class GameSettings:
    """The exact generator settings of one game."""

    seed: int
    rooms: int
    objects: int
    quest_length: int
    theme: str

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def game_settings(split: str, index: int, overrides: dict[str, int | str | None]) -> GameSettings:
    """Settings for game ``index`` of ``split`` (or of a level's own pool): drawn from its ranges, seeded by
    (split, index)."""
    spec = POOL_SPECS[split]
    seed = int.from_bytes(hashlib.sha256(f"textworld/{split}/{index}".encode()).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    drawn = {
        "rooms": int(rng.integers(spec.rooms[0], spec.rooms[1] + 1)),
        "objects": int(rng.integers(spec.objects[0], spec.objects[1] + 1)),
        "quest_length": int(rng.integers(spec.quest_length[0], spec.quest_length[1] + 1)),
        "theme": spec.theme,
    }
    drawn.update({key: value for key, value in overrides.items() if value is not None})
    return GameSettings(seed=seed, **drawn)


def compile_game(settings: GameSettings, folder: Path) -> Path:
    """Generate and compile one game into ``folder`` (once; later calls reuse the file).

    Compilation happens in a temporary folder and is moved into place, so concurrent
    workers never read a half-written game.
    """
    target = folder / f"{settings.key()}.z8"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    options = textworld.GameOptions()
    options.seeds = settings.seed
    options.nb_rooms = settings.rooms
    options.nb_objects = settings.objects
    options.quest_length = settings.quest_length
    options.grammar.theme = settings.theme
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        options.path = str(Path(scratch) / target.name)
        game = textworld.generator.make_game(options)
        compiled = Path(textworld.generator.compile_game(game, options))
        os.replace(compiled.with_suffix(".json"), target.with_suffix(".json"))
        os.replace(compiled, target)
    return target


