"""Token-level multi-turn rollouts for RL: G episodes per task, N envs in lock-step.

The episodes are played by regym's one scheduler, ``regym.rollout.rollout``; this module
only adds the token view, through ``TokenPolicyAgent`` and the scheduler's hooks. Every
live episode is continued by one batched ``policy.generate`` call per turn. Each
episode becomes one token sequence that is never re-tokenised:

    prompt ids     chat template of [system, first observation] + generation prompt   (loss_mask 0)
    policy turn    exactly the sampled ids, stop token included                       (loss_mask 1)
    env turn       the template's tokens that close the reply and open the next one:  (loss_mask 0)
                   end-of-turn text the policy did not emit + next user message + generation prompt
    ...

so ``decode(ids where loss_mask == 1)`` is the policy's text and ``decode(ids where
loss_mask == 0)`` the env's. The env turn is found by rendering the template on a
small probe conversation and taking the text it adds after an assistant reply
(``ChatTokens``); it is tokenised on its own, with special tokens, so its ids are
exactly the template's.

Limits (explicit, recorded in ``Turn.info["truncated_by"]``): ``max_turns`` policy
turns, and ``max_episode_tokens`` for the whole sequence. A turn's generation budget
is what is left of the sequence budget; when the next env turn would not fit, the
episode ends truncated after the last policy turn. An env that raises ends that
episode as failed (``trajectory.error``, reward 0) and the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from regym.agents.llm import Generation, TokenPolicy, chat_token_ids
from regym.agents.prompts import PromptFormat, build_messages, format_observation
from regym.rollout import rollout
from regym.trajectory import Trajectory

_PROBE = "\u2063REGYM-PROBE\u2063"


class ChatTokens:
    """The pieces of a chat template that an incremental token sequence needs."""

    def __init__(self, tokenizer: Any):
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("the tokenizer has no chat template; multi-turn RL needs one")
        self.tokenizer = tokenizer
        before = self._render([{"role": "assistant", "content": _PROBE}], generation_prompt=False)
        if _PROBE not in before:
            raise ValueError("the chat template drops assistant content; cannot build multi-turn sequences")
        self.assistant_suffix = before[before.index(_PROBE) + len(_PROBE):]
        self._probe_prefix = before

    def _render(self, tail: list[dict[str, str]], generation_prompt: bool) -> str:
        messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, *tail]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return chat_token_ids(self.tokenizer, messages, add_generation_prompt=True)

    def env_turn_text(self, policy_ids: list[int], user_content: str) -> str:
        """Text between the policy's last sampled token and its next reply."""
        following = self._render(
            [{"role": "assistant", "content": _PROBE}, {"role": "user", "content": user_content}],
            generation_prompt=True,
        )
        if not following.startswith(self._probe_prefix):
            raise ValueError("the chat template re-renders earlier turns when a turn is added; unsupported")
        closing = self.assistant_suffix
        emitted = self.tokenizer.decode(policy_ids[-1:], skip_special_tokens=False) if policy_ids else ""
        if emitted and closing.startswith(emitted):
            closing = closing[len(emitted):]  # the policy already wrote the end-of-turn token
        return closing + following[len(self._probe_prefix):]

    def env_turn_ids(self, policy_ids: list[int], user_content: str) -> list[int]:
        return self.tokenizer.encode(self.env_turn_text(policy_ids, user_content), add_special_tokens=False)


@dataclass(frozen=True)
class RolloutLimits:
    """Explicit episode limits. ``max_new_tokens`` caps one policy turn."""

    max_turns: int = 8
    max_new_tokens: int = 32
    max_episode_tokens: int = 1024


def play_groups(
    policy: TokenPolicy,
    envs: gym.Env | Sequence[gym.Env],
    *,
    seeds: Sequence[int | None] | None = None,
    options: Sequence[dict[str, Any] | None] | None = None,
    group_size: int = 1,
    limits: RolloutLimits = RolloutLimits(),
    prompt_format: PromptFormat = PromptFormat(),
    on_done: Callable[[int, Trajectory], None] | None = None,
) -> list[Trajectory]:
    """Play ``group_size`` episodes of each task (a GRPO group) and return them with their token view.

    Tasks are given by reset ``seeds`` and/or reset ``options``. Result order is task-major:
    ``[task0 × G, task1 × G, ...]``; ``trajectory.group`` is the task index. The episodes are
    played by ``regym.rollout.rollout`` with a ``TokenPolicyAgent``, so a free env takes the
    next pending episode at once and all live episodes share each ``generate`` call.
    """
    if group_size < 1:
        raise ValueError("group_size must be >= 1")
    agent = TokenPolicyAgent(policy, limits, prompt_format)

    def done(job: int, trajectory: Trajectory) -> None:
        trajectory.group = job // group_size
        if not trajectory.token_ids:  # the env failed before the policy spoke: keep a well-formed record
            _start_token_view(trajectory, agent.chat.prompt_ids([{"role": "system", "content": "(reset failed)"}]))
        if on_done is not None:
            on_done(job, trajectory)

    return rollout(envs, agent, seeds=_repeat(seeds, group_size), options=_repeat(options, group_size),
                   on_reset=agent.on_reset, on_step=agent.on_step, on_done=done)


class TokenPolicyAgent:
    """A token-level policy as the ``Agent`` of ``regym.rollout``, writing each episode's token view.

    ``on_reset`` starts the sequence with the prompt ids; ``act`` continues every live
    sequence with one batched ``generate`` call and appends the sampled ids (loss_mask 1,
    behaviour log-probs); ``on_step`` appends the env turn (loss_mask 0), or ends the
    episode truncated when ``limits`` are reached.
    """

    def __init__(self, policy: TokenPolicy, limits: RolloutLimits = RolloutLimits(),
                 prompt_format: PromptFormat = PromptFormat()):
        self.policy, self.limits, self.prompt_format = policy, limits, prompt_format
        self.name = getattr(policy, "name", "")
        self.chat = ChatTokens(policy.tokenizer)
        self._replies: dict[int, Generation] = {}  # id(trajectory) -> the reply it is playing this turn

    def on_reset(self, trajectory: Trajectory) -> None:
        _start_token_view(trajectory, self.chat.prompt_ids(build_messages(trajectory, self.prompt_format)))
        if trajectory.prompt_length >= self.limits.max_episode_tokens:
            trajectory.error = f"prompt of {trajectory.prompt_length} tokens exceeds max_episode_tokens"

    def act(self, trajectories: Sequence[Trajectory]) -> list[str]:
        limits = self.limits
        budget = min(limits.max_new_tokens, *(limits.max_episode_tokens - len(t.token_ids) for t in trajectories))
        generations = self.policy.generate([t.token_ids for t in trajectories], max_new_tokens=max(1, budget))
        self._replies = {}
        for trajectory, generation in zip(trajectories, generations, strict=True):
            _append(trajectory, generation.token_ids, 1, generation.logprobs)
            self._replies[id(trajectory)] = generation
        return [generation.text for generation in generations]

    def on_step(self, trajectory: Trajectory, observation: str, terminated: bool, truncated: bool,
                info: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        generation = self._replies.pop(id(trajectory))
        info = dict(info)
        if generation.finish_reason == "length":
            info["reply_truncated"] = True
        if not (terminated or truncated) and len(trajectory.turns) + 1 >= self.limits.max_turns:
            truncated, info["truncated_by"] = True, "max_turns"
        if not (terminated or truncated):
            env_ids = self.chat.env_turn_ids(generation.token_ids,
                                             format_observation(observation, info, self.prompt_format))
            room = self.limits.max_episode_tokens - len(trajectory.token_ids) - len(env_ids)
            if room < 1:
                truncated, info["truncated_by"] = True, "max_episode_tokens"
            else:
                _append(trajectory, env_ids, 0, [0.0] * len(env_ids))
        return truncated, info


def _repeat(items: Sequence[Any] | None, times: int) -> list[Any] | None:
    return None if items is None else [item for item in items for _ in range(times)]


def _start_token_view(trajectory: Trajectory, prompt_ids: list[int]) -> None:
    trajectory.token_ids = list(prompt_ids)
    trajectory.loss_mask = [0] * len(prompt_ids)
    trajectory.logprobs = [0.0] * len(prompt_ids)
    trajectory.prompt_length = len(prompt_ids)


def _append(trajectory: Trajectory, ids: list[int], mask: int, logprobs: list[float]) -> None:
    if len(logprobs) != len(ids):
        raise ValueError(f"policy returned {len(ids)} tokens but {len(logprobs)} log-probs")
    trajectory.token_ids.extend(ids)
    trajectory.loss_mask.extend([mask] * len(ids))
    trajectory.logprobs.extend(float(x) for x in logprobs)


def turn_spans(loss_mask: Sequence[int]) -> list[tuple[int, int]]:
    """(start, end) of each policy turn: the maximal runs of ``loss_mask == 1``, in order."""
    spans, start = [], None
    for index, value in enumerate(loss_mask):
        if value and start is None:
            start = index
        elif not value and start is not None:
            spans.append((start, index))
            start = None
    if start is not None:
        spans.append((start, len(loss_mask)))
    return spans
