"""An ALFWorld expert that plans from the engine's current facts.

ALFWorld's own experts are a handcoded policy that explores from text (stateful, randomised)
and Fast Downward (optimal, but 3-10 s per plan in a kitchen). This expert reads the PDDL
facts of the current state (where each object is, what the agent holds, which receptacles
are open, which objects are hot/cool/clean, whether the lamp is on) and writes the plan the
six task types need: drop a wrong object back where it came from, reach and open the
target's receptacle, take it, use the appliance, reach and open the goal receptacle, put it
(twice for pick_two), or carry the object to the lamp and switch it on. Planning takes
milliseconds, so ``info["expert_action"]`` is fresh on every step.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

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


def expert_plan(world: World, task: TaskParams) -> list[str]:
    """The commands that finish ``task`` from ``world``'s state ([] when there is no way)."""
    plan: list[str] = []
    location = world.agent_location
    held = world.held
    opened = set(world.unary["opened"])
    world.unary["opened"] = opened  # _reach reads it; the simulation below adds to it
    object_type = _type(task.object_target)
    targets = world.of_type(object_type, "object")
    inside = dict(world.binary["inreceptacle"])

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
            return []
        put(home)

    if task.task_type == "look_at_obj_in_light":
        lamps = world.of_type(_type(task.toggle_target), "object")
        if not lamps or not targets:
            return []
        lamp = lamps[0]
        if held is None:
            take(targets[0])
        lamp_place = inside.get(lamp)
        if lamp_place is None:
            return []
        target_location = world.binary["receptacleatlocation"].get(lamp_place)
        if location != target_location:
            plan.append(f"go to {world.name(lamp_place)}")
        if lamp not in world.unary["istoggled"]:
            plan.append(f"use {world.name(lamp)}")
        return plan

    parent_type = _type(task.parent_target)
    parents = world.of_type(parent_type, "receptacle")
    if not parents:
        return []
    needed = 2 if task.task_type == "pick_two_obj_and_place" else 1
    appliance = APPLIANCE_COMMAND.get(task.task_type)

    def done_in(receptacle: str) -> list[str]:
        return [o for o in targets if inside.get(o) == receptacle and (not appliance or o in world.unary[appliance[2]])]

    # The goal receptacle: the one already holding the most finished targets.
    parent = max(parents, key=lambda r: (len(done_in(r)), r == parents[0]))
    for _ in range(needed - len(done_in(parent))):
        if held is None:
            candidates = [o for o in targets if o in inside and inside[o] != parent]
            candidates += [o for o in targets if o in inside and o not in done_in(parent) and o not in candidates]
            if not candidates:
                return []
            take(candidates[0])
        if appliance and held not in world.unary[appliance[2]]:
            verb, appliance_type, state = appliance
            tools = world.of_type(appliance_type, "receptacle")
            if not tools:
                return []
            tool_location = world.binary["receptacleatlocation"].get(tools[0])
            if location != tool_location:
                plan.append(f"go to {world.name(tools[0])}")
                location = tool_location
            plan.append(f"{verb} {world.name(held)} with {world.name(tools[0])}")
            world.unary[state] = world.unary[state] | {held}
        put(parent)
    return plan
