"""Difficulty levels of the ALFWorld env: which rooms its households are in.

ALFWorld's task types are the same at every level (pick and place, look at under a lamp,
clean/heat/cool then place, two objects; ``task_types`` narrows them); what changes is whether
the agent has trained in the rooms. ``seen_rooms.1`` is the in-distribution level (ALFRED's
training rooms; ALFWorld's ``valid_seen`` games when downloaded), ``unseen_rooms.1`` the
near-OOD level (ALFWorld's own unseen rooms and, when downloaded, its 134 ``valid_unseen``
games: the split published numbers report) and ``unseen_rooms.2`` the far-OOD level (24 more
rooms, ALFRED's test rooms, which ALFWorld ships no games for: generated only). A far-OOD of
other kinds is the task-type axis: train on some types (``task_types``), evaluate on the others.
"""

from __future__ import annotations

from regym.envs.alfworld import tasks
from regym.envs.levels import Level, LevelTable


def _rooms(pool: str) -> str:
    return f"{len(tasks.FLOOR_PLANS[pool])} rooms"


ALFWORLD_LEVELS = LevelTable.of("ALFWorld", (
    Level("seen_rooms.1", f"the six task types in ALFRED's training rooms ({_rooms('in_distribution')}; ALFWorld's "
          "140 valid_seen games when downloaded)", {"split": "in_distribution", "pool": "in_distribution"}),
    Level("unseen_rooms.1", "the six task types in ALFWorld's 4 unseen rooms (FloorPlans 10, 219, 308, 424; its "
          "134 valid_unseen games when downloaded): split valid_unseen", {"split": "valid_unseen", "pool": "valid_unseen"}),
    Level("unseen_rooms.2", f"the six task types in {_rooms('out_of_distribution')} no game trains in (the 4 "
          "unseen and ALFRED's 24 test rooms), generated only: split held_out_rooms",
          {"split": "held_out_rooms", "pool": "out_of_distribution"}),
), {"in_distribution": ("seen_rooms.1",), "near_out_of_distribution": ("unseen_rooms.1",),
    "out_of_distribution": ("unseen_rooms.2",)})

LEVEL_OF_SPLIT = {level.settings["split"]: level for level in ALFWORLD_LEVELS.levels.values()}
"""ALFWorld's own split -> the level it plays."""
