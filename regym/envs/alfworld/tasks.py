"""ALFWorld task sets: the downloaded ``json_2.1.1`` games, or games generated here.

The PyPI package ``alfworld`` ships the PDDL domain (``alfred.pddl``), the text grammar
(``alfred.twl2``) and per-floor-plan layouts, but not the task set. This module builds
that task set itself, in ALFWorld's own file formats, so the games run on ALFWorld's
engine (TextWorld's PDDL env) exactly as downloaded ones do:

* ``traj_data.json``: ``task_type``, ``pddl_params`` (object/parent/toggle targets),
  ``scene`` (floor plan) and a templated ``turk_annotations`` goal, as ALFRED writes it;
* ``initial_state.pddl``: an ALFRED-style problem over mangled ids
  (``Mug|+00.32|+00.91|-02.71`` becomes ``Mug_bar__plus_00_dot_32...``) with the goal
  formula from ``alfworld.gen.goal_library``;
* ``game.tw-pddl``: ``{"pddl_domain", "grammar", "pddl_problem", "solvable",
  "walkthrough"}``, the grammar carrying the goal text as ``alfworld-generate`` writes it.

Generation is deterministic in ``(split, phase, index)``. A task is solvable by
construction (the target exists in a reachable receptacle that admits it, the appliance
exists, the goal does not already hold) and is then verified: Fast Downward plans it and
the plan is replayed on the engine until ``won``. A task that fails either check is
redrawn with the next sub-seed (``attempt`` + 1); ``traj_data.json`` records the attempt.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from regym.envs.alfworld.engine import keep_argv, make_engine
from regym.envs.alfworld.expert import TaskParams, World, expert_plan
from regym.paths import cache_dir

GENERATOR_VERSION = "v2"
"""v2: ALFRED's goal constraints, four stove burners per kitchen, basins named as ALFRED names them."""

TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)

# ALFWorld's valid_unseen rooms (one per room type).
VALID_UNSEEN_FLOOR_PLANS = (10, 219, 308, 424)
# ALFRED's test rooms: never used for training in ALFRED/ALFWorld either.
TEST_FLOOR_PLANS = (*range(1, 7), *range(201, 207), *range(301, 307), *range(401, 407))
TRAIN_FLOOR_PLANS = (*range(7, 31), *range(207, 231), *range(307, 331), *range(407, 431))

FLOOR_PLANS = {
    "in_distribution": tuple(fp for fp in TRAIN_FLOOR_PLANS if fp not in VALID_UNSEEN_FLOOR_PLANS),
    "out_of_distribution": tuple(sorted(VALID_UNSEEN_FLOOR_PLANS + TEST_FLOOR_PLANS)),
    "valid_unseen": VALID_UNSEEN_FLOOR_PLANS,
}
SPLITS = tuple(FLOOR_PLANS)
SPLIT_CODES = {"in_distribution": "id", "out_of_distribution": "ood", "valid_unseen": "valid_unseen"}
PHASES = ("eval", "train")

# Folders of the downloaded data set, per (split, phase).
REAL_DATA_FOLDERS = {
    ("in_distribution", "train"): "train",
    ("in_distribution", "eval"): "valid_seen",
    ("valid_unseen", "eval"): "valid_unseen",
}

APPLIANCE = {
    "pick_clean_then_place_in_recep": "SinkBasin",
    "pick_heat_then_place_in_recep": "Microwave",
    "pick_cool_then_place_in_recep": "Fridge",
}
# ALFRED's task-sampling constraints, from gen/scripts/generate_trajectories.py (askforalfred/alfred,
# and alfworld/alfworld's copy). That script is not in the `alfworld` wheel, so these three tables are
# copied here; the room types per goal (GOALS_VALID) and the object sets are read from alfworld.gen.constants.
GOAL_PICKUP_TYPE = {  # goal_to_pickup_type: the target must have this property
    "pick_heat_then_place_in_recep": "Heatable",
    "pick_cool_then_place_in_recep": "Coolable",
    "pick_clean_then_place_in_recep": "Cleanable",
}
GOAL_INVALID_RECEPTACLES = {  # goal_to_invalid_receptacle: never the goal receptacle
    "pick_heat_then_place_in_recep": frozenset({"Microwave"}),
    "pick_cool_then_place_in_recep": frozenset({"Fridge"}),
    "pick_clean_then_place_in_recep": frozenset({"SinkBasin"}),
    "pick_two_obj_and_place": frozenset({"CoffeeMachine", "ToiletPaperHanger", "HandTowelHolder"}),
}
NEVER_GOAL_RECEPTACLES = frozenset({"Toaster"})  # receptacle_candidates.remove('Toaster')
LAMP = "DeskLamp"
LAMP_RECEPTACLES = ("Desk", "SideTable", "Dresser")
STOVE_BURNER_OFFSETS = ((0.0, 0.0), (0.0, -0.21), (-0.43, 0.0), (-0.43, -0.21))
"""ALFRED's hobs have four burners in two columns (FloorPlan1: x -0.04/-0.47, z -2.37/-2.58); the agent
stands in front of a column, so the two burners of a column share a location."""
MAX_ATTEMPTS = 50
MAX_PLAN_LENGTH = 40  # ALFWorld plays 50 steps; a task needs slack for a policy's detours.


def mangle(name: str) -> str:
    """ALFRED's id mangling for PDDL (the inverse of ALFWorld's ``Demangler``)."""
    for old, new in (("|", "_bar_"), ("-", "_minus_"), ("+", "_plus_"), (".", "_dot_"), (",", "_comma_")):
        name = name.replace(old, new)
    return name


def _coordinate(value: float) -> str:
    return f"{value:+06.2f}"


# --- ALFWorld's shipped data ---------------------------------------------------------------
@cache
def alfworld_constants():
    import alfworld.gen.constants as constants

    return constants


@cache
def alfworld_goals() -> dict[str, Any]:
    import alfworld.gen.goal_library as goal_library

    return goal_library.gdict


def alfworld_package_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("alfworld")
    if spec is None or spec.origin is None:
        raise ImportError("the `alfworld` package is required for regym/ALFWorld-v0 (pip install alfworld)")
    return Path(spec.origin).parent


@cache
def game_logic() -> tuple[str, str]:
    """ALFWorld's PDDL domain and text grammar, as shipped in the package."""
    data = alfworld_package_dir() / "data"
    return (data / "alfred.pddl").read_text(), (data / "alfred.twl2").read_text()


@dataclass(frozen=True)
class Layout:
    """What a floor plan holds: the object/receptacle classes and the receptacle instances."""

    floor_plan: int
    classes: frozenset[str]
    receptacles: tuple[tuple[str, tuple[float, float, int, int]], ...]  # (ALFRED id, agent pose)


@cache
def load_layout(floor_plan: int) -> Layout:
    folder = alfworld_package_dir() / "gen" / "layouts"
    classes = frozenset(json.loads((folder / f"FloorPlan{floor_plan}-objects.json").read_text()))
    poses = json.loads((folder / f"FloorPlan{floor_plan}-openable.json").read_text())
    receptacles = tuple(sorted((rid, tuple(pose)) for rid, pose in poses.items()))
    return Layout(floor_plan, classes, receptacles)


def receptacle_class(receptacle_id: str) -> str:
    parts = receptacle_id.split("|")
    return parts[-1] if parts[-1].endswith("Basin") else parts[0]


def receptacle_id(cls: str, x: float, y: float, z: float) -> str:
    """An ALFRED id for a receptacle at (x, y, z); a basin is named after its sink or bathtub
    (``Sink|x|y|z|SinkBasin``), which ALFWorld's demangler shows as "sinkbasin 1"."""
    position = f"{_coordinate(x)}|{_coordinate(y)}|{_coordinate(z)}"
    if cls.endswith("Basin"):
        return f"{cls.removesuffix('Basin')}|{position}|{cls}"
    return f"{cls}|{position}"


def room_receptacles(layout: Layout, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """Receptacle instances as (ALFRED id, class, location id).

    Receptacles come from the layout's ``*-openable.json`` poses; receptacle classes the
    room has (``*-objects.json``) but without a pose there (coffee machines, toasters,
    sink basins...) get one instance at a location of their own, and stove burners get
    ALFRED's hob of four (``STOVE_BURNER_OFFSETS``).
    """
    constants = alfworld_constants()
    static_classes = set(constants.VAL_RECEPTACLE_OBJECTS) - set(constants.MOVABLE_RECEPTACLES)
    result = []
    for rid, (x, z, rotation, horizon) in layout.receptacles:
        cls = receptacle_class(rid)
        if cls not in static_classes:
            continue
        location = f"loc|{round(x * 4)}|{round(z * 4)}|{int(rotation) // 90 % 4}|{int(horizon)}"
        result.append((rid, cls, location))
    have = {cls for _, cls, _ in result}
    for cls in sorted(layout.classes & static_classes - have):
        x, y, z = rng.uniform(-3.0, 3.0), rng.uniform(0.0, 1.5), rng.uniform(-3.0, 3.0)
        rotation, horizon = int(rng.integers(4)), 30 if y > 0.7 else 60
        offsets = STOVE_BURNER_OFFSETS if cls == "StoveBurner" else ((0.0, 0.0),)
        for dx, dz in offsets:
            location = f"loc|{round((x + dx) * 4)}|{round(z * 4)}|{rotation}|{horizon}"
            result.append((receptacle_id(cls, x + dx, y, z + dz), cls, location))
    return result


# --- task sampling ---------------------------------------------------------------------------
@dataclass
class TaskSpec:
    """One sampled task: the room, the goal's parameters and where every object starts."""

    task_type: str
    floor_plan: int
    object_target: str
    parent_target: str
    toggle_target: str
    receptacles: list[tuple[str, str, str]]  # (id, class, location)
    objects: list[tuple[str, str, str]]  # (id, class, receptacle id)
    agent_location: str
    goal_template: str


def _can_contain(receptacle_cls: str, object_cls: str) -> bool:
    return object_cls in alfworld_constants().VAL_RECEPTACLE_OBJECTS.get(receptacle_cls, ())


def _pickupable_classes(layout: Layout) -> list[str]:
    constants = alfworld_constants()
    movable = set().union(*constants.VAL_RECEPTACLE_OBJECTS.values())
    return sorted(c for c in layout.classes if c in movable and c in constants.OBJECTS_SET)


def room_type(floor_plan: int) -> str:
    """ALFRED's room type of a floor plan: Kitchen, LivingRoom, Bedroom or Bathroom."""
    for name, numbers in alfworld_constants().SCENE_TYPE.items():
        if floor_plan in numbers:
            return name
    raise ValueError(f"FloorPlan{floor_plan} is not an ALFRED room")


def sample_task(task_type: str, floor_plans: tuple[int, ...], rng: np.random.Generator) -> TaskSpec | None:
    """Draw a room, targets and a placement for one task type; None if the draw can't host it.

    ALFRED's constraints apply: the room type admits the goal (``GOALS_VALID``), the target
    has the goal's property (``GOAL_PICKUP_TYPE``), and the goal receptacle can hold it and is
    not one the goal excludes (``GOAL_INVALID_RECEPTACLES``, ``NEVER_GOAL_RECEPTACLES``).
    """
    constants = alfworld_constants()
    rooms = [fp for fp in floor_plans if room_type(fp) in constants.GOALS_VALID[task_type]]
    if not rooms:
        raise ValueError(f"no room among {floor_plans} admits {task_type}")
    floor_plan = int(rng.choice(rooms))
    layout = load_layout(floor_plan)
    receptacles = room_receptacles(layout, rng)
    classes_here = {cls for _, cls, _ in receptacles}

    appliance = APPLIANCE.get(task_type)
    if appliance and appliance not in classes_here:
        return None
    toggle_target = ""
    if task_type == "look_at_obj_in_light":
        lamp_places = [r for r in receptacles if r[1] in LAMP_RECEPTACLES]
        if LAMP not in layout.classes or not lamp_places:
            return None
        toggle_target = LAMP

    candidates = _pickupable_classes(layout)
    if task_type in GOAL_PICKUP_TYPE:
        candidates = [c for c in candidates if c in constants.VAL_ACTION_OBJECTS[GOAL_PICKUP_TYPE[task_type]]]
    if not candidates:
        return None
    object_target = str(rng.choice(candidates))

    parent_target = ""
    if task_type != "look_at_obj_in_light":
        excluded = GOAL_INVALID_RECEPTACLES.get(task_type, frozenset()) | NEVER_GOAL_RECEPTACLES
        parents = sorted(
            cls for cls in classes_here if _can_contain(cls, object_target) and cls not in excluded
        )
        if not parents:
            return None
        parent_target = str(rng.choice(parents))
    # The target's instances start anywhere they fit except in the goal's receptacle class.
    target_homes = [r for r in receptacles if _can_contain(r[1], object_target) and r[1] != parent_target]
    if not target_homes:
        return None

    objects: list[tuple[str, str, str]] = []
    used_ids: set[str] = set()

    def place(cls: str, homes: list[tuple[str, str, str]], count: int) -> None:
        for _ in range(count):
            home = homes[int(rng.integers(len(homes)))]
            while True:
                x, y, z = rng.uniform(-3.0, 3.0), rng.uniform(0.0, 2.0), rng.uniform(-3.0, 3.0)
                oid = f"{cls}|{_coordinate(x)}|{_coordinate(y)}|{_coordinate(z)}"
                if oid not in used_ids:
                    break
            used_ids.add(oid)
            objects.append((oid, cls, home[0]))

    # ALFRED's instance counts: the target 1-4 (2-4 for pick_two), every other pickable class 1-3.
    low = 2 if task_type == "pick_two_obj_and_place" else 1
    place(object_target, target_homes, int(rng.integers(low, constants.PICKUP_REPEAT_MAX + 1)))
    for cls in _pickupable_classes(layout):
        if cls == object_target:
            continue
        homes = [r for r in receptacles if _can_contain(r[1], cls)]
        if homes:
            place(cls, homes, int(rng.integers(1, constants.MAX_NUM_OF_OBJ_INSTANCES + 1)))
    if toggle_target:
        lamp_places = [r for r in receptacles if r[1] in LAMP_RECEPTACLES]
        place(LAMP, lamp_places, 1)

    agent_location = f"loc|{int(rng.integers(-12, 13))}|{int(rng.integers(-12, 13))}|{int(rng.integers(4))}|30"
    if agent_location in {r[2] for r in receptacles}:
        return None
    templates = alfworld_goals()[task_type]["templates"]
    goal_template = str(templates[int(rng.integers(len(templates)))])
    return TaskSpec(
        task_type, floor_plan, object_target, parent_target, toggle_target, receptacles, objects,
        agent_location, goal_template,
    )


def goal_text(spec: TaskSpec) -> str:
    """The goal in ALFWorld's templates (``get_templated_task_desc``): lower-case class names."""
    return spec.goal_template.format(
        obj=spec.object_target.lower(), recep=spec.parent_target.lower(), toggle=spec.toggle_target.lower(), mrecep=""
    )


def problem_pddl(spec: TaskSpec, name: str) -> str:
    """The ALFRED-style PDDL problem for a task (same predicates as ALFWorld's initial_state.pddl)."""
    constants = alfworld_constants()
    actions = constants.VAL_ACTION_OBJECTS
    object_classes = sorted({cls for _, cls, _ in spec.objects})
    receptacle_classes = sorted({cls for _, cls, _ in spec.receptacles})
    locations = sorted({loc for _, _, loc in spec.receptacles} | {spec.agent_location})
    location_of = {rid: loc for rid, _, loc in spec.receptacles}
    declared = [f"{c} - object" for c in object_classes]
    declared += [f"{c}Type - otype" for c in object_classes]
    declared += [f"{c}Type - rtype" for c in receptacle_classes]
    declared += [f"{mangle(oid)} - object" for oid, _, _ in spec.objects]
    declared += [f"{mangle(rid)} - receptacle" for rid, _, _ in spec.receptacles]
    declared += [f"{mangle(loc)} - location" for loc in locations]
    declared += ["agent1 - agent"]

    facts = [f"(atLocation agent1 {mangle(spec.agent_location)})"]
    for rid, cls, loc in spec.receptacles:
        facts.append(f"(receptacleType {mangle(rid)} {cls}Type)")
        facts.append(f"(receptacleAtLocation {mangle(rid)} {mangle(loc)})")
        if cls in constants.OPENABLE_CLASS_SET:
            facts.append(f"(openable {mangle(rid)})")
    for rcls in receptacle_classes:
        for ocls in object_classes:
            if _can_contain(rcls, ocls):
                facts.append(f"(canContain {rcls}Type {ocls}Type)")
    for oid, cls, home in spec.objects:
        o = mangle(oid)
        facts.append(f"(objectType {o} {cls}Type)")
        facts.append(f"(inReceptacle {o} {mangle(home)})")
        facts.append(f"(wasInReceptacle {o} {mangle(home)})")
        facts.append(f"(objectAtLocation {o} {mangle(location_of[home])})")
        if cls in actions["Toggleable"]:
            facts.append(f"(toggleable {o})")
            continue
        facts.append(f"(pickupable {o})")
        if cls in constants.MOVABLE_RECEPTACLES_SET:
            facts.append(f"(isReceptacleObject {o})")
        for prop, predicate in (("Cleanable", "cleanable"), ("Heatable", "heatable"), ("Coolable", "coolable"),
                                ("Sliceable", "sliceable")):
            if cls in actions[prop]:
                facts.append(f"({predicate} {o})")

    goal = alfworld_goals()[spec.task_type]["pddl"].replace("#", "-")
    goal = goal.format(obj=spec.object_target, recep=spec.parent_target, toggle=spec.toggle_target, mrecep="")
    indent = "\n        "
    return (
        f"\n(define (problem {name})\n    (:domain alfred)\n    (:objects{indent}"
        + indent.join(declared)
        + f"\n        )\n\n    (:init{indent}"
        + indent.join(facts)
        + "\n        )\n\n"
        + goal
        + "\n"
    )


def traj_data(spec: TaskSpec, task_id: str, attempt: int) -> dict[str, Any]:
    """The fields of ALFRED's ``traj_data.json`` that ALFWorld reads (plus provenance)."""
    return {
        "task_id": task_id,
        "task_type": spec.task_type,
        "pddl_params": {
            "object_target": spec.object_target,
            "parent_target": spec.parent_target,
            "toggle_target": spec.toggle_target,
            "mrecep_target": "",
            "object_sliced": False,
        },
        "scene": {"floor_plan": f"FloorPlan{spec.floor_plan}", "scene_num": spec.floor_plan},
        "turk_annotations": {"anns": [{"task_desc": goal_text(spec).capitalize() + "."}]},
        "regym": {"generator": GENERATOR_VERSION, "attempt": attempt},
    }


def game_data(spec: TaskSpec, problem: str) -> dict[str, Any]:
    """A ``game.tw-pddl`` as ``alfworld-generate`` writes it (before solving)."""
    domain, grammar = game_logic()
    return {
        "pddl_domain": domain,
        "grammar": grammar.replace("UNKNOWN GOAL", goal_text(spec)),
        "pddl_problem": problem,
        "solvable": None,
        "walkthrough": None,
    }


# --- the engine ----------------------------------------------------------------------------
def task_params(traj: dict[str, Any]) -> TaskParams:
    params = traj["pddl_params"]
    return TaskParams(traj["task_type"], params["object_target"], params.get("parent_target", ""),
                      params.get("toggle_target", ""))


def current_world(engine) -> World:
    """The engine's current PDDL facts, indexed as the expert and the dense reward read them."""
    pddl_env = engine.unwrapped
    names = {entity: info.name for entity, info in pddl_env._entity_infos.items()}
    return World(pddl_env._pddl_state.facts, names)


def current_expert_plan(engine, params: TaskParams) -> list[str]:
    """The fact-based expert's plan from the engine's current state."""
    return expert_plan(current_world(engine), params)


def solve(game_file: Path, params: TaskParams, engine=None, planner: bool = False) -> list[str] | None:
    """Play the game with the expert on ALFWorld's engine; its commands if they win, else None.

    Every command must be admissible when played, and the engine must report ``won``
    within ``MAX_PLAN_LENGTH`` steps. With ``planner=True`` Fast Downward must also find a
    plan from the initial state (3-10 s per kitchen task, so off by default).
    """
    engine = engine or make_engine()
    with keep_argv():
        engine.load(str(game_file))
        state = engine.reset()
        if planner:
            pddl_env = engine.unwrapped
            if not pddl_env._pddl_state.replan(pddl_env._entity_infos):
                return None
            state = engine.reset()
        walkthrough = []
        while not state["won"] and len(walkthrough) < MAX_PLAN_LENGTH:
            plan = current_expert_plan(engine, params)
            if not plan or plan[0] not in state["admissible_commands"]:
                return None
            walkthrough.append(plan[0])
            state, _, _ = engine.step(plan[0])
        return walkthrough if state["won"] else None


# --- the generated task set ----------------------------------------------------------------
def generated_task_id(split: str, index: int, phase: str = "eval") -> str:
    code = SPLIT_CODES[split]
    return f"alfworld-gen-{code}-{index:05d}" if phase == "eval" else f"alfworld-gen-{code}-{phase}-{index:05d}"


def parse_generated_task_id(task_id: str) -> tuple[str, str, int]:
    """``alfworld-gen-ood-00042`` -> ("out_of_distribution", "eval", 42)."""
    parts = task_id.split("-")
    if len(parts) not in (4, 5) or parts[:2] != ["alfworld", "gen"] or not parts[-1].isdigit():
        raise ValueError(f"not a generated ALFWorld task id: {task_id!r}")
    codes = {code: split for split, code in SPLIT_CODES.items()}
    if parts[2] not in codes:
        raise ValueError(f"unknown split code {parts[2]!r} in {task_id!r}")
    phase = parts[3] if len(parts) == 5 else "eval"
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r} in {task_id!r}")
    return codes[parts[2]], phase, int(parts[-1])


def task_type_for(index: int) -> str:
    """Task types rotate with the index, so any 6 consecutive tasks hold all six types."""
    return TASK_TYPES[index % len(TASK_TYPES)]


def check_task_types(task_types: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``task_types`` as a tuple in ALFWorld's order (None: all six); unknown names raise."""
    if task_types is None:
        return None
    chosen = (task_types,) if isinstance(task_types, str) else tuple(task_types)
    unknown = sorted(set(chosen) - set(TASK_TYPES))
    if unknown or not chosen:
        raise ValueError(f"task_types must name some of {TASK_TYPES}, not {unknown or chosen}")
    return tuple(kind for kind in TASK_TYPES if kind in chosen)


def index_of_type(position: int, task_types: tuple[str, ...] | None) -> int:
    """The generated-task index of the ``position``-th task whose type is in ``task_types`` (None: any)."""
    if task_types is None:
        return position
    slots = [offset for offset, kind in enumerate(TASK_TYPES) if kind in task_types]
    cycle, slot = divmod(position, len(slots))
    return cycle * len(TASK_TYPES) + slots[slot]


def generated_dir(split: str, phase: str, index: int) -> Path:
    return cache_dir("alfworld", "generated", GENERATOR_VERSION, f"{SPLIT_CODES[split]}-{phase}") / f"{index:05d}"


def generate_task(split: str, index: int, phase: str = "eval", seed: int = 0, planner: bool = False) -> Path:
    """Write (once) and return the folder of one generated task: traj_data, problem, game file.

    Deterministic in (seed, split, phase, index). Draws that cannot host the task type or
    that the expert cannot win on the engine (and, with ``planner=True``, that Fast Downward
    cannot plan) are redrawn with the next sub-seed.
    """
    folder = generated_dir(split, phase, index)
    game_file = folder / "game.tw-pddl"
    if game_file.exists():
        return folder
    task_id = generated_task_id(split, index, phase)
    task_type = task_type_for(index)
    split_code = list(SPLIT_CODES).index(split)
    engine = make_engine()
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([seed, split_code, PHASES.index(phase), index, attempt])
        spec = sample_task(task_type, FLOOR_PLANS[split], rng)
        if spec is None:
            continue
        problem = problem_pddl(spec, name=f"plan_{split_code}{index:05d}")
        data = game_data(spec, problem)
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "game.tw-pddl").write_text(json.dumps(data))
        params = TaskParams(spec.task_type, spec.object_target, spec.parent_target, spec.toggle_target)
        walkthrough = solve(tmp / "game.tw-pddl", params, engine, planner=planner)
        if walkthrough is None:
            continue
        data["solvable"], data["walkthrough"] = True, walkthrough
        (tmp / "game.tw-pddl").write_text(json.dumps(data))
        (tmp / "initial_state.pddl").write_text(problem)
        (tmp / "traj_data.json").write_text(json.dumps(traj_data(spec, task_id, attempt), indent=1))
        try:
            tmp.rename(folder)
        except OSError:  # another process wrote it first; theirs is identical
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        return folder
    raise RuntimeError(f"could not generate a solvable {task_type} task for {task_id} in {MAX_ATTEMPTS} draws")


def export_real_layout(task_folders: list[Path], root: Path, folder_name: str) -> list[Path]:
    """Copy generated tasks into ALFWorld's downloaded layout under ``root/json_2.1.1/folder_name``.

    The layout is ``<task_type>-<Object>-<MovableRecep>-<Parent>-<scene_num>/trial_T.../``
    with ``traj_data.json``, ``initial_state.pddl`` and ``game.tw-pddl``.
    """
    written = []
    for folder in task_folders:
        traj = json.loads((folder / "traj_data.json").read_text())
        params = traj["pddl_params"]
        parent = params["parent_target"] or params["toggle_target"]
        name = f"{traj['task_type']}-{params['object_target']}-None-{parent}-{traj['scene']['scene_num']}"
        trial = root / "json_2.1.1" / folder_name / name / f"trial_T20240101_{folder.name}"
        trial.mkdir(parents=True, exist_ok=True)
        for file in ("traj_data.json", "initial_state.pddl", "game.tw-pddl"):
            (trial / file).write_bytes((folder / file).read_bytes())
        written.append(trial / "game.tw-pddl")
    return written


# --- the downloaded task set -----------------------------------------------------------------
def real_data_root(data_path: str | os.PathLike) -> Path | None:
    """The ``json_2.1.1`` folder under an ALFWorld data folder (or the folder itself), if any."""
    path = Path(data_path).expanduser()
    for candidate in (path / "json_2.1.1", path):
        if any((candidate / folder).is_dir() for folder in set(REAL_DATA_FOLDERS.values())):
            return candidate
    return None


def find_real_games(root: Path, folder: str, task_types: Sequence[str] | None = None) -> list[Path]:
    """The playable games of one folder, filtered exactly as ``AlfredTWEnv.collect_game_files``.

    Skips movable-receptacle and sliced trajectories, other task types (``task_types``: of
    these types only, as ALFWorld's ``env.task_types`` setting), missing game files and games
    not marked solvable. Sorted, so task choice is reproducible (ALFWorld keeps ``os.walk`` order).
    """
    games = []
    for dirpath, _, files in os.walk(root / folder):
        if "traj_data.json" not in files:
            continue
        if "movable" in dirpath or "Sliced" in dirpath:
            continue
        traj = json.loads((Path(dirpath) / "traj_data.json").read_text())
        if traj.get("task_type") not in (task_types or TASK_TYPES):
            continue
        game_file = Path(dirpath) / "game.tw-pddl"
        if not game_file.exists():
            continue
        if not json.loads(game_file.read_text()).get("solvable"):
            continue
        games.append(game_file)
    return sorted(games)
