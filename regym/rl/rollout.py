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

That is the ``full`` context strategy. The ``window`` strategy (``WindowPolicyAgent``,
``play_window_groups``), as verl-agent and GiGPO train ALFWorld, gives each policy turn a
bounded prompt of its own and makes it a training row of its own (``TurnRow``):

    prompt ids     chat template of [system, first exchange (it states the task), the last k
                   exchanges, the current observation] + generation prompt         (not trained)
    completion     exactly the sampled ids, generated from those very prompt ids   (loss_mask 1)

Past actions are rendered in the prompt from their text (context only); what is trained is
token-exact: the ids the policy was given and the ids it sampled. A prompt costs O(k) tokens
whatever the episode's length, where the full sequence grows with every turn. In this
strategy ``max_episode_tokens`` caps each row (prompt + reply).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from regym.agents.llm import Generation, TokenPolicy, chat_token_ids
from regym.agents.prompts import PromptFormat, build_messages, format_observation, window_messages
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
    kv_cache: bool = True,
) -> list[Trajectory]:
    """Play ``group_size`` episodes of each task (a GRPO group) and return them with their token view.

    Tasks are given by reset ``seeds`` and/or reset ``options``. Result order is task-major:
    ``[task0 × G, task1 × G, ...]``; ``trajectory.group`` is the task index. The episodes are
    played by ``regym.rollout.rollout`` with a ``TokenPolicyAgent``, so a free env takes the
    next pending episode at once and all live episodes share each ``generate`` call.
    ``kv_cache``: keep each episode's KV cache across turns (``TokenPolicyAgent``).
    """
    agent = TokenPolicyAgent(policy, limits, prompt_format, kv_cache=kv_cache)

    def finish(job: int, trajectory: Trajectory) -> None:
        if not trajectory.token_ids:  # the env failed before the policy spoke: keep a well-formed record
            _start_token_view(trajectory, agent.chat.prompt_ids([{"role": "system", "content": "(reset failed)"}]))

    return _play_tasks(agent, envs, seeds, options, group_size, finish, on_done)


def play_window_groups(
    policy: TokenPolicy,
    envs: gym.Env | Sequence[gym.Env],
    *,
    history_turns: int,
    seeds: Sequence[int | None] | None = None,
    options: Sequence[dict[str, Any] | None] | None = None,
    group_size: int = 1,
    limits: RolloutLimits = RolloutLimits(),
    prompt_format: PromptFormat = PromptFormat(),
    on_done: Callable[[int, Trajectory], None] | None = None,
    kv_cache: bool = True,
) -> tuple[list[Trajectory], list[list[TurnRow]]]:
    """``play_groups`` with the window context strategy: the trajectories, and each one's training rows.

    ``rows[i]`` holds one ``TurnRow`` per policy turn of ``trajectories[i]``, in order. An episode
    that ended before the policy spoke (a failed reset, a first prompt over the limit) gets one
    fully masked row, so every episode keeps its place in its group. ``kv_cache``: reuse the
    prefix each prompt shares with the episode's previous one (``WindowPolicyAgent``).
    """
    agent = WindowPolicyAgent(policy, history_turns, limits, prompt_format, kv_cache=kv_cache)
    rows: dict[int, list[TurnRow]] = {}

    def finish(job: int, trajectory: Trajectory) -> None:
        rows[job] = agent.release(trajectory) or [agent.masked_row()]

    trajectories = _play_tasks(agent, envs, seeds, options, group_size, finish, on_done)
    return trajectories, [rows[job] for job in range(len(trajectories))]


def _play_tasks(agent: Any, envs: gym.Env | Sequence[gym.Env], seeds: Sequence[int | None] | None,
                options: Sequence[dict[str, Any] | None] | None, group_size: int,
                finish: Callable[[int, Trajectory], None],
                on_done: Callable[[int, Trajectory], None] | None) -> list[Trajectory]:
    """Every task ``group_size`` times through regym's one scheduler, with ``agent``'s hooks."""
    if group_size < 1:
        raise ValueError("group_size must be >= 1")

    def done(job: int, trajectory: Trajectory) -> None:
        trajectory.group = job // group_size
        finish(job, trajectory)
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

    ``kv_cache``: a policy that offers ``prefix_cache()`` (``HFPolicy``) keeps each live
    episode's KV cache across turns, so a turn prefills only the env's new text; each
    sequence only ever grows, so the whole of it is reused. Tokens and log-probs are those
    of a full prefill up to float rounding (tests/rl/test_kv_cache_rollout.py).
    """

    def __init__(self, policy: TokenPolicy, limits: RolloutLimits = RolloutLimits(),
                 prompt_format: PromptFormat = PromptFormat(), *, kv_cache: bool = True):
        self.policy, self.limits, self.prompt_format = policy, limits, prompt_format
        self.name = getattr(policy, "name", "")
        self.chat = ChatTokens(policy.tokenizer)
        self._replies: dict[int, Generation] = {}  # id(trajectory) -> the reply it is playing this turn
        self.cache = _prefix_cache(policy) if kv_cache else None

    def on_reset(self, trajectory: Trajectory) -> None:
        _start_token_view(trajectory, self.chat.prompt_ids(build_messages(trajectory, self.prompt_format)))
        if trajectory.prompt_length >= self.limits.max_episode_tokens:
            trajectory.error = f"prompt of {trajectory.prompt_length} tokens exceeds max_episode_tokens"

    def act(self, trajectories: Sequence[Trajectory]) -> list[str]:
        limits = self.limits
        budget = min(limits.max_new_tokens, *(limits.max_episode_tokens - len(t.token_ids) for t in trajectories))
        generations = _generate(self.policy, self.cache, trajectories, [t.token_ids for t in trajectories],
                                max(1, budget))
        self._replies = {}
        for trajectory, generation in zip(trajectories, generations, strict=True):
            _append(trajectory, generation.token_ids, 1, generation.logprobs)
            self._replies[id(trajectory)] = generation
        return [generation.text for generation in generations]

    def on_step(self, trajectory: Trajectory, observation: str, terminated: bool, truncated: bool,
                info: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        generation = self._replies.pop(id(trajectory))
        truncated, info = _turn_limit(trajectory, generation, terminated, truncated, info, self.limits.max_turns)
        if not (terminated or truncated):
            env_ids = self.chat.env_turn_ids(generation.token_ids,
                                             format_observation(observation, info, self.prompt_format))
            room = self.limits.max_episode_tokens - len(trajectory.token_ids) - len(env_ids)
            if room < 1:
                truncated, info["truncated_by"] = True, "max_episode_tokens"
            else:
                _append(trajectory, env_ids, 0, [0.0] * len(env_ids))
        if (terminated or truncated) and self.cache is not None:
            self.cache.drop(id(trajectory))
        return truncated, info


@dataclass(frozen=True)
class TurnRow:
    """One policy turn as a training row of its own (the window context strategy)."""

    prompt_ids: list[int]
    """The ids the policy was given (and generated from): the chat template over the windowed
    conversation (``window_messages``) + the generation prompt."""
    completion_ids: list[int]
    """Exactly the sampled ids, the stop token included when the policy emitted it."""
    logprobs: list[float]
    """Behaviour log-probs of ``completion_ids``."""
    loss_mask: list[int]
    """1 on the trained tokens: all of them, except in the placeholder row of an episode that never played."""


class WindowPolicyAgent:
    """A token-level policy as the ``Agent`` of ``regym.rollout`` that answers each turn from a window.

    Each turn's prompt is the chat template over ``window_messages(build_messages(...), k)``;
    ``act`` generates from those very ids for every live episode in one batched call and keeps
    (prompt ids, sampled ids, behaviour log-probs) as the turn's ``TurnRow``. ``on_step`` builds the
    next turn's prompt, and ends the episode truncated at ``max_turns`` or when that prompt leaves
    no room for a reply within ``max_episode_tokens``.

    ``kv_cache``: as in ``TokenPolicyAgent``, but a window prompt is rebuilt each turn, so only
    the prefix it shares with the previous prompt and reply is reused (the system prompt at
    least; nearly all of the previous prompt while the window still grows).
    """

    def __init__(self, policy: TokenPolicy, history_turns: int, limits: RolloutLimits = RolloutLimits(),
                 prompt_format: PromptFormat = PromptFormat(), *, kv_cache: bool = True):
        if history_turns < 0:
            raise ValueError(f"history_turns must be >= 0, not {history_turns}")
        self.policy, self.history_turns = policy, history_turns
        self.limits, self.prompt_format = limits, prompt_format
        self.name = getattr(policy, "name", "")
        self.chat = ChatTokens(policy.tokenizer)
        self._rows: dict[int, list[TurnRow]] = {}  # id(trajectory) -> its rows so far
        self._prompts: dict[int, list[int]] = {}  # id(trajectory) -> the prompt ids of its next turn
        self._replies: dict[int, Generation] = {}  # id(trajectory) -> the reply it is playing this turn
        self.cache = _prefix_cache(policy) if kv_cache else None

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return self.chat.prompt_ids(window_messages(messages, self.history_turns))

    def on_reset(self, trajectory: Trajectory) -> None:
        self._rows[id(trajectory)] = []
        prompt = self.prompt_ids(build_messages(trajectory, self.prompt_format))
        if len(prompt) >= self.limits.max_episode_tokens:
            trajectory.error = f"prompt of {len(prompt)} tokens exceeds max_episode_tokens"
        else:
            self._prompts[id(trajectory)] = prompt

    def act(self, trajectories: Sequence[Trajectory]) -> list[str]:
        limits = self.limits
        prompts = [self._prompts.pop(id(t)) for t in trajectories]
        budget = min(limits.max_new_tokens, *(limits.max_episode_tokens - len(prompt) for prompt in prompts))
        generations = _generate(self.policy, self.cache, trajectories, prompts, max(1, budget))
        self._replies = {}
        for trajectory, prompt, generation in zip(trajectories, prompts, generations, strict=True):
            if len(generation.logprobs) != len(generation.token_ids):
                raise ValueError(f"policy returned {len(generation.token_ids)} tokens but "
                                 f"{len(generation.logprobs)} log-probs")
            row = TurnRow(list(prompt), list(generation.token_ids), [float(x) for x in generation.logprobs],
                          [1] * len(generation.token_ids))
            self._rows[id(trajectory)].append(row)
            self._replies[id(trajectory)] = generation
        return [generation.text for generation in generations]

    def on_step(self, trajectory: Trajectory, observation: str, terminated: bool, truncated: bool,
                info: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        generation = self._replies.pop(id(trajectory))
        truncated, info = _turn_limit(trajectory, generation, terminated, truncated, info, self.limits.max_turns)
        if not (terminated or truncated):
            # The conversation once this turn is recorded: build_messages of the trajectory after record().
            messages = [*build_messages(trajectory, self.prompt_format),
                        {"role": "assistant", "content": generation.text},
                        {"role": "user", "content": format_observation(observation, info, self.prompt_format)}]
            prompt = self.prompt_ids(messages)
            if self.limits.max_episode_tokens - len(prompt) < 1:
                truncated, info["truncated_by"] = True, "max_episode_tokens"
            else:
                self._prompts[id(trajectory)] = prompt
        return truncated, info

    def release(self, trajectory: Trajectory) -> list[TurnRow]:
        """The rows of an episode that has ended (and forget it)."""
        if self.cache is not None:
            self.cache.drop(id(trajectory))
        self._prompts.pop(id(trajectory), None)
        self._replies.pop(id(trajectory), None)
        return self._rows.pop(id(trajectory), [])

    def masked_row(self) -> TurnRow:
        """A row that trains nothing, for an episode in which the policy never spoke."""
        tokenizer = self.chat.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return TurnRow(self.chat.prompt_ids([{"role": "system", "content": "(no turn played)"}]), [pad], [0.0], [0])


def _prefix_cache(policy: TokenPolicy) -> Any:
    """The policy's cache of conversations across turns (``HFPolicy.prefix_cache``), or None if it has none."""
    make_cache = getattr(policy, "prefix_cache", None)
    return make_cache() if make_cache is not None else None


def _generate(policy: TokenPolicy, cache: Any, trajectories: Sequence[Trajectory], prompts: list[list[int]],
              budget: int) -> list[Generation]:
    """One batched ``generate`` call for the live episodes, through ``cache`` when the agent keeps one."""
    if cache is None:
        return policy.generate(prompts, max_new_tokens=budget)
    keys = [id(t) for t in trajectories]
    cache.keep_only(keys)  # every live episode is in each batch: the others have ended
    return policy.generate(prompts, max_new_tokens=budget, cache=cache, keys=keys)


def _turn_limit(trajectory: Trajectory, generation: Generation, terminated: bool, truncated: bool,
                info: dict[str, Any], max_turns: int) -> tuple[bool, dict[str, Any]]:
    """Both token views' shared end-of-turn rule: mark a reply cut by its budget, and end the episode
    truncated once it has played ``max_turns`` policy turns. Returns (truncated, a copy of info)."""
    info = dict(info)
    if generation.finish_reason == "length":
        info["reply_truncated"] = True
    if not (terminated or truncated) and len(trajectory.turns) + 1 >= max_turns:
        truncated, info["truncated_by"] = True, "max_turns"
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
