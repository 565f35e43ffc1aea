"""``EnvSpec``: which env to make and where its copies run, as one value.

An env id, a split, constructor options, and where the copies live (``workers`` Ray env workers, or
a ``regym serve-env`` server found in ``urls``) always travel together from a command to the
rollout; passing them as one frozen value (as TRL passes one ``GRPOConfig``) keeps every level from
re-listing ``env_kwargs=..., env_workers=..., env_urls=...``. ``spec.make(count)`` is the one way
to get the copies (``regym.envs.workers.make_envs`` underneath).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym


@dataclass(frozen=True)
class EnvSpec:
    """One env split and where it runs. Frozen: derive a variant with ``with_options`` or ``replace``."""

    id: str
    """A registered env id ("regym/TextWorld-v0", or a test game's)."""
    split: str = "in_distribution"
    """The task split every copy plays."""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Constructor options of the env (``max_turns``, ``num_tasks``, ``dense_reward``, ...); never ``split``."""
    workers: int = 0
    """Ray env workers hosting the copies; 0 makes them in this process."""
    urls: Mapping[str, str] | None = None
    """Env families (ids or short names) played on a ``regym serve-env`` server at the given URL."""

    def __post_init__(self) -> None:
        if "split" in self.kwargs:
            raise ValueError(f"EnvSpec({self.id!r}): the split is EnvSpec.split, not a kwarg")
        if self.workers < 0:
            raise ValueError(f"EnvSpec({self.id!r}): workers must be >= 0 (0 = in this process), not {self.workers}")
        object.__setattr__(self, "kwargs", dict(self.kwargs))  # a copy: the caller's dict may change later
        if self.urls is not None:
            object.__setattr__(self, "urls", dict(self.urls))

    def make(self, count: int = 1) -> list[gym.Env]:
        """``count`` copies: here, on the Ray env workers, or as sessions on the env's server."""
        from regym.envs.workers import make_envs

        return make_envs(self.id, count, split=self.split, env_workers=self.workers, env_urls=self.urls,
                         **self.kwargs)

    def with_options(self, **options: Any) -> EnvSpec:
        """The same spec with these constructor options added or replaced; an option given as None is left out."""
        return replace(self, kwargs={**self.kwargs, **{key: value for key, value in options.items() if value is not None}})

    def on_task_pool(self, tasks: int | None) -> EnvSpec:
        """The spec drawing from ``tasks`` tasks (the ``num_tasks`` option) where the env has that option
        (e.g. few TextWorld games to compile); unchanged for envs without it, or when ``tasks`` is None."""
        from regym.envs import accepts_option

        if tasks is None or not accepts_option(self.id, "num_tasks"):
            return self
        return self.with_options(num_tasks=tasks)
