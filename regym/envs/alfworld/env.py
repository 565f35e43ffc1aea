"""``regym/ALFWorld-v0``: ALFWorld's text games on ALFWorld's own engine.

The game runs on TextWorld's PDDL env with ALFWorld's ``alfred.pddl`` domain,
``alfred.twl2`` grammar and ``AlfredDemangler``/``AlfredInfos`` wrappers, so
observations, admissible commands, goal texts and rewards are ALFWorld's:
the first observation is the room ("You are in the middle of a room. Looking quickly
around you, you see ...") followed by "\\n\\nYour task is to: ...", a command that is
not admissible answers "Nothing happens.", and winning gives reward 1 and ends the game.
(ALFWorld's "-= Welcome to TextWorld, ALFRED! =-" banner is dropped, as ReAct-style
ALFWorld agents do.)

Tasks come from ``regym.envs.alfworld.tasks``: the downloaded ``json_2.1.1`` games when
``data_path`` (or ``$ALFWORLD_DATA``) holds them, otherwise games generated from the
floor-plan layouts shipped in the ``alfworld`` package. See docs/alfworld.md.

Two experts can fill ``info["expert_action"]`` (``expert=``):

* ``"planner"`` (default; ``regym.envs.alfworld.expert``) plans from the engine's current PDDL
  facts on every step: the next step of a shortest winning plan from the current state,
  whatever the policy did before; ``info["expert_plan"]`` is the whole plan. It knows where
  every object is, so it walks straight to objects it has not seen.
* ``"search"`` (``regym.envs.alfworld.search_expert``) is ALFWorld's own handcoded expert: it
  searches the receptacles likely to hold the target, as a policy without privileged
  knowledge must; ``info["expert_plan"]`` is its next move alone. It can give up (None).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from regym.envs.alfworld import progress, tasks
from regym.envs.alfworld.engine import keep_argv, make_engine, room_observation
from regym.envs.alfworld.levels import ALFWORLD_LEVELS, LEVEL_OF_SPLIT
from regym.envs.alfworld.search_expert import SearchExpert
from regym.envs.base import Outcome, TextEnv, normalize_split
from regym.envs.options import ClientOption

EXPERTS = ("planner", "search")

SPLIT_ROLES = {"near_out_of_distribution": "valid_unseen", "out_of_distribution": "held_out_rooms"}
"""ALFWorld's split for each usual role: near-OOD is ALFWorld's own ``valid_unseen`` (unseen rooms, real games when
downloaded), far-OOD the 28 generated ``held_out_rooms``."""
DEPRECATED_SPLITS = ("out_of_distribution", "ood", "unseen")


def family_split(split: str, real_data: bool) -> str:
    """ALFWorld's own name of a split. ``out_of_distribution`` (``ood``) once meant the valid_unseen games with
    real data and 28 generated rooms without: it still plays what it played, with a DeprecationWarning."""
    name = normalize_split(split)
    if str(split).lower() in DEPRECATED_SPLITS:
        plays = "valid_unseen" if real_data else "held_out_rooms"
        warnings.warn(f"ALFWorld's split {split!r} is deprecated (it meant ALFWorld's valid_unseen games with real data "
                      f"and 28 generated rooms without); this env plays {plays!r}. Name 'valid_unseen' (ALFWorld's "
                      "unseen rooms, near-OOD) or 'held_out_rooms' (the 28 generated held-out rooms, far-OOD).",
                      DeprecationWarning, stacklevel=3)
        return plays
    return SPLIT_ROLES.get(name, name)


class ALFWorldEnv(TextEnv):
    """ALFWorld households: find, take, clean/heat/cool, place, or look at objects under a lamp.

    Args:
        split: "in_distribution" ("id": seen floor plans / ``valid_seen``), "valid_unseen" (ALFWorld's unseen
            rooms, FloorPlans 10, 219, 308, 424 / its ``valid_unseen`` games; "near_out_of_distribution" names it
            too) or "held_out_rooms" (28 generated rooms no ALFWorld game is trained in: the valid_unseen rooms and
            ALFRED's test rooms; always generated; the far-OOD split, "out_of_distribution" when a suite asks).
            "out_of_distribution"/"ood" given here is deprecated: it plays what it always did (``valid_unseen``
            with real data, ``held_out_rooms`` without) with a DeprecationWarning.
        max_turns: episode limit (ALFWorld's usual setting is 50).
        data_path: a downloaded ALFWorld data folder (holding ``json_2.1.1``). Defaults to
            ``$ALFWORLD_DATA`` when that folder holds games.
        source: "auto" (real data if found, else generated), "real" or "generated".
        games: "eval" or "train": which task pool a seeded reset draws from
            (real data: ``valid_seen``/``valid_unseen`` vs ``train``; generated: two
            disjoint seed streams).
        num_tasks: size of the generated pool a seeded reset draws from.
        task_types: play tasks of these types only (ALFWorld's six: ``tasks.TASK_TYPES``): generated, the pool
            is then the first ``num_tasks`` generated tasks of those types, the same games as in the whole pool;
            real data, the split's games of those types. None: all six.
        dense_reward: pay progress through the task's milestones instead of ALFWorld's 0/1 win reward (hold a
            target, clean/heat/cool it, place it; ``regym.envs.alfworld.progress``): each step pays the change in
            the fraction of milestones reached, a potential-based shaping whose episode sum is 1 for a win and
            never below 0, paid only for events the agent observed (for RL on small policies whose groups would
            otherwise all lose). Success is ALFWorld's ``won`` either way.
        expert: which expert fills ``info["expert_action"]``/``info["expert_plan"]``:
            "planner" (plans from the true state) or "search" (ALFWorld's handcoded expert);
            False or None for none (both None). True means "planner".
    """

    splits = ("in_distribution", "near_out_of_distribution", "out_of_distribution", "valid_unseen", "held_out_rooms")
    """The family's own splits (``in_distribution``, ``valid_unseen``, ``held_out_rooms``) and the role names that
    reach them (``split_roles``; ``out_of_distribution`` given directly is deprecated)."""
    split_roles = SPLIT_ROLES
    difficulty_levels = ALFWORLD_LEVELS.descriptions()
    level_splits = ALFWORLD_LEVELS.split_levels()
    rl_defaults = {"max_turns": 30, "max_new_tokens": 16, "max_episode_tokens": 1024, "context": "window",
                   "history_turns": 2}
    """rl-train's episode shape (``regym.rl.config.resolve_config``; measured in docs/rl.md). The search expert
    wins 50 of 60 tasks within 30 turns (55 within 50; the planner needs at most 10); replies take at most 13
    tokens. A 30-turn episode's full sequence runs to thousands of tokens, so each turn sees a window: with the
    task and the last 2 exchanges, 95 % of the expert's prompts and 90 % of a random policy's fit a 1024-token
    model (with 3 exchanges, 85 %; with 1, no more than with 2: the task's long first exchange decides)."""
    client_options = {**TextEnv.client_options, "num_tasks": ClientOption(int, 1, 10_000),
                      "games": ClientOption(str, choices=tasks.PHASES),
                      "source": ClientOption(str, choices=("auto", "real", "generated")),
                      "expert": ClientOption(str, choices=("planner", "search"), nullable=True),
                      "generator_seed": ClientOption(int, 0, 2**31 - 1),
                      "task_types": ClientOption(list, choices=tasks.TASK_TYPES, nullable=True),
                      "dense_reward": ClientOption(bool)}
    """A served game's tasks are the client's; ``data_path`` (a host folder) is the operator's."""

    def __init__(
        self,
        split: str = "in_distribution",
        max_turns: int = 50,
        invalid_action_penalty: float = 0.0,
        render_mode: str | None = None,
        *,
        data_path: str | os.PathLike | None = None,
        source: str = "auto",
        games: str = "eval",
        num_tasks: int = 100,
        expert: str | bool | None = "planner",
        generator_seed: int = 0,
        task_types: str | Sequence[str] | None = None,
        dense_reward: bool = False,
    ):
        if source not in ("auto", "real", "generated"):
            raise ValueError(f"source must be 'auto', 'real' or 'generated', not {source!r}")
        data_root = self._find_data(data_path, source)
        split = family_split(split, real_data=data_root is not None)
        if split == "held_out_rooms":
            if source == "real":
                raise ValueError("held_out_rooms are generated (ALFWorld ships no games in ALFRED's test rooms): "
                                 "play split='valid_unseen' for ALFWorld's own unseen games")
            data_root = None
        super().__init__(split=split, max_turns=max_turns, invalid_action_penalty=invalid_action_penalty,
                         render_mode=render_mode)
        if games not in tasks.PHASES:
            raise ValueError(f"games must be one of {tasks.PHASES}, not {games!r}")
        if num_tasks < 1:
            raise ValueError("num_tasks must be >= 1")
        if expert is True:
            expert = "planner"
        if expert not in (*EXPERTS, False, None):
            raise ValueError(f"expert must be one of {EXPERTS} or False, not {expert!r}")
        self.games = games
        self.num_tasks = int(num_tasks)
        self.task_types = tasks.check_task_types(task_types)
        self.dense_reward = bool(dense_reward)
        self._milestones = 0
        self._placed_at_start: frozenset[str] = frozenset()
        self._plan_of_state: list[str] | None = None
        self.expert: str | None = expert or None
        self.generator_seed = int(generator_seed)
        self.data_root = data_root
        self.source = "real" if self.data_root is not None else "generated"
        self._real_games: list[Path] | None = None
        self._engine = None
        self._loaded_game: Path | None = None
        self._params: tasks.TaskParams | None = None
        self._state = None
        self._search: SearchExpert | None = None
        self._task_info: dict[str, Any] = {}

    # --- task sources -----------------------------------------------------------------------
    def _find_data(self, data_path, source: str) -> Path | None:
        if source == "generated":
            return None
        explicit = data_path is not None
        path = data_path if explicit else os.environ.get("ALFWORLD_DATA")
        root = tasks.real_data_root(path) if path else None
        if root is None and (explicit or source == "real"):
            raise FileNotFoundError(
                f"no ALFWorld games (json_2.1.1/{{train,valid_seen,valid_unseen}}) under {path!r}"
            )
        return root

    def _real_pool(self) -> list[Path]:
        if self._real_games is None:
            folder = tasks.REAL_DATA_FOLDERS.get((self.split, self.games))
            if folder is None:
                raise ValueError(f"ALFWorld has no {self.games!r} games for split {self.split!r}")
            self._real_games = tasks.find_real_games(self.data_root, folder, self.task_types)
            if not self._real_games:
                kinds = f" of types {list(self.task_types)}" if self.task_types else ""
                raise FileNotFoundError(f"no playable games{kinds} under {self.data_root / folder}")
        return self._real_games

    @property
    def task_ids(self) -> list[str] | None:
        """ALFWorld's own games of the split (real data), sorted; None for generated games, which a seeded reset
        draws from a pool of ``num_tasks``."""
        return [str(path) for path in self._real_pool()] if self.source == "real" else None

    def _task_id_for(self, rng: np.random.Generator) -> str:
        if self.source == "real":
            pool = self._real_pool()
            return str(pool[int(rng.integers(len(pool)))])
        index = tasks.index_of_type(int(rng.integers(self.num_tasks)), self.task_types)
        return tasks.generated_task_id(LEVEL_OF_SPLIT[self.split].settings["pool"], index, self.games)

    def game_file(self, task_id: str) -> Path:
        """The ``game.tw-pddl`` a task id plays (generating the task on first use)."""
        if task_id.startswith("alfworld-gen-"):
            split, phase, index = tasks.parse_generated_task_id(task_id)
            return tasks.generate_task(split, index, phase, seed=self.generator_seed) / "game.tw-pddl"
        path = Path(task_id)
        if path.name != "game.tw-pddl" or not path.is_file():
            raise ValueError(f"unknown ALFWorld task {task_id!r}: expected a generated id or a game.tw-pddl path")
        return path

    # --- hooks --------------------------------------------------------------------------------
    def _begin(self, task_id: str) -> Outcome:
        game_file = self.game_file(task_id)
        if self._engine is None:
            self._engine = make_engine()
        with keep_argv():
            if self._loaded_game != game_file:
                self._engine.load(str(game_file))
                self._loaded_game = game_file
            self._state = self._engine.reset()
        self._plan_of_state = None
        traj_file = game_file.parent / "traj_data.json"
        traj = json.loads(traj_file.read_text()) if traj_file.exists() else {}
        scene = traj.get("scene", {})
        self._task_info = {
            "task_type": traj.get("task_type"),
            "floor_plan": scene.get("floor_plan"),
            "task_source": self.source,
            "task_level": LEVEL_OF_SPLIT[self.split].name,
            "gamefile": str(game_file),
        }
        self._params = tasks.task_params(traj) if traj.get("pddl_params") else None
        self._search = None
        if self.dense_reward:
            if self._params is None:
                raise ValueError(f"dense_reward needs the task's PDDL parameters, and {game_file} has none")
            world = tasks.current_world(self._engine)
            self._placed_at_start = frozenset(progress.placed_targets(world, self._params))
            self._milestones = progress.milestones_reached(world, self._params, False, self._placed_at_start)
        if self.expert == "search" and self._params is not None:
            self._search = SearchExpert(game_file, seed=task_id)
        return Outcome(room_observation(self._state["feedback"]), info=self._extras(last_action=""))

    def _act(self, action: str) -> Outcome:
        admissible = action in self._state["admissible_commands"]
        with keep_argv():
            self._state, score, done = self._engine.step(action)
        self._plan_of_state = None
        won = bool(self._state["won"])
        return Outcome(
            self._state["feedback"],
            reward=self._progress(won) if self.dense_reward else float(score),
            terminated=bool(done),
            won=won,
            valid=admissible,
            info=self._extras(last_action=action),
        )

    def _progress(self, won: bool) -> float:
        """The change in the fraction of the task's milestones reached (``progress``; negative when the action
        undid one, as dropping the target)."""
        reached = progress.milestones_reached(tasks.current_world(self._engine), self._params, won, self._placed_at_start)
        reward = (reached - self._milestones) / progress.milestone_count(self._params)
        self._milestones = reached
        return reward

    def _expert_plan(self, last_action: str) -> list[str] | None:
        """The expert's plan from here; the search expert is told every move, once, in order."""
        if self.expert is None or self._params is None or self._state["won"]:
            return None
        if self.expert == "search":
            pddl_env = self._engine.unwrapped
            facts = [pddl_env._get_human_readable_fact(fact) for fact in self._state["_facts"]]
            action = self._search.next_action(self._state, facts, last_action)
            return [action] if action is not None else None
        return self._planner_plan()

    def _planner_plan(self) -> list[str]:
        """The planner's plan from the current state, computed once per state."""
        if self._plan_of_state is None:
            self._plan_of_state = tasks.current_expert_plan(self._engine, self._params)
        return self._plan_of_state

    def _extras(self, last_action: str) -> dict[str, Any]:
        plan = self._expert_plan(last_action)
        return {
            **self._task_info,
            "admissible_actions": list(self._state["admissible_commands"]),
            "expert_action": plan[0] if plan else None,
            "expert_plan": plan,
        }

    def close(self):
        self._engine, self._loaded_game = None, None
        super().close()
