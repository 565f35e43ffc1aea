"""The one prompt format of regym's LLM policies.

A conversation is: a system prompt (the env family's ``instructions`` plus the answer
style), then alternating user turns (the env's observation, with the admissible
actions listed where the game has them) and assistant turns (the policy's text).
SFT data, RL rollouts and evaluation all build their prompts here, so a model sees
the same format in every stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from regym.trajectory import Trajectory

STYLES = {
    "plain": "Reply with the action only, on one line.",
    "react": "Reply with one line 'Thought: <your reasoning>' and then one line 'Action: <the action>'.",
}


@dataclass(frozen=True)
class PromptFormat:
    """How observations become chat messages.

    ``style``: "plain" (the action only) or "react" (Thought/Action).
    ``list_admissible``: append the admissible actions to each observation.
    ``max_admissible``: cap the listed actions (long lists blow the context).
    """

    style: str = "plain"
    list_admissible: bool = True
    max_admissible: int = 50

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {sorted(STYLES)}, got {self.style!r}")


def env_instructions(env_id: str) -> str:
    """The env family's own instructions, read from its registered class.

    An env built from its class without ``gymnasium.make`` has no registered id (``rollout``
    names it by its class name, e.g. ``"CountingGame"``) and gets ``TextEnv``'s generic
    instructions. A namespaced id that is not registered (``regym/...``: a typo, an env renamed
    since a log was written) and a registered env whose class does not import are errors:
    a generic prompt in their place would train or evaluate the wrong prompt unnoticed.
    """
    from regym.envs import env_class
    from regym.envs.base import TextEnv

    try:
        registered = env_class(env_id)
    except gym.error.UnregisteredEnv as error:
        if "/" not in env_id:
            return TextEnv.instructions
        raise ValueError(f"no env is registered as {env_id!r}, so its system prompt is unknown: fix the id, or "
                         f"register the env (gymnasium.register(id=..., entry_point=...)) ({error})") from None
    except ImportError as error:
        raise ImportError(f"env {env_id!r} is registered but its class does not import, so its system prompt is "
                          f"unknown: install what it needs or fix its entry point ({error})") from error
    return getattr(registered, "instructions", TextEnv.instructions)


def system_prompt(env_id: str, prompt_format: PromptFormat = PromptFormat()) -> str:
    return f"{env_instructions(env_id)}\n{STYLES[prompt_format.style]}"


def format_observation(observation: str, info: dict[str, Any], prompt_format: PromptFormat = PromptFormat()) -> str:
    """The user message for one observation."""
    admissible = info.get("admissible_actions") if prompt_format.list_admissible else None
    if not admissible:
        return observation
    shown = list(admissible)[: prompt_format.max_admissible]
    return f"{observation.strip()}{ACTIONS_HEADER}{', '.join(shown)}"


ACTIONS_HEADER = "\n\nAvailable actions: "
"""What ``format_observation`` puts between an observation and its admissible actions."""


def without_actions(content: str) -> str:
    """A user message as ``format_observation`` made it, less its list of admissible actions."""
    observation, header, _ = content.rpartition(ACTIONS_HEADER)
    return observation if header else content


def build_messages(
    trajectory: Trajectory,
    prompt_format: PromptFormat = PromptFormat(),
    *,
    include_current: bool = True,
) -> list[dict[str, str]]:
    """The whole episode so far as chat messages, ending with the observation to answer."""
    messages = [{"role": "system", "content": system_prompt(trajectory.env_id, prompt_format)}]
    info_before = trajectory.reset_info
    for turn in trajectory.turns:
        messages.append({"role": "user", "content": format_observation(turn.observation, info_before, prompt_format)})
        messages.append({"role": "assistant", "content": turn.action})
        info_before = turn.info
    if include_current and not trajectory.done:
        messages.append({"role": "user", "content": format_observation(trajectory.observation, trajectory.info,
                                                                        prompt_format)})
    return messages


def truncate_history(
    messages: list[dict[str, str]], count_tokens: Callable[[list[dict[str, str]]], int], budget: int
) -> list[dict[str, str]]:
    """Drop the oldest exchanges until the conversation fits ``budget`` tokens.

    The system prompt, the first exchange (it states the task) and the current
    observation are always kept.
    """
    messages = list(messages)
    while len(messages) > 5 and count_tokens(messages) > budget:
        del messages[3:5]
    return messages


def window_messages(messages: list[dict[str, str]], history_turns: int) -> list[dict[str, str]]:
    """[system, first exchange, the last ``history_turns`` exchanges, current observation].

    ``messages`` is ``build_messages``' conversation (system, then user/assistant exchanges, then
    the observation to answer). The first exchange is kept whatever ``history_turns`` is, since
    its observation states the task (as ``truncate_history`` keeps it); so a prompt shows at most
    ``history_turns + 1`` past turns, and a conversation that short is returned whole. Only the
    current observation lists its admissible actions, as verl-agent's ALFWorld prompt does: past
    lists are stale, and in ALFWorld the first room's list alone filled a tenth of the prompts past
    1,024 tokens.
    """
    if history_turns < 0:
        raise ValueError(f"history_turns must be >= 0, not {history_turns}")
    past = (len(messages) - 2) // 2  # exchanges before the current observation
    kept = list(messages) if past <= history_turns + 1 else \
        messages[:3] + messages[len(messages) - 1 - 2 * history_turns:]
    return [{**message, "content": without_actions(message["content"])}
            if message["role"] == "user" and index < len(kept) - 1 else message
            for index, message in enumerate(kept)]
