"""An ALFWorld expert that plans from the engine's current facts.

ALFWorld's own experts are a handcoded policy that explores from text (stateful, randomised)
and Fast Downward (optimal, but 3-10 s per plan in a kitchen). This expert reads the PDDL
facts of the current state (where each object is, what the agent holds, which receptacles
are open, which objects are hot/cool/clean, whether the lamp is on) and writes the plan the
six task types need: drop a wrong object back where it came from, reach and open the
target's receptacle, take it, use the appliance, reach and open the goal receptacle, put it
(twice for pick_two), or carry the object to the lamp and switch it on; of the plans that
every choice of instances gives, the shortest (breadth-first search over ALFWorld's operators,
``shortest``, finds none shorter). Planning takes milliseconds, so ``info["expert_action"]``
is fresh on every step.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import permutations

APPLIANCE_COMMAND = {
    "pick_clean_then_place_in_recep": ("clean", "sinkbasintype", "isclean"),
    "pick_heat_then_place_in_recep": ("heat", "microwavetype", "ishot"),
    "pick_cool_then_place_in_recep": ("cool", "fridgetype", "iscool"),
}


@dataclass(frozen=True)
class TaskParams:
    task_type: str
    object_target: str  # ALFRED class, e.g. "Mug"
    parent_target: str = ""
    toggle_target: str = ""


class World:
    """The facts of one state, indexed the way the expert asks about them."""

    def __init__(self, facts, names: dict[str, str]):
        self.names = names
        self.unary: dict[str, set[str]] = defaultdict(set)
        self.binary: dict[str, dict[str, str]] = defaultdict(dict)
        self.pairs: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for fact in facts:
            args = [variable.name for variable in fact.arguments]
            if len(args) == 1:
                self.unary[fact.name].add(args[0])
            elif len(args) == 2:
                self.binary[fact.name][args[0]] = args[1]
                self.pairs[fact.name].add((args[0], args[1]))
        self.agent_location = next(iter(self.binary["atlocation"].values()), None)
        self.held = next(iter(self.binary["holds"].values()), None)

    def of_type(self, type_name: str, kind: str) -> list[str]:
        predicate = "objecttype" if kind == "object" else "receptacletype"
        return sorted(x for x, t in self.binary[predicate].items() if t == type_name)

    def name(self, entity: str) -> str:
        return self.names.get(entity, entity)


def _type(alfred_class: str) -> str:
    return alfred_class.lower() + "type"


def _reach(world: World, receptacle: str, location: str | None) -> tuple[list[str], str]:
    """Commands to stand at ``receptacle`` with it open; the agent's location afterwards."""
    commands = []
    target = world.binary["receptacleatlocation"].get(receptacle)
    if location != target:
        commands.append(f"go to {world.name(receptacle)}")
    if receptacle in world.unary["openable"] and receptacle not in world.unary["opened"]:
        commands.append(f"open {world.name(receptacle)}")
    return commands, target


@dataclass(frozen=True)
class Choice:
    """Which instances a plan uses: the targets in the order it takes them, the goal receptacle, the
    appliance and the lamp (None where the task has none)."""

    targets: tuple[str, ...]
    parent: str | None = None
    tool: str | None = None
    lamp: str | None = None


def expert_plan(world: World, task: TaskParams) -> list[str]:
    """A shortest plan that finishes ``task`` from ``world``'s state ([] when there is no way).

    Every choice of instances (which target first, which goal receptacle, which appliance, which lamp)
    gives one plan; the shortest wins (ties: the first in name order). So a target in plain sight is
    taken before one in a closed drawer, and an open or open-topped goal receptacle before a closed
    one. ``regym.envs.alfworld.shortest`` checks the result against breadth-first search."""
    best: list[str] | None = None
    for choice in _choices(world, task):
        plan = _plan(_copy(world), task, choice)
        if plan is not None and (best is None or len(plan) < len(best)):
            best = plan
    return best or []


def _copy(world: World) -> World:
    """A world whose facts ``_plan`` may change without touching ``world``'s."""
    copy = object.__new__(World)
    copy.__dict__.update(world.__dict__)
    copy.unary = defaultdict(set, {name: set(values) for name, values in world.unary.items()})
    return copy


def _choices(world: World, task: TaskParams):
    targets = world.of_type(_type(task.object_target), "object")
    needed = 2 if task.task_type == "pick_two_obj_and_place" else 1
    orders = list(permutations(targets, min(needed, len(targets)))) or [()]
    if task.task_type == "look_at_obj_in_light":
        for order in orders:
            for lamp in world.of_type(_type(task.toggle_target), "object"):
                yield Choice(order, lamp=lamp)
        return
    appliance = APPLIANCE_COMMAND.get(task.task_type)
    tools = world.of_type(appliance[1], "receptacle") if appliance else [None]
    for order in orders:
        for parent in world.of_type(_type(task.parent_target), "receptacle"):
            for tool in tools:
                yield Choice(order, parent, tool)


def _plan(world: World, task: TaskParams, choice: Choice) -> list[str] | None:
    """The plan that uses ``choice``'s instances (None when they cannot finish the task)."""
    plan: list[str] = []
    location = world.agent_location
    held = world.held
    opened = world.unary["opened"]
    targets = world.of_type(_type(task.object_target), "object")
    inside = dict(world.binary["inreceptacle"])
    preferred = [*choice.targets, *(o for o in targets if o not in choice.targets)]

    def reach(receptacle: str) -> None:
        nonlocal location
        commands, location = _reach(world, receptacle, location)
        plan.extend(commands)
        if receptacle in world.unary["openable"]:
            opened.add(receptacle)

    def take(obj: str) -> None:
        nonlocal held
        reach(inside[obj])
        plan.append(f"take {world.name(obj)} from {world.name(inside.pop(obj))}")
        held = obj

    def put(receptacle: str) -> None:
        nonlocal held
        reach(receptacle)
        plan.append(f"move {world.name(held)} to {world.name(receptacle)}")
        inside[held], held = receptacle, None

    if held is not None and held not in targets:  # put a wrong object back where it started
        home = world.binary["wasinreceptacle"].get(held)
        if home is None:
            return None
        put(home)

    if task.task_type == "look_at_obj_in_light":
        if choice.lamp is None or not targets:
            return None
        if held is None:
            take(preferred[0])
        lamp_place = inside.get(choice.lamp)
        if lamp_place is None:
            return None
        if location != world.binary["receptacleatlocation"].get(lamp_place):
            plan.append(f"go to {world.name(lamp_place)}")
        if choice.lamp not in world.unary["istoggled"]:
            plan.append(f"use {world.name(choice.lamp)}")
        return plan

    parent = choice.parent
    needed = 2 if task.task_type == "pick_two_obj_and_place" else 1
    appliance = APPLIANCE_COMMAND.get(task.task_type)

    def done_in(receptacle: str) -> list[str]:
        return [o for o in targets if inside.get(o) == receptacle and (not appliance or o in world.unary[appliance[2]])]

    for _ in range(needed - len(done_in(parent))):
        if held is None:
            candidates = [o for o in preferred if o in inside and o not in done_in(parent)]
            if not candidates:
                return None
            take(candidates[0])
        if appliance and held not in world.unary[appliance[2]]:
            verb, _, state = appliance
            tool_location = world.binary["receptacleatlocation"].get(choice.tool)
            if location != tool_location:
                plan.append(f"go to {world.name(choice.tool)}")
                location = tool_location
            plan.append(f"{verb} {world.name(held)} with {world.name(choice.tool)}")
            world.unary[state].add(held)
        put(parent)
    return plan
