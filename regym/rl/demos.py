"""Demonstrations: an agent's episodes saved as a ``datasets.Dataset`` ready for SFT.

One row per episode. ``messages`` is the conversation in THE prompt format
(``regym.agents.prompts.build_messages``: system prompt, observations with their
"Available actions: ..." list, the agent's actions as assistant turns), which is
what TRL's ``SFTTrainer`` reads; ``trajectory`` keeps the whole record as JSON
(``Trajectory.from_dict(json.loads(row["trajectory"]))``) so nothing is lost.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from regym.agents import Agent, ExpertAgent, RandomAgent
from regym.agents.prompts import PromptFormat, build_messages
from regym.rl.checkpoints import atomic_directory
from regym.rollout import rollout
from regym.trajectory import Trajectory

DEMO_COLUMNS = ("messages", "env_id", "task_id", "split", "seed", "agent", "success", "total_reward",
                "num_turns", "trajectory")


def demo_rows(trajectories: Sequence[Trajectory], prompt_format: PromptFormat = PromptFormat()) -> list[dict[str, Any]]:
    """One dataset row per trajectory (episodes that crashed are left out)."""
    rows = []
    for trajectory in trajectories:
        if trajectory.error is not None or not trajectory.turns:
            continue
        rows.append({
            "messages": build_messages(trajectory, prompt_format, include_current=False),
            "env_id": trajectory.env_id,
            "task_id": trajectory.task_id or "",
            "split": trajectory.split,
            "seed": -1 if trajectory.seed is None else int(trajectory.seed),
            "agent": trajectory.agent,
            "success": trajectory.success,
            "total_reward": trajectory.total_reward,
            "num_turns": trajectory.num_turns,
            "trajectory": json.dumps(trajectory.to_dict(), ensure_ascii=False),
        })
    return rows


def make_agent(name: str, seed: int = 0) -> Agent:
    if name == "expert":
        return ExpertAgent()
    if name == "random":
        return RandomAgent(seed=seed)
    raise ValueError(f"unknown demo agent {name!r}; use 'expert' or 'random'")


def collect_demos(
    env_id: str,
    *,
    agent: str | Agent = "expert",
    episodes: int = 200,
    split: str = "in_distribution",
    seed: int = 0,
    out_dir: str | Path | None = None,
    max_turns: int | None = None,
    task_pool: int | None = None,
    only_successes: bool = False,
    prompt_format: PromptFormat = PromptFormat(),
    num_envs: int = 1,
    progress: bool = False,
    env_kwargs: dict[str, Any] | None = None,
):
    """Play ``episodes`` episodes (reset seeds ``seed, seed+1, ...``) and return them as a Dataset.

    ``only_successes`` keeps won episodes only (the usual filter for SFT data when the
    agent is not a perfect expert). With ``out_dir`` the dataset is also written with
    ``save_to_disk`` (atomically: a temporary folder, then a rename) and can be read
    back with ``datasets.load_from_disk``. ``env_kwargs``: options for the env (e.g. ALFWorld's
    ``expert="search"``: which expert the ``"expert"`` agent follows).
    """
    from datasets import Dataset

    from regym.envs import make_pooled_env

    agent = make_agent(agent, seed) if isinstance(agent, str) else agent
    envs = [make_pooled_env(env_id, split=split, max_turns=max_turns, task_pool=task_pool, env_kwargs=env_kwargs)
            for _ in range(num_envs)]
    try:
        trajectories = rollout(envs, agent, seeds=list(range(seed, seed + episodes)), progress=progress)
    finally:
        for env in envs:
            env.close()
    if only_successes:
        trajectories = [trajectory for trajectory in trajectories if trajectory.success]
    rows = demo_rows(trajectories, prompt_format)
    if not rows:
        errors = sorted({str(trajectory.error) for trajectory in trajectories if trajectory.error})
        raise RuntimeError(f"no usable {env_id} episode among {episodes}; errors: {errors[:3]}")
    dataset = Dataset.from_list(rows)
    if out_dir is not None:
        save_dataset(dataset, out_dir)
    return dataset


def save_dataset(dataset, out_dir: str | Path) -> Path:
    """``dataset.save_to_disk(out_dir)``, atomically (a hidden temporary folder, then a rename)."""
    with atomic_directory(out_dir) as staging:
        dataset.save_to_disk(str(staging))
    return Path(out_dir)


def load_demos(path: str | Path):
    """The dataset written by ``collect_demos`` (``datasets.load_from_disk``)."""
    from datasets import load_from_disk

    return load_from_disk(str(path))
