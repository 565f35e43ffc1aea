"""The ALFWorld planner is shortest: checked against breadth-first search over ALFWorld's operators.

The small rooms here are PDDL facts as ALFWorld's engine states them; the games are generated ones
played on ALFWorld's engine, where the BFS plan must also win.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from regym.envs.alfworld import tasks
from regym.envs.alfworld.expert import TaskParams, World, expert_plan
from regym.envs.alfworld.shortest import plan_lengths, shortest_plan


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass(frozen=True)
class Fact:
    name: str
    arguments: tuple[Variable, ...]


def room(*facts: tuple[str, ...]) -> World:
    parsed = [Fact(name, tuple(Variable(arg) for arg in args)) for name, *args in facts]
    names = {arg: arg.replace("_", " ") for fact in parsed for arg in (a.name for a in fact.arguments)}
    return World(parsed, names)


def kitchen(mug_1_in: str) -> World:
    """Mug 1 in ``mug_1_in``, mug 2 on the countertop; drawer 1 is closed; the goal is the coffee machine."""
    return room(
        ("atlocation", "agent", "loc_start"),
        ("receptacleatlocation", "drawer_1", "loc_drawer"), ("receptacletype", "drawer_1", "drawertype"),
        ("openable", "drawer_1"),
        ("receptacleatlocation", "countertop_1", "loc_counter"),
        ("receptacletype", "countertop_1", "countertoptype"),
        ("receptacleatlocation", "coffeemachine_1", "loc_coffee"),
        ("receptacletype", "coffeemachine_1", "coffeemachinetype"),
        ("objecttype", "mug_1", "mugtype"), ("inreceptacle", "mug_1", mug_1_in),
        ("objecttype", "mug_2", "mugtype"), ("inreceptacle", "mug_2", "countertop_1"),
    )


PUT_MUG = TaskParams("pick_and_place_simple", "Mug", "CoffeeMachine")


def test_planner_takes_the_target_in_plain_sight_not_the_one_in_a_closed_drawer():
    plan = expert_plan(kitchen("drawer_1"), PUT_MUG)
    assert plan == ["go to countertop 1", "take mug 2 from countertop 1", "go to coffeemachine 1",
                    "move mug 2 to coffeemachine 1"]
    assert len(shortest_plan(kitchen("drawer_1"), PUT_MUG)) == len(plan)
    assert expert_plan(kitchen("countertop_1"), PUT_MUG)[1] == "take mug 1 from countertop 1"  # ties: name order


def test_planner_leaves_the_world_it_plans_from_unchanged():
    world = kitchen("drawer_1")
    expert_plan(world, PUT_MUG)
    assert world.unary["opened"] == set()


@pytest.mark.parametrize("index", [0, 2, 5])  # pick_and_place, clean, pick_two
def test_planner_matches_bfs_on_alfworlds_engine(index, tmp_path, monkeypatch):
    monkeypatch.setenv("REGYM_CACHE", str(tmp_path))
    game = tasks.generate_task("in_distribution", index) / "game.tw-pddl"
    planned, shortest = plan_lengths(game)
    assert planned == shortest


@pytest.mark.slow
def test_planner_is_shortest_on_60_generated_games():
    """The first 30 games of the ID and held-out-room pools (the old planner was longer on some; docs/alfworld.md)."""
    longer = [(split, index) for split in ("in_distribution", "out_of_distribution") for index in range(30)
              if (lengths := plan_lengths(tasks.generate_task(split, index) / "game.tw-pddl"))[0] > lengths[1]]
    assert longer == []
