"""Shortest ALFWorld plans by breadth-first search over ALFWorld's operators: the check on the planner.

The planner (``expert.expert_plan``) writes a plan from a recipe; this module searches. From one
state's facts it runs BFS over the operators of ALFWorld's ``alfred.pddl`` as the text engine plays
them: ``go to R`` (to R's location), ``open R``, ``take O from R`` (at R, R open or not openable,
hands empty), ``move O to R`` (the same conditions, holding O), ``clean/heat/cool O with R`` (at the
sink basin / microwave / fridge, holding O) and ``use L`` (at the lamp). The goal is the task type's
(a target in a goal receptacle, clean/hot/cool for those types, two of them for pick_two, or a target
held beside a lit lamp). Moves that cannot shorten a plan are left out (going to or opening a
receptacle that holds no target and is neither a goal receptacle nor an appliance; closing; looking;
taking other objects), so the search is exact for the tasks as generated, where the agent starts
empty-handed. A plan it returns is checked by playing it on ALFWorld's engine (``tests``,
``benchmarks/alfworld_shortest.py``).
"""

from __future__ import annotations

from collections import deque

from regym.envs.alfworld.expert import APPLIANCE_COMMAND, TaskParams, World


def _type(alfred_class: str) -> str:
    return alfred_class.lower() + "type"


def shortest_plan(world: World, task: TaskParams, max_length: int = 20) -> list[str] | None:
    """A shortest list of commands that wins ``task`` from ``world`` (None: none within ``max_length``)."""
    targets = world.of_type(_type(task.object_target), "object")
    parents = world.of_type(_type(task.parent_target), "receptacle") if task.parent_target else []
    appliance = APPLIANCE_COMMAND.get(task.task_type)
    tools = world.of_type(appliance[1], "receptacle") if appliance else []
    lamps = world.of_type(_type(task.toggle_target), "object") if task.toggle_target else []
    inside = world.binary["inreceptacle"]
    where = world.binary["receptacleatlocation"]
    relevant = sorted({inside[o] for o in targets if o in inside} | set(parents) | set(tools)
                      | {inside[lamp] for lamp in lamps if lamp in inside})
    openable = world.unary["openable"]
    needed = 2 if task.task_type == "pick_two_obj_and_place" else 1

    def won(state) -> bool:
        location, held, _, placed, treated, lit = state
        if task.task_type == "look_at_obj_in_light":  # holding a target beside a lit lamp
            return held is not None and any(where.get(inside.get(lamp)) == location for lamp in lit)
        done = [r for o, r in placed if r in parents and (not appliance or o in treated)]
        return any(done.count(parent) >= needed for parent in parents)

    start = (world.agent_location, world.held, frozenset(r for r in relevant if r in world.unary["opened"]),
             tuple(sorted((o, inside[o]) for o in targets if o in inside)),
             frozenset(o for o in targets if appliance and o in world.unary[appliance[2]]),
             frozenset(lamp for lamp in lamps if lamp in world.unary["istoggled"]))

    def moves(state):
        location, held, opened, placed, treated, lit = state
        for receptacle in relevant:
            if where.get(receptacle) != location:
                yield f"go to {world.name(receptacle)}", (where.get(receptacle), held, opened, placed, treated, lit)
        here = [r for r in relevant if where.get(r) == location]
        reachable = [r for r in here if r not in openable or r in opened]
        for receptacle in here:
            if receptacle in openable and receptacle not in opened:
                yield f"open {world.name(receptacle)}", (location, held, opened | {receptacle}, placed, treated, lit)
        if held is None:
            for obj, receptacle in placed:
                if receptacle in reachable:
                    rest = tuple(pair for pair in placed if pair[0] != obj)
                    yield (f"take {world.name(obj)} from {world.name(receptacle)}",
                           (location, obj, opened, rest, treated, lit))
        else:
            for receptacle in reachable:
                if receptacle in parents:
                    yield (f"move {world.name(held)} to {world.name(receptacle)}",
                           (location, None, opened, tuple(sorted((*placed, (held, receptacle)))), treated, lit))
            if appliance and held not in treated:
                for tool in here:
                    if tool in tools:
                        yield (f"{appliance[0]} {world.name(held)} with {world.name(tool)}",
                               (location, held, opened, placed, treated | {held}, lit))
        for lamp in lamps:
            if lamp not in lit and where.get(inside.get(lamp)) == location:
                yield f"use {world.name(lamp)}", (location, held, opened, placed, treated, lit | {lamp})

    frontier, seen = deque([(start, [])]), {start}
    while frontier:
        state, plan = frontier.popleft()
        if won(state):
            return plan
        if len(plan) >= max_length:
            continue
        for command, after in moves(state):
            if after not in seen:
                seen.add(after)
                frontier.append((after, [*plan, command]))
    return None


def plan_lengths(game_file, engine=None) -> tuple[int, int]:
    """(the planner's plan, a BFS-shortest plan) from a game's opening state, in commands. The shortest plan is
    played on ALFWorld's engine and must win with every command admissible (else a ValueError: the search's
    model of the operators is wrong)."""
    import json
    from pathlib import Path

    from regym.envs.alfworld.engine import keep_argv, make_engine
    from regym.envs.alfworld.expert import expert_plan
    from regym.envs.alfworld.tasks import current_world, task_params

    game_file = Path(game_file)
    task = task_params(json.loads((game_file.parent / "traj_data.json").read_text()))
    engine = engine or make_engine()
    with keep_argv():
        engine.load(str(game_file))
        state = engine.reset()
        planned = expert_plan(current_world(engine), task)
        shortest = shortest_plan(current_world(engine), task)
        if shortest is None:
            raise ValueError(f"{game_file}: BFS found no plan")
        for command in shortest:
            if command not in state["admissible_commands"]:
                raise ValueError(f"{game_file}: BFS's {command!r} is not admissible (plan {shortest})")
            state, _, _ = engine.step(command)
        if not state["won"]:
            raise ValueError(f"{game_file}: BFS's plan {shortest} does not win")
    return len(planned), len(shortest)
