"""Episodes of an evaluation: sample ``j`` of the task ``reset(seed=task_seed)`` of one (env, split).

An episode's key names it everywhere: in the log (one line per key), in the agent
wrappers (one seed per key) and across resumes. The key rides along with the episode
through ``regym.rollout``: it is passed as the reset option ``EPISODE_OPTION``,
``TagEpisode`` moves it into the reset info, and ``episode_key`` reads it back from the
trajectory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym

from regym.eval.suites import SuiteEntry
from regym.trajectory import Trajectory

EPISODE_OPTION = "eval_episode"
"""Reset option (and reset-info key) that carries an episode's key to the agent."""


@dataclass(frozen=True)
class Episode:
    """Sample ``sample`` of the task ``(env_id, split, task_seed)``; of a finite split, the task
    ``task_index`` of its list (reset with that seed and ``{"task_index": task_index}``)."""

    env_id: str
    split: str
    task_seed: int
    sample: int
    task_index: int | None = None

    @property
    def key(self) -> str:
        task = self.task_seed if self.task_index is None else f"{self.task_seed}#{self.task_index}"
        return f"{self.env_id}|{self.split}|{task}|{self.sample}"

    @classmethod
    def from_key(cls, key: str) -> Episode:
        env_id, split, task, sample = key.rsplit("|", 3)
        task_seed, _, task_index = task.partition("#")
        return cls(env_id, split, int(task_seed), int(sample), int(task_index) if task_index else None)

    @property
    def reset_options(self) -> dict[str, int]:
        """What ``reset`` needs besides the seed to play this task."""
        return {} if self.task_index is None else {"task_index": self.task_index}

    def agent_seed(self, base_seed: int = 0) -> int:
        """A seed for the agent's randomness in this episode, fixed by the key alone."""
        digest = hashlib.sha256(f"{base_seed}|{self.key}".encode()).digest()
        return int.from_bytes(digest[:8], "little") >> 1


def plan_episodes(entries: Sequence[SuiteEntry], k: int) -> list[Episode]:
    """Every (task, sample) of the suite, in a fixed order: a finite split's tasks by index, once each
    (times ``k``), others by seed."""
    if k < 1:
        raise ValueError("k must be >= 1")
    return [
        Episode(entry.env_id, entry.split, seed, sample,
                None if entry.task_indices is None else entry.task_indices[position])
        for entry in entries
        for position, seed in enumerate(entry.task_seeds)
        for sample in range(k)
    ]


def episode_key(trajectory: Trajectory) -> str:
    """The key of the episode a trajectory plays (set by ``TagEpisode`` at reset)."""
    key = trajectory.reset_info.get(EPISODE_OPTION)
    if key is None:
        raise RuntimeError("trajectory has no eval episode key: play it through regym.eval.runner")
    return key


class TagEpisode(gym.Wrapper):
    """Moves the episode key from the reset options into the reset info."""

    def reset(self, *, seed=None, options=None):
        options = dict(options or {})
        key = options.pop(EPISODE_OPTION, None)
        observation, info = self.env.reset(seed=seed, options=options or None)
        return observation, {**info, EPISODE_OPTION: key}


__all__ = ["EPISODE_OPTION", "Episode", "TagEpisode", "episode_key", "plan_episodes"]
