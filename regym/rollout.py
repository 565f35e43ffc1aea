"""Playing episodes: N envs stepped in lock-step, one batched agent call per turn.

This is regym's one episode scheduler: evaluation, demos and RL
(``regym.rl.rollout.play_groups``) all play through it. A free env immediately takes
the next pending episode (continuous batching), so a long episode never holds the
others back. An env that raises ends that episode as failed (``trajectory.error``)
and the batch goes on.

A caller that keeps its own view of each episode (RL keeps token ids, loss masks and
log-probs) does so through two hooks rather than a second loop: ``on_reset`` sees
each episode once its env has reset, ``on_step`` sees each env step before the turn
is recorded and may end the episode at a limit of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym

from regym.agents.base import Agent
from regym.trajectory import Trajectory

StepHook = Callable[[Trajectory, str, bool, bool, dict[str, Any]], tuple[bool, dict[str, Any]]]


def env_id_of(env: gym.Env) -> str:
    spec = getattr(env, "spec", None) or getattr(env.unwrapped, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__


def rollout(
    envs: gym.Env | Sequence[gym.Env],
    agent: Agent,
    *,
    episodes: int | None = None,
    seeds: Sequence[int | None] | None = None,
    options: Sequence[dict[str, Any] | None] | None = None,
    on_reset: Callable[[Trajectory], None] | None = None,
    on_step: StepHook | None = None,
    on_done: Callable[[int, Trajectory], None] | None = None,
    progress: bool = False,
) -> list[Trajectory]:
    """Play episodes and return their trajectories in job order.

    Jobs are given by ``seeds`` (reset seeds) and/or ``options`` (reset options, e.g.
    ``{"task_id": ...}``), or by ``episodes`` (seeds 0..episodes-1). Hooks, all optional:

    - ``on_reset(trajectory)`` after each successful reset; setting ``trajectory.error``
      ends the episode before the agent acts.
    - ``on_step(trajectory, observation, terminated, truncated, info) -> (truncated, info)``
      after each env step, before the turn is recorded; what it returns is recorded.
    - ``on_done(index, trajectory)`` as each episode ends, e.g. to append it to a log.
    """
    envs = [envs] if isinstance(envs, gym.Env) else list(envs)
    if not envs:
        raise ValueError("rollout needs at least one env")
    if seeds is None and options is None:
        if episodes is None:
            raise ValueError("give episodes, seeds or options")
        seeds = list(range(episodes))
    count = len(seeds) if seeds is not None else len(options)
    seeds = list(seeds) if seeds is not None else [None] * count
    options = list(options) if options is not None else [None] * count
    if len(seeds) != len(options):
        raise ValueError("seeds and options must have the same length")

    results: list[Trajectory | None] = [None] * count
    pending = iter(range(count))
    live: dict[int, tuple[int, Trajectory]] = {}  # env slot -> (job index, trajectory)
    bar = _progress(count) if progress else None

    def finish(slot: int) -> None:
        job, trajectory = live.pop(slot)
        results[job] = trajectory
        if on_done is not None:
            on_done(job, trajectory)
        if bar is not None:
            bar.update(1)

    def start(slot: int) -> None:
        for job in pending:
            env = envs[slot]
            trajectory = Trajectory(env_id_of(env), None, "", seed=seeds[job], agent=getattr(agent, "name", ""))
            live[slot] = (job, trajectory)
            try:
                observation, info = env.reset(seed=seeds[job], options=options[job])
            except Exception as error:  # noqa: BLE001 - an env failure ends only this episode
                trajectory.error = f"reset failed: {type(error).__name__}: {error}"
                finish(slot)
                continue
            trajectory.task_id = info.get("task_id")
            trajectory.split = info.get("split", "")
            trajectory.observation, trajectory.info, trajectory.reset_info = observation, info, info
            if on_reset is not None:
                on_reset(trajectory)
            if trajectory.error is not None:
                finish(slot)
                continue
            return

    for slot in range(len(envs)):
        start(slot)
    while live:
        slots = list(live)
        actions = agent.act([live[slot][1] for slot in slots])
        if len(actions) != len(slots):
            raise RuntimeError(f"agent returned {len(actions)} actions for {len(slots)} episodes")
        for slot, action in zip(slots, actions, strict=True):
            _, trajectory = live[slot]
            try:
                observation, reward, terminated, truncated, info = envs[slot].step(action)
            except Exception as error:  # noqa: BLE001
                trajectory.error = f"step failed: {type(error).__name__}: {error}"
                finish(slot)
                start(slot)
                continue
            if on_step is not None:
                truncated, info = on_step(trajectory, observation, terminated, truncated, info)
            trajectory.record(action, observation, reward, terminated, truncated, info)
            if terminated or truncated:
                finish(slot)
                start(slot)
    if bar is not None:
        bar.close()
    return results  # type: ignore[return-value]


class _progress:
    """A small rich progress bar that counts finished episodes."""

    def __init__(self, total: int):
        from rich.progress import Progress

        self._progress = Progress(transient=True)
        self._progress.start()
        self._task = self._progress.add_task("episodes", total=total)

    def update(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def close(self) -> None:
        self._progress.stop()
