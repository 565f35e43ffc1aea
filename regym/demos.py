"""Demonstrations: an agent's episodes saved as a ``datasets.Dataset`` ready for SFT.

One row per episode. ``messages`` is the conversation in THE prompt format
(``regym.agents.prompts.build_messages``: system prompt, observations with their
"Available actions: ..." list, the agent's actions as assistant turns), which is
what TRL's ``SFTTrainer`` reads; ``trajectory`` keeps the whole record as JSON
(``Trajectory.from_dict(json.loads(row["trajectory"]))``) so nothing is lost.

Expert episodes are also regym's calibration text (``calibration_examples``): what rejuvenation's
criteria score and what the plasticity report measures, built here once for rl-train, the lab and
the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

from regym.agents import Agent, ExpertAgent, RandomAgent
from regym.agents.prompts import PromptFormat, build_messages
from regym.paths import atomic_directory
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

    from regym.envs.spec import EnvSpec

    agent = make_agent(agent, seed) if isinstance(agent, str) else agent
    envs = EnvSpec(env_id, split, env_kwargs or {}).with_options(max_turns=max_turns).on_task_pool(task_pool).make(num_envs)
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


CALIBRATION_MAX_TOKENS = 256
"""Calibration window: rl-train's rejuvenation, the lab's rejuvenated starts and the plasticity report score
examples of at most this many tokens."""


def calibration_examples(conversations: Iterable[Sequence[dict[str, str]]], tokenizer: Any, *,
                         max_tokens: int = CALIBRATION_MAX_TOKENS, limit: int | None = None) -> list[dict[str, Any]]:
    """THE calibration text of regym: one example per expert turn, ``{"messages": [system, observation, action]}``.

    Each conversation is in the policy's prompt format (``build_messages``: the system prompt, then
    observation / action pairs). Every action becomes one example with the system prompt and the
    observation it answered; the history is dropped, so each example ends with a scored reply and fits
    the window. Turns whose example renders (chat template) to more than ``max_tokens`` tokens are left
    out; at most ``limit`` examples are kept, in order. Rejuvenation's criteria and the plasticity report
    measure this same text.
    """
    from regym.agents.llm import chat_token_ids

    examples = []
    for messages in conversations:
        for user in range(1, len(messages) - 1, 2):
            example = [messages[0], messages[user], messages[user + 1]]
            if len(chat_token_ids(tokenizer, example, add_generation_prompt=False)) <= max_tokens:
                examples.append({"messages": example})
    return examples if limit is None else examples[:limit]


class CalibrationError(ValueError):
    """No calibration set can be made from an env's expert episodes; the message says why."""


def expert_calibration(envs: gym.Env | Sequence[gym.Env], tokenizer: Any, *, episodes: int,
                       prompt_format: PromptFormat = PromptFormat(), max_tokens: int = CALIBRATION_MAX_TOKENS,
                       limit: int | None = 32) -> list[dict[str, Any]]:
    """``calibration_examples`` of ``episodes`` expert episodes played on ``envs``.

    Raises ``CalibrationError`` when none can be made: the env's expert cannot play, or no turn fits.
    """
    if episodes <= 0:
        raise CalibrationError(f"calibration plays expert episodes, and {episodes} were asked for")
    try:
        trajectories = rollout(envs, ExpertAgent(), episodes=episodes)
    except RuntimeError as error:  # e.g. the env gives no expert_action
        raise CalibrationError(f"the env's expert cannot play: {error}") from error
    played = [trajectory for trajectory in trajectories if trajectory.error is None]
    examples = calibration_examples((build_messages(trajectory, prompt_format) for trajectory in played), tokenizer,
                                    max_tokens=max_tokens, limit=limit)
    if not examples:
        raise CalibrationError(f"{len(trajectories)} expert episodes gave no calibration example "
                               f"({len(trajectories) - len(played)} ended in an env error; every other turn is "
                               f"longer than {max_tokens} tokens)")
    return examples
