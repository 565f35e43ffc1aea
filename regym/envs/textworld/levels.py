"""Difficulty levels of the TextWorld env, read off its game generator's sizes (``games.POOL_SPECS``).

``house.2`` is the in-distribution size, played by the in-distribution split and, on held-out seeds, by the
near-OOD split; ``house.4`` is the out-of-distribution size. The near-OOD split keeps ID sizes because its
games are already the held-out set of rl-train's and the lab's evaluations (changing them would change
every reported near-OOD number); the harder setting of the same kind is ``house.3`` (``level="house.3"``).
"""

from __future__ import annotations

from regym.envs.levels import Level, LevelTable
from regym.envs.textworld.games import POOL_SPECS, WorldSpec


def _asks(spec: WorldSpec) -> str:
    def span(low_high: tuple[int, int]) -> str:
        low, high = low_high
        return f"{low}" if low == high else f"{low}-{high}"

    return f"{span(spec.rooms)} rooms, {span(spec.objects)} objects, quests of {span(spec.quest_length)} steps"


_POOLS = {"house.1": "house.1", "house.2": "in_distribution", "house.3": "house.3", "house.4": "out_of_distribution"}
"""The game pool each level plays."""

TEXTWORLD_LEVELS = LevelTable.of("TextWorld", tuple(
    Level(name, _asks(POOL_SPECS[pool]), {"pool": pool}) for name, pool in _POOLS.items()
), {"in_distribution": ("house.2",), "near_out_of_distribution": ("house.2",),
    "out_of_distribution": ("house.4",)})
