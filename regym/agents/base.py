"""What every regym agent is: a batched function from running episodes to actions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from regym.trajectory import Trajectory


@runtime_checkable
class Agent(Protocol):
    """An agent answers all live episodes at once (so LLM policies can batch).

    ``act`` receives the episodes so far (each with its current ``observation`` and
    ``info``) and returns one raw text action per episode.
    """

    name: str

    def act(self, trajectories: Sequence[Trajectory]) -> list[str]: ...
