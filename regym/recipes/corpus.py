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

An env that fails to import or to run stops the build with ``CorpusError`` naming it: a
machine without ALFWorld data must say so (or leave ALFWorld out of the corpus envs), never
build a base model that silently knows no ALFWorld.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from regym import seeds
from regym.agents import ExpertAgent, RandomAgent
from regym.agents.prompts import PromptFormat, build_messages
from regym.envs import ENTRY_POINTS
from regym.envs.spec import EnvSpec
from regym.rollout import rollout

log = logging.getLogger(__name__)

Conversation = list[dict[str, str]]


class CorpusError(RuntimeError):
    """An env asked for in the corpus could not be played; the message names it.

    A corpus that silently lacks an env gives a base model that never read that env's text, and
    every model built on it would differ from the one its settings describe: fail instead.
    """


@dataclass
class Corpus:
    """Pretraining text: conversations (random play) and a bag of out-of-context actions."""

    conversations: list[Conversation] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    envs: list[str] = field(default_factory=list)
    episodes: dict[str, dict[str, int]] = field(default_factory=dict)

    def texts(self) -> list[str]:
        """Every message content and action line (what a tokenizer is trained on)."""
        texts = [message["content"] for conversation in self.conversations for message in conversation]
        return texts + self.actions

    def sha256(self) -> str:
        """A hash of everything the base model reads, in order: equal hashes mean equal corpora.

        Recorded in ``tiny_base.json`` so a pipeline built on another machine (or from a cold
        cache) can be checked against a known build.
        """
        payload = {"envs": self.envs, "conversations": self.conversations, "actions": self.actions}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def gather_corpus(
    env_ids: Sequence[str] | None = None,
    *,
    random_episodes: int = 40,
    expert_episodes: int = 20,
    max_turns: int = 15,
    task_pool: int | None = 64,
    seed: int = 0,
    prompt_format: PromptFormat = PromptFormat(),
    on_env_done: Callable[[str], None] | None = None,
) -> Corpus:
    """Play every env (default: all registered regym envs) and collect its text.

    Random episodes use ``regym.seeds.corpus_seeds``, so they do not replay the demo
    seeds; expert episodes only contribute their shuffled actions. Every env plays
    exactly ``random_episodes`` and ``expert_episodes``: the corpus is fixed by counts and
    seeds, never by the clock, so the same seed gives the same corpus on a slow machine,
    a busy one or a warm cache (a wall-clock cap once gave 22 episodes instead of 120 on
    a cold cache). What each env contributed is in ``Corpus.episodes``.
    An env that cannot start or play raises ``CorpusError`` naming it (pass ``env_ids`` without it).
    ``on_env_done(env_id)`` is called after each env (progress).
    """
    env_ids = list(env_ids) if env_ids is not None else list(ENTRY_POINTS)
    corpus = Corpus()
    rng = np.random.default_rng(seed)
    random_seeds = seeds.corpus_seeds(seed, random_episodes)
    expert_seeds = seeds.corpus_seeds(seed, expert_episodes, skip=random_episodes)
    for env_id in env_ids:
        started = time.perf_counter()
        failure = _add_env(corpus, env_id, random_seeds, expert_seeds, max_turns=max_turns, task_pool=task_pool,
                           seed=seed, prompt_format=prompt_format)
        if failure is not None:
            raise CorpusError(f"tiny corpus: {env_id} could not be played ({failure}); fix it, or leave it out "
                              "of the corpus envs (TinyPipelineConfig.corpus_envs)")
        log.info("tiny corpus: %s gave %s in %.0f s", env_id, corpus.episodes[env_id], time.perf_counter() - started)
        if on_env_done is not None:
            on_env_done(env_id)
    order = rng.permutation(len(corpus.actions))
    corpus.actions = [corpus.actions[index] for index in order]
    return corpus


def _add_env(corpus: Corpus, env_id: str, random_seeds: list[int], expert_seeds: list[int], *, max_turns: int,
             task_pool: int | None, seed: int, prompt_format: PromptFormat) -> str | None:
    """Play one env into ``corpus``; returns why it could not, or None."""
    try:
        (env,) = EnvSpec(env_id).with_options(max_turns=max_turns).on_task_pool(task_pool).make()
    except Exception as error:  # noqa: BLE001 - any failure is raised as CorpusError naming the env
        return f"{type(error).__name__}: {error}"
    try:
        played = rollout(env, RandomAgent(seed=seed), seeds=random_seeds)
        expert = rollout(env, ExpertAgent(), seeds=expert_seeds)
    except Exception as error:  # noqa: BLE001 - e.g. an env with no expert
        return f"{type(error).__name__}: {error}"
    finally:
        env.close()
    good = [trajectory for trajectory in played if trajectory.error is None and trajectory.turns]
    if not good:
        return "no random episode ran: " + "; ".join(sorted({str(trajectory.error) for trajectory in played}))[:300]
    actions = [turn.action for trajectory in expert if trajectory.error is None for turn in trajectory.turns]
    corpus.envs.append(env_id)
    corpus.episodes[env_id] = {"random": len(good), "expert": len(expert), "expert_actions": len(actions)}
    corpus.conversations += [build_messages(trajectory, prompt_format, include_current=False) for trajectory in good]
    corpus.actions += actions
    return None
