"""Agent wrappers for evaluation: each episode's play depends on its key alone, and its
generated tokens are counted.

Which episodes share a batch changes with ``--num-envs``, ``--workers`` and with what
a resumed run still has to play; these wrappers keep that from changing any
episode's actions, so a resumed run equals an uninterrupted one. Each wrapper also
answers ``tokens_generated(key)`` and ``release(key)`` for the runner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from regym.agents.base import Agent
from regym.agents.llm import LLMAgent, Policy
from regym.agents.openai_policy import OpenAIPolicy
from regym.agents.prompts import PromptFormat
from regym.eval.episodes import Episode, episode_key
from regym.trajectory import Trajectory


def policy_agent(
    policy: Policy,
    *,
    prompt_style: str = "plain",
    name: str | None = None,
    max_context_tokens: int | None = None,
    reproducible: bool = False,
    seed: int = 0,
    history_turns: int | None = None,
) -> TokenCountingAgent | ReseededLLMAgent:
    """The agent an evaluation plays for an LLM policy: ``LLMAgent`` in THE prompt format, wrapped
    to count tokens (or, ``reproducible``, reseeded per episode and turn from ``seed``).

    ``rl-eval`` and ``rl-train``'s evaluations both build their agent here, so the same policy
    and settings play the same episodes in both. ``max_context_tokens=None`` means
    ``context_budget(policy)``; ``history_turns`` plays with a window of past turns (``LLMAgent``).
    """
    if max_context_tokens is None:
        max_context_tokens = context_budget(policy)
    agent = LLMAgent(policy, PromptFormat(style=prompt_style), name=name, max_context_tokens=max_context_tokens,
                     history_turns=history_turns)
    return ReseededLLMAgent(agent, seed) if reproducible else TokenCountingAgent(agent)


def context_budget(policy: Policy) -> int | None:
    """A local model's window less one reply (``max_position_embeddings - max_new_tokens``, or a vLLM
    engine's ``context_window``), else None.

    A long episode's prompt must leave room for the reply in the model's window: a small
    model (the tiny pipeline's) would otherwise run past the positions it was trained on.
    None (keep the whole history) for a policy without a tokenizer and a model config.
    """
    positions = getattr(policy, "context_window", None)  # a vLLM engine's max_model_len
    if positions is None:
        positions = getattr(getattr(getattr(policy, "model", None), "config", None), "max_position_embeddings", None)
    if getattr(policy, "tokenizer", None) is None or not isinstance(positions, int):
        return None
    budget = positions - int(policy.max_new_tokens)
    if budget < 1:
        raise ValueError(f"max_new_tokens {policy.max_new_tokens} leaves no room for a prompt in the model's "
                         f"{positions} positions")
    return budget


class PerEpisodeAgent:
    """One inner agent per episode, made by ``make_agent(seed)`` with the episode's seed.

    A shared random agent would draw from one stream in whatever order episodes are
    batched; per-episode instances make every episode's play depend on its key only.
    """

    def __init__(self, make_agent: Callable[[int], Agent], base_seed: int = 0, name: str | None = None):
        self.make_agent = make_agent
        self.base_seed = base_seed
        self.name = name or getattr(make_agent(0), "name", "agent")
        self._agents: dict[str, Agent] = {}

    def act(self, trajectories: Sequence[Trajectory]) -> list[str]:
        actions = []
        for trajectory in trajectories:
            key = episode_key(trajectory)
            if key not in self._agents:
                self._agents[key] = self.make_agent(Episode.from_key(key).agent_seed(self.base_seed))
            actions.extend(self._agents[key].act([trajectory]))
        return actions

    def release(self, key: str) -> None:
        self._agents.pop(key, None)

    def tokens_generated(self, key: str) -> int:
        return 0


class TokenCountingAgent:
    """Wraps an ``LLMAgent``: counts the tokens its policy generates for each episode.

    The policy is wrapped so each batched ``chat`` call's generations are seen, in the
    order of the trajectories ``act`` was given.
    """

    def __init__(self, agent: Any):
        self.agent = agent
        self.name = agent.name
        self._policy = _RecordingPolicy(agent.policy)
        agent.policy = self._policy
        self._tokens: dict[str, int] = {}

    def act(self, trajectories: Sequence[Trajectory]) -> list[str]:
        self._policy.last = []
        actions = self.agent.act(trajectories)
        generations = self._policy.last
        if len(generations) == len(trajectories):
            for trajectory, generation in zip(trajectories, generations, strict=True):
                key = episode_key(trajectory)
                self._tokens[key] = self._tokens.get(key, 0) + _token_count(generation)
        return actions

    def release(self, key: str) -> None:
        self._tokens.pop(key, None)

    def tokens_generated(self, key: str) -> int:
        return self._tokens.get(key, 0)


class ReseededLLMAgent:
    """An ``LLMAgent`` whose sampling depends on the episode alone: one episode per call,
    the policy reseeded from (episode key, turn) before each.

    Batched sampling draws every row from one random stream, so which episodes share
    a batch changes their samples; this trades batching for exact resumes.
    """

    def __init__(self, agent: Any, base_seed: int = 0):
        self._reseed = _reseeder(agent.policy)
        self.counter = TokenCountingAgent(agent)
        self.name = agent.name
        self.base_seed = base_seed

    def act(self, trajectories: Sequence[Trajectory]) -> list[str]:
        actions = []
        for trajectory in trajectories:
            episode = Episode.from_key(episode_key(trajectory))
            self._reseed((episode.agent_seed(self.base_seed) + trajectory.num_turns) % 2**63)
            actions.extend(self.counter.act([trajectory]))
        return actions

    def release(self, key: str) -> None:
        self.counter.release(key)

    def tokens_generated(self, key: str) -> int:
        return self.counter.tokens_generated(key)


def _reseeder(policy: Any) -> Callable[[int], None]:
    if hasattr(policy, "reseed"):
        return policy.reseed
    if isinstance(policy, OpenAIPolicy):  # sends ``seed`` with every request

        def reseed(seed: int) -> None:
            policy.seed = seed % 2**31

        return reseed
    raise ValueError(f"{type(policy).__name__} cannot be reseeded per episode (HFPolicy and OpenAIPolicy can)")


class _RecordingPolicy:
    def __init__(self, policy: Any):
        self._inner = policy
        self.last: list[Any] = []

    def chat(self, conversations):
        self.last = list(self._inner.chat(conversations))
        return self.last

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _token_count(generation: Any) -> int:
    token_ids = getattr(generation, "token_ids", None)
    if token_ids:
        return len(token_ids)
    return int(getattr(generation, "num_tokens", 0) or 0)


__all__ = ["PerEpisodeAgent", "ReseededLLMAgent", "TokenCountingAgent", "context_budget", "policy_agent"]
