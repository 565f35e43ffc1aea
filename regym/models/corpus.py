"""The broad text a tiny base model is pretrained on: every env's observations and actions.

A base model should know the *worlds* (what observations look like, which actions
exist and how they are phrased) but not the *policy* (which action wins). So the
corpus holds

* whole random-agent episodes of every registered env, as chat conversations in
  THE prompt format (``regym.agents.prompts.build_messages``): observations, the
  "Available actions: ..." lists and the random agent's moves in context;
* the expert's actions of every env, shuffled and *out of context* (one per line,
  detached from any observation), so that actions a random agent never says (code,
  tool calls, long answers) are in the vocabulary without revealing when to say them.

Envs that fail to import or to run are skipped and reported (``Corpus.skipped``),
never silently replaced: the base model of a machine without ALFWorld data simply
knows no ALFWorld.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from regym.agents import ExpertAgent, RandomAgent
from regym.agents.prompts import PromptFormat, build_messages
from regym.envs import ENTRY_POINTS, accepts_option, register_envs
from regym.rollout import rollout

log = logging.getLogger(__name__)

Conversation = list[dict[str, str]]


@dataclass
class Corpus:
    """Pretraining text: conversations (random play) and a bag of out-of-context actions."""

    conversations: list[Conversation] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    envs: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    episodes: dict[str, dict[str, int]] = field(default_factory=dict)

    def texts(self) -> list[str]:
        """Every message content and action line (what a tokenizer is trained on)."""
        texts = [message["content"] for conversation in self.conversations for message in conversation]
        return texts + self.actions


def make_env(env_id: str, *, split: str = "in_distribution", max_turns: int | None = None,
             task_pool: int | None = None) -> gym.Env:
    """``gym.make`` with the options the tiny pipeline uses.

    ``task_pool`` is passed as ``num_tasks`` to envs that have that option (a seeded
    reset then draws from a small pool of tasks, e.g. few TextWorld games to compile).
    """
    register_envs()
    kwargs: dict = {"split": split}
    if max_turns is not None:
        kwargs["max_turns"] = max_turns
    if task_pool is not None:
        if accepts_option(env_id, "num_tasks"):
            kwargs["num_tasks"] = task_pool
    return gym.make(env_id, **kwargs)


def play(env: gym.Env, agent, seeds: Sequence[int], *, seconds: float | None = None, chunk: int = 2):
    """``rollout`` over ``seeds`` in chunks, stopping after the chunk that passes ``seconds``.

    The budget keeps a slow env from stalling the build; the episodes played are
    always a prefix of ``seeds``, so a fast machine gets them all.
    """
    started = time.perf_counter()
    trajectories = []
    for start in range(0, len(seeds), chunk):
        trajectories += rollout(env, agent, seeds=list(seeds[start:start + chunk]))
        if seconds is not None and time.perf_counter() - started > seconds:
            break
    return trajectories


def gather_corpus(
    env_ids: Sequence[str] | None = None,
    *,
    random_episodes: int = 40,
    expert_episodes: int = 20,
    max_turns: int = 15,
    task_pool: int | None = 64,
    seconds_per_env: float | None = None,
    seed: int = 0,
    prompt_format: PromptFormat = PromptFormat(),
) -> Corpus:
    """Play every env (default: all registered regym envs) and collect its text.

    Random episodes use seeds ``seed*100_000 + 50_000 + i`` so they do not replay the
    demo seeds; expert episodes only contribute their shuffled actions.
    ``seconds_per_env`` caps the time spent on one env (two thirds random play, one
    third expert play); what each env contributed is in ``Corpus.episodes``.
    """
    env_ids = list(env_ids) if env_ids is not None else list(ENTRY_POINTS)
    corpus = Corpus()
    rng = np.random.default_rng(seed)
    first = seed * 100_000 + 50_000
    random_seeds = list(range(first, first + random_episodes))
    expert_seeds = list(range(first + random_episodes, first + random_episodes + expert_episodes))
    random_budget = None if seconds_per_env is None else seconds_per_env * 2 / 3
    expert_budget = None if seconds_per_env is None else seconds_per_env / 3
    for env_id in env_ids:
        started = time.perf_counter()
        try:
            env = make_env(env_id, max_turns=max_turns, task_pool=task_pool)
        except Exception as error:  # noqa: BLE001 - an env that cannot start is skipped and reported
            corpus.skipped[env_id] = f"{type(error).__name__}: {error}"
            log.warning("tiny corpus: skipping %s (%s)", env_id, corpus.skipped[env_id])
            continue
        try:
            played = play(env, RandomAgent(seed=seed), random_seeds, seconds=random_budget)
            expert = play(env, ExpertAgent(), expert_seeds, seconds=expert_budget)
        except Exception as error:  # noqa: BLE001 - e.g. an env with no expert
            corpus.skipped[env_id] = f"{type(error).__name__}: {error}"
            log.warning("tiny corpus: skipping %s (%s)", env_id, corpus.skipped[env_id])
            continue
        finally:
            env.close()
        good = [trajectory for trajectory in played if trajectory.error is None and trajectory.turns]
        if not good:
            corpus.skipped[env_id] = "no random episode ran: " + "; ".join(
                sorted({str(trajectory.error) for trajectory in played}))[:300]
            log.warning("tiny corpus: skipping %s (%s)", env_id, corpus.skipped[env_id])
            continue
        actions = [turn.action for trajectory in expert if trajectory.error is None for turn in trajectory.turns]
        corpus.envs.append(env_id)
        corpus.episodes[env_id] = {"random": len(good), "expert": len(expert), "expert_actions": len(actions)}
        corpus.conversations += [build_messages(trajectory, prompt_format, include_current=False)
                                 for trajectory in good]
        corpus.actions += actions
        log.info("tiny corpus: %s gave %d random episodes and %d expert actions in %.0f s", env_id, len(good),
                 len(actions), time.perf_counter() - started)
    order = rng.permutation(len(corpus.actions))
    corpus.actions = [corpus.actions[index] for index in order]
    return corpus
