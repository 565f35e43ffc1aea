"""ALFWorld's dense reward: progress through a task's milestones, each one an event the agent observed.

A task's milestones are the steps any solution passes through, in order: hold a target object
(the feedback says "You pick up the mug 1 from ..."), make it clean/hot/cool ("You clean the mug
1 using the sinkbasin 1"), put it in the goal receptacle ("You move the mug 1 to ..."), twice for
pick_two; or hold it and switch the lamp on. The potential of a state is the fraction of
milestones it has reached, and each step pays the change in potential (potential-based shaping,
Ng, Harada & Russell 1999, eq. 2 with gamma = 1), so the rewards of an episode sum to the potential
of its last state: 1 for a win, never below 0, and a detour that undoes a milestone costs exactly
what redoing it pays back.

Nothing is paid for where a hidden object is: walking to the closed drawer that holds the target,
or opening it, reaches no milestone. The milestones are read from the engine's facts (what the agent
holds, which objects are clean/hot/cool, what lies where), but each fact changes only through the
agent's own action whose feedback reports it, so the reward depends only on what the agent saw. A
target that already lay in a goal receptacle at the start (possible in ALFWorld's own pick_two games)
does not count, so the potential starts at 0.
"""

from __future__ import annotations

from regym.envs.alfworld.expert import APPLIANCE_COMMAND, TaskParams, World


def _type(alfred_class: str) -> str:
    return alfred_class.lower() + "type"


def milestone_count(task: TaskParams) -> int:
    """How many milestones the task has (its potential is reached / this)."""
    if task.task_type == "pick_two_obj_and_place":
        return 4  # hold, place, hold another, place
    return 3 if task.task_type in APPLIANCE_COMMAND else 2


def placed_targets(world: World, task: TaskParams) -> set[str]:
    """Targets lying in a receptacle of the goal's class (for the placements a pick_two task counts)."""
    if not task.parent_target:
        return set()
    targets = set(world.of_type(_type(task.object_target), "object"))
    parents = set(world.of_type(_type(task.parent_target), "receptacle"))
    return {obj for obj, receptacle in world.binary["inreceptacle"].items() if obj in targets and receptacle in parents}


def milestones_reached(world: World, task: TaskParams, won: bool, placed_at_start: frozenset[str] = frozenset()) -> int:
    """The milestones the state has reached (all of them when the game is won)."""
    total = milestone_count(task)
    if won:
        return total
    targets = set(world.of_type(_type(task.object_target), "object"))
    holds_target = world.held in targets
    if task.task_type == "pick_two_obj_and_place":
        parents = world.of_type(_type(task.parent_target), "receptacle")
        inside = world.binary["inreceptacle"]
        placed = max((sum(1 for obj in targets - placed_at_start if inside.get(obj) == parent) for parent in parents),
                      default=0)
        return min(total - 1, 2 * min(placed, 1) + int(holds_target))
    if task.task_type in APPLIANCE_COMMAND:
        state = APPLIANCE_COMMAND[task.task_type][2]
        return int(holds_target) + int(holds_target and world.held in world.unary[state])
    return int(holds_target)
