"""The floor of every leaderboard: an agent that acts at random."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from regym.trajectory import Trajectory

_WORD = re.compile(r"[A-Za-z0-9.\-]+")


class RandomAgent:
    """Samples uniformly from ``info["admissible_actions"]``.

    Envs without an admissible list (free-form answers, tool calls) get a random
    word from the observation, answered as "Answer: <word>" one time in two, which
    is the floor a policy with no skill reaches.
    """

    name = "random"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def act(self, trajectories: Sequence[Trajectory]) -> list[str]:
        return [self._act_one(trajectory) for trajectory in trajectories]

    def _act_one(self, trajectory: Trajectory) -> str:
        admissible = trajectory.info.get("admissible_actions")
        if admissible:
            return str(admissible[self.rng.integers(len(admissible))])
        words = _WORD.findall(trajectory.observation) or ["nothing"]
        word = words[self.rng.integers(len(words))]
        return f"Answer: {word}" if self.rng.random() < 0.5 else word
