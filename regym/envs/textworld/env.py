"""TextWorld games on the real ``textworld`` engine, one generated game per task id.

The games and their task ids come from ``regym.envs.textworld.games``.
Reward is the game's score progress normalised by its maximum score, so a won game
sums to 1; success is TextWorld's ``won``. With ``dense_reward=True`` the reward is
instead progress along TextWorld's own winning policy, the shaping behind TextWorld's
``intermediate_reward``: each step pays (steps left before − steps left after) / steps
at the start. It telescopes, so an episode's sum is the fraction of the quest done by
its end (1 when won) and the best policy is unchanged; a detour costs until undone.
``level="house.3"`` plays one difficulty level's games (``textworld/levels.py``) in place of the split's.
The expert action is the first command of TextWorld's own winning policy from the
current state (``policy_commands``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import numpy as np
import textworld

from regym.envs.base import Outcome, TextEnv
from regym.envs.options import ClientOption
from regym.envs.textworld.games import SPLIT_OF_SHORT, SPLIT_SHORT, SPLIT_SPECS, compile_game, game_settings
from regym.envs.textworld.levels import TEXTWORLD_LEVELS
from regym.paths import cache_dir

REQUEST_INFOS = textworld.EnvInfos(
    admissible_commands=True,
    policy_commands=True,
    score=True,
    max_score=True,
    won=True,
    lost=True,
    objective=True,
)

_BANNER_CHARS = set(" _|\\/$<>-")
_TASK_ID = re.compile(rf"tw-({'|'.join(re.escape(short) for short in SPLIT_OF_SHORT)})-(\d+)")
_STATUS_PROMPT = re.compile(r"\n>[^\n]*$")
_UNSAFE_FOR_ENGINE = re.compile(r"[^A-Za-z0-9 ,.'!?:;()-]")
MAX_ENGINE_CHARS = 190
"""The Z-machine interpreter reads backslashes as its own meta-commands and crashes on some
bytes, so only plain ASCII command text of bounded length ever reaches it."""


def clean_feedback(text: str) -> str:
    """TextWorld's text without the ASCII-art banner and the trailing status prompt."""
    text = _STATUS_PROMPT.sub("", text)
    lines = text.splitlines()
    start = 0
    for index, line in enumerate(lines):
        if line.strip() and not set(line) <= _BANNER_CHARS:
            start = index
            break
    return "\n".join(lines[start:]).strip()


class TextWorldEnv(TextEnv):
    """A procedurally generated TextWorld game per task."""

    splits: ClassVar[tuple[str, ...]] = tuple(SPLIT_SPECS)
    difficulty_levels: ClassVar[dict[str, str]] = TEXTWORLD_LEVELS.descriptions()
    level_splits: ClassVar[dict[str, tuple[str, ...]]] = TEXTWORLD_LEVELS.split_levels()
    instructions: ClassVar[str] = (
        "You are playing a text adventure game. The first observation states your objective. "
        "Reply with one text command such as 'go north', 'open chest', 'take key' or 'put apple on table'."
    )
    rl_defaults = {"max_turns": 6, "max_new_tokens": 16, "max_episode_tokens": 1024, "context": "full"}
    """rl-train's episode shape (``regym.rl.config.resolve_config``). The expert wins in 3 turns (median; at
    most 4 of 30), its replies take at most 15 tokens, its whole sequence at most 964 (SmolLM2's tokenizer):
    the full context fits a 1024-token model."""
    client_options = {**TextEnv.client_options, "num_tasks": ClientOption(int, 1, 10_000),
                      "dense_reward": ClientOption(bool), "nb_rooms": ClientOption(int, 1, 20, nullable=True),
                      "nb_objects": ClientOption(int, 1, 50, nullable=True),
                      "quest_length": ClientOption(int, 1, 20, nullable=True),
                      "level": ClientOption(str, choices=tuple(TEXTWORLD_LEVELS.levels), nullable=True)}
    """A served game's size is the client's; ``cache`` (a host folder) and ``theme`` are the operator's."""

    def __init__(
        self,
        split: str = "in_distribution",
        max_turns: int = 50,
        invalid_action_penalty: float = 0.0,
        num_tasks: int = 10_000,
        dense_reward: bool = False,
        nb_rooms: int | None = None,
        nb_objects: int | None = None,
        quest_length: int | None = None,
        theme: str | None = None,
        cache: str | Path | None = None,
        render_mode: str | None = None,
        level: str | None = None,
    ):
        """``level``: play that difficulty level's game pool (``TEXTWORLD_LEVELS``) in place of the split's."""
        super().__init__(split, max_turns, invalid_action_penalty, render_mode)
        self.level = TEXTWORLD_LEVELS.level(level) if level is not None else None
        self.pool = self.level.settings["pool"] if self.level else self.split
        self.num_tasks = num_tasks
        self.dense_reward = bool(dense_reward)
        self.overrides = {"rooms": nb_rooms, "objects": nb_objects, "quest_length": quest_length, "theme": theme}
        self.cache = Path(cache) if cache is not None else cache_dir("textworld")
        self._engine: textworld.Environment | None = None
        self._game_file: Path | None = None
        self._score = 0
        self._max_score = 1
        self._steps_left = self._steps_at_start = 1
        self._task_level = ""

    # --- TextEnv hooks --------------------------------------------------------------
    def _task_id_for(self, rng: np.random.Generator) -> str:
        return f"tw-{SPLIT_SHORT[self.pool]}-{int(rng.integers(self.num_tasks)):05d}"

    def _begin(self, task_id: str) -> Outcome:
        game_file = self.game_file(task_id)
        if game_file != self._game_file:
            self.close()
            self._engine = textworld.start(str(game_file), request_infos=REQUEST_INFOS)
            self._game_file = game_file
        state = self._engine.reset()
        pool = SPLIT_OF_SHORT[_TASK_ID.fullmatch(task_id).group(1)]
        self._task_level = TEXTWORLD_LEVELS.splits[pool][0] if pool in TEXTWORLD_LEVELS.splits else pool
        self._score, self._max_score = state["score"], max(state["max_score"], 1)
        self._steps_left = self._steps_at_start = max(len(state["policy_commands"] or []), 1)
        return Outcome(clean_feedback(state.feedback), info=self._extras(state))

    def _act(self, action: str) -> Outcome:
        command = " ".join(_UNSAFE_FOR_ENGINE.sub(" ", action).split())[:MAX_ENGINE_CHARS]
        if not command:
            return Outcome(self.invalid_observation, valid=False, info=self.unchanged_info())
        admissible = self._last_info.get("admissible_actions") or []
        valid = command.lower() in {" ".join(a.lower().split()) for a in admissible}
        state, score, done = self._engine.step(command)
        reward = self._progress(state) if self.dense_reward else (score - self._score) / self._max_score
        self._score = score
        return Outcome(clean_feedback(state.feedback), reward=reward, terminated=bool(done),
                       won=bool(state["won"]), valid=valid, info=self._extras(state))

    # --- helpers ------------------------------------------------------------------------
    def _progress(self, state) -> float:
        """Walkthrough steps this action removed (negative for a detour), over the steps at the start."""
        if state["won"]:
            steps_left = 0
        elif state["policy_commands"]:
            steps_left = len(state["policy_commands"])
        else:  # lost, or no policy from here: no progress is measurable
            steps_left = self._steps_left
        reward = (self._steps_left - steps_left) / self._steps_at_start
        self._steps_left = steps_left
        return reward

    def game_file(self, task_id: str) -> Path:
        """The compiled game of a task id (generated and compiled on first use)."""
        match = _TASK_ID.fullmatch(task_id)
        if match is None:
            raise ValueError(f"not a TextWorld task id: {task_id!r} (expected e.g. 'tw-id-00042', "
                             f"with one of {sorted(SPLIT_OF_SHORT)} after 'tw-')")
        split = SPLIT_OF_SHORT[match.group(1)]
        settings = game_settings(split, int(match.group(2)), self.overrides)
        return compile_game(settings, self.cache / split)

    def _extras(self, state) -> dict:
        policy = state["policy_commands"] or []
        return {
            "admissible_actions": sorted(state["admissible_commands"] or []),
            "expert_action": policy[0] if policy else None,
            "objective": state["objective"],
            "score": state["score"],
            "max_score": state["max_score"],
            "lost": bool(state["lost"]),
            "task_level": self._task_level,
        }

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
            self._game_file = None
